"""The Redis store for asyncio: ``redis.asyncio``, the same Lua scripts, awaited natively.

    store = stormproof.stores.open_async("redis://localhost:6379/0?prefix=billing:idem:")
    await store.init()

URL, key layout, Lua scripts, expiry and durability are those of
:class:`~stormproof.stores.redis.RedisStore` (the scripts are the same text, the arguments are
built by the same code): the two stores share records. Each call is one ``EVALSHA`` round trip
that the event loop does not wait for; concurrent tasks share pipelines (the URL's
``group_commit``, as in the blocking store), sent by tasks of the store's loop so that a
cancelled caller does not cancel the others' scripts.

redis-py's asyncio connections belong to the event loop that made them: use a store from one
loop, and ``await store.close()`` before the loop ends.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

import redis.asyncio

from stormproof._validate import int_at_least
from stormproof.stores._calls import ClaimCall, FinishCall
from stormproof.stores._group_commit import AsyncGroupCommit, Outcome
from stormproof.stores.base import SCHEMA_VERSION, Claim, IdempotencyRecord, RecordStatus
from stormproof.stores.redis import (
    _CLAIM,
    _EXTEND,
    _FINISH,
    _INIT,
    _RELEASE,
    _UNLINK_BATCH,
    GROUP_COMMIT_MAX_BATCH,
    _client_from_url,
    _done,
    _finish_reply,
    _outcomes,
    _parse_url,
    _pipelined,
    _RedisRecords,
    _settle_replies,
)

_CallT = TypeVar("_CallT", ClaimCall, FinishCall)
_AnswerT = TypeVar("_AnswerT")

__all__ = ["AsyncRedisStore"]


class AsyncRedisStore(_RedisRecords):
    """Idempotency records in Redis, for asyncio. See the module docstring."""

    def __init__(self, url: str) -> None:
        self.url = url
        config = _parse_url(url)
        self.prefix, self.ttl_margin = config.prefix, config.ttl_margin
        client: redis.asyncio.Redis = _client_from_url(
            url, config.client_url, redis.asyncio.Redis.from_url
        )
        self._client = client
        self._claim = client.register_script(_CLAIM)
        self._finish = client.register_script(_FINISH)
        self._release = client.register_script(_RELEASE)
        self._extend = client.register_script(_EXTEND)
        self._init = client.register_script(_INIT)
        self._claims: AsyncGroupCommit[ClaimCall, Claim] | None = None
        self._finishes: AsyncGroupCommit[FinishCall, bool] | None = None
        if config.group_commit:
            limits = {"max_inflight": config.group_commit, "max_batch": GROUP_COMMIT_MAX_BATCH}
            self._claims = AsyncGroupCommit(self._claim_one, self._claim_many, None, **limits)
            self._finishes = AsyncGroupCommit(self._finish_one, self._finish_many, None, **limits)

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
        call = ClaimCall(key, payload_hash, token, now, lease, ttl)
        if self._claims is None:
            return await self._claim_one(call)
        return await self._claims.submit(call)

    async def _claim_one(self, call: ClaimCall) -> Claim:
        command = self._claim_command(call)
        return self._claim_reply(call, await self._claim(keys=command[1:2], args=command[2:]))

    async def _claim_many(self, calls: Sequence[ClaimCall]) -> list[Outcome[Claim]]:
        return await self._pipeline(
            self._claim.sha, calls, self._claim_command, self._claim_reply, self._claim_one
        )

    async def _finish_with(
        self, status: RecordStatus, key: str, token: str, result: str, now: float, ttl: float
    ) -> bool:
        call = FinishCall(status, key, token, result, now, ttl)
        if self._finishes is None:
            return await self._finish_one(call)
        return await self._finishes.submit(call)

    async def _finish_one(self, call: FinishCall) -> bool:
        command = self._finish_command(call)
        return _finish_reply(call, await self._finish(keys=command[1:2], args=command[2:]))

    async def _finish_many(self, calls: Sequence[FinishCall]) -> list[Outcome[bool]]:
        return await self._pipeline(
            self._finish.sha, calls, self._finish_command, _finish_reply, self._finish_one
        )

    async def _pipeline(
        self,
        sha: str,
        calls: Sequence[_CallT],
        command: Callable[[_CallT], list[Any]],
        answer: Callable[[_CallT, Any], _AnswerT],
        run_one: Callable[[_CallT], Awaitable[_AnswerT]],
    ) -> list[Outcome[Any]]:
        """Send the calls' scripts in one pipeline.

        Calls Redis answered NOSCRIPT go again alone through ``run_one`` (the script object,
        which loads the script again).
        """
        batch = _pipelined(calls, command)
        pipe = self._client.pipeline(transaction=False)
        for args in batch.commands:
            pipe.evalsha(sha, *args)
        replies = await pipe.execute(raise_on_error=False) if batch.commands else []
        for position in _settle_replies(batch, calls, replies, answer):
            try:
                batch.outcomes[position] = await run_one(calls[position])
            except Exception as error:  # that caller's error
                batch.outcomes[position] = error
        return _outcomes(batch)

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
        """Close the client and its connection pool once pipelines still running end."""
        for group in (self._claims, self._finishes):
            if group is not None:
                await group.drain()
        await self._client.aclose()
