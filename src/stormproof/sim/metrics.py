"""Counters per fixed-width time bucket, the raw material of every scenario's metrics."""

from __future__ import annotations

import math

from stormproof._validate import finite_above
from stormproof.errors import ConfigError

__all__ = ["BucketCounters"]


class BucketCounters:
    """Named counters, each a series of sums per ``width``-second bucket from time 0.

    ``add("successes", now)`` counts one success in the bucket holding ``now``;
    ``rate("successes", 60, 80)`` is the mean per second over ``[60, 80)``. ``peak`` keeps a
    per-bucket maximum instead of a sum, for gauges such as queue length.
    """

    __slots__ = ("_series", "width")

    def __init__(self, width: float = 1.0) -> None:
        finite_above("width", width, 0.0)
        self.width = float(width)
        self._series: dict[str, list[float]] = {}

    def _slot(self, name: str, time: float) -> tuple[list[float], int]:
        """The series ``name`` (created, and grown to reach ``time``) and ``time``'s bucket."""
        series = self._series.get(name)
        if series is None:
            series = self._series[name] = []
        index = int(time / self.width)
        if index >= len(series):
            series.extend([0.0] * (index + 1 - len(series)))
        return series, index

    def add(self, name: str, time: float, amount: float = 1.0) -> None:
        """Add ``amount`` to counter ``name`` in the bucket containing ``time``."""
        series, index = self._slot(name, time)
        series[index] += amount

    def peak(self, name: str, time: float, value: float) -> None:
        """Keep the largest ``value`` seen in the bucket containing ``time`` (a gauge)."""
        series, index = self._slot(name, time)
        if value > series[index]:
            series[index] = value

    def names(self) -> list[str]:
        """Counter names, sorted."""
        return sorted(self._series)

    def series(self, name: str, buckets: int | None = None) -> list[float]:
        """Per-bucket sums of ``name`` (zero-padded or cut to ``buckets`` entries if given)."""
        if buckets is not None and buckets < 0:
            raise ConfigError("buckets", "must be >= 0", buckets)
        values = list(self._series.get(name, ()))
        if buckets is not None:
            values = values[:buckets] + [0.0] * max(0, buckets - len(values))
        return values

    def total(self, name: str) -> float:
        """Sum of ``name`` over all buckets."""
        return float(sum(self._series.get(name, ())))

    def total_between(self, name: str, start: float, end: float) -> float:
        """Sum of ``name`` over the buckets covering ``[start, end)`` (none before time 0)."""
        first = max(0, int(start / self.width))
        last = math.ceil(end / self.width)
        return float(sum(self._series.get(name, [])[first:last]))

    def rate(self, name: str, start: float, end: float) -> float:
        """Mean of ``name`` per second over the buckets covering ``[start, end)``."""
        first = int(start / self.width)
        last = math.ceil(end / self.width)
        if last <= first:
            return 0.0
        values = self._series.get(name, [])
        return sum(values[first:last]) / ((last - first) * self.width)
