"""Parameter sweeps: every grid point x policy x seed, and the maps an engineer reads from them.

A sweep asks where a policy configuration tips into a stuck state: it runs a scenario on a grid
of parameter values (trigger size, duration, load ...) for several policies and many seeds, and
summarises each grid point and policy by its stuck probability (with a Wilson interval), its
time to recover, the 50 % **tipping boundary**, and the paired difference between policies.

Common random numbers: every grid point and every policy uses the same list of seeds, and a
scenario draws its workload from streams that do not depend on the policy, so at one grid point
the policies face the same arrivals seed by seed, and their difference is paired.

Reproducibility does not depend on where runs ran: the plan (which runs, in which order) is
fixed before anything is sent to a backend, each run depends only on its parameters, policy and
seed, and results are put back in plan order. A local pool and Ray give identical results.

Resuming: with a resume file, every finished batch is appended to it as JSON lines; running the
same sweep again with the same file skips the runs already there. Because runs are keyed by
(grid point, policy, seed), the file also serves a sweep that adds seeds or grid values.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from stormproof._validate import int_at_least
from stormproof._version import __version__
from stormproof.errors import ConfigError
from stormproof.sim.backends.base import Backend, Batch, RunRecord, RunSpec, run_batch
from stormproof.sim.backends.local import LocalBackend
from stormproof.sim.scenario import RunResult, Scenario
from stormproof.sim.stats import percentile, wilson_interval

__all__ = [
    "Axis",
    "BoundaryLine",
    "Cell",
    "Crossing",
    "Difference",
    "SweepPlan",
    "SweepResult",
    "paired_difference_interval",
    "parse_axis",
    "plan_sweep",
    "run_sweep",
]

#: The run metric read as "time to recover" (seconds, NaN when a run never recovered).
RECOVERY_METRIC = "time_to_recover_s"
#: Guards against a typo such as ``rate=1:100000:1`` expanding into a sweep of days.
MAX_POINTS = 100_000
#: A batch never holds more runs than this, so progress and load balancing stay fine-grained.
MAX_BATCH = 16
#: The CPUs a remote Ray cluster is assumed to have when sizing batches (``batch_size`` overrides).
ASSUMED_CLUSTER_CPUS = 64
_RESUME_FORMAT = 1


# ---------------------------------------------------------------------------------------- grid


@dataclass(frozen=True, slots=True)
class Axis:
    """One swept parameter and its values, in increasing order."""

    name: str
    values: tuple[float, ...]


def _number(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(name, "grid values must be numbers", text) from None
    if math.isnan(value) or math.isinf(value):
        raise ConfigError(name, "grid values must be finite", text)
    return value


def _tidy(value: float) -> float:
    """``0.1 * 3`` as ``0.3``: range values are rounded to 12 significant digits."""
    return float(f"{value:.12g}")


def parse_axis(text: str) -> Axis:
    """``name=start:stop:step`` (stop included when the steps land on it) or ``name=a,b,c``.

    Values are sorted; duplicates are an error. Whether the name is a parameter of the scenario
    and the values are in its range is checked by :func:`plan_sweep`.
    """
    name, sep, spec = text.partition("=")
    name, spec = name.strip(), spec.strip()
    if not sep or not name or not spec:
        raise ConfigError("grid", "expected name=start:stop:step or name=a,b,c", text)
    if ":" in spec:
        parts = spec.split(":")
        if len(parts) != 3:
            raise ConfigError(name, "a range is start:stop:step", spec)
        start, stop, step = (_number(name, part) for part in parts)
        if step <= 0:
            raise ConfigError(name, "the step of a range must be > 0", spec)
        if stop < start:
            raise ConfigError(name, "the stop of a range must be >= its start", spec)
        # Counting steps (not adding them up) keeps float error from dropping the last value.
        count = math.floor((stop - start) / step + 1e-9) + 1
        if count > MAX_POINTS:
            raise ConfigError(name, f"a range may have at most {MAX_POINTS} values", spec)
        values = [_tidy(start + i * step) for i in range(count)]
    else:
        values = [_number(name, part.strip()) for part in spec.split(",")]
    if len(set(values)) != len(values):
        raise ConfigError(name, "grid values must be distinct", spec)
    return Axis(name, tuple(sorted(values)))


# ---------------------------------------------------------------------------------------- plan


@dataclass(frozen=True, slots=True)
class SweepPlan:
    """Everything a sweep will run, fixed before any run starts."""

    scenario: Scenario
    #: The parameters every grid point shares (defaults with overrides; swept names removed).
    base: dict[str, float]
    axes: tuple[Axis, ...]
    policies: tuple[str, ...]
    seeds: tuple[int, ...]
    #: The swept values of each grid point, the last axis varying fastest.
    points: tuple[dict[str, float], ...]
    #: The resolved parameters of each grid point (base and swept values).
    params: tuple[dict[str, float], ...] = field(repr=False)

    @property
    def total_runs(self) -> int:
        """Grid points x policies x seeds."""
        return len(self.points) * len(self.policies) * len(self.seeds)

    def runs(self) -> list[RunSpec]:
        """Every run in plan order: grid point, then policy, then seed."""
        return [
            RunSpec(index, self.params[index], policy, seed)
            for index in range(len(self.points))
            for policy in self.policies
            for seed in self.seeds
        ]

    def key(self, point: int, policy: str, seed: int) -> tuple[Any, ...]:
        """What identifies a run across sweeps: its swept values, policy and seed."""
        return (tuple(self.points[point][a.name] for a in self.axes), policy, seed)


def plan_sweep(
    scenario: Scenario,
    axes: Sequence[Axis],
    policies: Sequence[str] | None,
    seeds: Sequence[int],
    overrides: Mapping[str, str | float] | None = None,
) -> SweepPlan:
    """Check a sweep and fix its runs.

    Args:
        scenario: what to run.
        axes: swept parameters (none: a single grid point).
        policies: policy names of the scenario; ``None`` or empty: all of them.
        seeds: run seeds, used for every grid point and policy.
        overrides: fixed parameter values other than the scenario's defaults.

    Every grid point is resolved through :meth:`Scenario.resolve`, so a value out of a
    parameter's range, or a combination the scenario refuses, is a ConfigError naming it.
    """
    names = [axis.name for axis in axes]
    if len(set(names)) != len(names):
        raise ConfigError("grid", "each parameter may be swept once", names)
    for name in names:
        if overrides and name in overrides:
            raise ConfigError(name, "is both swept (--grid) and fixed (--set)")
    chosen = tuple(policies) if policies else scenario.policies
    for policy in chosen:
        scenario.check_policy(policy)
    if len(set(chosen)) != len(chosen):
        raise ConfigError("policies", "each policy may be given once", list(chosen))
    if not seeds:
        raise ConfigError("seeds", "give at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ConfigError("seeds", "seeds must be distinct")
    for seed in seeds:
        int_at_least("seeds", seed, 0)
    size = math.prod(len(axis.values) for axis in axes)
    if size > MAX_POINTS:
        raise ConfigError("grid", f"at most {MAX_POINTS} grid points", size)
    by_name = {param.name: param for param in scenario.params}
    parsed: list[Axis] = []
    for axis in axes:
        param = by_name.get(axis.name)
        if param is None:
            raise ConfigError(
                axis.name,
                f"is not a parameter of {scenario.name}; valid: {', '.join(sorted(by_name))}",
            )
        parsed.append(Axis(axis.name, tuple(param.parse(value) for value in axis.values)))
    base = scenario.resolve(overrides)
    points: list[dict[str, float]] = []
    params: list[dict[str, float]] = []
    for combination in itertools.product(*(axis.values for axis in parsed)):
        point = dict(zip(names, combination, strict=True))
        params.append(scenario.resolve({**(overrides or {}), **point}))
        points.append(point)
    return SweepPlan(
        scenario=scenario,
        base={k: v for k, v in base.items() if k not in names},
        axes=tuple(parsed),
        policies=chosen,
        seeds=tuple(seeds),
        points=tuple(points),
        params=tuple(params),
    )


# ------------------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Cell:
    """One policy at one grid point, over all seeds."""

    point: dict[str, float]
    runs: int
    stuck_runs: int
    stuck_probability: float
    ci95: tuple[float, float]
    #: Runs with a time to recover (``RECOVERY_METRIC`` not NaN); the statistics below are over
    #: them only, ``None`` when there are none or the scenario has no such metric.
    recovered_runs: int
    recovery_mean_s: float | None
    recovery_p50_s: float | None
    recovery_p90_s: float | None
    metrics: dict[str, float | None]

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data (NaN and infinities as null)."""
        return {
            "point": self.point,
            "runs": self.runs,
            "stuck_runs": self.stuck_runs,
            "stuck_probability": self.stuck_probability,
            "ci95": list(self.ci95),
            "recovered_runs": self.recovered_runs,
            "recovery_s": {
                "mean": self.recovery_mean_s,
                "p50": self.recovery_p50_s,
                "p90": self.recovery_p90_s,
            },
            "metrics": {k: _json_number(v) for k, v in self.metrics.items()},
        }


@dataclass(frozen=True, slots=True)
class Crossing:
    """Where the stuck probability crosses the level between two neighbouring grid values."""

    value: float
    #: True when the probability goes up through the level as the axis value grows.
    rising: bool


@dataclass(frozen=True, slots=True)
class BoundaryLine:
    """The tipping boundary along one axis, with every other axis held at ``at``."""

    axis: str
    at: dict[str, float]
    crossings: tuple[Crossing, ...]
    #: The lowest and highest stuck probability on the line (no crossing: all on one side).
    low: float
    high: float

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data."""
        return {
            "axis": self.axis,
            "at": self.at,
            "crossings": [{"value": c.value, "rising": c.rising} for c in self.crossings],
            "low": self.low,
            "high": self.high,
        }


@dataclass(frozen=True, slots=True)
class Difference:
    """Paired difference of stuck probabilities, ``policy`` minus ``baseline``, at one point."""

    point: dict[str, float]
    policy: str
    baseline: str
    difference: float
    ci95: tuple[float, float]
    #: Seeds stuck under ``policy`` but not ``baseline``, and the other way round.
    only_policy: int
    only_baseline: int

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data."""
        return {
            "point": self.point,
            "policy": self.policy,
            "baseline": self.baseline,
            "difference": self.difference,
            "ci95": list(self.ci95),
            "only_policy": self.only_policy,
            "only_baseline": self.only_baseline,
        }


@dataclass(frozen=True, slots=True)
class SweepResult:
    """A sweep's runs and their summaries; see the module docstring."""

    scenario: str
    base: dict[str, float]
    axes: tuple[Axis, ...]
    policies: tuple[str, ...]
    seeds: tuple[int, ...]
    #: For each policy, one cell per grid point in plan order.
    cells: dict[str, tuple[Cell, ...]]
    #: Every run, in plan order (grid point, policy, seed).
    runs: tuple[RunRecord, ...] = field(repr=False)

    @property
    def points(self) -> list[dict[str, float]]:
        """The swept values of each grid point, in plan order."""
        return [cell.point for cell in self.cells[self.policies[0]]]

    def boundary(self, policy: str, level: float = 0.5) -> list[BoundaryLine]:
        """The ``level`` crossings of ``policy``'s stuck probability along every axis.

        For each axis and each combination of the other axes' values, the probability is
        interpolated linearly between neighbouring grid values; a crossing is where it goes from
        below ``level`` to at or above it (rising) or back (falling). A noisy surface can cross
        more than once on a line; every crossing is reported.
        """
        if not 0.0 < level < 1.0:
            raise ConfigError("level", "must be within (0, 1)", level)
        cells = self.cells[policy]
        lines: list[BoundaryLine] = []
        for index, axis in enumerate(self.axes):
            stride = math.prod(len(a.values) for a in self.axes[index + 1 :])
            block = stride * len(axis.values)
            for start in range(len(cells)):
                if (start // stride) % len(axis.values) != 0 or start % block >= stride:
                    continue  # not the first cell of a line along this axis
                line = [cells[start + i * stride] for i in range(len(axis.values))]
                probabilities = [c.stuck_probability for c in line]
                at = {k: v for k, v in line[0].point.items() if k != axis.name}
                lines.append(
                    BoundaryLine(
                        axis=axis.name,
                        at=at,
                        crossings=_crossings(axis.values, probabilities, level),
                        low=min(probabilities),
                        high=max(probabilities),
                    )
                )
        return lines

    def difference(self, policy: str, baseline: str) -> list[Difference]:
        """``policy``'s stuck probability minus ``baseline``'s at every point, paired by seed."""
        for name in (policy, baseline):
            if name not in self.policies:
                raise ConfigError("policy", f"{name!r} is not in this sweep", name)
        stuck = {(r.point, r.policy, r.seed): r.stuck for r in self.runs}
        differences = []
        for index, point in enumerate(self.points):
            pairs = [(stuck[index, policy, s], stuck[index, baseline, s]) for s in self.seeds]
            both = sum(1 for a, b in pairs if a and b)
            only_a = sum(1 for a, b in pairs if a and not b)
            only_b = sum(1 for a, b in pairs if b and not a)
            neither = len(pairs) - both - only_a - only_b
            differences.append(
                Difference(
                    point=point,
                    policy=policy,
                    baseline=baseline,
                    difference=(only_a - only_b) / len(pairs),
                    ci95=paired_difference_interval(both, only_a, only_b, neither),
                    only_policy=only_a,
                    only_baseline=only_b,
                )
            )
        return differences

    def digest(self) -> str:
        """SHA-256 of every run's outcome and trace hash in plan order: equal sweeps, equal."""
        digest = hashlib.sha256()
        for run in self.runs:
            digest.update(json.dumps(_record_json(run, self.points), sort_keys=True).encode())
            digest.update(b"\n")
        return digest.hexdigest()

    def to_json(self) -> dict[str, Any]:
        """The JSON form printed by ``stormproof sweep --json`` (without the single runs)."""
        return {
            "scenario": self.scenario,
            "base": self.base,
            "axes": {axis.name: list(axis.values) for axis in self.axes},
            "policies": list(self.policies),
            "seeds": list(self.seeds),
            "runs": len(self.runs),
            "digest": self.digest(),
            "cells": {p: [c.to_json() for c in cells] for p, cells in self.cells.items()},
            "boundary": {p: [line.to_json() for line in self.boundary(p)] for p in self.policies},
            "differences": {
                f"{p} - {self.policies[0]}": [
                    d.to_json() for d in self.difference(p, self.policies[0])
                ]
                for p in self.policies[1:]
            },
        }


def _crossings(
    values: Sequence[float], probabilities: Sequence[float], level: float
) -> tuple[Crossing, ...]:
    found = []
    for (x0, p0), (x1, p1) in itertools.pairwise(zip(values, probabilities, strict=True)):
        if (p0 < level) == (p1 < level):
            continue
        found.append(Crossing(x0 + (level - p0) / (p1 - p0) * (x1 - x0), rising=p1 > p0))
    return tuple(found)


def paired_difference_interval(
    both: int, only_a: int, only_b: int, neither: int
) -> tuple[float, float]:
    """95 % interval of ``P(a) - P(b)`` from paired binary outcomes (Newcombe's method 10).

    The Wilson intervals of the two proportions are combined with the correlation of the
    pairs (R. G. Newcombe, "Improved confidence intervals for the difference between binomial
    proportions based on paired data", Statistics in Medicine 17, 1998). Pairing is what common
    random numbers buy: the same seed under both policies, so the interval is narrower than for
    independent samples whenever the outcomes are correlated.
    """
    for name, count in (("both", both), ("only_a", only_a), ("only_b", only_b)):
        int_at_least(name, count, 0)
    int_at_least("neither", neither, 0)
    n = both + only_a + only_b + neither
    if n == 0:
        raise ConfigError("pairs", "give at least one pair")
    a, b = both + only_a, both + only_b
    p1, p2 = a / n, b / n
    l1, u1 = wilson_interval(a, n)
    l2, u2 = wilson_interval(b, n)
    margins = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    phi = (both * neither - only_a * only_b) / math.sqrt(margins) if margins else 0.0
    delta = p1 - p2
    low = delta - math.sqrt(
        max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2)
    )
    high = delta + math.sqrt(
        max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2)
    )
    return max(-1.0, low), min(1.0, high)


def _json_number(value: float | None) -> float | None:
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return value


def _summarize(plan: SweepPlan, records: Sequence[RunRecord]) -> dict[str, tuple[Cell, ...]]:
    by_cell: dict[tuple[int, str], list[RunRecord]] = {}
    for record in records:
        by_cell.setdefault((record.point, record.policy), []).append(record)
    cells: dict[str, tuple[Cell, ...]] = {}
    for policy in plan.policies:
        row = []
        for index, point in enumerate(plan.points):
            runs = by_cell[index, policy]
            stuck = sum(1 for r in runs if r.stuck)
            recovery = [
                r.metrics[RECOVERY_METRIC]
                for r in runs
                if RECOVERY_METRIC in r.metrics and not math.isnan(r.metrics[RECOVERY_METRIC])
            ]
            # Scenario.summarize takes RunResults; a record is one without its time series.
            summary = plan.scenario.summarize(
                [
                    RunResult(
                        plan.scenario.name, r.policy, r.seed, r.stuck, r.metrics, r.trace_hash
                    )
                    for r in runs
                ]
            )
            row.append(
                Cell(
                    point=point,
                    runs=len(runs),
                    stuck_runs=stuck,
                    stuck_probability=stuck / len(runs),
                    ci95=wilson_interval(stuck, len(runs)),
                    recovered_runs=len(recovery),
                    recovery_mean_s=sum(recovery) / len(recovery) if recovery else None,
                    recovery_p50_s=percentile(recovery, 0.5) if recovery else None,
                    recovery_p90_s=percentile(recovery, 0.9) if recovery else None,
                    metrics=summary,
                )
            )
        cells[policy] = tuple(row)
    return cells


# -------------------------------------------------------------------------------------- resume


def _record_json(record: RunRecord, points: Sequence[dict[str, float]]) -> dict[str, Any]:
    return {
        "point": points[record.point],
        "policy": record.policy,
        "seed": record.seed,
        "stuck": record.stuck,
        "metrics": {k: _json_number(v) for k, v in record.metrics.items()},
        "trace_hash": record.trace_hash,
    }


def _header(plan: SweepPlan) -> dict[str, Any]:
    return {
        "stormproof_sweep": _RESUME_FORMAT,
        "version": __version__,
        "scenario": plan.scenario.name,
        "base": plan.base,
    }


def _load_resume(path: Path, plan: SweepPlan) -> dict[tuple[Any, ...], RunRecord]:
    """Runs already in ``path`` that belong to ``plan``; cuts off a half-written last line."""
    text = path.read_bytes()
    lines = text.split(b"\n")
    # Everything after the last newline is a line an interrupted sweep did not finish.
    complete, tail = lines[:-1], lines[-1]
    if tail:
        with path.open("r+b") as handle:
            handle.truncate(len(text) - len(tail))
    if not complete:
        return {}
    try:
        header = json.loads(complete[0])
    except json.JSONDecodeError:
        raise ConfigError("resume", "is not a stormproof sweep file", str(path)) from None
    if not isinstance(header, dict) or header.get("stormproof_sweep") != _RESUME_FORMAT:
        raise ConfigError("resume", "is not a stormproof sweep file", str(path))
    expected = _header(plan)
    for name in ("scenario", "base", "version"):
        if header.get(name) != expected[name]:
            raise ConfigError(
                "resume",
                f"was written with another {name} ({header.get(name)!r}, now "
                f"{expected[name]!r}); use a new file",
                str(path),
            )
    index = {tuple(point[a.name] for a in plan.axes): i for i, point in enumerate(plan.points)}
    done: dict[tuple[Any, ...], RunRecord] = {}
    for number, line in enumerate(complete[1:], start=2):
        try:
            data = json.loads(line)
            values = tuple(data["point"][a.name] for a in plan.axes)
            record = (values, data["policy"], data["seed"])
            metrics = {k: math.nan if v is None else float(v) for k, v in data["metrics"].items()}
            stuck, trace_hash = bool(data["stuck"]), str(data["trace_hash"])
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError):
            raise ConfigError("resume", f"line {number} is not a run record", str(path)) from None
        point = index.get(values)
        if point is None or record[1] not in plan.policies or record[2] not in plan.seeds:
            continue  # a run of a larger sweep that used the same file
        done[record] = RunRecord(point, record[1], record[2], stuck, metrics, trace_hash)
    return done


def _open_resume(path: Path, plan: SweepPlan) -> tuple[dict[tuple[Any, ...], RunRecord], IO[str]]:
    done = _load_resume(path, plan) if path.exists() else {}
    handle = path.open("a", encoding="utf-8")
    if handle.tell() == 0:
        handle.write(json.dumps(_header(plan)) + "\n")
        handle.flush()
    return done, handle


def _append(handle: IO[str], records: Sequence[RunRecord], plan: SweepPlan) -> None:
    lines = "".join(
        json.dumps(_record_json(r, plan.points), allow_nan=False) + "\n" for r in records
    )
    handle.write(lines)
    handle.flush()
    # A batch is worth seconds of CPU; making it durable costs one fsync.
    os.fsync(handle.fileno())


# ----------------------------------------------------------------------------------------- run


def default_batch_size(runs: int, parallelism: int | None) -> int:
    """About four batches per worker, at most :data:`MAX_BATCH` runs each.

    Several batches per worker keep the workers evenly busy when runs differ in cost (stuck runs
    take about twice as long); the cap keeps progress and resume fine-grained. An unknown
    parallelism (a remote cluster) is taken as :data:`ASSUMED_CLUSTER_CPUS`.
    """
    workers = ASSUMED_CLUSTER_CPUS if parallelism is None else max(1, parallelism)
    return max(1, min(MAX_BATCH, math.ceil(runs / (4 * workers))))


def batches(plan: SweepPlan, runs: Sequence[RunSpec], size: int) -> list[Batch]:
    """``runs`` cut into consecutive batches of ``size`` (the last may be shorter)."""
    int_at_least("batch_size", size, 1)
    return [Batch(plan.scenario, tuple(runs[i : i + size])) for i in range(0, len(runs), size)]


def run_sweep(
    plan: SweepPlan,
    backend: Backend | None = None,
    *,
    batch_size: int | None = None,
    resume: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SweepResult:
    """Run every run of ``plan`` that is not already in ``resume``, and summarise.

    Args:
        plan: from :func:`plan_sweep`.
        backend: where to run (default: a local process pool with one worker per CPU).
        batch_size: runs per task (default: :func:`default_batch_size`).
        resume: a JSON-lines file; finished runs are appended to it batch by batch, and runs
            already in it are not run again. Created when missing.
        progress: called with ``(runs done, total runs)`` after each batch (and once at the
            start, counting the runs taken from ``resume``).
    """
    backend = backend if backend is not None else LocalBackend()
    if batch_size is not None:
        int_at_least("batch_size", batch_size, 1)
    done: dict[tuple[Any, ...], RunRecord] = {}
    handle: IO[str] | None = None
    if resume is not None:
        done, handle = _open_resume(resume, plan)
    try:
        todo = [s for s in plan.runs() if plan.key(s.point, s.policy, s.seed) not in done]
        total = plan.total_runs
        if progress is not None:
            progress(total - len(todo), total)
        size = batch_size or default_batch_size(len(todo), backend.parallelism)
        finished = total - len(todo)
        work = batches(plan, todo, size)
        # Nothing left to run (a finished resume file): do not start a pool or a Ray instance.
        results = backend.map_unordered(run_batch, work) if work else iter(())
        try:
            for _, records in results:
                for record in records:
                    done[plan.key(record.point, record.policy, record.seed)] = record
                if handle is not None:
                    _append(handle, records, plan)
                finished += len(records)
                if progress is not None:
                    progress(finished, total)
        finally:
            # Closing the generator now (not when it is collected) cancels what has not started.
            close = getattr(results, "close", None)
            if close is not None:
                close()
    finally:
        if handle is not None:
            handle.close()
    ordered = tuple(done[plan.key(s.point, s.policy, s.seed)] for s in plan.runs())
    return SweepResult(
        scenario=plan.scenario.name,
        base=plan.base,
        axes=plan.axes,
        policies=plan.policies,
        seeds=plan.seeds,
        cells=_summarize(plan, ordered),
        runs=ordered,
    )
