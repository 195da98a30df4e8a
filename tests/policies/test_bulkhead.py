from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stormproof.errors import ConfigError, StormproofError
from stormproof.policies.bulkhead import ADMITTED, Bulkhead, Full, KeyedBulkhead, Queued


def test_admits_up_to_the_limit_then_refuses() -> None:
    bulkhead = Bulkhead(2)
    assert bulkhead.acquire(0.0) is ADMITTED
    assert bulkhead.acquire(0.0) is ADMITTED
    refused = bulkhead.acquire(0.0)
    assert isinstance(refused, Full) and bulkhead.rejected == 1
    assert bulkhead.release(1.0) is None
    assert bulkhead.acquire(1.0) is ADMITTED


def test_queue_is_fifo_and_release_hands_the_permit_over() -> None:
    bulkhead = Bulkhead(1, max_queue=2)
    assert bulkhead.acquire(0.0) is ADMITTED
    first, second = bulkhead.acquire(1.0), bulkhead.acquire(2.0)
    assert isinstance(first, Queued) and isinstance(second, Queued)
    assert isinstance(bulkhead.acquire(3.0), Full)
    assert bulkhead.release(4.0) is first and first.admitted
    assert bulkhead.in_use == 1 and bulkhead.queued == 1
    assert bulkhead.release(5.0) is second
    assert bulkhead.release(6.0) is None and bulkhead.in_use == 0


def test_cancelled_waiters_leave_the_queue() -> None:
    bulkhead = Bulkhead(1, max_queue=2)
    bulkhead.acquire(0.0)
    ticket = bulkhead.acquire(0.0)
    assert isinstance(ticket, Queued)
    assert bulkhead.cancel(ticket) and not bulkhead.cancel(ticket)
    assert bulkhead.release(1.0) is None


def test_releasing_more_than_acquired_is_an_error() -> None:
    with pytest.raises(StormproofError):
        Bulkhead(1).release(0.0)


def test_one_zone_cannot_starve_another() -> None:
    # The 2011 case: slow calls for one zone fill their own partition only.
    zones = KeyedBulkhead(3)
    for _ in range(3):
        assert zones.acquire("us-east-1a", 0.0) is ADMITTED
    assert isinstance(zones.acquire("us-east-1a", 0.0), Full)
    assert zones.acquire("us-east-1b", 0.0) is ADMITTED
    assert zones.in_use("us-east-1a") == 3 and zones.in_use("us-east-1b") == 1


def test_key_bound_evicts_idle_keys_only() -> None:
    zones = KeyedBulkhead(1, max_keys=2)
    assert zones.acquire("a", 0.0) is ADMITTED
    assert zones.acquire("b", 0.0) is ADMITTED
    refused = zones.acquire("c", 0.0)
    assert isinstance(refused, Full) and refused.reason == "max_keys"
    zones.release("b", 1.0)
    assert zones.acquire("c", 1.0) is ADMITTED  # b was idle and made room
    assert len(zones) == 2 and zones.in_use("a") == 1
    with pytest.raises(ConfigError):
        zones.release("unknown", 2.0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_concurrent": 0}, "max_concurrent"),
        ({"max_concurrent": 1, "max_queue": -1}, "max_queue"),
    ],
)
def test_invalid_configuration(kwargs: dict[str, int], field: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        Bulkhead(**kwargs)
    assert excinfo.value.field == field


@given(
    st.lists(
        st.tuples(st.sampled_from(["acquire", "release", "cancel"]), st.integers(0, 3)),
        max_size=200,
    ),
    st.integers(1, 3),
    st.integers(0, 2),
)
@settings(max_examples=200)
def test_keyed_bulkhead_never_exceeds_any_keys_limit(
    ops: list[tuple[str, int]], limit: int, queue: int
) -> None:
    zones = KeyedBulkhead(limit, max_queue=queue, max_keys=3)
    running: dict[int, int] = {}
    waiting: dict[int, list[Queued]] = {}
    for op, key in ops:
        if op == "acquire":
            decision = zones.acquire(key, 0.0)
            if decision is ADMITTED:
                running[key] = running.get(key, 0) + 1
            elif isinstance(decision, Queued):
                waiting.setdefault(key, []).append(decision)
        elif op == "release" and running.get(key):
            admitted = zones.release(key, 0.0)
            if admitted is None:
                running[key] -= 1
            else:
                waiting[key].remove(admitted)
        elif op == "cancel" and waiting.get(key):
            assert zones.cancel(waiting[key].pop(0))
        for k, count in running.items():
            assert count <= limit
            assert zones.in_use(k) == count or count == 0
        for tickets in waiting.values():
            assert len(tickets) <= queue
