"""Small statistics for experiment results (binomial intervals, percentiles) and for models."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from stormproof._validate import finite_above, int_at_least
from stormproof.errors import ConfigError

__all__ = ["percentile", "poisson_draw", "wilson_interval"]

_Z95 = 1.959963984540054  # the 97.5th percentile of the standard normal


def wilson_interval(successes: int, trials: int, z: float = _Z95) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion (95 % by default).

    Preferred over the normal approximation because it stays inside [0, 1] and behaves at 0 and
    ``trials`` events -- exactly the cases of "never stuck" and "always stuck" (E. B. Wilson,
    1927; recommended by Brown, Cai & DasGupta, 2001).
    """
    finite_above("z", z, 0.0)
    int_at_least("trials", trials, 1)
    int_at_least("successes", successes, 0)
    if successes > trials:
        raise ConfigError("successes", f"must be <= trials ({trials})", successes)
    p = successes / trials
    z2 = z * z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / (1 + z2 / trials)
    # At 0 or all events the exact bound is 0 or 1; computing it leaves rounding residue.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by linear interpolation; NaN if empty."""
    if not 0.0 <= q <= 1.0:
        raise ConfigError("q", "must be within [0, 1]", q)
    if not values:
        return math.nan
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    fraction = position - low
    return ordered[low] + (ordered[high] - ordered[low]) * fraction


def poisson_draw(rng: random.Random, mean: float) -> int:
    """A Poisson-distributed count with ``mean``, drawn from ``rng`` (for per-step models).

    Inversion (Knuth's product of uniforms) for means up to 30; above that a rounded normal
    approximation, never negative, so a large mean costs one draw rather than ``mean`` of them.
    """
    if mean <= 0.0:
        return 0
    if mean > 30.0:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit = math.exp(-mean)
    count = 0
    product = rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count
