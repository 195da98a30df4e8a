"""Deadlines, timeouts, context propagation, and the retry policy's deadline guarantee."""

from __future__ import annotations

import contextvars
import random
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stormproof.errors import ConfigError, DeadlineExceeded
from stormproof.policies.backoff import Backoff, Constant, Decorrelated, Exponential, Jitter
from stormproof.policies.deadline import Deadline, Timeouts, current_deadline, deadline_scope
from stormproof.policies.retry import GiveUp, GiveUpReason, RetryAfter, RetryPolicy

# --- Deadline ----------------------------------------------------------------------------------


def test_deadline_after_remaining_and_expired() -> None:
    deadline = Deadline.after(100.0, 5.0)
    assert deadline == Deadline(105.0)
    assert deadline.remaining(101.5) == 3.5
    assert deadline.remaining(105.0) == 0.0
    assert deadline.remaining(200.0) == 0.0  # never negative
    assert not deadline.expired(104.999)
    assert deadline.expired(105.0)
    assert deadline.expired(106.0)


def test_deadline_check_raises_with_deadline_and_now() -> None:
    deadline = Deadline(10.0)
    deadline.check(9.5)
    with pytest.raises(DeadlineExceeded) as info:
        deadline.check(10.0, "fetch")
    assert info.value.deadline == 10.0
    assert info.value.now == 10.0
    assert "fetch" in str(info.value)
    assert isinstance(info.value, TimeoutError)


def test_deadline_earliest_and_ordering() -> None:
    early, late = Deadline(1.0), Deadline(2.0)
    assert early.earliest(late) is early
    assert late.earliest(early) is early
    assert late.earliest(None) is late
    assert early < late


@pytest.mark.parametrize("seconds", [-1.0, float("nan"), float("inf"), True])
def test_deadline_after_rejects_invalid_seconds(seconds: Any) -> None:
    with pytest.raises(ConfigError) as info:
        Deadline.after(0.0, seconds)
    assert info.value.field == "seconds"
    assert "seconds" in str(info.value)


# --- deadline_scope ----------------------------------------------------------------------------


def test_scope_sets_and_restores_context_deadline() -> None:
    assert current_deadline() is None
    with deadline_scope(Deadline(10.0)) as inside:
        assert inside == Deadline(10.0)
        assert current_deadline() == Deadline(10.0)
    assert current_deadline() is None


def test_scope_only_tightens() -> None:
    with deadline_scope(Deadline(10.0)):
        with deadline_scope(Deadline(30.0)) as inner:
            assert inner == Deadline(10.0)
            assert current_deadline() == Deadline(10.0)
        with deadline_scope(Deadline(5.0)) as inner:
            assert inner == Deadline(5.0)
        with deadline_scope(None) as inner:
            assert inner == Deadline(10.0)
        assert current_deadline() == Deadline(10.0)


def test_scope_restored_after_exception() -> None:
    with pytest.raises(KeyError), deadline_scope(Deadline(1.0)):
        raise KeyError("x")
    assert current_deadline() is None


def test_scope_does_not_leak_into_other_threads() -> None:
    seen: list[Deadline | None] = []
    with deadline_scope(Deadline(3.0)):
        thread = threading.Thread(target=lambda: seen.append(current_deadline()))
        thread.start()
        thread.join()
        copied = contextvars.copy_context().run(current_deadline)
    assert seen == [None]
    assert copied == Deadline(3.0)


# --- Timeouts ----------------------------------------------------------------------------------


def test_timeouts_call_and_attempt_deadlines() -> None:
    timeouts = Timeouts(attempt=2.0, total=10.0)
    assert timeouts.call_deadline(100.0, None) == Deadline(110.0)
    assert timeouts.call_deadline(100.0, Deadline(105.0)) == Deadline(105.0)
    assert timeouts.call_deadline(100.0, Deadline(200.0)) == Deadline(110.0)
    assert timeouts.attempt_deadline(100.0, Deadline(110.0)) == Deadline(102.0)
    assert timeouts.attempt_deadline(109.0, Deadline(110.0)) == Deadline(110.0)
    assert Timeouts().call_deadline(0.0, Deadline(7.0)) == Deadline(7.0)
    assert Timeouts().call_deadline(0.0, None) is None
    assert Timeouts().attempt_deadline(0.0, Deadline(7.0)) == Deadline(7.0)


def test_timeouts_total_equal_to_attempt_is_valid() -> None:
    assert Timeouts(attempt=5.0, total=5.0).total == 5.0


@pytest.mark.parametrize(
    ("kwargs", "field", "rule"),
    [
        ({"attempt": 0.0}, "attempt_timeout", "> 0"),
        ({"attempt": -1.0}, "attempt_timeout", "> 0"),
        ({"total": 0.0}, "total_timeout", "> 0"),
        ({"total": float("nan")}, "total_timeout", "finite"),
        ({"total": float("inf")}, "total_timeout", "finite"),
        ({"attempt": True}, "attempt_timeout", "number"),
        ({"attempt": 5.0, "total": 4.0}, "total_timeout", "attempt_timeout"),
    ],
)
def test_timeouts_validation(kwargs: dict[str, Any], field: str, rule: str) -> None:
    with pytest.raises(ConfigError) as info:
        Timeouts(**kwargs)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}:")
    assert rule in str(info.value)


# --- the retry policy's deadline ---------------------------------------------------------------


class Boom(Exception):
    pass


def test_start_call_deadline_is_tightest_of_total_context_and_argument() -> None:
    policy = RetryPolicy(total_timeout=10.0)
    assert policy.start(100.0).deadline == Deadline(110.0)
    with deadline_scope(Deadline(105.0)):
        assert policy.start(100.0).deadline == Deadline(105.0)
        assert policy.start(100.0, deadline=Deadline(103.0)).deadline == Deadline(103.0)
        assert policy.start(100.0, deadline=Deadline(108.0)).deadline == Deadline(105.0)
    with deadline_scope(Deadline(500.0)):
        assert policy.start(100.0).deadline == Deadline(110.0)
    assert RetryPolicy().start(0.0).deadline is None
    with deadline_scope(Deadline(4.0)):
        assert RetryPolicy().start(0.0).deadline == Deadline(4.0)


def test_context_deadline_limits_retries() -> None:
    policy = RetryPolicy(max_attempts=10, backoff=Constant(1.0), total_timeout=100.0)
    with deadline_scope(Deadline(2.5)):
        call = policy.start(0.0)
    assert call.on_failure(0.0, Boom()) == RetryAfter(1.0, 2)
    assert call.on_failure(1.0, Boom()) == RetryAfter(1.0, 3)
    decision = call.on_failure(2.0, Boom())  # 2 + 1 >= 2.5
    assert isinstance(decision, GiveUp)
    assert decision.reason is GiveUpReason.DEADLINE
    assert decision.attempts == 3


def test_start_raises_when_deadline_already_passed() -> None:
    policy = RetryPolicy()
    with deadline_scope(Deadline(5.0)):
        with pytest.raises(DeadlineExceeded) as info:
            policy.start(5.0)
        assert info.value.deadline == 5.0
        assert info.value.now == 5.0
        with pytest.raises(DeadlineExceeded):
            policy.start(7.0)
        assert policy.start(4.9).deadline == Deadline(5.0)
    with pytest.raises(DeadlineExceeded):
        policy.start(10.0, deadline=Deadline(3.0))


def test_attempt_deadline_within_call_deadline() -> None:
    policy = RetryPolicy(attempt_timeout=2.0, total_timeout=5.0)
    call = policy.start(10.0)
    assert call.attempt_deadline(10.0) == Deadline(12.0)
    assert call.attempt_deadline(14.0) == Deadline(15.0)
    assert RetryPolicy(attempt_timeout=2.0).start(0.0).attempt_deadline(3.0) == Deadline(5.0)
    assert RetryPolicy().start(0.0).attempt_deadline(3.0) is None


def test_delay_exactly_reaching_deadline_gives_up() -> None:
    policy = RetryPolicy(max_attempts=5, backoff=Constant(2.0), total_timeout=4.0)
    call = policy.start(0.0)
    assert call.on_failure(1.0, Boom()) == RetryAfter(2.0, 2)
    decision = call.on_failure(2.0, Boom())  # 2 + 2 == 4: no time left to try
    assert isinstance(decision, GiveUp)
    assert decision.reason is GiveUpReason.DEADLINE


backoffs = st.sampled_from(
    [
        Constant(0.7),
        Exponential(base=0.1, factor=2.0, cap=5.0, jitter=Jitter.NONE),
        Exponential(base=0.5, factor=3.0, cap=30.0, jitter=Jitter.FULL),
        Exponential(base=0.2, factor=2.0, cap=10.0, jitter=Jitter.EQUAL),
        Decorrelated(base=0.1, cap=10.0),
    ]
)


@given(
    backoff=backoffs,
    total=st.floats(min_value=0.01, max_value=60.0),
    context=st.none() | st.floats(min_value=0.01, max_value=60.0),
    start=st.floats(min_value=0.0, max_value=1e6),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    attempts=st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=5.0),  # duration of the attempt
            st.none() | st.floats(min_value=0.0, max_value=120.0),  # server delay
            st.booleans(),  # attempt timed out
        ),
        min_size=1,
        max_size=30,
    ),
)
@settings(max_examples=200, deadline=None)
def test_policy_never_schedules_a_retry_at_or_past_the_deadline(
    backoff: Backoff,
    total: float,
    context: float | None,
    start: float,
    seed: int,
    attempts: list[tuple[float, float | None, bool]],
) -> None:
    policy = RetryPolicy(
        max_attempts=None,
        backoff=backoff,
        total_timeout=total,
        max_server_delay=30.0,
        rng=random.Random(seed),
    )
    outer = None if context is None else Deadline(start + context)
    with deadline_scope(outer):
        call = policy.start(start)
    assert call.deadline is not None
    assert call.deadline.at <= start + total
    now = start
    for duration, server_delay, timed_out in attempts:
        now += duration
        decision = call.on_failure(now, Boom(), retry_after=server_delay, timed_out=timed_out)
        if isinstance(decision, GiveUp):
            assert decision.reason is GiveUpReason.DEADLINE
            break
        assert decision.delay >= 0.0
        assert now + decision.delay < call.deadline.at
        now += decision.delay
