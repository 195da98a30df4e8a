"""Arrival processes for open-loop clients."""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Sequence

from stormproof._validate import finite_at_least
from stormproof.errors import ConfigError

__all__ = ["PiecewisePoisson"]


class PiecewisePoisson:
    """A Poisson process whose rate is constant between change points (spikes, steps, ramps).

    ``PiecewisePoisson([(0, 40), (20, 80), (25, 40)])`` arrives at 40/s, then 80/s from t = 20 s,
    then 40/s again from t = 25 s. Sampling is exact: an inter-arrival draw that would cross a
    change point is restarted at that point (the exponential distribution is memoryless).
    """

    __slots__ = ("_rates", "_times")

    def __init__(self, steps: Sequence[tuple[float, float]]) -> None:
        if not steps:
            raise ConfigError("steps", "needs at least one (time, rate) pair")
        times: list[float] = []
        rates: list[float] = []
        for index, (time, rate) in enumerate(steps):
            finite_at_least(f"steps[{index}].time", time, 0.0)
            finite_at_least(f"steps[{index}].rate", rate, 0.0)
            if times and time <= times[-1]:
                raise ConfigError(f"steps[{index}].time", "must increase", time)
            times.append(float(time))
            rates.append(float(rate))
        if times[0] != 0.0:
            raise ConfigError("steps[0].time", "must be 0 (the rate from the start)", times[0])
        self._times = times
        self._rates = rates

    def rate_at(self, time: float) -> float:
        """The arrival rate in force at ``time``."""
        # Times before 0 belong to the first segment, not (by index -1) to the last.
        return self._rates[max(0, bisect.bisect_right(self._times, time) - 1)]

    def next_after(self, now: float, rng: random.Random) -> float:
        """The time of the next arrival after ``now`` (infinity if the rate stays 0)."""
        index = max(0, bisect.bisect_right(self._times, now) - 1)
        while True:
            rate = self._rates[index]
            boundary = self._times[index + 1] if index + 1 < len(self._times) else math.inf
            if rate > 0.0:
                candidate = now + rng.expovariate(rate)
                if candidate < boundary:
                    return candidate
            if boundary == math.inf:
                return math.inf
            now = boundary
            index += 1
