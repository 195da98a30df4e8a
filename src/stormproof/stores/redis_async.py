"""The Redis store for asyncio: ``redis.asyncio``, the same Lua scripts, awaited natively.

    store = stormproof.stores.open_async("redis://localhost:6379/0?prefix=billing:idem:")
    await store.init()

URL, key layout, Lua scripts, expiry and durability are those of
:class:`~stormproof.stores.redis.RedisStore` (the scripts are the same text, the arguments are
built by the same code): the two stores share records. Each call is one ``EVALSHA`` round trip
that the event loop does not wait for.

redis-py's asyncio connections belong to the event loop that made them: use a store from one
loop, and ``await store.close()`` before the loop ends.
"""

from __future__ import annotations

from typing import Any, cast

import redis.asyncio

from stormproof._validate import int_at_least
from stormproof.stores.base import SCHEMA_VERSION, Claim, IdempotencyRecord, RecordStatus
from stormproof.stores.redis import (
    _CLAIM,
    _EXTEND,
    _FINISH,
    _INIT,
    _RELEASE,
    _UNLINK_BATCH,
    _client_from_url,
    _parse_url,
    _RedisRecords,
)

__all__ = ["AsyncRedisStore"]


class AsyncRedisStore(_RedisRecords):
    """Idempotency records in Redis, for asyncio. See the module docstring."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.prefix, self.ttl_margin, client_url = _parse_url(url)
        client: redis.asyncio.Redis = _client_from_url(
            url, client_url, redis.asyncio.Redis.from_url
        )
        self._client = client
        self._claim = client.register_script(_CLAIM)
        self._finish = client.register_script(_FINISH)
        self._release = client.register_script(_RELEASE)
        self._extend = client.register_script(_EXTEND)
        self._init = client.register_script(_INIT)

    async def init(self) -> None:
        """Record ``SCHEMA_VERSION`` (idempotent; Redis has no schema to create)."""
        await self._init(keys=[self._schema_key], args=[SCHEMA_VERSION])

    async def schema_version(self) -> int | None:
        """The version recorded by :meth:`init`, or ``None`` before it."""
        value = cast("str | None", await self._client.get(self._schema_key))
        return None if value is None else int(value)

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
        """Take ``key`` if it is free, expired, failed or its lease ran out (one Lua script)."""
        args = self._claim_args(payload_hash, token, now, lease, ttl)
        reply = await self._claim(keys=[self.record_key(key)], args=args)
        return self._claim_answer(key, payload_hash, token, now, lease, ttl, reply)

    async def _finish_with(
        self, status: RecordStatus, key: str, token: str, result: str, now: float, ttl: float
    ) -> bool:
        args = self._finish_args(status, token, result, now, ttl)
        return _done(await self._finish(keys=[self.record_key(key)], args=args))

    async def complete(self, key: str, token: str, result: str, now: float, *, ttl: float) -> bool:
        """Store the result if ``token`` holds the claim."""
        return await self._finish_with(RecordStatus.COMPLETED, key, token, result, now, ttl)

    async def fail(self, key: str, token: str, error: str, now: float, *, ttl: float) -> bool:
        """Keep the record as failed with ``error`` if ``token`` holds the claim."""
        return await self._finish_with(RecordStatus.FAILED, key, token, error, now, ttl)

    async def release(self, key: str, token: str) -> bool:
        """Delete the record if ``token`` holds the claim."""
        return _done(await self._release(keys=[self.record_key(key)], args=[token]))

    async def extend(self, key: str, token: str, now: float, *, lease: float) -> bool:
        """Renew the lease if ``token`` holds the claim (one Lua script)."""
        args = self._extend_args(token, now, lease)
        return _done(await self._extend(keys=[self.record_key(key)], args=args))

    async def get(self, key: str) -> IdempotencyRecord | None:
        """The record of ``key``, expired or not (until Redis removes it), or ``None``."""
        fields = cast("dict[str, str]", await self._client.hgetall(self.record_key(key)))
        return self._record(key, fields) if fields else None

    async def purge_expired(self, now: float, *, limit: int = 10_000) -> int:
        """Nothing to do: Redis expires keys itself; returns 0."""
        int_at_least("limit", limit, 1)
        return 0

    async def drop(self) -> None:
        """Delete every key under this store's prefix (SCAN + UNLINK). For tests and clean-up."""
        batch: list[str] = []
        async for name in self._client.scan_iter(match=self._scan_pattern(), count=1000):
            batch.append(name)
            if len(batch) >= _UNLINK_BATCH:
                await self._client.unlink(*batch)
                batch.clear()
        if batch:
            await self._client.unlink(*batch)

    async def close(self) -> None:
        """Close the client and its connection pool."""
        await self._client.aclose()


def _done(reply: Any) -> bool:
    return int(reply) == 1
