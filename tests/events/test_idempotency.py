from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from stormproof.errors import ConfigError
from stormproof.events.idempotency import (
    Idempotency,
    IdempotencyConfig,
    IdempotencyInProgress,
    IdempotencyKeyReused,
    IdempotencyWarning,
    canonical_json,
    idempotent,
    payload_hash,
)
from stormproof.stores.base import RecordStatus
from stormproof.stores.memory import MemoryStore


class Wall:
    """A manual wall clock; sleeping advances it."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)
        await asyncio.sleep(0)


def make(config: IdempotencyConfig | None = None) -> tuple[Idempotency, MemoryStore, Wall]:
    store = MemoryStore()
    store.init()
    wall = Wall()
    engine = Idempotency(store, config, clock=wall, sleep=wall.sleep, async_sleep=wall.async_sleep)
    return engine, store, wall


def test_canonical_json_is_order_independent_and_strict() -> None:
    assert canonical_json({"b": 1, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1}'
    assert payload_hash({"a": 1, "b": 2}) == payload_hash({"b": 2, "a": 1})
    with pytest.raises(ConfigError):
        canonical_json({"x": float("nan")})
    with pytest.raises(ConfigError):
        canonical_json({"x": object()})


def test_a_duplicate_gets_the_stored_result_without_running() -> None:
    engine, store, _ = make()
    calls: list[int] = []

    def charge(amount: int) -> dict[str, Any]:
        calls.append(amount)
        return {"charged": amount}

    first = engine.run("order-1", {"amount": 5}, charge, 5)
    second = engine.run("order-1", {"amount": 5}, charge, 5)
    assert first == second == {"charged": 5}
    assert calls == [5]
    record = store.get("order-1")
    assert record is not None and record.status is RecordStatus.COMPLETED
    assert json.loads(record.result or "") == {"charged": 5}


def test_the_same_key_with_another_payload_is_refused() -> None:
    engine, _, _ = make()
    engine.run("order-1", {"amount": 5}, lambda: "ok")
    with pytest.raises(IdempotencyKeyReused):
        engine.run("order-1", {"amount": 6}, lambda: "ok")


def test_an_error_releases_the_key_so_a_retry_runs() -> None:
    engine, store, _ = make()

    def boom() -> None:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        engine.run("k", {}, boom)
    assert store.get("k") is None
    assert engine.run("k", {}, lambda: 7) == 7


def test_on_error_keep_records_the_failure_and_still_allows_a_retry() -> None:
    engine, store, _ = make(IdempotencyConfig(on_error="keep"))
    with pytest.raises(ValueError):
        engine.run("k", {}, lambda: (_ for _ in ()).throw(ValueError("bad")))
    record = store.get("k")
    assert record is not None and record.status is RecordStatus.FAILED
    assert json.loads(record.result or "") == {"error": "ValueError", "message": "bad"}
    assert engine.run("k", {}, lambda: "second try") == "second try"


def test_in_progress_duplicate_raises_with_the_lease_left() -> None:
    engine, store, wall = make(IdempotencyConfig(lease=30.0))
    store.claim("k", payload_hash({}), "other-worker", wall.now, lease=30.0, ttl=3600.0)
    wall.now += 10
    with pytest.raises(IdempotencyInProgress) as excinfo:
        engine.run("k", {}, lambda: "never")
    assert excinfo.value.retry_after == pytest.approx(20.0)


def test_wait_mode_polls_with_backoff_until_the_result_is_stored() -> None:
    engine, store, wall = make(IdempotencyConfig(on_in_progress="wait", wait_timeout=10.0))
    store.claim("k", payload_hash({}), "other", wall.now, lease=60.0, ttl=3600.0)
    polls = 0
    original_sleep = wall.sleep

    def sleep_and_finish(seconds: float) -> None:
        nonlocal polls
        polls += 1
        original_sleep(seconds)
        if polls == 3:
            store.complete("k", "other", '"done elsewhere"', wall.now, ttl=3600.0)

    engine.sleep = sleep_and_finish
    assert engine.run("k", {}, lambda: "never") == "done elsewhere"
    assert polls == 3
    assert all(0.0 <= s <= 1.0 for s in wall.sleeps)


def test_wait_mode_gives_up_after_the_timeout() -> None:
    engine, store, wall = make(IdempotencyConfig(on_in_progress="wait", wait_timeout=5.0))
    store.claim("k", payload_hash({}), "other", wall.now, lease=60.0, ttl=3600.0)
    start = wall.now
    with pytest.raises(IdempotencyInProgress) as excinfo:
        engine.run("k", {}, lambda: "never")
    assert excinfo.value.waited
    assert wall.now - start == pytest.approx(5.0)


def test_a_dead_workers_lease_is_taken_over() -> None:
    engine, store, wall = make(IdempotencyConfig(lease=30.0))
    store.claim("k", payload_hash({}), "dead-worker", wall.now, lease=30.0, ttl=3600.0)
    wall.now += 30
    assert engine.run("k", {}, lambda: "recovered") == "recovered"


def test_a_run_that_outlives_its_lease_warns_and_does_not_overwrite() -> None:
    engine, store, wall = make(IdempotencyConfig(lease=5.0))

    def slow() -> str:
        wall.now += 10  # longer than the lease; another worker takes over meanwhile
        store.claim("k", payload_hash({}), "second", wall.now, lease=5.0, ttl=3600.0)
        return "late"

    with pytest.warns(IdempotencyWarning, match="lease expired"):
        assert engine.run("k", {}, slow) == "late"
    record = store.get("k")
    assert record is not None and record.token == "second"
    assert record.status is RecordStatus.IN_PROGRESS


def test_decorator_namespaces_keys_and_uses_the_chosen_parts() -> None:
    store = MemoryStore()
    store.init()
    wall = Wall()
    sent: list[str] = []

    @idempotent(
        store,
        key=lambda order, note="": order["id"],
        payload=lambda order, note="": order,
        clock=wall,
    )
    def ship(order: dict[str, Any], note: str = "") -> str:
        sent.append(order["id"])
        return f"shipped {order['id']}"

    assert ship({"id": "A1", "qty": 1}, note="first") == "shipped A1"
    assert ship({"id": "A1", "qty": 1}, note="retry") == "shipped A1"  # note is not payload
    with pytest.raises(IdempotencyKeyReused):
        ship({"id": "A1", "qty": 2})
    assert sent == ["A1"]
    assert store.get(
        f"{__name__}.test_decorator_namespaces_keys_and_uses_the_chosen_parts.<locals>.ship:A1"
    )


def test_decorator_on_async_functions() -> None:
    store = MemoryStore()
    store.init()
    calls = 0

    @idempotent(store)
    async def handle(event: dict[str, Any]) -> int:
        nonlocal calls
        calls += 1
        return event["n"] * 2

    async def main() -> list[int]:
        return [await handle({"n": 2}), await handle({"n": 2}), await handle({"n": 3})]

    assert asyncio.run(main()) == [4, 4, 6]
    assert calls == 2


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"ttl": 0}, "ttl"),
        ({"lease": -1}, "lease"),
        ({"on_in_progress": "block"}, "on_in_progress"),
        ({"on_error": "ignore"}, "on_error"),
        ({"lease": 100, "ttl": 10}, "lease"),
    ],
)
def test_invalid_configuration(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        IdempotencyConfig(**kwargs)
    assert excinfo.value.field == field


def test_a_result_that_cannot_be_stored_fails_clearly_and_frees_the_key() -> None:
    from stormproof.events.idempotency import IdempotencyError

    engine, store, _ = make()
    with pytest.raises(IdempotencyError, match="not JSON-serialisable"):
        engine.run("k", {}, lambda: object())
    assert store.get("k") is None  # released, so a retry (with a serialiser) may run
