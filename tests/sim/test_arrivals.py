"""PiecewisePoisson: validation, rate_at, empirical rates, zero-rate segments, monotone draws."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stormproof.errors import ConfigError
from stormproof.sim.parts.arrivals import PiecewisePoisson


@pytest.mark.parametrize(
    ("steps", "field"),
    [
        ([], "steps"),
        ([(1.0, 5.0)], "steps[0].time"),
        ([(-1.0, 5.0)], "steps[0].time"),
        ([(0.0, 5.0), (0.0, 6.0)], "steps[1].time"),
        ([(0.0, 5.0), (10.0, 6.0), (3.0, 1.0)], "steps[2].time"),
        ([(0.0, -1.0)], "steps[0].rate"),
        ([(0.0, 1.0), (2.0, -0.5)], "steps[1].rate"),
        ([(0.0, math.nan)], "steps[0].rate"),
        ([(0.0, math.inf)], "steps[0].rate"),
        ([(0.0, 1.0), (math.inf, 2.0)], "steps[1].time"),
    ],
)
def test_invalid_steps_raise_config_error_naming_the_field(
    steps: list[tuple[float, float]], field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        PiecewisePoisson(steps)
    assert info.value.field == field
    assert str(info.value).startswith(field + ":")


def test_rate_at_returns_the_rate_in_force() -> None:
    arrivals = PiecewisePoisson([(0, 40), (20, 80), (25, 40)])
    assert arrivals.rate_at(0.0) == 40
    assert arrivals.rate_at(19.999) == 40
    assert arrivals.rate_at(20.0) == 80
    assert arrivals.rate_at(24.999) == 80
    assert arrivals.rate_at(25.0) == 40
    assert arrivals.rate_at(1e9) == 40


def test_rate_before_time_zero_is_not_the_last_segments_rate() -> None:
    arrivals = PiecewisePoisson([(0, 40), (20, 80), (25, 10)])
    try:
        rate = arrivals.rate_at(-1.0)
    except ConfigError:
        return  # rejecting negative times is acceptable too
    assert rate == 40


@pytest.mark.parametrize("seed", [1, 2])
def test_empirical_rate_per_segment_matches_the_configured_rate(seed: int) -> None:
    # Segment lengths and rates chosen so each expects thousands of arrivals: the relative
    # standard deviation of a count is 1/sqrt(n) <= 1.5 %, so a 5 % bound is > 3 sigma.
    steps = [(0.0, 40.0), (300.0, 80.0), (500.0, 10.0), (1000.0, 25.0)]
    horizon = 1400.0
    arrivals = PiecewisePoisson(steps)
    rng = random.Random(seed)
    edges = [t for t, _ in steps] + [horizon]
    counts = [0] * len(steps)
    now = 0.0
    while True:
        now = arrivals.next_after(now, rng)
        if now >= horizon:
            break
        index = max(i for i, edge in enumerate(edges[:-1]) if edge <= now)
        counts[index] += 1
    for index, (start, rate) in enumerate(steps):
        expected = rate * (edges[index + 1] - start)
        assert abs(counts[index] - expected) <= 0.05 * expected, (index, counts[index], expected)


def test_mean_interarrival_time_is_the_inverse_rate() -> None:
    arrivals = PiecewisePoisson([(0.0, 20.0)])
    rng = random.Random(7)
    now, gaps = 0.0, []
    for _ in range(20_000):
        nxt = arrivals.next_after(now, rng)
        gaps.append(nxt - now)
        now = nxt
    mean = sum(gaps) / len(gaps)
    # sd of the mean: (1/20) / sqrt(20000) ~ 0.00035; bound at ~3 %
    assert mean == pytest.approx(1 / 20, rel=0.03)


def test_zero_rate_tail_returns_infinity() -> None:
    arrivals = PiecewisePoisson([(0.0, 10.0), (5.0, 0.0)])
    rng = random.Random(3)
    assert arrivals.next_after(5.0, rng) == math.inf
    assert arrivals.next_after(100.0, rng) == math.inf
    # from inside the positive segment, a draw either lands before 5 s or never
    for _ in range(200):
        t = arrivals.next_after(4.9, rng)
        assert t == math.inf or 4.9 < t < 5.0


def test_all_zero_rates_never_arrive() -> None:
    assert PiecewisePoisson([(0.0, 0.0)]).next_after(0.0, random.Random(0)) == math.inf


def test_zero_rate_gap_is_skipped() -> None:
    arrivals = PiecewisePoisson([(0.0, 0.0), (10.0, 5.0), (12.0, 0.0), (30.0, 5.0)])
    rng = random.Random(11)
    for _ in range(200):
        t = arrivals.next_after(0.0, rng)
        assert 10.0 < t < 12.0 or t > 30.0
        t = arrivals.next_after(12.0, rng)
        assert t > 30.0


def test_same_seed_gives_the_same_arrivals() -> None:
    arrivals = PiecewisePoisson([(0.0, 3.0), (4.0, 9.0)])

    def draw(seed: int) -> list[float]:
        rng, now, out = random.Random(seed), 0.0, []
        for _ in range(50):
            now = arrivals.next_after(now, rng)
            out.append(now)
        return out

    assert draw(5) == draw(5)
    assert draw(5) != draw(6)


@st.composite
def schedules(draw: st.DrawFn) -> list[tuple[float, float]]:
    gaps = draw(st.lists(st.floats(0.01, 50), min_size=0, max_size=5))
    rates = draw(
        st.lists(
            st.one_of(st.just(0.0), st.floats(0.01, 500)),
            min_size=len(gaps) + 1,
            max_size=len(gaps) + 1,
        )
    )
    times = [0.0]
    for gap in gaps:
        times.append(times[-1] + gap)
    return list(zip(times, rates, strict=True))


@given(steps=schedules(), now=st.floats(0, 300), seed=st.integers(0, 2**32))
@settings(max_examples=300)
def test_next_arrival_is_strictly_after_now_in_a_positive_rate_segment(
    steps: list[tuple[float, float]], now: float, seed: int
) -> None:
    arrivals = PiecewisePoisson(steps)
    rng = random.Random(seed)
    t = now
    for _ in range(5):
        nxt = arrivals.next_after(t, rng)
        assert nxt > t
        if nxt == math.inf:
            # infinity only when the rate ends at zero (a positive tail always yields one)
            assert steps[-1][1] == 0
            break
        assert arrivals.rate_at(nxt) > 0
        t = nxt


@given(steps=schedules(), data=st.data())
@settings(max_examples=100)
def test_rate_at_is_the_rate_of_the_segment_holding_the_time(
    steps: list[tuple[float, float]], data: st.DataObject
) -> None:
    arrivals = PiecewisePoisson(steps)
    index = data.draw(st.integers(0, len(steps) - 1))
    start = steps[index][0]
    end = steps[index + 1][0] if index + 1 < len(steps) else start + 100.0
    time = data.draw(st.floats(start, end, exclude_max=True))
    assert arrivals.rate_at(time) == steps[index][1]
