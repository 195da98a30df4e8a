"""Experiments: a scenario over many seeds and several policies, with common random numbers.

Every policy is run on the same seeds, and a scenario draws its arrivals and triggers from named
streams that do not depend on the policy, so the policies face the same workload run for run
(common random numbers): differences between them are the policies' doing, not the dice's.

Runs are independent, so they are spread over a local process pool; the results are put back in
(policy, seed) order, so they are identical whatever the number of workers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from stormproof._validate import int_at_least
from stormproof.errors import ConfigError
from stormproof.sim.scenario import RunResult, Scenario
from stormproof.sim.stats import wilson_interval

__all__ = ["ExperimentResult", "PolicySummary", "run_experiment"]


@dataclass(frozen=True, slots=True)
class PolicySummary:
    """One policy's results over all seeds."""

    runs: int
    stuck_runs: int
    stuck_probability: float
    ci95: tuple[float, float]
    metrics: dict[str, float | None]
    trace_hashes: list[str]
    results: list[RunResult] = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        """The JSON form used by ``stormproof run --json``."""
        return {
            "runs": self.runs,
            "stuck_runs": self.stuck_runs,
            "stuck_probability": self.stuck_probability,
            "ci95": list(self.ci95),
            "metrics": {k: _json_number(v) for k, v in self.metrics.items()},
            "trace_hashes": self.trace_hashes,
        }


@dataclass(frozen=True, slots=True)
class ExperimentResult:
    """A scenario's results for each policy."""

    scenario: str
    params: dict[str, float]
    seeds: list[int]
    policies: dict[str, PolicySummary]

    def to_json(self) -> dict[str, Any]:
        """The JSON form used by ``stormproof run --json``."""
        return {
            "scenario": self.scenario,
            "params": self.params,
            "seeds": self.seeds,
            "policies": {name: summary.to_json() for name, summary in self.policies.items()},
        }


def _json_number(value: float | None) -> float | None:
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return value


def _run_one(job: tuple[Scenario, dict[str, float], str, int, bool]) -> RunResult:
    scenario, params, policy, seed, series = job
    return scenario.run(params, policy, seed, series=series)


def run_experiment(
    scenario: Scenario,
    params: Mapping[str, float],
    policies: Sequence[str],
    seeds: Sequence[int],
    *,
    workers: int | None = None,
    series: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ExperimentResult:
    """Run ``scenario`` for every policy and seed; summarize per policy.

    Args:
        scenario: what to run.
        params: resolved parameters (see :meth:`Scenario.resolve`).
        policies: policy names of the scenario.
        seeds: run seeds; every policy uses all of them.
        workers: process-pool size; ``1`` runs in this process; ``None`` uses the CPU count.
        series: keep per-bucket time series in each result (for reports).
        progress: called with ``(done, total)`` after each run.
    """
    if not policies:
        raise ConfigError("policies", "give at least one policy")
    for policy in policies:
        scenario.check_policy(policy)
    if len(set(policies)) != len(policies):
        raise ConfigError("policies", "each policy may be given once", list(policies))
    if not seeds:
        raise ConfigError("seeds", "give at least one seed")
    if workers is not None:
        int_at_least("workers", workers, 1)
    resolved = dict(params)
    jobs = [(scenario, resolved, policy, seed, series) for policy in policies for seed in seeds]
    results: list[RunResult] = []
    if workers == 1 or len(jobs) == 1:
        for job in jobs:
            results.append(_run_one(job))
            if progress is not None:
                progress(len(results), len(jobs))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            chunk = max(1, len(jobs) // (4 * (workers or 2)))
            for result in pool.map(_run_one, jobs, chunksize=chunk):
                results.append(result)
                if progress is not None:
                    progress(len(results), len(jobs))
    summaries: dict[str, PolicySummary] = {}
    for policy in policies:
        runs = [r for r in results if r.policy == policy]
        stuck = sum(1 for r in runs if r.stuck)
        summaries[policy] = PolicySummary(
            runs=len(runs),
            stuck_runs=stuck,
            stuck_probability=stuck / len(runs),
            ci95=wilson_interval(stuck, len(runs)),
            metrics=scenario.summarize(runs),
            trace_hashes=[r.trace_hash for r in runs],
            results=runs,
        )
    return ExperimentResult(scenario.name, resolved, list(seeds), summaries)
