"""Rare-event and analytic figures for docs/rare-events.md and docs/analytic.md.

Run: .venv/bin/python benchmarks/rare.py   (about 40 s on 2 cores)
"""

from __future__ import annotations

import math
import statistics
import time

from stormproof.sim.analytic import OrbitParams, OrbitSimulation
from stormproof.sim.analytic.ctmc import OrbitChain
from stormproof.sim.rare import (
    CollapseBuilder,
    SplittingPlan,
    describe,
    estimate_by_monte_carlo,
    estimate_by_splitting,
    t_quantile_975,
)

SHORT = {"spike_start": 10, "spike_s": 8, "horizon": 30, "late_start": 22}


def rare() -> None:
    points = [
        (66, SplittingPlan(levels=(190, 200), splits=2, roots=60)),
        (60, SplittingPlan(levels=(150, 158, 166, 174, 182, 190), splits=3, roots=40)),
    ]
    for spike_rate, plan in points:
        build = CollapseBuilder.from_overrides({**SHORT, "spike_rate": spike_rate})
        start = time.perf_counter()
        split = estimate_by_splitting(build, plan, seed=1000, workers=2)
        split_s = time.perf_counter() - start
        start = time.perf_counter()
        runs = math.ceil(split.work_runs) if spike_rate == 60 else 100
        mc = estimate_by_monte_carlo(build, runs, seed=1000, workers=2)
        mc_s = time.perf_counter() - start
        print(f"spike_rate={spike_rate}")
        print(f"  {describe(mc)}; {mc.events} events, {mc_s:.1f} s")
        print(f"  {describe(split)}; {split.events} events, {split_s:.1f} s")
        print(
            f"  level crossings {split.level_crossings}, relative error {split.relative_error:.2f}"
        )


def interval(values: list[float]) -> str:
    mean = statistics.fmean(values)
    half = t_quantile_975(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return f"{mean:.3f} [{mean - half:.3f}, {mean + half:.3f}]"


def analytic() -> None:
    params = OrbitParams()
    chain = OrbitChain(params)
    start = time.perf_counter()
    summary = chain.summarize(chain.stationary())
    print(f"chain: {chain.states} states, solved in {time.perf_counter() - start:.2f} s")
    print(
        f"  mean in server {summary.mean_in_server:.3f}, P(high) {summary.high_probability:.4f},"
        f" goodput {summary.goodput:.3f}/s, mean orbit {summary.mean_orbit:.3f},"
        f" mass at orbit bound {summary.at_bound:.1e}"
    )
    for timeout in ("exponential", "fixed"):
        runs = [
            OrbitSimulation(params, 300 + seed, timeout=timeout).run(100.0, 2500.0)  # type: ignore[arg-type]
            for seed in range(16)
        ]
        print(
            f"  simulator, {timeout} timeouts (16 x 2500 s): mean in server "
            f"{interval([r.mean_in_server for r in runs])}, P(high) "
            f"{interval([r.high_fraction for r in runs])}, goodput "
            f"{interval([r.goodput for r in runs])}"
        )
    spike = (0, 20, 10)
    after = chain.summarize(chain.transient(spike, 20.0))
    ends = [OrbitSimulation(params, seed, initial=spike).run(0.0, 20.0) for seed in range(600)]
    high = sum(1 for e in ends if e.end_in_server >= params.high_from) / len(ends)
    print(
        f"  20 s after a spike {spike}: chain P(high) {after.high_probability:.3f}, mean "
        f"{after.mean_in_server:.2f}; simulator (600 runs) P(high) {high:.3f}, mean "
        f"{interval([float(e.end_in_server) for e in ends])}"
    )


if __name__ == "__main__":
    rare()
    analytic()
