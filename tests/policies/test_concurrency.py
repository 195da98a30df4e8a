from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stormproof.errors import ConfigError, StormproofError
from stormproof.policies.concurrency import (
    AIMDLimit,
    ConcurrencyLimit,
    GradientLimit,
    LimitedBulkhead,
    Permit,
    VegasLimit,
)

# One sample: (rtt, inflight, dropped). RTTs stay positive: Vegas and Gradient divide by them.
samples = st.lists(
    st.tuples(
        st.floats(min_value=1e-6, max_value=1e3, allow_nan=False),
        st.integers(min_value=0, max_value=2000),
        st.booleans(),
    ),
    max_size=300,
)
bounds = st.integers(min_value=1, max_value=50).flatmap(
    lambda low: st.tuples(st.just(low), st.integers(min_value=low, max_value=low + 200)).flatmap(
        lambda b: st.tuples(st.just(b[0]), st.just(b[1]), st.integers(b[0], b[1]))
    )
)


def _feed(limit: ConcurrencyLimit, n: int, rtt: float, *, inflight: int | None = None) -> int:
    """Report ``n`` non-dropped calls; ``inflight=None`` means 'running at the limit'."""
    for i in range(n):
        used = limit.limit if inflight is None else inflight
        limit.on_sample(float(i), rtt, used, False)
    return limit.limit


# --- AIMD ------------------------------------------------------------------------------------


def test_aimd_grows_by_one_per_sample_when_used() -> None:
    limit = AIMDLimit(initial=10)
    assert [limit.on_sample(0.0, 0.1, limit.limit, False) for _ in range(3)] == [11, 12, 13]
    assert limit.on_sample(0.0, 0.1, 7, False) == 14  # 7 >= 13 / 2: used enough to grow
    assert limit.on_sample(0.0, 0.1, 6, False) == 14  # 6 < 14 / 2: not


def test_aimd_does_not_grow_when_idle() -> None:
    limit = AIMDLimit(initial=10)
    for _ in range(100):
        assert limit.on_sample(0.0, 0.1, 4, False) == 10  # 4 < 10 / 2


def test_aimd_backs_off_multiplicatively_on_drop() -> None:
    limit = AIMDLimit(initial=100, backoff_ratio=0.5)
    assert limit.on_sample(0.0, 0.1, 100, True) == 50
    assert limit.on_sample(0.0, 0.1, 50, True) == 25
    assert limit.on_sample(0.0, 0.1, 25, True) == 12  # floor(12.5)
    default = AIMDLimit(initial=100)
    assert default.on_sample(0.0, 0.1, 1, True) == 90  # drops count even when idle


def test_aimd_timeout_counts_as_drop() -> None:
    limit = AIMDLimit(initial=20, timeout=1.0)
    assert limit.on_sample(0.0, 1.0, 20, False) == 21  # at the timeout is not over it
    assert limit.on_sample(0.0, 1.5, 20, False) == 18  # floor(21 * 0.9)
    assert AIMDLimit(initial=20).on_sample(0.0, 1e9, 20, False) == 21  # no timeout by default


def test_aimd_stops_at_its_bounds() -> None:
    limit = AIMDLimit(initial=3, min_limit=2, max_limit=4)
    assert _feed(limit, 10, 0.1) == 4
    for _ in range(10):
        limit.on_sample(0.0, 0.1, 4, True)
    assert limit.limit == 2


@settings(max_examples=200)
@given(bounds, st.floats(min_value=0.01, max_value=0.99), samples)
def test_aimd_never_leaves_its_bounds(
    b: tuple[int, int, int], ratio: float, seq: list[tuple[float, int, bool]]
) -> None:
    low, high, initial = b
    limit = AIMDLimit(initial, min_limit=low, max_limit=high, backoff_ratio=ratio, timeout=10.0)
    for now, (rtt, inflight, dropped) in enumerate(seq):
        new = limit.on_sample(float(now), rtt, inflight, dropped)
        assert new == limit.limit and low <= new <= high


# --- Vegas -----------------------------------------------------------------------------------


def test_vegas_grows_while_rtt_stays_at_noload() -> None:
    limit = VegasLimit(initial=20)
    assert _feed(limit, 10, 0.1) == 30  # one log10 step (1) per sample
    assert limit.rtt_noload == 0.1
    assert _feed(limit, 200, 0.1) > 100  # the step is 2 from 100 on


def test_vegas_shrinks_when_rtt_doubles_under_load() -> None:
    limit = VegasLimit(initial=50)
    _feed(limit, 5, 0.1)
    before = limit.limit
    # queue = ceil(55 * (1 - 0.1 / 0.2)) = 28 > beta (6): one step down per sample.
    assert _feed(limit, 10, 0.2) == before - 10
    # It settles where the queue is within [alpha, beta]: limit * 0.5 <= 6 -> about 12.
    final = _feed(limit, 500, 0.2)
    assert 6 <= final <= 13


def test_vegas_holds_within_alpha_and_beta() -> None:
    limit = VegasLimit(initial=20, probe_interval=None)
    limit.on_sample(0.0, 0.1, 1, False)  # sets rtt_noload; idle, so no change
    assert limit.limit == 20
    # queue = ceil(20 * (1 - 0.1 / 0.125)) = 4, within [3, 6]: the sweet spot, no change.
    assert _feed(limit, 50, 0.125) == 20


def test_vegas_does_not_grow_when_idle_but_drops_still_count() -> None:
    limit = VegasLimit(initial=20)
    assert _feed(limit, 50, 0.1, inflight=9) == 20  # 9 < 20 / 2
    assert limit.on_sample(0.0, 0.1, 0, True) == 19


def test_vegas_ignores_the_rtt_of_dropped_calls() -> None:
    limit = VegasLimit(initial=20)
    _feed(limit, 1, 0.1)
    limit.on_sample(0.0, 1e-6, 21, True)  # a fast rejection is not a no-load latency
    assert limit.rtt_noload == 0.1


def test_vegas_probe_resets_rtt_noload() -> None:
    limit = VegasLimit(initial=20, probe_interval=5)
    _feed(limit, 4, 0.1)
    grown = limit.limit
    assert limit.on_sample(0.0, 0.3, grown, False) == grown  # the 5th sample is the probe
    assert limit.rtt_noload == 0.3
    assert _feed(limit, 3, 0.3) == grown + 3  # 0.3 is now "no load"


def test_vegas_smoothing_blends() -> None:
    limit = VegasLimit(initial=20, smoothing=0.5)
    limit.on_sample(0.0, 0.1, 20, False)
    assert limit.estimate == 20.5


@settings(max_examples=200)
@given(
    bounds,
    st.floats(min_value=0.01, max_value=1.0),
    st.sampled_from([None, 1, 7, 50]),
    samples,
)
def test_vegas_never_leaves_its_bounds(
    b: tuple[int, int, int],
    smoothing: float,
    probe: int | None,
    seq: list[tuple[float, int, bool]],
) -> None:
    low, high, initial = b
    limit = VegasLimit(
        initial, min_limit=low, max_limit=high, smoothing=smoothing, probe_interval=probe
    )
    for now, (rtt, inflight, dropped) in enumerate(seq):
        new = limit.on_sample(float(now), rtt, inflight, dropped)
        assert new == limit.limit and low <= new <= high


# --- Gradient --------------------------------------------------------------------------------


def test_gradient_grows_while_rtt_is_steady() -> None:
    limit = GradientLimit(initial=20)
    # gradient 1, + sqrt(limit) * 0.2 per sample.
    assert limit.on_sample(0.0, 0.1, 20, False) == 20  # 20 + 0.2 * sqrt(20) = 20.89
    assert _feed(limit, 20, 0.1) > 40


def test_gradient_shrinks_when_short_rtt_exceeds_tolerance_times_long() -> None:
    limit = GradientLimit(initial=100, max_limit=100)
    _feed(limit, 50, 0.1)
    assert limit.limit == 100 and limit.long_rtt == pytest.approx(0.1)
    # 0.2 > 1.5 * 0.1: gradient 0.75, target 75 + sqrt(100) = 85, smoothed to 97.
    assert limit.on_sample(0.0, 0.2, 100, False) == 97
    assert _feed(limit, 30, 0.2) < 60


def test_gradient_tolerates_rtt_within_tolerance() -> None:
    limit = GradientLimit(initial=100, max_limit=100)
    _feed(limit, 50, 0.1)
    assert _feed(limit, 50, 0.14) == 100  # 1.5 * 0.1 > 0.14: gradient 1


def test_gradient_recovers_when_rtt_returns() -> None:
    limit = GradientLimit(initial=100, max_limit=100)
    _feed(limit, 50, 0.1)
    assert _feed(limit, 60, 0.5) <= 10  # five times slower: the limit collapses
    assert _feed(limit, 100, 0.1) == 100  # latency back to normal: it grows back


def test_gradient_adopts_a_lasting_latency_shift() -> None:
    # Gradient2 follows a long-term average, so a lasting slowdown becomes the new normal.
    limit = GradientLimit(initial=100, max_limit=100, long_window=50)
    _feed(limit, 20, 0.1)
    dipped = _feed(limit, 20, 0.5)
    assert dipped < 60
    assert _feed(limit, 300, 0.5) == 100


def test_gradient_decays_a_stale_long_rtt() -> None:
    limit = GradientLimit(initial=20)
    _feed(limit, 10, 0.5)
    limit.on_sample(0.0, 0.1, 20, False)
    averaged = 0.5 + (0.1 - 0.5) * 2 / 601
    assert limit.long_rtt == pytest.approx(averaged * 0.9)  # long > 2 * short: cut by 10 %


def test_gradient_drop_removes_a_tenth_with_default_smoothing() -> None:
    limit = GradientLimit(initial=100)
    limit.on_sample(0.0, 0.1, 0, True)
    assert limit.estimate == pytest.approx(90.0)
    assert limit.long_rtt is None  # the dropped call's rtt is not averaged


def test_gradient_does_not_grow_when_idle() -> None:
    limit = GradientLimit(initial=20)
    assert _feed(limit, 50, 0.1, inflight=9) == 20


@settings(max_examples=200)
@given(
    bounds,
    st.floats(min_value=0.01, max_value=1.0),
    st.integers(min_value=1, max_value=1000),
    st.floats(min_value=1.0, max_value=3.0),
    samples,
)
def test_gradient_never_leaves_its_bounds(
    b: tuple[int, int, int],
    smoothing: float,
    window: int,
    tolerance: float,
    seq: list[tuple[float, int, bool]],
) -> None:
    low, high, initial = b
    limit = GradientLimit(
        initial,
        min_limit=low,
        max_limit=high,
        smoothing=smoothing,
        long_window=window,
        tolerance=tolerance,
    )
    for now, (rtt, inflight, dropped) in enumerate(seq):
        new = limit.on_sample(float(now), rtt, inflight, dropped)
        assert new == limit.limit and low <= new <= high


@pytest.mark.parametrize("cls", [VegasLimit, GradientLimit])
@pytest.mark.parametrize("rtt", [0.0, -1.0, float("nan"), float("inf")])
def test_delay_based_limits_refuse_unusable_rtts(cls: type[Any], rtt: float) -> None:
    limit = cls()
    with pytest.raises(StormproofError, match="rtt"):
        limit.on_sample(0.0, rtt, 20, False)
    limit.on_sample(0.0, rtt, 20, True)  # a dropped call's rtt is not used


# --- LimitedBulkhead -------------------------------------------------------------------------


def test_bulkhead_admits_up_to_the_limit() -> None:
    bulkhead = LimitedBulkhead(AIMDLimit(initial=2))
    first, second = bulkhead.try_acquire(0.0), bulkhead.try_acquire(0.0)
    assert isinstance(first, Permit) and isinstance(second, Permit)
    assert (first.inflight, second.inflight) == (1, 2)
    assert bulkhead.try_acquire(0.0) is None and bulkhead.rejected == 1
    assert bulkhead.available == 0
    assert bulkhead.release(first, 0.5) == 3  # inflight 1 >= 2 / 2: AIMD grows
    assert bulkhead.inflight == 1 and bulkhead.available == 2


def test_bulkhead_release_reports_rtt_and_inflight_at_start() -> None:
    seen: list[tuple[float, float, int, bool]] = []

    class Recorder:
        limit = 5

        def on_sample(self, now: float, rtt: float, inflight: int, dropped: bool) -> int:
            seen.append((now, rtt, inflight, dropped))
            return self.limit

    bulkhead = LimitedBulkhead(Recorder())
    a = bulkhead.try_acquire(1.0)
    b = bulkhead.try_acquire(2.0)
    assert a is not None and b is not None
    bulkhead.release(a, 4.0)
    bulkhead.release(b, 5.0, rtt=0.25, dropped=True)
    assert seen == [(4.0, 3.0, 1, False), (5.0, 0.25, 2, True)]


def test_bulkhead_refuses_a_double_release() -> None:
    bulkhead = LimitedBulkhead(AIMDLimit())
    permit = bulkhead.try_acquire(0.0)
    assert permit is not None
    bulkhead.release(permit, 1.0)
    with pytest.raises(StormproofError, match="twice"):
        bulkhead.release(permit, 2.0)
    assert bulkhead.inflight == 0


def test_limit_adapts_through_the_bulkhead() -> None:
    # No probe: a probe under constant slowness would (rightly) adopt it as the new baseline.
    bulkhead = LimitedBulkhead(VegasLimit(initial=10, probe_interval=None))
    now = 0.0
    # Saturate it with fast calls: the limit grows.
    for _ in range(5):
        permits = [p for p in (bulkhead.try_acquire(now) for _ in range(100)) if p]
        for permit in permits:
            bulkhead.release(permit, now + 0.1)
        now += 1.0
    grown = bulkhead.limit.limit
    assert grown > 30
    # The dependency slows to four times its no-load latency: the limit comes down.
    for _ in range(20):
        permits = [p for p in (bulkhead.try_acquire(now) for _ in range(100)) if p]
        for permit in permits:
            bulkhead.release(permit, now + 0.4)
        now += 1.0
    assert bulkhead.limit.limit < grown / 2
    # Timeouts shrink an AIMD limit through the bulkhead too.
    aimd = LimitedBulkhead(AIMDLimit(initial=10))
    permit = aimd.try_acquire(0.0)
    assert permit is not None and aimd.release(permit, 5.0, dropped=True) == 9


def test_bulkhead_stops_admitting_when_the_limit_shrinks_below_inflight() -> None:
    bulkhead = LimitedBulkhead(AIMDLimit(initial=10, backoff_ratio=0.5))
    permits = [bulkhead.try_acquire(0.0) for _ in range(10)]
    assert all(permits)
    first = permits[0]
    assert first is not None
    assert bulkhead.release(first, 1.0, dropped=True) == 5
    assert bulkhead.inflight == 9 and bulkhead.available == 0
    assert bulkhead.try_acquire(1.0) is None


limits = st.sampled_from(
    [
        lambda: AIMDLimit(initial=5, max_limit=20, backoff_ratio=0.5),
        lambda: VegasLimit(initial=5, max_limit=20),
        lambda: GradientLimit(initial=5, max_limit=20),
    ]
)
# Each step: acquire (None), or release the i-th outstanding permit with (rtt, dropped).
steps = st.lists(
    st.one_of(
        st.none(),
        st.tuples(
            st.integers(min_value=0, max_value=1000),
            st.floats(min_value=0.01, max_value=1.0),
            st.booleans(),
        ),
    ),
    max_size=200,
)


@settings(max_examples=200)
@given(limits, steps)
def test_bulkhead_never_admits_more_than_the_limit(
    make: Any, seq: list[tuple[int, float, bool] | None]
) -> None:
    bulkhead = LimitedBulkhead(make())
    outstanding: list[Permit] = []
    for now, step in enumerate(seq):
        if step is None:
            permit = bulkhead.try_acquire(float(now))
            if permit is not None:
                assert bulkhead.inflight <= bulkhead.limit.limit
                assert permit.inflight == bulkhead.inflight
                outstanding.append(permit)
            else:
                assert bulkhead.inflight >= bulkhead.limit.limit
        elif outstanding:
            index, rtt, dropped = step
            permit = outstanding.pop(index % len(outstanding))
            bulkhead.release(permit, float(now), rtt=rtt, dropped=dropped)
        assert bulkhead.inflight == len(outstanding)


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "kwargs", "field"),
    [
        (AIMDLimit, {"min_limit": 0}, "min_limit"),
        (AIMDLimit, {"min_limit": 1.5}, "min_limit"),
        (AIMDLimit, {"max_limit": 10, "min_limit": 11, "initial": 11}, "max_limit"),
        (AIMDLimit, {"initial": 0}, "initial"),
        (AIMDLimit, {"initial": 2000}, "initial"),
        (AIMDLimit, {"initial": 5, "min_limit": 10}, "initial"),
        (AIMDLimit, {"backoff_ratio": 0.0}, "backoff_ratio"),
        (AIMDLimit, {"backoff_ratio": 1.0}, "backoff_ratio"),
        (AIMDLimit, {"backoff_ratio": float("nan")}, "backoff_ratio"),
        (AIMDLimit, {"timeout": 0.0}, "timeout"),
        (AIMDLimit, {"timeout": -1.0}, "timeout"),
        (VegasLimit, {"min_limit": 0}, "min_limit"),
        (VegasLimit, {"initial": 1001}, "initial"),
        (VegasLimit, {"smoothing": 0.0}, "smoothing"),
        (VegasLimit, {"smoothing": 1.5}, "smoothing"),
        (VegasLimit, {"alpha": 0}, "alpha"),
        (VegasLimit, {"alpha": 7, "beta": 6}, "beta"),
        (VegasLimit, {"probe_interval": 0}, "probe_interval"),
        (GradientLimit, {"max_limit": 0}, "max_limit"),
        (GradientLimit, {"max_limit": 10}, "initial"),
        (GradientLimit, {"smoothing": -0.1}, "smoothing"),
        (GradientLimit, {"long_window": 0}, "long_window"),
        (GradientLimit, {"tolerance": 0.9}, "tolerance"),
        (GradientLimit, {"tolerance": float("inf")}, "tolerance"),
        (LimitedBulkhead, {"limit": 10}, "limit"),
    ],
)
def test_every_config_error_names_its_field(
    cls: type[Any], kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        cls(**kwargs)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


def test_defaults_are_valid_and_satisfy_the_protocol() -> None:
    for limit in (AIMDLimit(), VegasLimit(), GradientLimit()):
        assert isinstance(limit, ConcurrencyLimit)
        assert limit.limit == 20
        assert repr(limit).startswith(type(limit).__name__)
