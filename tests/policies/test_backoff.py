"""Backoff schedules: formulas, jitter bounds, determinism under a seed, validation."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stormproof.errors import ConfigError
from stormproof.policies.backoff import (
    Backoff,
    Constant,
    Decorrelated,
    Exponential,
    Jitter,
    Linear,
    NoBackoff,
)

PROPERTY = settings(max_examples=150, deadline=None)

seeds = st.integers(min_value=0, max_value=2**32 - 1)
bases = st.floats(min_value=1e-3, max_value=100.0)
extras = st.floats(min_value=0.0, max_value=1000.0)
factors = st.floats(min_value=1.0, max_value=10.0)
small_retries = st.integers(min_value=1, max_value=60)
any_retries = st.integers(min_value=1, max_value=10**9)
jitters = st.sampled_from(list(Jitter))


@st.composite
def exponential_params(draw: st.DrawFn) -> tuple[float, float, float]:
    base = draw(bases)
    cap = base + draw(extras)
    return base, draw(factors), cap


def schedule(backoff: Backoff, rng: random.Random, retries: int) -> list[float]:
    """Delays for retries 1..retries, feeding each delay back as ``previous``."""
    delays: list[float] = []
    previous: float | None = None
    for n in range(1, retries + 1):
        previous = backoff.delay(n, previous, rng)
        delays.append(previous)
    return delays


# --- NoBackoff / Constant / Linear -------------------------------------------------------------


@given(n=any_retries, seed=seeds)
def test_no_backoff_is_always_zero(n: int, seed: int) -> None:
    assert NoBackoff().delay(n, 5.0, random.Random(seed)) == 0.0


@given(seconds=st.floats(min_value=0.0, max_value=1e6), n=any_retries, seed=seeds)
@PROPERTY
def test_constant_jitter_kinds(seconds: float, n: int, seed: int) -> None:
    assert Constant(seconds, Jitter.NONE).delay(n, None, random.Random(seed)) == seconds
    replay = random.Random(seed)
    full = Constant(seconds, Jitter.FULL).delay(n, None, random.Random(seed))
    assert 0.0 <= full <= seconds
    assert full == replay.random() * seconds
    replay = random.Random(seed)
    equal = Constant(seconds, Jitter.EQUAL).delay(n, None, random.Random(seed))
    assert seconds / 2 <= equal <= seconds
    assert equal == seconds / 2 + replay.random() * (seconds / 2)


def test_linear_pinned_schedule() -> None:
    # base + step * (n - 1), capped: 0.5, 1.75, 3.0, 4.0 (cap), 4.0
    backoff = Linear(base=0.5, step=1.25, cap=4.0, jitter=Jitter.NONE)
    assert schedule(backoff, random.Random(0), 5) == [0.5, 1.75, 3.0, 4.0, 4.0]


@given(
    base=st.floats(min_value=0.0, max_value=100.0),
    step=st.floats(min_value=0.0, max_value=100.0),
    extra=extras,
    n=any_retries,
    jitter=jitters,
    seed=seeds,
)
@PROPERTY
def test_linear_within_bounds(
    base: float, step: float, extra: float, n: int, jitter: Jitter, seed: int
) -> None:
    cap = base + extra
    raw = min(cap, base + step * (n - 1))
    delay = Linear(base, step, cap, jitter).delay(n, None, random.Random(seed))
    assert math.isfinite(delay)
    if jitter is Jitter.NONE:
        assert delay == raw
    elif jitter is Jitter.FULL:
        assert 0.0 <= delay <= raw
    else:
        assert raw / 2 <= delay <= raw


# --- Exponential -------------------------------------------------------------------------------


def test_exponential_pinned_schedule() -> None:
    # min(10, 0.5 * 3 ** (n - 1)): 0.5, 1.5, 4.5, 13.5 -> 10, 10
    backoff = Exponential(base=0.5, factor=3.0, cap=10.0, jitter=Jitter.NONE)
    assert schedule(backoff, random.Random(0), 5) == [0.5, 1.5, 4.5, 10.0, 10.0]


def test_exponential_default_is_full_jitter_from_100ms_to_20s() -> None:
    backoff = Exponential()
    assert (backoff.base, backoff.factor, backoff.cap, backoff.jitter) == (
        0.1,
        2.0,
        20.0,
        Jitter.FULL,
    )


@given(params=exponential_params(), n=small_retries)
@PROPERTY
def test_exponential_none_is_the_raw_formula(params: tuple[float, float, float], n: int) -> None:
    base, factor, cap = params
    expected = min(cap, base * factor ** (n - 1))
    delay = Exponential(base, factor, cap, Jitter.NONE).delay(n, None, random.Random(0))
    assert delay == pytest.approx(expected, rel=1e-12)
    assert delay <= cap


@given(params=exponential_params(), n=any_retries, jitter=jitters, seed=seeds)
@PROPERTY
def test_exponential_never_exceeds_cap_nor_overflows(
    params: tuple[float, float, float], n: int, jitter: Jitter, seed: int
) -> None:
    base, factor, cap = params
    delay = Exponential(base, factor, cap, jitter).delay(n, None, random.Random(seed))
    assert math.isfinite(delay)
    assert 0.0 <= delay <= cap


@pytest.mark.parametrize("jitter", list(Jitter))
@pytest.mark.parametrize("cap", [20.0, 1.0e300])
def test_exponential_huge_retry_number_is_capped(jitter: Jitter, cap: float) -> None:
    backoff = Exponential(base=1.0, factor=2.0, cap=cap, jitter=jitter)
    delay = backoff.delay(10**6, None, random.Random(7))
    assert 0.0 <= delay <= cap
    if jitter is Jitter.NONE:
        assert delay == cap


@pytest.mark.parametrize("base", [0.0, 1e-310])
def test_exponential_tiny_base_does_not_overflow(base: float) -> None:
    backoff = Exponential(base=base, factor=2.0, cap=20.0, jitter=Jitter.NONE)
    delay = backoff.delay(10**6, None, random.Random(0))
    assert 0.0 <= delay <= 20.0


@given(params=exponential_params(), n=any_retries, seed=seeds)
@PROPERTY
def test_exponential_full_jitter_is_uniform_times_raw(
    params: tuple[float, float, float], n: int, seed: int
) -> None:
    base, factor, cap = params
    raw = Exponential(base, factor, cap, Jitter.NONE).delay(n, None, random.Random(0))
    delay = Exponential(base, factor, cap, Jitter.FULL).delay(n, None, random.Random(seed))
    assert 0.0 <= delay <= raw
    assert delay == random.Random(seed).random() * raw


@given(params=exponential_params(), n=any_retries, seed=seeds)
@PROPERTY
def test_exponential_equal_jitter_is_half_plus_uniform_half(
    params: tuple[float, float, float], n: int, seed: int
) -> None:
    base, factor, cap = params
    raw = Exponential(base, factor, cap, Jitter.NONE).delay(n, None, random.Random(0))
    delay = Exponential(base, factor, cap, Jitter.EQUAL).delay(n, None, random.Random(seed))
    assert raw / 2 <= delay <= raw
    assert delay == raw / 2 + random.Random(seed).random() * (raw / 2)


@given(params=exponential_params(), n=small_retries, previous=st.none() | st.floats(0, 1e3))
def test_exponential_ignores_previous(
    params: tuple[float, float, float], n: int, previous: float | None
) -> None:
    backoff = Exponential(*params, jitter=Jitter.NONE)
    assert backoff.delay(n, previous, random.Random(0)) == backoff.delay(n, None, random.Random(0))


# --- Decorrelated ------------------------------------------------------------------------------


@given(
    base=bases,
    extra=extras,
    seed=seeds,
    retries=st.integers(min_value=1, max_value=40),
)
@PROPERTY
def test_decorrelated_chain_stays_within_bounds(
    base: float, extra: float, seed: int, retries: int
) -> None:
    cap = base + extra
    backoff = Decorrelated(base=base, cap=cap)
    rng = random.Random(seed)
    previous: float | None = None
    for n in range(1, retries + 1):
        last = base if previous is None else previous
        delay = backoff.delay(n, previous, rng)
        assert base <= delay <= min(cap, 3 * last)
        assert delay <= cap
        previous = delay


@given(
    base=bases,
    extra=extras,
    multiplier=st.floats(min_value=1.0, max_value=10.0),
    previous=st.none() | st.floats(min_value=0.0, max_value=2000.0),
    seed=seeds,
)
@PROPERTY
def test_decorrelated_replays_uniform_from_base_to_multiple_of_previous(
    base: float, extra: float, multiplier: float, previous: float | None, seed: int
) -> None:
    cap = base + extra
    # ``previous`` below ``base`` (or missing) counts as ``base``.
    last = base if previous is None or previous < base else previous
    delay = Decorrelated(base, cap, multiplier).delay(3, previous, random.Random(seed))
    expected = min(cap, random.Random(seed).uniform(base, multiplier * last))
    assert delay == expected
    assert base <= delay <= min(cap, multiplier * last)


def test_decorrelated_first_retry_starts_from_base() -> None:
    # previous=None means previous=base: U(1, 3), never above 3 even with a large cap.
    backoff = Decorrelated(base=1.0, cap=100.0)
    rng = random.Random(3)
    delays = [backoff.delay(1, None, rng) for _ in range(200)]
    assert all(1.0 <= d <= 3.0 for d in delays)


# --- determinism -------------------------------------------------------------------------------

ALL_KINDS: list[Backoff] = [
    NoBackoff(),
    Constant(2.0, Jitter.FULL),
    Linear(0.5, 0.5, 5.0, Jitter.EQUAL),
    Exponential(0.1, 2.0, 20.0, Jitter.NONE),
    Exponential(0.1, 2.0, 20.0, Jitter.FULL),
    Exponential(0.1, 2.0, 20.0, Jitter.EQUAL),
    Decorrelated(0.1, 20.0),
]


@pytest.mark.parametrize("backoff", ALL_KINDS, ids=repr)
@given(seed=seeds)
@settings(max_examples=30)
def test_same_seed_gives_same_schedule(backoff: Backoff, seed: int) -> None:
    assert isinstance(backoff, Backoff)
    first = schedule(backoff, random.Random(seed), 30)
    second = schedule(backoff, random.Random(seed), 30)
    assert first == second


@pytest.mark.parametrize("backoff", ALL_KINDS, ids=repr)
def test_schedules_draw_only_from_the_given_rng(backoff: Backoff) -> None:
    random.seed(1)
    first = schedule(backoff, random.Random(42), 10)
    random.seed(2)
    second = schedule(backoff, random.Random(42), 10)
    assert first == second


# --- validation --------------------------------------------------------------------------------

NAN = float("nan")
INF = float("inf")

INVALID: list[tuple[type[Any], dict[str, Any], str, str]] = [
    (Constant, {"seconds": -1.0}, "seconds", ">= 0"),
    (Constant, {"seconds": NAN}, "seconds", "finite"),
    (Constant, {"seconds": True}, "seconds", "number"),
    (Constant, {"jitter": "full"}, "jitter", "Jitter"),
    (Linear, {"base": -0.5}, "base", ">= 0"),
    (Linear, {"step": -1.0}, "step", ">= 0"),
    (Linear, {"base": 5.0, "cap": 2.0}, "cap", ">= base"),
    (Linear, {"cap": INF}, "cap", "finite"),
    (Linear, {"jitter": None}, "jitter", "Jitter"),
    (Exponential, {"base": -0.1}, "base", ">= 0"),
    (Exponential, {"base": 1.0, "cap": 0.5}, "cap", ">= base"),
    (Exponential, {"factor": 0.5}, "factor", ">= 1"),
    (Exponential, {"base": NAN}, "base", "finite"),
    (Exponential, {"cap": INF}, "cap", "finite"),
    (Exponential, {"factor": -INF}, "factor", "finite"),
    (Exponential, {"base": True}, "base", "number"),
    (Exponential, {"cap": "20"}, "cap", "number"),
    (Exponential, {"jitter": "full"}, "jitter", "Jitter"),
    (Exponential, {"jitter": 1}, "jitter", "Jitter"),
    (Decorrelated, {"base": 0.0}, "base", "> 0"),
    (Decorrelated, {"base": -1.0}, "base", "> 0"),
    (Decorrelated, {"base": 2.0, "cap": 1.0}, "cap", ">= base"),
    (Decorrelated, {"multiplier": 0.5}, "multiplier", ">= 1"),
    (Decorrelated, {"multiplier": NAN}, "multiplier", "finite"),
    (Decorrelated, {"cap": False}, "cap", "number"),
]


@pytest.mark.parametrize(
    ("cls", "kwargs", "field", "rule"),
    INVALID,
    ids=[f"{c.__name__}-{k}" for c, k, _, _ in INVALID],
)
def test_invalid_config_is_rejected_naming_field_and_rule(
    cls: type[Any], kwargs: dict[str, Any], field: str, rule: str
) -> None:
    with pytest.raises(ConfigError) as info:
        cls(**kwargs)
    assert info.value.field == field
    message = str(info.value)
    assert message.startswith(f"{field}:")
    assert rule in message
    assert isinstance(info.value, ValueError)


def test_valid_edge_configs_are_accepted() -> None:
    # Boundaries of the rules are allowed: cap == base, factor == 1, zero delays.
    assert Exponential(base=1.0, factor=1.0, cap=1.0, jitter=Jitter.NONE).delay(
        10**6, None, random.Random(0)
    ) == pytest.approx(1.0)
    assert Linear(base=0.0, step=0.0, cap=0.0).delay(5, None, random.Random(0)) == 0.0
    assert Constant(0.0).delay(1, None, random.Random(0)) == 0.0
    assert Decorrelated(base=1.0, cap=1.0, multiplier=1.0).delay(1, None, random.Random(0)) == 1.0
