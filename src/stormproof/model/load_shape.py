"""Load shapes as piecewise-constant rates: the one place that turns a shape into arrivals.

Everything the simulator needs from a load shape goes through :func:`load_steps`, which
returns the ``(time, rate)`` change points that
:class:`~stormproof.sim.parts.arrivals.PiecewisePoisson` takes. Keeping it to one function lets
a shared load-shape module replace this one later without touching the rest of the model.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from stormproof.model.spec import ConstantLoad, LoadShape, LoadSpike, SpikeLoad

__all__ = ["load_steps", "mean_rate"]


def _shape_steps(shape: LoadShape, horizon: float) -> list[tuple[float, float]]:
    if isinstance(shape, ConstantLoad):
        return [(0.0, shape.rate)]
    if isinstance(shape, SpikeLoad):
        steps = [(0.0, shape.rate)] if shape.start > 0 else []
        steps.append((shape.start, shape.spike_rate))
        steps.append((shape.start + shape.duration, shape.rate))
        return steps
    steps = [(0.0, shape.idle_rate)] if shape.start > 0 else []
    time = shape.start
    while time < horizon:
        steps.append((time, shape.rate))
        steps.append((time + shape.burst, shape.idle_rate))
        time += shape.burst + shape.idle
    return steps


def _rate_at(steps: Sequence[tuple[float, float]], time: float) -> float:
    times = [t for t, _ in steps]
    return steps[max(0, bisect.bisect_right(times, time) - 1)][1]


def load_steps(
    shape: LoadShape, horizon: float, spikes: Sequence[LoadSpike] = ()
) -> list[tuple[float, float]]:
    """``(time, rate)`` change points of ``shape`` up to ``horizon``, with ``spikes`` overlaid.

    During a spike's window the rate is the spike's rate (the later spike wins where two
    overlap). Consecutive points with the same rate are merged; the first point is at 0.
    """
    base = _shape_steps(shape, horizon)
    points = sorted(
        {t for t, _ in base if t < horizon}
        | {s.start for s in spikes}
        | {s.start + s.duration for s in spikes}
        | {0.0}
    )
    steps: list[tuple[float, float]] = []
    for time in points:
        rate = _rate_at(base, time)
        for spike in spikes:
            if spike.start <= time < spike.start + spike.duration:
                rate = spike.rate
        if not steps or steps[-1][1] != rate:
            steps.append((time, rate))
    return steps


def mean_rate(steps: Sequence[tuple[float, float]], start: float, end: float) -> float:
    """The mean rate of ``steps`` over ``[start, end)`` (0 for an empty interval)."""
    if end <= start:
        return 0.0
    total = 0.0
    for index, (time, rate) in enumerate(steps):
        following = steps[index + 1][0] if index + 1 < len(steps) else end
        lo, hi = max(time, start), min(following, end)
        if hi > lo:
            total += rate * (hi - lo)
    return total / (end - start)
