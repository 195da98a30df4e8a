"""Lease renewal from inside a guarded function, and async store calls in a thread."""

from __future__ import annotations

import asyncio
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest

from stormproof import stores
from stormproof.errors import ConfigError
from stormproof.events.idempotency import (
    Idempotency,
    IdempotencyConfig,
    IdempotencyInProgress,
    IdempotencyLease,
    IdempotencyWarning,
    current_lease,
    idempotent,
    payload_hash,
)
from stormproof.stores.base import Claim, RecordStatus
from stormproof.stores.memory import MemoryStore

T0 = 1_700_000_000.0


class Wall:
    """A wall clock moved by hand."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class CountingStore(MemoryStore):
    """A memory store that counts ``extend`` calls."""

    def __init__(self) -> None:
        super().__init__()
        self.extends = 0

    def extend(self, key: str, token: str, now: float, *, lease: float) -> bool:
        self.extends += 1
        return super().extend(key, token, now, lease=lease)


def make(**config: Any) -> tuple[Idempotency, CountingStore, Wall]:
    store = CountingStore()
    store.init()
    wall = Wall()
    return Idempotency(store, IdempotencyConfig(**config), clock=wall), store, wall


def test_there_is_no_lease_outside_a_guarded_call() -> None:
    assert current_lease() is None
    engine, _, _ = make()
    engine.run("k", {}, lambda: None)
    assert current_lease() is None  # reset after the call, also when it raised
    with pytest.raises(ValueError):
        engine.run("other", {}, _raise)
    assert current_lease() is None


def _raise() -> None:
    raise ValueError("boom")


def test_a_long_job_that_heartbeats_keeps_its_key_and_stores_its_result() -> None:
    engine, store, wall = make(lease=30.0)
    rival = Idempotency(store, IdempotencyConfig(lease=30.0), clock=wall)
    runs: list[int] = []
    seen: list[object] = []

    def export(chunks: int) -> str:
        lease = current_lease()
        assert lease is not None and lease.key == "export-1"
        runs.append(chunks)
        for _ in range(chunks):
            wall.now += 5.0  # each chunk takes 5 s; the whole job 100 s, over three leases
            assert lease.heartbeat()
            # A duplicate delivered meanwhile finds the key in progress, never free.
            with pytest.raises(IdempotencyInProgress) as caught:
                rival.run("export-1", {"n": chunks}, export, chunks)
            seen.append(caught.value.retry_after)
        return "exported"

    with warnings.catch_warnings():
        warnings.simplefilter("error", IdempotencyWarning)  # the result must be stored
        assert engine.run("export-1", {"n": 20}, export, 20) == "exported"
    assert runs == [20]
    record = store.get("export-1")
    assert record is not None and record.status is RecordStatus.COMPLETED
    # renew_every defaults to lease / 3 = 10 s: one renewal every second chunk.
    assert store.extends == 10
    assert min(seen) == pytest.approx(25.0)  # checked after each heartbeat: 30 s or 25 s left


def test_heartbeat_renews_only_when_due_and_renew_always_writes() -> None:
    engine, store, wall = make(lease=30.0, renew_every=4.0)
    leases: list[IdempotencyLease] = []

    def job() -> None:
        lease = current_lease()
        assert lease is not None
        leases.append(lease)
        assert lease.heartbeat() and store.extends == 0  # nothing due at the start
        wall.now += 3.9
        assert lease.heartbeat() and store.extends == 0
        wall.now += 0.1
        assert lease.heartbeat() and store.extends == 1
        assert lease.expires_at == T0 + 4.0 + 30.0
        assert lease.remaining() == pytest.approx(30.0)
        assert lease.renew(lease=100.0) and store.extends == 2  # explicit, any length
        record = store.get("k")
        assert record is not None and record.lease_expires_at == T0 + 104.0

    engine.run("k", {}, job)
    assert not leases[0].lost


def test_a_fenced_run_learns_it_from_renew_and_stops_asking() -> None:
    engine, store, wall = make(lease=10.0)
    outcome: list[bool] = []

    def stalled() -> str:
        lease = current_lease()
        assert lease is not None
        wall.now += 15.0  # stalled past the lease, and another worker took the key over
        store.claim("k", payload_hash({}), "new-owner", wall.now, lease=10.0, ttl=3600.0)
        outcome.append(lease.heartbeat())
        outcome.append(lease.lost)
        outcome.append(lease.renew())
        return "late"

    with pytest.warns(IdempotencyWarning, match="lease expired"):
        assert engine.run("k", {}, stalled) == "late"
    assert outcome == [False, True, False]
    assert store.extends == 1  # once lost, no further store calls
    record = store.get("k")
    assert record is not None and record.token == "new-owner"
    assert record.lease_expires_at == T0 + 25.0  # the new owner's lease is untouched


def test_renewal_works_on_a_durable_store_through_the_decorator(tmp_path: Path) -> None:
    store = stores.open(f"sqlite:///{tmp_path / 'lease.db'}")
    store.init()
    wall = Wall()

    @idempotent(store, key=lambda job: job, config=IdempotencyConfig(lease=60.0), clock=wall)
    def render(job: str) -> str:
        lease = current_lease()
        assert lease is not None
        wall.now += 50.0
        assert lease.renew(lease=120.0)
        record = store.get(lease.key)
        assert record is not None and record.lease_expires_at == T0 + 170.0
        return job.upper()

    try:
        assert render("report") == "REPORT"
    finally:
        store.close()


def test_async_functions_renew_with_arenew_and_aheartbeat() -> None:
    engine, store, wall = make(lease=9.0)

    async def job() -> int:
        lease = current_lease()
        assert lease is not None
        wall.now += 3.0
        assert await lease.aheartbeat()  # 3 s = lease / 3: due
        assert store.extends == 1
        inner = await asyncio.create_task(_lease_seen_by_a_child_task())
        assert inner is lease  # tasks copy the context
        assert await lease.arenew(lease=20.0)
        return store.extends

    assert asyncio.run(engine.arun("k", {}, job)) == 2
    record = store.get("k")
    assert record is not None and record.status is RecordStatus.COMPLETED


async def _lease_seen_by_a_child_task() -> IdempotencyLease | None:
    return current_lease()


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"renew_every": 0.0}, "renew_every"),
        ({"renew_every": -1.0}, "renew_every"),
        ({"lease": 30.0, "renew_every": 30.0}, "renew_every"),
        ({"renew_every": float("nan")}, "renew_every"),
    ],
)
def test_invalid_renewal_settings(config: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        IdempotencyConfig(**config)
    assert caught.value.field == field


def test_renew_refuses_a_bad_lease() -> None:
    engine, _, _ = make()

    def job() -> None:
        lease = current_lease()
        assert lease is not None
        with pytest.raises(ConfigError) as caught:
            lease.renew(lease=0.0)
        assert caught.value.field == "lease"

    engine.run("k", {}, job)


# -- store_calls="thread" --------------------------------------------------------------------


class ThreadRecordingStore(MemoryStore):
    """Records which thread each store call ran on."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[tuple[str, int]] = []

    def claim(self, *args: Any, **kwargs: Any) -> Claim:
        self.threads.append(("claim", threading.get_ident()))
        return super().claim(*args, **kwargs)

    def complete(self, *args: Any, **kwargs: Any) -> bool:
        self.threads.append(("complete", threading.get_ident()))
        return super().complete(*args, **kwargs)

    def release(self, key: str, token: str) -> bool:
        self.threads.append(("release", threading.get_ident()))
        return super().release(key, token)

    def extend(self, key: str, token: str, now: float, *, lease: float) -> bool:
        self.threads.append(("extend", threading.get_ident()))
        return super().extend(key, token, now, lease=lease)


@pytest.mark.parametrize("mode", ["inline", "thread"])
def test_store_calls_run_on_the_loop_or_in_a_thread(mode: str) -> None:
    store = ThreadRecordingStore()
    store.init()
    engine = Idempotency(store, store_calls=mode)  # type: ignore[arg-type]

    async def job() -> str:
        lease = current_lease()
        assert lease is not None and await lease.arenew()
        return "ok"

    async def failing() -> str:
        raise KeyError("x")

    async def main() -> int:
        assert await engine.arun("k", {}, job) == "ok"
        assert await engine.arun("k", {}, job) == "ok"  # the stored result
        with pytest.raises(KeyError):
            await engine.arun("bad", {}, failing)
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert [name for name, _ in store.threads] == [
        "claim",
        "extend",
        "complete",
        "claim",
        "claim",
        "release",
    ]
    on_loop = [ident == loop_thread for _, ident in store.threads]
    assert all(on_loop) if mode == "inline" else not any(on_loop)
    assert store.get("bad") is None


def test_store_calls_must_be_inline_or_thread() -> None:
    with pytest.raises(ConfigError) as caught:
        Idempotency(MemoryStore(), store_calls="process")  # type: ignore[arg-type]
    assert caught.value.field == "store_calls"


class BlockingClaimStore(MemoryStore):
    """``claim`` waits until the test lets it go, so the caller can be cancelled meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.go = threading.Event()
        self.released = threading.Event()

    def claim(self, *args: Any, **kwargs: Any) -> Claim:
        self.entered.set()
        assert self.go.wait(10.0)
        return super().claim(*args, **kwargs)

    def release(self, key: str, token: str) -> bool:
        try:
            return super().release(key, token)
        finally:
            self.released.set()


def test_a_caller_cancelled_during_a_threaded_claim_gives_the_key_back() -> None:
    store = BlockingClaimStore()
    store.init()
    engine = Idempotency(store, store_calls="thread")
    ran: list[str] = []

    async def job() -> str:
        ran.append("ran")
        return "never stored"

    async def main() -> None:
        task = asyncio.create_task(engine.arun("k", {}, job))
        await asyncio.to_thread(store.entered.wait, 10.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        store.go.set()  # the claim completes in its thread after the caller is gone
        assert await asyncio.to_thread(store.released.wait, 10.0)

    asyncio.run(main())
    assert ran == []
    assert store.get("k") is None  # not left in progress until its lease ends
