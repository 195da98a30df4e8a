"""The PostgreSQL store for asyncio: psycopg 3's ``AsyncConnectionPool``, awaited natively.

    store = stormproof.stores.open_async("postgresql://user@host/db?table=orders_idem")
    await store.init()

The URL, the table, the statements and so the semantics are those of
:class:`~stormproof.stores.postgres.PostgresStore` (the statement text is built by the same code,
once per store): the two stores share records, and a process may use either. Each call waits for
its round trip without holding the event loop, so other tasks run meanwhile; ``pool_max``
bounds the connections, and a task waits (without blocking) up to ``pool_timeout`` for one.

The pool opens on the first call, in the running loop, and belongs to that loop from then on:
use a store from one event loop (open one store per loop, e.g. per worker process), and
``await store.close()`` before the loop ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from psycopg_pool import AsyncConnectionPool

from stormproof._validate import int_at_least
from stormproof.stores.base import SCHEMA_VERSION, Claim, IdempotencyRecord, RecordStatus
from stormproof.stores.postgres import (
    _CLAIM_ATTEMPTS,
    _LOCK_SCHEMA,
    _SCHEMA_EXISTS,
    _SCHEMA_LOCK,
    _SCHEMA_TABLE,
    _claim_answer,
    _claim_gave_up,
    _claim_params,
    _encode,
    _extend_params,
    _finish_params,
    _pool_options,
    _record,
    _Row,
    _Statements,
    parse_url,
)

__all__ = ["AsyncPostgresStore"]

_Pool = AsyncConnectionPool[psycopg.AsyncConnection[_Row]]


class AsyncPostgresStore:
    """Idempotency records in a PostgreSQL table, for asyncio. See the module docstring."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._config = parse_url(url)
        self._sql = _Statements(self._config.table)
        self._pool: _Pool | None = None

    @property
    def table(self) -> str:
        """The records table."""
        return self._config.table

    # -- connections ---------------------------------------------------------------------------

    async def _get_pool(self) -> _Pool:
        pool = self._pool
        if pool is None:
            # Created and assigned without an await in between, so concurrent first calls
            # share one pool; ``open`` is idempotent and serialised by the pool's own lock.
            pool = self._pool = AsyncConnectionPool(
                self._config.conninfo, **_pool_options(self._config)
            )
        if pool.closed:
            await pool.open()
        return pool

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[psycopg.AsyncCursor[_Row]]:
        """A cursor in one transaction, committed when the block exits normally."""
        pool = await self._get_pool()
        async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            yield cur

    @asynccontextmanager
    async def _statement(self) -> AsyncIterator[psycopg.AsyncCursor[_Row]]:
        """A cursor whose every statement commits on its own (one round trip, no BEGIN)."""
        pool = await self._get_pool()
        async with pool.connection() as conn, conn.cursor() as cur:
            yield cur

    # -- protocol --------------------------------------------------------------------------------

    async def init(self) -> None:
        """Create the tables if missing and record ``SCHEMA_VERSION``; safe to run concurrently."""
        async with self._transaction() as cur:
            await cur.execute(_LOCK_SCHEMA, (_SCHEMA_LOCK,))
            await cur.execute(self._sql.create_schema)
            await cur.execute(self._sql.create_table)
            await cur.execute(self._sql.record_version, (self._config.table, SCHEMA_VERSION))

    async def schema_version(self) -> int | None:
        """The version recorded by :meth:`init` for this table, or ``None`` before it."""
        async with self._transaction() as cur:
            await cur.execute(_SCHEMA_EXISTS, (_SCHEMA_TABLE,))
            exists = await cur.fetchone()
            if exists is None or not exists[0]:
                return None
            await cur.execute(self._sql.select_version, (self._config.table,))
            row = await cur.fetchone()
            return None if row is None else int(row[0])

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
        """Take ``key`` if it is free, expired, failed or its lease ran out (one statement)."""
        params = _claim_params(key, payload_hash, token, now, lease, ttl)
        for _ in range(_CLAIM_ATTEMPTS):
            async with self._statement() as cur:
                await cur.execute(self._sql.claim_or_read, params, prepare=True)
                row = await cur.fetchone()
                if row is not None:
                    return _claim_answer(row, key, payload_hash, token, params)
                # As in the sync store: the insert lost to a row this statement's snapshot
                # could not see, so read it (or claim again if it was released meanwhile).
                await cur.execute(self._sql.select_bytes, (params["key"],), prepare=True)
                row = await cur.fetchone()
                if row is not None:
                    return Claim(False, _record(row))
        raise _claim_gave_up(key)

    async def _finish_claim(
        self, status: RecordStatus, key: str, token: str, result: str, now: float, ttl: float
    ) -> bool:
        async with self._statement() as cur:
            await cur.execute(
                self._sql.finish, _finish_params(status, key, token, result, now, ttl), prepare=True
            )
            return cur.rowcount == 1

    async def complete(self, key: str, token: str, result: str, now: float, *, ttl: float) -> bool:
        """Store the result if ``token`` holds the claim."""
        return await self._finish_claim(RecordStatus.COMPLETED, key, token, result, now, ttl)

    async def fail(self, key: str, token: str, error: str, now: float, *, ttl: float) -> bool:
        """Keep the record as failed with ``error`` if ``token`` holds the claim."""
        return await self._finish_claim(RecordStatus.FAILED, key, token, error, now, ttl)

    async def extend(self, key: str, token: str, now: float, *, lease: float) -> bool:
        """Renew the lease if ``token`` holds the claim (one conditional update)."""
        async with self._statement() as cur:
            await cur.execute(
                self._sql.extend, _extend_params(key, token, now, lease), prepare=True
            )
            return cur.rowcount == 1

    async def release(self, key: str, token: str) -> bool:
        """Delete the record if ``token`` holds the claim."""
        async with self._statement() as cur:
            await cur.execute(self._sql.delete, (_encode(key), _encode(token)), prepare=True)
            return cur.rowcount == 1

    async def get(self, key: str) -> IdempotencyRecord | None:
        """The record of ``key``, expired or not."""
        async with self._statement() as cur:
            await cur.execute(self._sql.select_bytes, (_encode(key),), prepare=True)
            row = await cur.fetchone()
            return None if row is None else _record(row)

    async def purge_expired(self, now: float, *, limit: int = 10_000) -> int:
        """Delete up to ``limit`` records expired at ``now`` (skipping rows a claimer holds)."""
        int_at_least("limit", limit, 1)
        async with self._statement() as cur:
            await cur.execute(self._sql.purge, (float(now), limit))
            return cur.rowcount

    async def close(self) -> None:
        """Close the pool; a later call opens a new one."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def drop(self) -> None:
        """Drop the records table and its version row (tests and tear-down only)."""
        async with self._transaction() as cur:
            await cur.execute(_LOCK_SCHEMA, (_SCHEMA_LOCK,))
            await cur.execute(self._sql.drop_table)
            await cur.execute(_SCHEMA_EXISTS, (_SCHEMA_TABLE,))
            exists = await cur.fetchone()
            if exists is not None and exists[0]:
                await cur.execute(self._sql.delete_version, (self._config.table,))
