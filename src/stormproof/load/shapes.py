"""Seeded load shapes: steady, ramp, spike, bursts with random idle gaps, and replay.

Shapes are **open-model**: they say how many requests *arrive* per second, not how many users
there are, so arrivals keep coming when the target slows down, as real traffic does (a closed
model, where each user waits for its reply, backs off by itself and hides overload).

A shape is configuration; :meth:`plan` turns it, for a ``duration`` and a ``seed``, into a
:class:`RatePlan`: a piecewise-constant rate (``(time, rate)`` change points) and the windows
that count as bursts. The plan is what everything else consumes:

* :func:`arrival_times` draws the arrival schedule (a Poisson process at the plan's rate);
* :meth:`RatePlan.arrivals` is the simulator's
  :class:`~stormproof.sim.parts.arrivals.PiecewisePoisson`, so one definition of a burst drives
  both a real load test and a simulated open-loop client;
* :mod:`stormproof.load.export` turns it into Locust and k6 stages.

Randomness: the shape's own draws (burst lengths, rates, gaps) come from the stream
``"load.shape"`` and the arrivals from ``"<name>.arrivals"``, both seeded from the run seed with
:func:`stormproof.sim.kernel.stream_seed` (SHA-256 of seed and name). The same seed therefore
gives the same schedule in every process and under every ``PYTHONHASHSEED``, and a simulated
:class:`~stormproof.sim.parts.client.OpenLoopClient` called ``name`` draws the same arrivals.
"""

from __future__ import annotations

import bisect
import csv
import io
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from stormproof._validate import finite_above, finite_at_least, int_at_least
from stormproof.errors import ConfigError
from stormproof.load.distributions import Distribution, Exponential, Fixed, Uniform
from stormproof.sim.kernel import stream_seed
from stormproof.sim.parts.arrivals import PiecewisePoisson

__all__ = [
    "SHAPE_STREAM",
    "Bursts",
    "Ramp",
    "RatePlan",
    "Replay",
    "Shape",
    "Spike",
    "Steady",
    "arrival_times",
]

#: The random stream a shape draws its own parameters from.
SHAPE_STREAM = "load.shape"

_DISTRIBUTIONS = (Fixed, Uniform, Exponential)


@dataclass(frozen=True, slots=True)
class RatePlan:
    """A piecewise-constant arrival rate over ``[0, duration)`` and its burst windows.

    Attributes:
        steps: ``(time, rate)`` change points, the first at 0, times increasing, consecutive
            rates different (the form :class:`PiecewisePoisson` takes).
        duration: seconds; no arrival is scheduled at or after it.
        bursts: ``(start, end)`` windows that count as bursts, sorted and disjoint; the runner
            computes per-burst metrics over them.
    """

    steps: tuple[tuple[float, float], ...]
    duration: float
    bursts: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        finite_above("duration", self.duration, 0.0)
        PiecewisePoisson(self.steps)  # validates times and rates
        previous_end = 0.0
        for index, (start, end) in enumerate(self.bursts):
            finite_at_least(f"bursts[{index}].start", start, previous_end)
            finite_above(f"bursts[{index}].end", end, start)
            if end > self.duration:
                raise ConfigError(f"bursts[{index}].end", "must be <= duration", end)
            previous_end = end

    @classmethod
    def from_segments(
        cls,
        segments: Sequence[tuple[float, float]],
        duration: float,
        bursts: Sequence[tuple[float, float]] = (),
    ) -> RatePlan:
        """A plan from ``(start, rate)`` points, merging repeats and dropping points >= duration."""
        steps: list[tuple[float, float]] = []
        for start, rate in segments:
            if start >= duration:
                break
            if steps and steps[-1][0] == start:
                steps[-1] = (start, float(rate))
            elif not steps or steps[-1][1] != rate:
                steps.append((float(start), float(rate)))
            if len(steps) >= 2 and steps[-1][1] == steps[-2][1]:
                steps.pop()
        if not steps or steps[0][0] != 0.0:
            raise ConfigError("segments", "must start at time 0", segments[:1])
        clipped = tuple((float(s), float(min(e, duration))) for s, e in bursts if s < duration)
        return cls(tuple(steps), float(duration), clipped)

    def rate_at(self, time: float) -> float:
        """The rate in force at ``time`` (0 at or after ``duration``)."""
        if time >= self.duration:
            return 0.0
        times = [t for t, _ in self.steps]
        return self.steps[max(0, bisect.bisect_right(times, time) - 1)][1]

    def segments(self) -> list[tuple[float, float, float]]:
        """``(start, end, rate)`` for every constant piece, the last ending at ``duration``."""
        ends = [t for t, _ in self.steps[1:]] + [self.duration]
        return [(t, end, rate) for (t, rate), end in zip(self.steps, ends, strict=True)]

    def expected(self, start: float = 0.0, end: float | None = None) -> float:
        """The expected number of arrivals in ``[start, end)``: the integral of the rate."""
        stop = self.duration if end is None else min(end, self.duration)
        total = 0.0
        for lo, hi, rate in self.segments():
            a, b = max(lo, start), min(hi, stop)
            if b > a:
                total += rate * (b - a)
        return total

    def peak(self) -> float:
        """The highest rate of the plan."""
        return max(rate for _, rate in self.steps)

    def arrivals(self) -> PiecewisePoisson:
        """The simulator's arrival process for this plan (no arrivals after ``duration``).

        Pass ``horizon=plan.duration`` to the :class:`OpenLoopClient` as well.
        """
        return PiecewisePoisson(list(self.steps))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "duration": self.duration,
            "steps": [list(step) for step in self.steps],
            "bursts": [list(window) for window in self.bursts],
        }


@runtime_checkable
class Shape(Protocol):
    """Anything with ``plan(duration, seed) -> RatePlan`` and a ``describe()`` string."""

    def plan(self, duration: float, seed: int = 0) -> RatePlan:
        """The rate plan over ``[0, duration)`` for ``seed``."""
        ...

    def describe(self) -> str:
        """A one-line description for reports."""
        ...


def _check_duration(duration: float, seed: int) -> None:
    finite_above("duration", duration, 0.0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError("seed", "must be an integer", seed)


def _check_distribution(name: str, value: object) -> None:
    if not isinstance(value, _DISTRIBUTIONS):
        raise ConfigError(name, "must be a Fixed, Uniform or Exponential distribution", value)


@dataclass(frozen=True, slots=True)
class Steady:
    """``rate`` arrivals per second throughout."""

    rate: float

    def __post_init__(self) -> None:
        finite_at_least("rate", self.rate, 0.0)

    def plan(self, duration: float, seed: int = 0) -> RatePlan:
        """A single step; no bursts."""
        _check_duration(duration, seed)
        return RatePlan(((0.0, float(self.rate)),), float(duration))

    def describe(self) -> str:
        """A one-line description."""
        return f"steady {self.rate:g}/s"


@dataclass(frozen=True, slots=True)
class Ramp:
    """From ``start_rate`` to ``end_rate`` linearly over the whole run, in ``step``-s stairs.

    Each stair holds the ramp's value at its midpoint, so the expected number of arrivals equals
    the integral of the linear ramp exactly.
    """

    start_rate: float
    end_rate: float
    step: float = 1.0

    def __post_init__(self) -> None:
        finite_at_least("start_rate", self.start_rate, 0.0)
        finite_at_least("end_rate", self.end_rate, 0.0)
        finite_above("step", self.step, 0.0)

    def plan(self, duration: float, seed: int = 0) -> RatePlan:
        """Stairs every ``step`` seconds (the last one may be shorter); no bursts."""
        _check_duration(duration, seed)
        points: list[tuple[float, float]] = []
        count = max(1, math.ceil(duration / self.step))
        for index in range(count):
            start = index * self.step
            end = min(duration, start + self.step)
            middle = (start + end) / 2 / duration
            points.append((start, self.start_rate + (self.end_rate - self.start_rate) * middle))
        return RatePlan.from_segments(points, duration)

    def describe(self) -> str:
        """A one-line description."""
        return f"ramp {self.start_rate:g}/s -> {self.end_rate:g}/s in {self.step:g} s steps"


@dataclass(frozen=True, slots=True)
class Spike:
    """``base_rate``, and ``spike_rate`` during ``[at, at + length)`` (one burst)."""

    base_rate: float
    spike_rate: float
    at: float
    length: float

    def __post_init__(self) -> None:
        finite_at_least("base_rate", self.base_rate, 0.0)
        finite_at_least("spike_rate", self.spike_rate, 0.0)
        finite_at_least("at", self.at, 0.0)
        finite_above("length", self.length, 0.0)

    def plan(self, duration: float, seed: int = 0) -> RatePlan:
        """Base, spike, base; the spike is the plan's one burst (clipped to the run)."""
        _check_duration(duration, seed)
        end = self.at + self.length
        points = [(0.0, self.base_rate), (self.at, self.spike_rate), (end, self.base_rate)]
        return RatePlan.from_segments(points, duration, [(self.at, end)])

    def describe(self) -> str:
        """A one-line description."""
        return (
            f"spike to {self.spike_rate:g}/s at {self.at:g} s for {self.length:g} s "
            f"(base {self.base_rate:g}/s)"
        )


@dataclass(frozen=True, slots=True)
class Bursts:
    """Bursts of load separated by random idle intervals.

    The run starts with an idle lead-in (a draw of ``lead_in``, by default of ``idle``), then
    repeats: a burst at a rate drawn from ``rate`` for a length drawn from ``length``, then an
    idle gap drawn from ``idle`` at ``idle_rate``. Draws come from the ``"load.shape"`` stream in
    the order lead-in, then (rate, length, gap) per burst, so the same seed gives the same plan
    for any duration (a longer run only appends bursts).

    Keep ``idle_rate`` above 0 (a trickle of traffic) to measure recovery: with no requests
    between bursts there is nothing to observe the service recovering with. The idle lead-in
    is the baseline the recovery metrics compare against.

    Args:
        rate: arrivals per second during a burst.
        length: burst length in seconds (its ``low`` must be > 0).
        idle: idle gap in seconds.
        idle_rate: arrivals per second between bursts (fixed).
        lead_in: the idle time before the first burst; ``None`` draws it from ``idle``.
        tail: no burst starts in the last ``tail`` seconds of the run, so that the recovery
            after the last burst is observed rather than cut off by the end (default 0).
    """

    rate: Distribution
    length: Distribution
    idle: Distribution
    idle_rate: float = 1.0
    lead_in: Distribution | None = None
    tail: float = 0.0

    def __post_init__(self) -> None:
        _check_distribution("rate", self.rate)
        _check_distribution("length", self.length)
        _check_distribution("idle", self.idle)
        if self.lead_in is not None:
            _check_distribution("lead_in", self.lead_in)
        finite_at_least("idle_rate", self.idle_rate, 0.0)
        finite_at_least("tail", self.tail, 0.0)
        if self.length.low <= 0.0:
            raise ConfigError(
                "length", "must be > 0 (a burst of length 0 is no burst)", self.length
            )

    def plan(self, duration: float, seed: int = 0) -> RatePlan:
        """Lead-in, then burst/idle pairs until ``duration - tail`` (the last one clipped)."""
        _check_duration(duration, seed)
        rng = random.Random(stream_seed(seed, SHAPE_STREAM))
        lead = self.lead_in if self.lead_in is not None else self.idle
        time = lead.sample(rng)
        points: list[tuple[float, float]] = [(0.0, self.idle_rate)]
        windows: list[tuple[float, float]] = []
        while time < duration - self.tail:
            rate = self.rate.sample(rng)
            length = self.length.sample(rng)
            gap = self.idle.sample(rng)
            points.append((time, rate))
            points.append((time + length, self.idle_rate))
            windows.append((time, min(time + length, duration)))
            time += length + gap
        return RatePlan.from_segments(points, duration, windows)

    def describe(self) -> str:
        """A one-line description."""
        return (
            f"bursts of {self.rate}/s for {self.length} s, idle {self.idle} s at "
            f"{self.idle_rate:g}/s" + (f", none in the last {self.tail:g} s" if self.tail else "")
        )


@dataclass(frozen=True, slots=True)
class Replay:
    """A recorded rate series: ``points`` are ``(time, rate)`` samples, held until the next.

    ``burst_above`` marks as bursts the stretches whose rate exceeds it (none when ``None``).
    Beyond the last point its rate holds; with ``loop=True`` the series repeats instead, every
    ``period`` seconds (default: the last time plus the last gap between samples; 1 s for a
    single sample).
    """

    points: tuple[tuple[float, float], ...]
    burst_above: float | None = None
    loop: bool = False
    period: float | None = None

    def __post_init__(self) -> None:
        if not self.points:
            raise ConfigError("points", "needs at least one (time, rate) sample")
        try:
            PiecewisePoisson(list(self.points))  # times from 0, increasing; rates >= 0, finite
        except ConfigError as error:
            field = error.field.replace("steps", "points", 1)
            raise ConfigError(field, error.rule, error.value) from None
        if self.burst_above is not None:
            finite_at_least("burst_above", self.burst_above, 0.0)
        if self.period is not None:
            finite_above("period", self.period, self.points[-1][0])

    @classmethod
    def from_rates(cls, rates: Sequence[float], interval: float = 1.0, **options: Any) -> Replay:
        """One rate per ``interval`` seconds (a per-second or per-minute metric export)."""
        finite_above("interval", interval, 0.0)
        int_at_least("rates", len(rates), 1)
        points = tuple((index * interval, float(rate)) for index, rate in enumerate(rates))
        options.setdefault("period", len(rates) * interval)
        return cls(points, **options)

    @classmethod
    def from_text(cls, text: str, *, interval: float = 1.0, **options: Any) -> Replay:
        """Parse CSV text: rows ``time,rate`` or ``rate`` alone (then ``interval`` apart).

        A first row that is not numeric is taken as a header and skipped; ``#`` starts a comment.
        """
        rows = [
            [cell.strip() for cell in row]
            for row in csv.reader(io.StringIO(text))
            if row and row[0].strip() and not row[0].strip().startswith("#")
        ]
        if rows and not _numeric(rows[0][0]):
            rows = rows[1:]
        if not rows:
            raise ConfigError("replay", "has no rows")
        try:
            if all(len(row) == 1 for row in rows):
                return cls.from_rates([float(row[0]) for row in rows], interval, **options)
            points = tuple((float(row[0]), float(row[1])) for row in rows)
        except (ValueError, IndexError):
            raise ConfigError("replay", "rows must be 'time,rate' or 'rate' numbers") from None
        return cls(points, **options)

    @classmethod
    def from_file(cls, path: str | Path, **options: Any) -> Replay:
        """Read :meth:`from_text`'s format from a file."""
        return cls.from_text(Path(path).read_text(encoding="utf-8"), **options)

    def _period(self) -> float:
        if self.period is not None:
            return self.period
        if len(self.points) == 1:
            return 1.0
        return self.points[-1][0] + (self.points[-1][0] - self.points[-2][0])

    def plan(self, duration: float, seed: int = 0) -> RatePlan:
        """The recorded rates (repeated with ``loop``), bursts above ``burst_above``."""
        _check_duration(duration, seed)
        points: list[tuple[float, float]] = []
        offset = 0.0
        period = self._period()
        while offset < duration:
            points.extend((offset + t, rate) for t, rate in self.points)
            if not self.loop:
                break
            offset += period
        plan = RatePlan.from_segments(points, duration)
        if self.burst_above is None:
            return plan
        windows: list[tuple[float, float]] = []
        for start, end, rate in plan.segments():
            if rate > self.burst_above:
                if windows and windows[-1][1] == start:
                    windows[-1] = (windows[-1][0], end)
                else:
                    windows.append((start, end))
        return RatePlan(plan.steps, plan.duration, tuple(windows))

    def describe(self) -> str:
        """A one-line description."""
        peak = max(rate for _, rate in self.points)
        return f"replay of {len(self.points)} samples (peak {peak:g}/s)" + (
            ", looped" if self.loop else ""
        )


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def arrival_times(
    plan: RatePlan, seed: int, *, name: str = "client", limit: int | None = None
) -> list[float]:
    """The arrival schedule of ``plan``: times in ``[0, duration)``, increasing.

    Drawn from the stream ``f"{name}.arrivals"`` seeded by ``seed``, exactly as a simulated
    :class:`~stormproof.sim.parts.client.OpenLoopClient` called ``name`` with
    ``plan.arrivals()`` and ``horizon=plan.duration`` draws them. ``limit`` stops after that
    many arrivals.
    """
    if limit is not None:
        int_at_least("limit", limit, 0)
    rng = random.Random(stream_seed(seed, f"{name}.arrivals"))
    process = plan.arrivals()
    times: list[float] = []
    now = 0.0
    while limit is None or len(times) < limit:
        now = process.next_after(now, rng)
        if now >= plan.duration:
            break
        times.append(now)
    return times
