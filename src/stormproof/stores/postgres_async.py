"""The PostgreSQL store for asyncio: psycopg 3's ``AsyncConnectionPool``, awaited natively.

    store = stormproof.stores.open_async("postgresql://user@host/db?table=orders_idem")
    await store.init()

The URL, the table, the statements and so the semantics are those of
:class:`~stormproof.stores.postgres.PostgresStore` (the statement text is built by the same code,
once per store): the two stores share records, and a process may use either. Each call waits for
its round trip without holding the event loop, so other tasks run meanwhile; ``pool_max``
bounds the connections, and a task waits (without blocking) up to ``pool_timeout`` for one.
Group commit (the URL's ``group_commit``, on by default) combines the claims, and the results,
of concurrent tasks into one statement each, as in the blocking store; the combined statements
run as tasks of the store's loop, so a caller that is cancelled leaves the others' writes to
finish, and :meth:`close` waits for them.

The pool opens on the first call, in the running loop, and belongs to that loop from then on:
use a store from one event loop (open one store per loop, e.g. per worker process), and
``await store.close()`` before the loop ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool

from stormproof._validate import int_at_least
from stormproof.stores._calls import ClaimCall as _ClaimRequest
from stormproof.stores._calls import FinishCall as _FinishRequest
from stormproof.stores._calls import call_key as _request_key
from stormproof.stores._group_commit import AsyncGroupCommit, Outcome
from stormproof.stores.base import SCHEMA_VERSION, Claim, IdempotencyRecord, RecordStatus
from stormproof.stores.postgres import (
    _CLAIM_ATTEMPTS,
    _LOCK_SCHEMA,
    _SCHEMA_EXISTS,
    _SCHEMA_LOCK,
    _SCHEMA_TABLE,
    GROUP_COMMIT_MAX_BATCH,
    _claim_answer,
    _claim_batch_answers,
    _claim_batch_params,
    _claim_gave_up,
    _claim_params,
    _encode,
    _extend_params,
    _finish_batch_answers,
    _finish_batch_params,
    _finish_params,
    _pool_options,
    _record,
    _retry_alone,
    _Row,
    _Statements,
    parse_url,
)

__all__ = ["AsyncPostgresStore"]

_Pool = AsyncConnectionPool[psycopg.AsyncConnection[_Row]]
_RequestT = TypeVar("_RequestT")
_AnswerT = TypeVar("_AnswerT")


async def _each(
    run_one: Callable[[_RequestT], Awaitable[_AnswerT]], requests: Sequence[_RequestT]
) -> list[Outcome[_AnswerT]]:
    """Run each request alone; an exception is that request's outcome."""
    outcomes: list[Outcome[_AnswerT]] = []
    for request in requests:
        try:
            outcomes.append(await run_one(request))
        except Exception as error:  # the caller of that request raises it
            outcomes.append(error)
    return outcomes


class AsyncPostgresStore:
    """Idempotency records in a PostgreSQL table, for asyncio. See the module docstring."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._config = parse_url(url)
        self._sql = _Statements(self._config.table)
        self._pool: _Pool | None = None
        self._claims: AsyncGroupCommit[_ClaimRequest, Claim] | None = None
        self._finishes: AsyncGroupCommit[_FinishRequest, bool] | None = None
        if self._config.group_commit:
            limits = {
                "max_inflight": self._config.group_commit,
                "max_batch": GROUP_COMMIT_MAX_BATCH,
            }
            self._claims = AsyncGroupCommit(self._claim_one, self._claim_many, None, **limits)
            self._finishes = AsyncGroupCommit(
                self._finish_one, self._finish_many, _request_key, **limits
            )

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
        request = _ClaimRequest(key, payload_hash, token, now, lease, ttl)
        if self._claims is None:
            return await self._claim_one(request)
        return await self._claims.submit(request)

    async def _claim_one(self, request: _ClaimRequest) -> Claim:
        key, payload_hash, token, now, lease, ttl = request
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

    async def _claim_many(self, requests: Sequence[_ClaimRequest]) -> list[Outcome[Claim]]:
        try:
            async with self._statement() as cur:
                params = _claim_batch_params(requests)
                await cur.execute(self._sql.claim_batch, params, prepare=True)
                rows = await cur.fetchall()
        except psycopg.Error as error:
            if not _retry_alone(error):
                raise
            return await _each(self._claim_one, requests)
        answers = _claim_batch_answers(requests, rows)
        lost = [req for req, answer in zip(requests, answers, strict=True) if answer is None]
        retried = iter(await _each(self._claim_one, lost))
        return [next(retried) if answer is None else answer for answer in answers]

    async def _finish(self, request: _FinishRequest) -> bool:
        if self._finishes is None:
            return await self._finish_one(request)
        return await self._finishes.submit(request)

    async def _finish_one(self, request: _FinishRequest) -> bool:
        async with self._statement() as cur:
            await cur.execute(self._sql.finish, _finish_params(request), prepare=True)
            return cur.rowcount == 1

    async def _finish_many(self, requests: Sequence[_FinishRequest]) -> list[Outcome[bool]]:
        try:
            async with self._statement() as cur:
                params = _finish_batch_params(requests)
                await cur.execute(self._sql.finish_batch, params, prepare=True)
                rows = await cur.fetchall()
        except psycopg.Error as error:
            if not _retry_alone(error):
                raise
            return await _each(self._finish_one, requests)
        return list(_finish_batch_answers(requests, rows))

    async def complete(self, key: str, token: str, result: str, now: float, *, ttl: float) -> bool:
        """Store the result if ``token`` holds the claim."""
        request = _FinishRequest(RecordStatus.COMPLETED, key, token, result, now, ttl)
        return await self._finish(request)

    async def fail(self, key: str, token: str, error: str, now: float, *, ttl: float) -> bool:
        """Keep the record as failed with ``error`` if ``token`` holds the claim."""
        return await self._finish(_FinishRequest(RecordStatus.FAILED, key, token, error, now, ttl))

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
        """Close the pool once combined statements still running end; a later call reopens."""
        for group in (self._claims, self._finishes):
            if group is not None:
                await group.drain()
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
