"""The store protocol for asyncio, and an adapter that serves any blocking store through it.

:class:`AsyncIdempotencyStore` has the methods of
:class:`~stormproof.stores.base.IdempotencyStore`, with the same arguments and semantics, as
coroutines. Two back ends implement it natively, so a round trip never holds the event loop:

* PostgreSQL -- :class:`~stormproof.stores.postgres_async.AsyncPostgresStore` (psycopg's
  ``AsyncConnectionPool``);
* Redis -- :class:`~stormproof.stores.redis_async.AsyncRedisStore` (``redis.asyncio``).

Every other back end (memory, SQLite, DynamoDB) is served by :class:`ThreadedStore`, which runs
each call of a blocking store in ``asyncio.to_thread``. ``stormproof.stores.open_async(url)``
picks the native store when there is one and the adapter otherwise.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Protocol, runtime_checkable

from stormproof.errors import ConfigError
from stormproof.stores.base import Claim, IdempotencyRecord, IdempotencyStore

__all__ = ["AsyncIdempotencyStore", "ThreadedStore", "is_async_store"]


@runtime_checkable
class AsyncIdempotencyStore(Protocol):
    """:class:`~stormproof.stores.base.IdempotencyStore` with ``async def`` methods.

    The semantics, arguments and return values are those of the sync protocol (see
    :mod:`stormproof.stores.base`); only the calling convention differs. A store's connections
    belong to the event loop of its first call: use it from that loop, and ``await close()``.
    """

    url: str

    async def init(self) -> None:
        """Create the schema if missing (idempotent) and record ``SCHEMA_VERSION``."""
        ...

    async def claim(
        self,
        key: str,
        payload_hash: str,
        token: str,
        now: float,
        *,
        lease: float,
        ttl: float,
    ) -> Claim:
        """Atomically take ``key`` for a new run, or return the record that holds it."""
        ...

    async def complete(self, key: str, token: str, result: str, now: float, *, ttl: float) -> bool:
        """Store ``result`` (JSON) if ``token`` still holds ``key``; ``False`` if it does not."""
        ...

    async def release(self, key: str, token: str) -> bool:
        """Delete the record if ``token`` holds it (the run failed and may be retried)."""
        ...

    async def extend(self, key: str, token: str, now: float, *, lease: float) -> bool:
        """Renew the in-progress claim of ``token``: ``lease_expires_at = now + lease``."""
        ...

    async def fail(self, key: str, token: str, error: str, now: float, *, ttl: float) -> bool:
        """Keep the record as failed with ``error`` (JSON) if ``token`` holds it."""
        ...

    async def get(self, key: str) -> IdempotencyRecord | None:
        """The record of ``key``, expired or not, or ``None``."""
        ...

    async def schema_version(self) -> int | None:
        """The schema version recorded by ``init``, or ``None`` before it."""
        ...

    async def purge_expired(self, now: float, *, limit: int = 10_000) -> int:
        """Delete up to ``limit`` records expired at ``now``; how many went."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def is_async_store(store: object) -> bool:
    """Whether ``store`` implements the async protocol (its ``claim`` is a coroutine function).

    ``isinstance`` against a runtime-checkable protocol checks only that the methods exist, so
    it cannot tell a sync store from an async one; this can.
    """
    return isinstance(store, AsyncIdempotencyStore) and inspect.iscoroutinefunction(store.claim)


class ThreadedStore:
    """Serves a blocking store through the async protocol: each call in ``asyncio.to_thread``.

    The loop stays free while the call runs in a worker thread of the loop's default executor,
    at the cost of a thread hop (tens of microseconds) per call. The wrapped store must be safe
    to call from several threads, as every stormproof store is. Cancelling a caller does not stop
    a call already in its thread: it finishes there.

    Args:
        store: the blocking store, available as :attr:`store` (e.g. for ``drop`` in tests).
    """

    def __init__(self, store: IdempotencyStore) -> None:
        if is_async_store(store) or not isinstance(store, IdempotencyStore):
            raise ConfigError("store", "must be a blocking IdempotencyStore", store)
        self.store = store
        self.url = store.url

    def __repr__(self) -> str:
        return f"ThreadedStore({self.store!r})"

    async def init(self) -> None:
        """``store.init()`` in a thread."""
        await asyncio.to_thread(self.store.init)

    async def claim(
        self,
        key: str,
        payload_hash: str,
        token: str,
        now: float,
        *,
        lease: float,
        ttl: float,
    ) -> Claim:
        """``store.claim(...)`` in a thread."""
        return await asyncio.to_thread(
            self.store.claim, key, payload_hash, token, now, lease=lease, ttl=ttl
        )

    async def complete(self, key: str, token: str, result: str, now: float, *, ttl: float) -> bool:
        """``store.complete(...)`` in a thread."""
        return await asyncio.to_thread(self.store.complete, key, token, result, now, ttl=ttl)

    async def release(self, key: str, token: str) -> bool:
        """``store.release(...)`` in a thread."""
        return await asyncio.to_thread(self.store.release, key, token)

    async def extend(self, key: str, token: str, now: float, *, lease: float) -> bool:
        """``store.extend(...)`` in a thread."""
        return await asyncio.to_thread(self.store.extend, key, token, now, lease=lease)

    async def fail(self, key: str, token: str, error: str, now: float, *, ttl: float) -> bool:
        """``store.fail(...)`` in a thread."""
        return await asyncio.to_thread(self.store.fail, key, token, error, now, ttl=ttl)

    async def get(self, key: str) -> IdempotencyRecord | None:
        """``store.get(...)`` in a thread."""
        return await asyncio.to_thread(self.store.get, key)

    async def schema_version(self) -> int | None:
        """``store.schema_version()`` in a thread."""
        return await asyncio.to_thread(self.store.schema_version)

    async def purge_expired(self, now: float, *, limit: int = 10_000) -> int:
        """``store.purge_expired(...)`` in a thread."""
        return await asyncio.to_thread(self.store.purge_expired, now, limit=limit)

    async def close(self) -> None:
        """``store.close()`` in a thread."""
        await asyncio.to_thread(self.store.close)
