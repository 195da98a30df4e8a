"""Shapes and distributions: validation, determinism, bounds, and counts against the integral."""

from __future__ import annotations

import math
import random
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stormproof.errors import ConfigError
from stormproof.load import (
    Bursts,
    Exponential,
    Fixed,
    Ramp,
    RatePlan,
    Replay,
    Spike,
    Steady,
    Uniform,
    arrival_times,
    parse_distribution,
)

BURSTS = Bursts(Uniform(40, 80), Uniform(1, 3), Exponential(4, 2, 10), idle_rate=3)


def test_same_seed_same_plan_and_schedule_other_seed_differs() -> None:
    a, b = BURSTS.plan(60, 7), BURSTS.plan(60, 7)
    assert a == b
    assert arrival_times(a, 7) == arrival_times(b, 7)
    assert BURSTS.plan(60, 8) != a
    assert arrival_times(a, 8) != arrival_times(a, 7)


def test_schedule_is_the_same_in_another_process_and_hash_seed() -> None:
    code = (
        "from stormproof.load import *;"
        "s=Bursts(Uniform(40,80),Uniform(1,3),Exponential(4,2,10),idle_rate=3);"
        "p=s.plan(60,7);print(repr(arrival_times(p,7)[-3:]), repr(p.bursts[-1]))"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={"PYTHONHASHSEED": str(hash_seed)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for hash_seed in (0, 1)
    }
    plan = BURSTS.plan(60, 7)
    assert outs == {f"{arrival_times(plan, 7)[-3:]!r} {plan.bursts[-1]!r}\n"}


def test_a_longer_run_only_appends_bursts() -> None:
    short, long = BURSTS.plan(30, 3), BURSTS.plan(90, 3)
    complete = [w for w in short.bursts if w[1] < 30]
    assert list(long.bursts[: len(complete)]) == complete


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3", Fixed(3)),
        ("1..4", Uniform(1, 4)),
        ("exp:5", Exponential(5, 0, 100)),
        ("exp:5:2..30", Exponential(5, 2, 30)),
        (" 0.5 ", Fixed(0.5)),
    ],
)
def test_parse_distribution(text: str, expected: object) -> None:
    assert parse_distribution("idle", text) == expected


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("", "idle"),
        ("abc", "idle"),
        ("4..1", "idle.high"),
        ("-1", "idle.value"),
        ("exp:0", "idle.mean"),
        ("exp:5:3", "idle"),
        ("exp:5:9..2", "idle.high"),
    ],
)
def test_bad_distributions_name_the_field(text: str, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_distribution("idle", text)
    assert info.value.field == field


def test_shapes_validate_their_configuration() -> None:
    with pytest.raises(ConfigError, match="length"):
        Bursts(Fixed(10), Uniform(0, 1), Fixed(1))
    with pytest.raises(ConfigError, match="rate"):
        Bursts(3.0, Fixed(1), Fixed(1))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="rate"):
        Steady(-1)
    with pytest.raises(ConfigError, match="duration"):
        Steady(1).plan(0)
    with pytest.raises(ConfigError, match="seed"):
        Steady(1).plan(10, seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="points"):
        Replay(((1.0, 2.0),))


def test_steady_ramp_spike_plans() -> None:
    assert Steady(5).plan(10).steps == ((0.0, 5.0),)
    ramp = Ramp(0, 10, step=1).plan(5)
    assert ramp.steps == ((0.0, 1.0), (1.0, 3.0), (2.0, 5.0), (3.0, 7.0), (4.0, 9.0))
    assert ramp.expected() == pytest.approx(25.0)  # the integral of the linear ramp
    spike = Spike(2, 50, at=3, length=2).plan(10)
    assert spike.steps == ((0.0, 2.0), (3.0, 50.0), (5.0, 2.0))
    assert spike.bursts == ((3.0, 5.0),)
    assert Spike(2, 50, at=9, length=5).plan(10).bursts == ((9.0, 10.0),)


def test_replay_from_text_and_bursts_above_threshold() -> None:
    replay = Replay.from_text("time,rate\n0,1\n2,30\n3,40\n4,1\n", burst_above=5)
    plan = replay.plan(10)
    assert plan.steps == ((0.0, 1.0), (2.0, 30.0), (3.0, 40.0), (4.0, 1.0))
    assert plan.bursts == ((2.0, 4.0),)
    looped = Replay.from_text("# per second\n1\n9\n", loop=True, burst_above=5).plan(5)
    assert looped.steps == ((0.0, 1.0), (1.0, 9.0), (2.0, 1.0), (3.0, 9.0), (4.0, 1.0))
    assert looped.bursts == ((1.0, 2.0), (3.0, 4.0))
    with pytest.raises(ConfigError, match="replay"):
        Replay.from_text("a,b\nx,y\n")


def test_plan_rate_at_and_expected() -> None:
    plan = RatePlan(((0.0, 2.0), (4.0, 10.0)), 6.0, ((4.0, 6.0),))
    assert plan.rate_at(-1) == 2.0 and plan.rate_at(4.0) == 10.0 and plan.rate_at(6.0) == 0.0
    assert plan.expected() == pytest.approx(28.0)
    assert plan.expected(3, 5) == pytest.approx(12.0)
    with pytest.raises(ConfigError, match=r"bursts\[0\]\.end"):
        RatePlan(((0.0, 1.0),), 5.0, ((1.0, 6.0),))


distributions = st.one_of(
    st.builds(Fixed, st.floats(0.05, 5)),
    st.tuples(st.floats(0.05, 5), st.floats(0, 5)).map(lambda t: Uniform(t[0], t[0] + t[1])),
    st.tuples(st.floats(0.1, 5), st.floats(0.05, 3), st.floats(0.1, 10)).map(
        lambda t: Exponential(t[0], t[1], t[1] + t[2])
    ),
)


@settings(max_examples=60, deadline=None)
@given(
    rate=distributions,
    length=distributions,
    idle=distributions,
    idle_rate=st.floats(0, 20),
    seed=st.integers(0, 2**32),
    duration=st.floats(1, 120),
)
def test_bursts_respect_their_distributions(
    rate: Fixed, length: Fixed, idle: Fixed, idle_rate: float, seed: int, duration: float
) -> None:
    plan = Bursts(rate, length, idle, idle_rate=idle_rate).plan(duration, seed)
    assert all(r >= 0 and math.isfinite(r) for _, r in plan.steps)
    assert plan.steps[0][0] == 0.0
    assert all(a[0] < b[0] for a, b in zip(plan.steps, plan.steps[1:], strict=False))
    tol = 1e-9
    for index, (start, end) in enumerate(plan.bursts):
        if index == 0:
            assert idle.low - tol <= start <= idle.high + tol  # the lead-in is an idle draw
        if end < duration:  # a burst cut by the end of the run is shorter than drawn
            assert length.low - tol <= end - start <= length.high + tol
        if index + 1 < len(plan.bursts):
            gap = plan.bursts[index + 1][0] - end
            assert idle.low - tol <= gap <= idle.high + tol
        burst_rate = plan.rate_at((start + end) / 2)
        if burst_rate != idle_rate:
            assert rate.low - tol <= burst_rate <= rate.high + tol


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    steady=st.floats(0, 50),
    peak=st.floats(50, 400),
    duration=st.floats(5, 60),
)
def test_schedule_counts_match_the_integral_of_the_rate(
    seed: int, steady: float, peak: float, duration: float
) -> None:
    shape = Bursts(Fixed(peak), Uniform(0.5, 2), Uniform(1, 4), idle_rate=steady)
    plan = shape.plan(duration, seed)
    times = arrival_times(plan, seed)
    assert times == sorted(times) and all(0 <= t < duration for t in times)
    mean = plan.expected()
    # A Poisson count: within 6 standard deviations (a false alarm once in ~10^9 runs).
    assert abs(len(times) - mean) <= 6 * math.sqrt(mean) + 1
    for start, end in plan.bursts:
        inside = sum(1 for t in times if start <= t < end)
        expected = plan.expected(start, end)
        assert abs(inside - expected) <= 6 * math.sqrt(expected) + 1


@settings(max_examples=50, deadline=None)
@given(dist=distributions, seed=st.integers(0, 2**32))
def test_distribution_draws_stay_within_bounds(dist: Fixed, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(50):
        assert dist.low <= dist.sample(rng) <= dist.high


def test_exponential_mean_is_close_when_truncation_is_far() -> None:
    rng = random.Random(1)
    dist = Exponential(2.0)
    draws = [dist.sample(rng) for _ in range(20_000)]
    assert sum(draws) / len(draws) == pytest.approx(2.0, rel=0.05)


def test_arrival_limit() -> None:
    plan = Steady(100).plan(10)
    assert arrival_times(plan, 1, limit=5) == arrival_times(plan, 1)[:5]


def test_tail_keeps_the_end_of_the_run_idle() -> None:
    shape = Bursts(Fixed(50), Fixed(1), Fixed(1), idle_rate=1, lead_in=Fixed(1), tail=3)
    plan = shape.plan(10, 0)
    assert plan.bursts == ((1.0, 2.0), (3.0, 4.0), (5.0, 6.0))  # none starts after 7 s
    assert plan.rate_at(9.5) == 1.0
    assert "last 3 s" in shape.describe()
