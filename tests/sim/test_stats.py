"""wilson_interval: known values, bounds, coverage of p, validation."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stormproof.errors import ConfigError
from stormproof.sim.stats import wilson_interval


@pytest.mark.parametrize(
    ("successes", "trials", "low", "high"),
    [
        (0, 20, 0.0, 0.16113),
        (20, 20, 0.83887, 1.0),
        (10, 20, 0.29930, 0.70070),
        (1, 10, 0.01787, 0.40415),
        (0, 1, 0.0, 0.79346),
        (50, 100, 0.40383, 0.59617),
    ],
)
def test_known_values(successes: int, trials: int, low: float, high: float) -> None:
    got = wilson_interval(successes, trials)
    assert got[0] == pytest.approx(low, abs=1e-4)
    assert got[1] == pytest.approx(high, abs=1e-4)


def test_extremes_are_exactly_zero_and_one() -> None:
    assert wilson_interval(0, 20)[0] == 0.0
    assert wilson_interval(20, 20)[1] == 1.0


def test_symmetry_between_successes_and_failures() -> None:
    low, high = wilson_interval(3, 17)
    mirror_low, mirror_high = wilson_interval(14, 17)
    assert low == pytest.approx(1 - mirror_high)
    assert high == pytest.approx(1 - mirror_low)


def test_larger_z_gives_a_wider_interval() -> None:
    narrow = wilson_interval(7, 30, z=1.0)
    wide = wilson_interval(7, 30, z=2.576)
    assert wide[0] < narrow[0] < narrow[1] < wide[1]


@given(st.integers(1, 10_000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
@settings(max_examples=300)
def test_interval_is_inside_unit_range_and_contains_p(pair: tuple[int, int]) -> None:
    successes, trials = pair
    low, high = wilson_interval(successes, trials)
    p = successes / trials
    assert 0.0 <= low <= p <= high <= 1.0
    assert low < high


@given(st.integers(1, 2_000))
@settings(max_examples=50)
def test_interval_narrows_with_more_trials_at_the_same_proportion(n: int) -> None:
    low, high = wilson_interval(n, 2 * n)
    low4, high4 = wilson_interval(4 * n, 8 * n)
    assert high4 - low4 < high - low


@pytest.mark.parametrize(
    ("successes", "trials", "field"),
    [
        (0, 0, "trials"),
        (0, -3, "trials"),
        (-1, 10, "successes"),
        (11, 10, "successes"),
        (1.0, 10, "successes"),
        (1, 10.0, "trials"),
        (True, 10, "successes"),
    ],
)
def test_bad_input_is_a_config_error_naming_the_field(
    successes: object, trials: object, field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        wilson_interval(successes, trials)  # type: ignore[arg-type]
    assert info.value.field == field


@pytest.mark.parametrize("z", [-1.96, math.nan, math.inf])
def test_negative_or_non_finite_z_is_a_config_error(z: float) -> None:
    with pytest.raises(ConfigError):
        wilson_interval(5, 10, z=z)
