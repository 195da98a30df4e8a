"""Multilevel splitting for stuck probabilities too small for plain Monte Carlo.

Plain Monte Carlo needs about ``100 / p`` runs to see a probability ``p`` with 20 % relative error:
a stuck probability of 1e-4 costs a million runs. Multilevel splitting spends the runs where the
event is being approached instead. A run is watched through an *importance function* (a progress
measure such as the server's concurrency or the retry-orbit size); the first time it crosses each
of a few increasing *levels* it is cloned into ``splits`` copies that continue independently, and
each copy carries the weight ``1 / splits`` of its parent. The weighted count of trajectories that
end in the event is an unbiased estimate of its probability, whatever the levels are -- good
levels only lower the variance (fixed splitting without killing; M. Villén-Altamirano & J.
Villén-Altamirano, RESTART, 1991; M. J. J. Garvels, PhD thesis, Univ. Twente, 2000; P. L'Ecuyer,
V. Demers & B. Tuffin, ACM TOMACS 17(2), 2007).

**Cloning.** A running :class:`~stormproof.sim.kernel.Simulation` built from callbacks (the
parts and the scenarios use them) is copied with :func:`copy.deepcopy`: its queue holds bound
methods and argument tuples, which deepcopy rebuilds against the copied objects, and the random
streams are ``random.Random`` objects, which copy their state. Two things cannot be copied: the
running trace hash (a ``hashlib`` object; splittable runs are built with ``hash_trace=False``)
and generator-based processes (``sim.process``; a model using them must be split by replaying a
recorded prefix, which this module does not do). After copying, every named stream of the copy is
reseeded from the run seed, the stream's name and the copy's branch label, so copies diverge and
the whole tree is still a function of the seed.

**Confidence interval.** Each root run grows an independent tree; its weighted count ``Y_j`` has
mean ``p``. Over ``roots`` trees the estimate is the mean of the ``Y_j`` and the 95 % interval is
``mean +- t(0.975, roots - 1) * sd / sqrt(roots)`` (a CLT interval over independent replications,
the variance estimate Garvels and L'Ecuyer et al. recommend for fixed splitting). With every
``Y_j`` zero the interval is degenerate at 0: nothing was seen.
"""

from __future__ import annotations

import copy
import math
import random
import statistics
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from stormproof._validate import finite_above, int_at_least
from stormproof.errors import ConfigError
from stormproof.sim.kernel import Simulation, stream_seed
from stormproof.sim.stats import wilson_interval

__all__ = [
    "RareEstimate",
    "SplittableRun",
    "SplittingPlan",
    "clone_run",
    "describe",
    "estimate_by_monte_carlo",
    "estimate_by_splitting",
    "reseed_streams",
    "t_quantile_975",
]


class SplittableRun(Protocol):
    """One run of a model that splitting can watch, clone and judge.

    ``sim`` must be built with ``hash_trace=False`` and use callbacks only (no processes);
    ``horizon`` is where the run ends; ``importance()`` is the progress measure, read between
    events; ``occurred()`` says, at the horizon, whether the rare event happened.
    """

    @property
    def sim(self) -> Simulation:
        """The run's simulation."""
        ...

    @property
    def horizon(self) -> float:
        """Virtual time at which the run ends and is judged."""
        ...

    def importance(self) -> float:
        """The progress measure now (larger is closer to the event)."""
        ...

    def occurred(self) -> bool:
        """Whether the rare event happened (called at the horizon)."""
        ...


RunT = TypeVar("RunT", bound=SplittableRun)

#: Builds a fresh run for a seed; must be picklable (a module-level class) to use ``workers``.
RunBuilder = Callable[[int], SplittableRun]


@dataclass(frozen=True, slots=True)
class SplittingPlan:
    """How to split: levels of the importance function, copies per crossing, and effort.

    Args:
        levels: strictly increasing thresholds; a trajectory is split the first time its
            importance is at least a level (all levels crossed in one check count).
        splits: copies a trajectory becomes at each crossing (itself included); ``>= 2``.
        roots: independent root runs (trees); the interval comes from their spread.
        check_every: virtual seconds between reads of the importance function. Crossings are
            seen on this grid, which changes only the variance, never the expectation.
        max_trajectories: bound on the trajectories of one tree; past it crossings are no longer
            split (still unbiased: a split decision never looks at the copies' futures).
    """

    levels: tuple[float, ...]
    splits: int = 3
    roots: int = 30
    check_every: float = 0.25
    max_trajectories: int = 20_000

    def __post_init__(self) -> None:
        if not self.levels:
            raise ConfigError("levels", "give at least one level")
        for index, level in enumerate(self.levels):
            if not isinstance(level, int | float) or not math.isfinite(level):
                raise ConfigError(f"levels[{index}]", "must be a finite number", level)
            if index and level <= self.levels[index - 1]:
                raise ConfigError(f"levels[{index}]", "must be > the previous level", level)
        int_at_least("splits", self.splits, 2)
        int_at_least("roots", self.roots, 2)
        finite_above("check_every", self.check_every, 0.0)
        int_at_least("max_trajectories", self.max_trajectories, 1)


@dataclass(frozen=True, slots=True)
class RareEstimate:
    """A probability estimate with its 95 % interval and what it cost.

    ``work_runs`` is the simulated time of all trajectories divided by the horizon: the number of
    plain runs that cost the same simulated time. ``events`` counts kernel events, the CPU cost.
    """

    method: str
    probability: float
    ci95: tuple[float, float]
    std_error: float
    roots: int
    trajectories: int
    hits: int
    work_runs: float
    events: int
    level_crossings: tuple[int, ...] = ()
    per_root: tuple[float, ...] = field(default=(), repr=False)

    @property
    def relative_error(self) -> float:
        """Standard error over estimate (infinity when the estimate is 0)."""
        return self.std_error / self.probability if self.probability > 0 else math.inf

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``stormproof rare --json``)."""
        return {
            "method": self.method,
            "probability": self.probability,
            "ci95": list(self.ci95),
            "std_error": self.std_error,
            "relative_error": None if math.isinf(self.relative_error) else self.relative_error,
            "roots": self.roots,
            "trajectories": self.trajectories,
            "hits": self.hits,
            "work_runs": self.work_runs,
            "events": self.events,
            "level_crossings": list(self.level_crossings),
        }


def t_quantile_975(df: int) -> float:
    """The 97.5th percentile of Student's t with ``df`` degrees of freedom.

    Exact for 1 and 2 degrees of freedom, a Cornish-Fisher expansion around the normal quantile
    above (error below 1e-3 from 3 on) -- enough for an interval, without scipy in the core.
    """
    int_at_least("df", df, 1)
    if df == 1:
        return 12.706204736174704
    if df == 2:
        return 4.302652729749464
    z = 1.959963984540054
    z3, z5, z7 = z**3, z**5, z**7
    return (
        z
        + (z3 + z) / (4 * df)
        + (5 * z5 + 16 * z3 + 3 * z) / (96 * df**2)
        + (3 * z7 + 19 * z5 + 17 * z3 - 15 * z) / (384 * df**3)
    )


def clone_run(run: RunT, branch: str) -> RunT:
    """A deep copy of ``run`` whose random streams are reseeded for ``branch``.

    The copy shares nothing mutable with the original; each named stream ``name`` restarts from
    ``stream_seed(seed, f"{name}/split/{branch}")``, so distinct branch labels give independent
    continuations and the same label always the same one.
    """
    sim = run.sim
    if sim.trace_hash():
        raise ConfigError(
            "hash_trace", "must be False for a run that is split: a trace hash cannot be copied"
        )
    try:
        twin = copy.deepcopy(run)
    except TypeError as exc:
        raise ConfigError(
            "run",
            "cannot be copied (generator processes cannot be deep-copied; build the model from "
            f"callbacks): {exc}",
        ) from None
    reseed_streams(twin.sim, branch)
    return twin


def reseed_streams(sim: Simulation, branch: str) -> None:
    """Reseed every named stream of ``sim`` in place for ``branch`` (see :func:`clone_run`)."""
    streams: dict[str, random.Random] = sim._streams
    for name in sorted(streams):
        streams[name].seed(stream_seed(sim.seed, f"{name}/split/{branch}"))


@dataclass(slots=True)
class _Tree:
    """What one root's tree produced."""

    weighted_hits: float = 0.0
    hits: int = 0
    trajectories: int = 0
    simulated: float = 0.0
    events: int = 0
    crossings: list[int] = field(default_factory=list)


def _advance(run: SplittableRun, until: float, step: float, next_level: float) -> float:
    """Run in steps of ``step`` until ``until`` or the importance reaches ``next_level``."""
    sim = run.sim
    while sim.now() < until:
        # Steps land on a fixed grid (multiples of ``step``) so copies check at the same times.
        target = min(until, (math.floor(sim.now() / step + 1e-9) + 1) * step)
        sim.run(until=target)
        if run.importance() >= next_level:
            break
    return sim.now()


def _grow_tree(build: RunBuilder, seed: int, plan: SplittingPlan) -> _Tree:
    tree = _Tree(crossings=[0] * len(plan.levels))
    root = build(seed)
    horizon = root.horizon
    # Depth-first, so memory holds one path of pending copies rather than a whole level.
    stack: list[tuple[SplittableRun, float, int, str, float]] = [(root, 1.0, 0, "r", 0.0)]
    tree.trajectories = 1
    while stack:
        run, weight, level, label, started = stack.pop()
        events_before = run.sim.events_run
        while level < len(plan.levels):
            _advance(run, horizon, plan.check_every, plan.levels[level])
            if run.sim.now() >= horizon:
                break
            crossed = level
            importance = run.importance()
            while crossed < len(plan.levels) and importance >= plan.levels[crossed]:
                tree.crossings[crossed] += 1
                crossed += 1
            copies = plan.splits ** (crossed - level)
            level = crossed
            if tree.trajectories + copies - 1 > plan.max_trajectories:
                continue  # over budget: go on unsplit (see SplittingPlan)
            weight /= copies
            branch_time = run.sim.now()
            # Pushed in reverse so copy 1 is explored first; the original continues as copy 0.
            for index in range(copies - 1, 0, -1):
                twin = clone_run(run, f"{label}.{index}")
                stack.append((twin, weight, level, f"{label}.{index}", branch_time))
            tree.trajectories += copies - 1
            label = f"{label}.0"
        if run.sim.now() < horizon:
            run.sim.run(until=horizon)
        tree.simulated += horizon - started
        tree.events += run.sim.events_run - events_before
        if run.occurred():
            tree.hits += 1
            tree.weighted_hits += weight
    return tree


def _grow_job(job: tuple[RunBuilder, int, SplittingPlan]) -> _Tree:
    return _grow_tree(*job)


def _plain_job(job: tuple[RunBuilder, int]) -> tuple[bool, float, int]:
    build, seed = job
    run = build(seed)
    run.sim.run(until=run.horizon)
    return run.occurred(), run.horizon, run.sim.events_run


def _map(function: Callable[[Any], Any], jobs: Sequence[Any], workers: int | None) -> list[Any]:
    if workers is not None:
        int_at_least("workers", workers, 1)
    if workers == 1 or len(jobs) <= 1:
        return [function(job) for job in jobs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(function, jobs, chunksize=max(1, len(jobs) // (4 * (workers or 2)))))


def estimate_by_splitting(
    build: RunBuilder, plan: SplittingPlan, *, seed: int = 0, workers: int | None = 1
) -> RareEstimate:
    """Estimate the probability of the event by fixed splitting without killing.

    Root ``j`` is run with seed ``seed + j``, like plain Monte Carlo run ``j``: a root that never
    crosses the first level is exactly that plain run. Same seed and plan, same estimate, with
    any number of ``workers`` (trees are independent and put back in root order).
    """
    trees: list[_Tree] = _map(
        _grow_job, [(build, seed + j, plan) for j in range(plan.roots)], workers
    )
    values = [tree.weighted_hits for tree in trees]
    mean = statistics.fmean(values)
    sd = statistics.stdev(values)
    std_error = sd / math.sqrt(len(values))
    half = t_quantile_975(len(values) - 1) * std_error
    horizon = build(seed).horizon
    return RareEstimate(
        method="splitting",
        probability=mean,
        ci95=(max(0.0, mean - half), min(1.0, mean + half)),
        std_error=std_error,
        roots=len(values),
        trajectories=sum(tree.trajectories for tree in trees),
        hits=sum(tree.hits for tree in trees),
        work_runs=sum(tree.simulated for tree in trees) / horizon,
        events=sum(tree.events for tree in trees),
        level_crossings=tuple(
            sum(tree.crossings[i] for tree in trees) for i in range(len(plan.levels))
        ),
        per_root=tuple(values),
    )


def estimate_by_monte_carlo(
    build: RunBuilder, runs: int, *, seed: int = 0, workers: int | None = 1
) -> RareEstimate:
    """Plain Monte Carlo over seeds ``seed .. seed + runs - 1`` with a Wilson 95 % interval."""
    int_at_least("runs", runs, 1)
    outcomes: list[tuple[bool, float, int]] = _map(
        _plain_job, [(build, seed + j) for j in range(runs)], workers
    )
    hits = sum(1 for occurred, _, _ in outcomes if occurred)
    p = hits / runs
    return RareEstimate(
        method="monte_carlo",
        probability=p,
        ci95=wilson_interval(hits, runs),
        std_error=math.sqrt(p * (1 - p) / runs),
        roots=runs,
        trajectories=runs,
        hits=hits,
        work_runs=float(runs),
        events=sum(events for _, _, events in outcomes),
        per_root=tuple(1.0 if occurred else 0.0 for occurred, _, _ in outcomes),
    )


def describe(estimate: RareEstimate, params: Mapping[str, float] | None = None) -> str:
    """One human-readable line for an estimate."""
    low, high = estimate.ci95
    text = (
        f"{estimate.method}: p = {estimate.probability:.3g} "
        f"[{low:.3g}, {high:.3g}] from {estimate.trajectories} trajectories, "
        f"{estimate.hits} hits, cost {estimate.work_runs:.1f} runs"
    )
    if params:
        text += " at " + ", ".join(f"{k}={v:g}" for k, v in params.items())
    return text
