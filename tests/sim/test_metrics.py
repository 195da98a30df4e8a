"""BucketCounters: per-bucket sums, padded/cut series, totals and windowed rates."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stormproof.errors import ConfigError
from stormproof.sim.metrics import BucketCounters


def test_add_counts_into_the_bucket_holding_the_time() -> None:
    counters = BucketCounters(1.0)
    counters.add("hits", 0.0)
    counters.add("hits", 0.999)
    counters.add("hits", 1.0)
    counters.add("hits", 3.5, 2.5)
    assert counters.series("hits") == [2.0, 1.0, 0.0, 2.5]
    assert counters.total("hits") == 5.5


def test_wider_buckets_group_times() -> None:
    counters = BucketCounters(5.0)
    for t in (0.0, 4.9, 5.0, 12.0, 14.99):
        counters.add("x", t)
    assert counters.series("x") == [2.0, 1.0, 2.0]
    assert counters.width == 5.0


def test_counters_are_independent_and_names_sorted() -> None:
    counters = BucketCounters()
    counters.add("zeta", 2.0)
    counters.add("alpha", 0.0, 3.0)
    assert counters.names() == ["alpha", "zeta"]
    assert counters.series("alpha") == [3.0]
    assert counters.series("zeta") == [0.0, 0.0, 1.0]


def test_unknown_counter_is_empty() -> None:
    counters = BucketCounters()
    assert counters.series("missing") == []
    assert counters.series("missing", 3) == [0.0, 0.0, 0.0]
    assert counters.total("missing") == 0.0
    assert counters.rate("missing", 0.0, 10.0) == 0.0
    assert counters.names() == []


def test_series_is_padded_with_zeros_or_cut_to_the_requested_length() -> None:
    counters = BucketCounters(1.0)
    counters.add("x", 0.5)
    counters.add("x", 2.5, 4.0)
    assert counters.series("x", 5) == [1.0, 0.0, 4.0, 0.0, 0.0]
    assert counters.series("x", 2) == [1.0, 0.0]
    assert counters.series("x", 0) == []
    assert counters.series("x", 3) == [1.0, 0.0, 4.0]


def test_series_returns_a_copy() -> None:
    counters = BucketCounters()
    counters.add("x", 0.0)
    copy = counters.series("x")
    copy[0] = 99.0
    assert counters.series("x") == [1.0]


def test_rate_is_the_mean_per_second_over_whole_buckets() -> None:
    counters = BucketCounters(1.0)
    for second in range(10):
        counters.add("x", second + 0.5, float(second))
    # buckets 2..5 hold 2+3+4+5 = 14 over 4 s
    assert counters.rate("x", 2.0, 6.0) == pytest.approx(3.5)
    assert counters.rate("x", 0.0, 10.0) == pytest.approx(4.5)


def test_rate_divides_by_seconds_not_buckets() -> None:
    counters = BucketCounters(2.0)
    counters.add("x", 0.0, 10.0)
    counters.add("x", 2.0, 6.0)
    assert counters.rate("x", 0.0, 4.0) == pytest.approx(16.0 / 4.0)


def test_rate_over_a_window_reaching_past_the_data_counts_missing_buckets_as_zero() -> None:
    counters = BucketCounters(1.0)
    counters.add("x", 0.0, 10.0)
    # only one of the ten seconds holds data: the rate is diluted, not 10/s
    assert counters.rate("x", 0.0, 10.0) == pytest.approx(1.0)
    assert counters.rate("x", 5.0, 10.0) == 0.0


def test_rate_of_an_empty_or_reversed_window_is_zero() -> None:
    counters = BucketCounters(1.0)
    counters.add("x", 3.0, 5.0)
    assert counters.rate("x", 3.0, 3.0) == 0.0
    assert counters.rate("x", 5.0, 2.0) == 0.0


def test_rate_over_a_partial_window_uses_the_buckets_covering_it() -> None:
    counters = BucketCounters(1.0)
    counters.add("x", 0.2)
    counters.add("x", 1.2, 3.0)
    # [0, 0.5) lies in bucket 0, which holds 1 count per 1-s bucket
    assert counters.rate("x", 0.0, 0.5) == pytest.approx(1.0)
    # [0.5, 1.5) is covered by buckets 0 and 1: (1 + 3) / 2 s
    assert counters.rate("x", 0.5, 1.5) == pytest.approx(2.0)


def test_series_rejects_a_negative_bucket_count() -> None:
    counters = BucketCounters(1.0)
    counters.add("x", 0.0)
    counters.add("x", 1.0)
    with pytest.raises(ConfigError):
        counters.series("x", -1)


@pytest.mark.parametrize("width", [0, 0.0, -1.0, math.nan, math.inf, "1"])
def test_invalid_width_is_a_config_error_naming_width(width: object) -> None:
    with pytest.raises(ConfigError) as info:
        BucketCounters(width)  # type: ignore[arg-type]
    assert info.value.field == "width"


@given(
    events=st.lists(
        st.tuples(st.floats(0, 100, allow_nan=False), st.floats(0, 10, allow_nan=False)),
        max_size=50,
    ),
    width=st.sampled_from([0.25, 0.5, 1.0, 2.0, 7.0]),
)
@settings(max_examples=100)
def test_total_equals_the_sum_of_the_series_and_whole_range_rate(
    events: list[tuple[float, float]], width: float
) -> None:
    counters = BucketCounters(width)
    for time, amount in events:
        counters.add("x", time, amount)
    expected = sum(amount for _, amount in events)
    series = counters.series("x")
    assert counters.total("x") == pytest.approx(expected)
    assert sum(series) == pytest.approx(expected)
    assert all(v >= 0 for v in series)
    if series:
        span = len(series) * width
        assert counters.rate("x", 0.0, span) * span == pytest.approx(expected)


def test_total_between_sums_the_buckets_covering_the_window() -> None:
    counters = BucketCounters(60.0)
    for t, amount in ((10.0, 1.0), (70.0, 2.0), (130.0, 4.0), (190.0, 8.0)):
        counters.add("errors", t, amount)
    assert counters.total_between("errors", 60.0, 180.0) == 6.0  # buckets 1 and 2
    assert counters.total_between("errors", 65.0, 125.0) == 6.0  # partly covered buckets count
    assert counters.total_between("errors", -120.0, 60.0) == 1.0  # nothing before time 0
    assert counters.total_between("missing", 0.0, 600.0) == 0.0
