from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stormproof.errors import ConfigError
from stormproof.policies.breaker import (
    BreakerConfig,
    BreakerOpen,
    BreakerState,
    CircuitBreaker,
    StateChange,
)


def small(**overrides: object) -> BreakerConfig:
    options: dict[str, object] = {
        "window": "count",
        "window_size": 10,
        "minimum_calls": 5,
        "failure_rate_threshold": 0.5,
        "open_duration": 30.0,
        "half_open_probes": 2,
    }
    options.update(overrides)
    return BreakerConfig(**options)  # type: ignore[arg-type]


def test_stays_closed_below_minimum_calls_even_if_all_fail() -> None:
    breaker = CircuitBreaker(small())
    for _ in range(4):
        assert breaker.allow(0.0)
        breaker.record_failure(0.0)
    assert breaker.state(0.0) is BreakerState.CLOSED


def test_opens_at_the_failure_threshold_and_refuses_until_open_duration() -> None:
    changes: list[StateChange] = []
    breaker = CircuitBreaker(small(), on_state_change=changes.append)
    for outcome in (True, True, False, True, False, False):
        assert breaker.allow(1.0)
        breaker.record(1.0, success=outcome)
    # 3 failures of 6 calls = 50 % >= threshold
    assert breaker.state(1.0) is BreakerState.OPEN
    assert not breaker.allow(30.9)
    with pytest.raises(BreakerOpen) as excinfo:
        breaker.check(10.0)
    assert excinfo.value.retry_after == pytest.approx(21.0)
    assert [(c.old, c.new) for c in changes] == [(BreakerState.CLOSED, BreakerState.OPEN)]
    assert "failure rate 3/6" in changes[0].reason


def test_just_below_threshold_stays_closed() -> None:
    breaker = CircuitBreaker(small(failure_rate_threshold=0.6))
    for outcome in (True, True, False, True, False, False, True):
        breaker.allow(0.0)
        breaker.record(0.0, success=outcome)
    assert breaker.state(0.0) is BreakerState.CLOSED  # 3/7 < 0.6


def trip(breaker: CircuitBreaker, now: float = 0.0) -> None:
    for _ in range(breaker.config.minimum_calls):
        assert breaker.allow(now)
        breaker.record_failure(now)
    assert breaker.state(now) is BreakerState.OPEN


def test_half_open_lets_exactly_the_probes_through_then_closes_on_success() -> None:
    breaker = CircuitBreaker(small())
    trip(breaker)
    assert breaker.state(30.0) is BreakerState.HALF_OPEN
    assert breaker.allow(30.0) and breaker.allow(30.0)
    assert not breaker.allow(30.0)
    with pytest.raises(BreakerOpen) as excinfo:
        breaker.check(30.0)
    assert excinfo.value.state is BreakerState.HALF_OPEN
    breaker.record_success(31.0)
    assert breaker.state(31.0) is BreakerState.HALF_OPEN
    breaker.record_success(31.0)
    assert breaker.state(31.0) is BreakerState.CLOSED
    assert breaker.failure_rate(31.0) == 0.0  # the window was cleared


def test_half_open_reopens_when_probes_fail() -> None:
    breaker = CircuitBreaker(small())
    trip(breaker)
    assert breaker.allow(40.0) and breaker.allow(40.0)
    breaker.record_success(40.0)
    breaker.record_failure(41.0)  # 1 of 2 probes failed: 50 % >= threshold
    assert breaker.state(41.0) is BreakerState.OPEN
    assert not breaker.allow(70.9)
    assert breaker.allow(71.0)


def test_slow_calls_open_the_breaker() -> None:
    breaker = CircuitBreaker(
        small(slow_call_duration=2.0, slow_call_rate_threshold=0.8, failure_rate_threshold=1.0)
    )
    for _ in range(5):
        breaker.allow(0.0)
        breaker.record_success(0.0, duration=2.5)
    assert breaker.state(0.0) is BreakerState.OPEN


def test_count_window_forgets_old_outcomes() -> None:
    breaker = CircuitBreaker(small(window_size=5, minimum_calls=5, failure_rate_threshold=0.6))
    for outcome in (False, False, True, True, True, True, True):
        breaker.allow(0.0)
        breaker.record(0.0, success=outcome)
    assert breaker.failure_rate(0.0) == 0.0


def test_time_window_expires_old_buckets() -> None:
    config = BreakerConfig(window="time", window_size=10, minimum_calls=4)
    breaker = CircuitBreaker(config)
    for t in (0.0, 1.0, 2.0):
        breaker.allow(t)
        breaker.record_failure(t)
    assert breaker.failure_rate(5.0) == 1.0
    # At t = 12 the buckets of seconds 0, 1 and 2 are older than 10 s.
    breaker.allow(12.0)
    breaker.record_success(12.0)
    assert breaker.failure_rate(12.0) == 0.0
    assert breaker.state(12.0) is BreakerState.CLOSED


def test_isolate_and_reset() -> None:
    breaker = CircuitBreaker(small())
    breaker.isolate(0.0)
    assert not breaker.allow(1e9)
    with pytest.raises(BreakerOpen) as excinfo:
        breaker.check(1e9)
    assert excinfo.value.retry_after is None
    breaker.reset(5.0)
    assert breaker.allow(5.0)


def test_force_open_uses_open_duration() -> None:
    breaker = CircuitBreaker(small())
    breaker.force_open(100.0)
    assert not breaker.allow(129.0)
    assert breaker.allow(130.0)


def test_outcomes_recorded_while_open_change_nothing() -> None:
    breaker = CircuitBreaker(small())
    trip(breaker)
    breaker.record_success(1.0)
    assert breaker.state(1.0) is BreakerState.OPEN


def test_polly_standard_preset() -> None:
    config = BreakerConfig.polly_standard()
    assert (config.window, config.window_size, config.minimum_calls) == ("time", 30.0, 100)
    assert (config.failure_rate_threshold, config.open_duration) == (0.1, 5.0)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"failure_rate_threshold": 0.0}, "failure_rate_threshold"),
        ({"failure_rate_threshold": 1.5}, "failure_rate_threshold"),
        ({"slow_call_rate_threshold": -0.1}, "slow_call_rate_threshold"),
        ({"minimum_calls": 20}, "minimum_calls"),
        ({"window_size": 2.5}, "window_size"),
        ({"window_size": math.nan}, "window_size"),
        ({"open_duration": 0.0}, "open_duration"),
        ({"half_open_probes": 0}, "half_open_probes"),
        ({"window": "sliding"}, "window"),
        ({"slow_call_duration": 0.0}, "slow_call_duration"),
    ],
)
def test_invalid_configuration_names_the_field(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        small(**overrides)
    assert excinfo.value.field == field
    assert field in str(excinfo.value)


operations = st.lists(
    st.tuples(
        st.sampled_from(["allow", "success", "failure"]),
        st.floats(min_value=0.0, max_value=5.0),
    ),
    max_size=200,
)


@given(operations, st.integers(1, 4))
@settings(max_examples=150)
def test_half_open_never_admits_more_probes_than_configured(
    ops: list[tuple[str, float]], probes: int
) -> None:
    admitted = [0]

    def on_change(change: StateChange) -> None:
        if change.new is BreakerState.HALF_OPEN:
            admitted[0] = 0  # a new half-open episode starts

    breaker = CircuitBreaker(
        small(half_open_probes=probes, open_duration=1.0), on_state_change=on_change
    )
    now = 0.0
    in_flight = 0
    for op, step in ops:
        now += step
        if op == "allow":
            if breaker.allow(now):
                in_flight += 1
                if breaker.state(now) is BreakerState.HALF_OPEN:
                    admitted[0] += 1
                    assert admitted[0] <= probes
        elif in_flight:
            in_flight -= 1
            breaker.record(now, success=op == "success")


def test_release_returns_a_half_open_probe_without_recording() -> None:
    breaker = CircuitBreaker(small(half_open_probes=1))
    trip(breaker)
    assert breaker.allow(30.0)
    assert not breaker.allow(30.0)
    breaker.release(30.0)  # the probe was cancelled
    assert breaker.state(30.0) is BreakerState.HALF_OPEN
    assert breaker.allow(30.0)
    breaker.record_success(31.0)
    assert breaker.state(31.0) is BreakerState.CLOSED


def test_time_window_must_be_whole_seconds() -> None:
    with pytest.raises(ConfigError) as excinfo:
        BreakerConfig(window="time", window_size=2.5, minimum_calls=1)
    assert excinfo.value.field == "window_size"
