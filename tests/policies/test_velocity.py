from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stormproof.errors import ConfigError
from stormproof.policies.velocity import PanicThreshold, VelocityLimiter


def test_absolute_bound_per_window() -> None:
    limiter = VelocityLimiter(60.0, max_removed=3)
    assert limiter.request(0.0, 2, total=10) == 2
    assert limiter.request(10.0, 5, total=10) == 1
    assert limiter.request(59.0, 1, total=10) == 0
    assert limiter.refused == 5
    assert limiter.request(60.0, 5, total=10) == 2  # the first two expired
    assert limiter.removed(61.0) == 3


def test_fraction_bound_follows_total() -> None:
    limiter = VelocityLimiter(60.0, max_fraction=0.2)
    assert limiter.request(0.0, 5, total=10) == 2
    assert limiter.allowance(1.0, total=20) == 2  # 20 % of 20 = 4, two already removed


def test_tighter_of_both_bounds() -> None:
    limiter = VelocityLimiter(60.0, max_removed=5, max_fraction=0.5)
    assert limiter.request(0.0, 10, total=4) == 2


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"window": 0.0, "max_removed": 1}, "window"),
        ({"window": 1.0}, "max_removed"),
        ({"window": 1.0, "max_fraction": 1.5}, "max_fraction"),
        ({"window": 1.0, "max_removed": -1}, "max_removed"),
    ],
)
def test_invalid_configuration(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        VelocityLimiter(**kwargs)  # type: ignore[arg-type]
    assert excinfo.value.field == field


@given(
    st.lists(st.tuples(st.floats(0.0, 20.0), st.integers(0, 10)), max_size=100),
    st.integers(0, 6),
    st.sampled_from([0.1, 0.3, 1.0]),
)
@settings(max_examples=200)
def test_never_removes_more_than_allowed_per_window(
    requests: list[tuple[float, int]], max_removed: int, fraction: float
) -> None:
    window, total = 30.0, 20
    limiter = VelocityLimiter(window, max_removed=max_removed, max_fraction=fraction)
    bound = min(max_removed, int(fraction * total))
    now = 0.0
    granted: list[tuple[float, int]] = []
    for step, count in requests:
        now += step
        allowed = limiter.request(now, count, total)
        assert 0 <= allowed <= count
        if allowed:
            granted.append((now, allowed))
        in_window = sum(n for t, n in granted if t > now - window)
        assert in_window <= bound


def test_panic_threshold_treats_all_as_healthy() -> None:
    panic = PanicThreshold(0.5)
    assert panic.effective([True, True, False, False]) == [True, True, False, False]
    assert panic.effective([True, False, False, False]) == [True] * 4
    assert panic.panics == 1
    assert not panic.in_panic(0, 0)
    with pytest.raises(ConfigError):
        PanicThreshold(0.0)
