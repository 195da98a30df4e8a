"""Sweep throughput: runs per second in-process, on the local process pool and on local Ray.

Workload: simple-collapse (the golden model) with the default parameters, spike_s = 1..6 s,
policies no_backoff and backoff_full_jitter, ``--seeds`` seeds: every run is a full 80 s
simulation (30-70 ms of CPU each). Measured, each on the same plan:

* ``serial``: one process, no pool -- the cost of the runs themselves;
* ``local``: the process pool with ``--workers`` processes and the default batch size;
* ``ray``: a local Ray instance with ``--workers`` CPUs and the default batch size, and ``ray/1``
  with one run per task, to show what batching saves. Ray's start-up is timed apart.

Overhead is measured directly too: empty tasks (a batch of zero runs) through each backend give
the fixed cost per task, and the pickled size of a batch and of its results gives the data
volume per task (what a multi-node cluster sends over the network). Every backend must produce
the same digest of all runs; the script says PASS or FAIL.

    python benchmarks/sweep.py [--seeds N] [--workers W] [--repeats R] [--quick] [--no-ray] [--json]

Each case is run ``--repeats`` times, interleaved, and the median counts; the 1-minute load
average before and after is printed, because on a shared machine other work skews the parallel
cases most.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import resource
import statistics
import sys
import time
from typing import Any

from stormproof.sim import scenarios
from stormproof.sim.backends import LocalBackend, RayBackend
from stormproof.sim.backends.base import Backend, Batch, run_batch
from stormproof.sim.sweep import (
    SweepPlan,
    SweepResult,
    batches,
    default_batch_size,
    parse_axis,
    plan_sweep,
    run_sweep,
)

POLICIES = ["no_backoff", "backoff_full_jitter"]


def make_plan(seeds: int, quick: bool) -> SweepPlan:
    """The benchmark's sweep; ``quick`` keeps three spike lengths."""
    grid = "spike_s=3:5:1" if quick else "spike_s=1:6:1"
    return plan_sweep(scenarios.get("simple-collapse"), [parse_axis(grid)], POLICIES, range(seeds))


def _cpu() -> tuple[float, float]:
    """CPU seconds (user + system) of this process and of its finished child processes."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def timed_sweep(
    plan: SweepPlan, backend: Backend, batch_size: int | None = None
) -> tuple[float, float, float, SweepResult]:
    """Wall seconds for the whole sweep, CPU seconds of this process and of its (pool) children,
    and the result. CPU time does not depend on what else the machine runs; wall time does."""
    own, children = _cpu()
    start = time.perf_counter()
    result = run_sweep(plan, backend, batch_size=batch_size)
    wall = time.perf_counter() - start
    own_after, children_after = _cpu()
    return wall, own_after - own, children_after - children, result


def task_overhead_ms(plan: SweepPlan, backend: Backend, tasks: int) -> float:
    """Milliseconds per empty task (no runs): scheduling, pickling and the round trip."""
    empty = [Batch(plan.scenario, ()) for _ in range(tasks)]
    start = time.perf_counter()
    for _ in backend.map_unordered(run_batch, empty):
        pass
    return (time.perf_counter() - start) / tasks * 1000


def data_volume(plan: SweepPlan, size: int) -> dict[str, float]:
    """Pickled bytes sent to and returned from a worker for one batch of ``size`` runs."""
    batch = batches(plan, plan.runs()[:size], size)[0]
    sent = len(pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL))
    returned = len(pickle.dumps(run_batch(batch), protocol=pickle.HIGHEST_PROTOCOL))
    return {
        "batch_runs": size,
        "sent_bytes": sent,
        "returned_bytes": returned,
        "bytes_per_run": (sent + returned) / size,
    }


def main() -> int:
    """Run the benchmark; print a table (or JSON) and PASS/FAIL for identical results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds per point and policy")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--quick", action="store_true", help="3 spike lengths, 3 seeds")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats (median)")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray measurements")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    seeds = 3 if args.quick else args.seeds
    repeats = 1 if args.quick else args.repeats
    load_before = os.getloadavg()[0]
    plan = make_plan(seeds, args.quick)
    rows: list[dict[str, Any]] = []
    digests: dict[str, str] = {}

    def record(name: str, seconds: float, batch: int, note: str) -> None:
        driver = statistics.median(own for own, _ in cpu[name])
        workers = statistics.median(children for _, children in cpu[name])
        rows.append(
            {
                "backend": name,
                "runs": plan.total_runs,
                "seconds": round(seconds, 3),
                # Ray's workers are not our children: only the driver's CPU is seen for Ray.
                "driver_cpu_ms_per_run": round(1000 * driver / plan.total_runs, 2),
                "worker_cpu_ms_per_run": None
                if name.startswith("ray")
                else round(1000 * workers / plan.total_runs, 2),
                "runs_per_s": round(plan.total_runs / seconds, 1),
                "batch_size": batch,
                "note": note,
            }
        )

    pool = LocalBackend(args.workers)
    batch = default_batch_size(plan.total_runs, pool.parallelism)
    start = time.perf_counter()
    task_overhead_ms(plan, pool, args.workers)  # one empty task per worker: the pool's start-up
    pool_start = time.perf_counter() - start
    overhead = {"local": task_overhead_ms(plan, pool, 200)}
    cases: list[tuple[str, Backend, int | None, str]] = [
        ("serial", LocalBackend(1), None, "in this process"),
        ("local", pool, None, f"{args.workers} processes, pool start included"),
    ]
    ray_start = None
    ray: Any = None
    if not args.no_ray:
        import ray

        start = time.perf_counter()
        ray.init(num_cpus=args.workers, include_dashboard=False, logging_level="ERROR")
        ray_start = time.perf_counter() - start
        on_ray = RayBackend()
        task_overhead_ms(plan, on_ray, 50)  # warm the worker processes up first
        overhead["ray"] = task_overhead_ms(plan, on_ray, 500)
        cases += [
            ("ray", on_ray, None, f"{args.workers} CPUs, start-up excluded"),
            ("ray/1", on_ray, 1, "one run per task"),
        ]
    # Interleaved repeats, median per case: a load spike on a shared machine hits every case.
    times: dict[str, list[float]] = {name: [] for name, *_ in cases}
    cpu: dict[str, list[tuple[float, float]]] = {name: [] for name, *_ in cases}
    try:
        for _ in range(repeats):
            for name, backend, size, _note in cases:
                seconds, own, children, result = timed_sweep(plan, backend, size)
                times[name].append(seconds)
                cpu[name].append((own, children))
                digests.setdefault(name, result.digest())
                if digests[name] != result.digest():
                    digests[name] = "differs between repeats"
    finally:
        if ray is not None:
            ray.shutdown()
    for name, backend, size, note in cases:
        seconds = statistics.median(times[name])
        record(
            name, seconds, size or default_batch_size(plan.total_runs, backend.parallelism), note
        )
    serial_rate = plan.total_runs / statistics.median(times["serial"])
    identical = len(set(digests.values())) == 1
    summary: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        },
        "plan": {
            "scenario": plan.scenario.name,
            "grid": {a.name: list(a.values) for a in plan.axes},
            "policies": list(plan.policies),
            "seeds": seeds,
            "runs": plan.total_runs,
        },
        "repeats": repeats,
        "rows": rows,
        "serial_ms_per_run": round(1000 / serial_rate, 2),
        "serial_cpu_ms_per_run": rows[0]["driver_cpu_ms_per_run"],
        "task_overhead_ms": {k: round(v, 3) for k, v in overhead.items()},
        "pool_start_s": round(pool_start, 3),
        "ray_start_s": None if ray_start is None else round(ray_start, 2),
        "data_volume": data_volume(plan, batch),
        "identical_results": identical,
        "digest": next(iter(digests.values())),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"{plan.scenario.name}: {plan.total_runs} runs "
            f"({len(plan.points)} points x {len(plan.policies)} policies x {seeds} seeds), "
            f"{os.cpu_count()} CPUs, Python {platform.python_version()}"
        )
        load = summary["machine"]["load_average_1min"]
        print(
            f"median of {repeats} interleaved repeat(s); 1-min load average {load[0]} -> {load[1]}"
        )
        print(
            f"{'backend':8} {'runs/s':>8} {'seconds':>8} {'batch':>6} "
            f"{'driver CPU/run':>15} {'worker CPU/run':>15}  note"
        )
        for row in rows:
            worker = row["worker_cpu_ms_per_run"]
            print(
                f"{row['backend']:8} {row['runs_per_s']:8.1f} {row['seconds']:8.2f} "
                f"{row['batch_size']:6} {row['driver_cpu_ms_per_run']:12.2f} ms "
                f"{'n/a' if worker is None else f'{worker:.2f}':>12} ms  {row['note']}"
            )
        volume = summary["data_volume"]
        print(
            f"serial cost per run: {summary['serial_ms_per_run']} ms wall, "
            f"{summary['serial_cpu_ms_per_run']} ms CPU"
        )
        print(
            "per empty task: "
            + ", ".join(f"{k} {v:.2f} ms" for k, v in summary["task_overhead_ms"].items())
        )
        print(f"process pool start-up ({args.workers} processes): {pool_start:.3f} s")
        if ray_start is not None:
            print(f"ray.init (local, {args.workers} CPUs): {ray_start:.2f} s")
        print(
            f"data per task of {volume['batch_runs']} runs: {volume['sent_bytes']} B sent, "
            f"{volume['returned_bytes']} B returned ({volume['bytes_per_run']:.0f} B per run)"
        )
        print(f"{'PASS' if identical else 'FAIL'}: identical results on every backend")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
