"""``Idempotency`` on an async store: awaited natively, cancellation-safe, refused where it cannot
serve (``run``, plain functions, ``store_calls="thread"``, a blocking ``renew``)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from stormproof.errors import ConfigError
from stormproof.events.idempotency import (
    Idempotency,
    IdempotencyConfig,
    current_lease,
    idempotent,
)
from stormproof.policies.backoff import Constant
from stormproof.stores.aio import is_async_store
from stormproof.stores.base import Claim, IdempotencyRecord, RecordStatus
from stormproof.stores.memory import MemoryStore

T0 = 1_700_000_000.0
BOUND = 10.0


class AsyncMemoryStore:
    """A native async store over a memory store, recording each call and where it ran.

    ``gate(name)`` makes the next calls of ``name`` wait until the gate is opened, so a test
    can cancel the caller while a call is in flight.
    """

    def __init__(self) -> None:
        self.url = "memory://"
        self.records = MemoryStore()
        self.calls: list[tuple[str, int]] = []
        self._gates: dict[str, asyncio.Event] = {}
        self.entered: dict[str, asyncio.Event] = {}
        self.finished: dict[str, asyncio.Event] = {}

    def gate(self, name: str) -> asyncio.Event:
        self._gates[name] = asyncio.Event()
        self.entered[name] = asyncio.Event()
        return self._gates[name]

    def watch(self, name: str) -> asyncio.Event:
        self.finished[name] = asyncio.Event()
        return self.finished[name]

    async def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((name, threading.get_ident()))
        gate = self._gates.get(name)
        if gate is not None:
            self.entered[name].set()
            await gate.wait()
        result = getattr(self.records, name)(*args, **kwargs)
        if name in self.finished:
            self.finished[name].set()
        return result

    async def init(self) -> None:
        await self._call("init")

    async def claim(
        self, key: str, payload_hash: str, token: str, now: float, *, lease: float, ttl: float
    ) -> Claim:
        return await self._call("claim", key, payload_hash, token, now, lease=lease, ttl=ttl)  # type: ignore[no-any-return]

    async def complete(self, key: str, token: str, result: str, now: float, *, ttl: float) -> bool:
        return await self._call("complete", key, token, result, now, ttl=ttl)  # type: ignore[no-any-return]

    async def release(self, key: str, token: str) -> bool:
        return await self._call("release", key, token)  # type: ignore[no-any-return]

    async def extend(self, key: str, token: str, now: float, *, lease: float) -> bool:
        return await self._call("extend", key, token, now, lease=lease)  # type: ignore[no-any-return]

    async def fail(self, key: str, token: str, error: str, now: float, *, ttl: float) -> bool:
        return await self._call("fail", key, token, error, now, ttl=ttl)  # type: ignore[no-any-return]

    async def get(self, key: str) -> IdempotencyRecord | None:
        return await self._call("get", key)  # type: ignore[no-any-return]

    async def schema_version(self) -> int | None:
        return await self._call("schema_version")  # type: ignore[no-any-return]

    async def purge_expired(self, now: float, *, limit: int = 10_000) -> int:
        return await self._call("purge_expired", now, limit=limit)  # type: ignore[no-any-return]

    async def close(self) -> None:
        await self._call("close")


def names(store: AsyncMemoryStore) -> list[str]:
    return [name for name, _ in store.calls]


def test_the_test_double_is_an_async_store() -> None:
    assert is_async_store(AsyncMemoryStore())


def test_arun_awaits_an_async_store_on_the_loop() -> None:
    store = AsyncMemoryStore()
    engine = Idempotency(store, IdempotencyConfig(on_error="keep"), clock=lambda: T0)

    async def job(n: int) -> dict[str, int]:
        lease = current_lease()
        assert lease is not None and await lease.arenew() and await lease.aheartbeat()
        return {"n": n}

    async def broken() -> None:
        raise ValueError("bad input")

    async def main() -> int:
        assert await engine.arun("k", {"n": 1}, job, 1) == {"n": 1}
        assert await engine.arun("k", {"n": 1}, job, 1) == {"n": 1}  # the stored result
        with pytest.raises(ValueError):
            await engine.arun("bad", {}, broken)
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert names(store) == ["claim", "extend", "complete", "claim", "claim", "fail"]
    assert {ident for _, ident in store.calls} == {loop_thread}  # no thread hop
    failed = store.records.get("bad")
    assert failed is not None and failed.status is RecordStatus.FAILED
    assert failed.result == '{"error": "ValueError", "message": "bad input"}'


def test_the_decorator_guards_async_functions_with_an_async_store() -> None:
    store = AsyncMemoryStore()
    sent: list[str] = []

    config = IdempotencyConfig(on_in_progress="wait", wait_backoff=Constant(0.001))

    @idempotent(store, key=lambda to, body: to, payload=lambda to, body: body, config=config)
    async def send(to: str, body: str) -> int:
        sent.append(to)
        return len(sent)

    async def main() -> list[int]:
        return list(await asyncio.gather(send("a", "x"), send("a", "x"), send("b", "y")))

    first = asyncio.run(main())
    assert sorted(sent) == ["a", "b"]
    assert first[1] == first[0]  # the concurrent duplicate waited for the stored result
    assert sorted(set(first)) == [1, 2]


def test_an_async_store_is_refused_where_a_blocking_one_is_needed() -> None:
    store = AsyncMemoryStore()
    engine = Idempotency(store)
    with pytest.raises(ConfigError, match="run") as caught:
        engine.run("k", {}, lambda: 1)
    assert caught.value.field == "store"
    with pytest.raises(ConfigError, match="plain function") as caught:

        @idempotent(store)
        def plain() -> int:
            return 1

    assert caught.value.field == "store"
    with pytest.raises(ConfigError) as caught:
        Idempotency(store, store_calls="thread")
    assert caught.value.field == "store_calls"

    async def renews_blocking() -> None:
        lease = current_lease()
        assert lease is not None
        lease.renew()  # the blocking form: the async store cannot serve it

    with pytest.raises(ConfigError, match="renew") as caught:
        asyncio.run(engine.arun("r", {}, renews_blocking))
    assert caught.value.field == "store"
    assert store.records.get("r") is None  # the error released the key like any other
    assert store.records.get("k") is None and names(store).count("claim") == 1


def test_a_caller_cancelled_during_a_native_claim_gives_the_key_back() -> None:
    store = AsyncMemoryStore()
    engine = Idempotency(store)
    ran: list[str] = []

    async def job() -> str:
        ran.append("ran")
        return "never stored"

    async def main() -> None:
        gate = store.gate("claim")
        released = store.watch("release")
        call = asyncio.create_task(engine.arun("k", {}, job))
        await asyncio.wait_for(store.entered["claim"].wait(), BOUND)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        gate.set()  # the claim goes through although its caller is gone ...
        await asyncio.wait_for(released.wait(), BOUND)  # ... and is given back at once

    asyncio.run(main())
    assert ran == []
    assert names(store) == ["claim", "release"]
    assert store.records.get("k") is None


def test_a_caller_cancelled_during_the_completion_still_stores_the_result() -> None:
    store = AsyncMemoryStore()
    engine = Idempotency(store)

    async def job() -> str:
        return "paid"

    async def main() -> None:
        gate = store.gate("complete")
        completed = store.watch("complete")
        call = asyncio.create_task(engine.arun("k", {}, job))
        await asyncio.wait_for(store.entered["complete"].wait(), BOUND)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        gate.set()
        await asyncio.wait_for(completed.wait(), BOUND)

    asyncio.run(main())
    record = store.records.get("k")
    assert record is not None and record.status is RecordStatus.COMPLETED
    assert record.result == '"paid"'
    assert names(store) == ["claim", "complete"]


def test_a_cancelled_function_releases_its_key_even_if_cancelled_again() -> None:
    store = AsyncMemoryStore()
    engine = Idempotency(store)
    started = asyncio.Event()

    async def job() -> str:
        started.set()
        await asyncio.Event().wait()  # never finishes by itself
        return "unreachable"

    async def main() -> None:
        gate = store.gate("release")
        released = store.watch("release")
        call = asyncio.create_task(engine.arun("k", {}, job))
        await asyncio.wait_for(started.wait(), BOUND)
        call.cancel()
        await asyncio.wait_for(store.entered["release"].wait(), BOUND)
        call.cancel()  # a second cancellation, while the release is in flight
        with pytest.raises(asyncio.CancelledError):
            await call
        gate.set()
        await asyncio.wait_for(released.wait(), BOUND)

    asyncio.run(main())
    assert store.records.get("k") is None
    assert names(store) == ["claim", "release"]
