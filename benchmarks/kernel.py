"""des-mm1: stormproof's kernel side by side with SimPy and a bare heapq loop.

M/M/1 queue, arrival rate 0.9, service rate 1.0, 100,000 arrivals (../shared/golden/README.md).
Only the run itself is timed. Each implementation is run ``--repeats`` times; the median counts.

    python benchmarks/kernel.py [--arrivals N] [--repeats R] [--json]
"""

from __future__ import annotations

import argparse
import heapq
import json
import platform
import random
import statistics
import time
from collections.abc import Callable

from stormproof.sim import Simulation

ARRIVAL_RATE = 0.9
SERVICE_RATE = 1.0


def bare_heapq(arrivals: int, seed: int) -> float:
    """Arrival and departure events only: the practical ceiling for pure Python."""
    rng = random.Random(seed)
    expovariate = rng.expovariate
    queue: list[tuple[float, int, int]] = [(expovariate(ARRIVAL_RATE), 0, 0)]
    push, pop = heapq.heappush, heapq.heappop
    sequence = 1
    arrived = 0
    waiting = 0
    busy = False
    start = time.perf_counter()
    while queue:
        now, _, kind = pop(queue)
        if kind == 0:
            arrived += 1
            if arrived < arrivals:
                push(queue, (now + expovariate(ARRIVAL_RATE), sequence, 0))
                sequence += 1
            if busy:
                waiting += 1
            else:
                busy = True
                push(queue, (now + expovariate(SERVICE_RATE), sequence, 1))
                sequence += 1
        elif waiting:
            waiting -= 1
            push(queue, (now + expovariate(SERVICE_RATE), sequence, 1))
            sequence += 1
        else:
            busy = False
    return time.perf_counter() - start


def stormproof_kernel(arrivals: int, seed: int, *, hash_trace: bool = False) -> float:
    """The same model as callbacks on stormproof's kernel."""
    sim = Simulation(seed, hash_trace=hash_trace)
    rng = sim.rng("mm1")
    expovariate = rng.expovariate
    schedule = sim.schedule
    arrived = 0
    waiting = 0
    busy = False

    def arrive() -> None:
        nonlocal arrived, waiting, busy
        arrived += 1
        if arrived < arrivals:
            schedule(expovariate(ARRIVAL_RATE), arrive)
        if busy:
            waiting += 1
        else:
            busy = True
            schedule(expovariate(SERVICE_RATE), depart)

    def depart() -> None:
        nonlocal waiting, busy
        if waiting:
            waiting -= 1
            schedule(expovariate(SERVICE_RATE), depart)
        else:
            busy = False

    schedule(expovariate(ARRIVAL_RATE), arrive)
    start = time.perf_counter()
    sim.run()
    return time.perf_counter() - start


def simpy_model(arrivals: int, seed: int) -> float:
    """SimPy 4: one generator per customer, ``Resource(capacity=1)``."""
    import simpy

    env = simpy.Environment()
    server = simpy.Resource(env, capacity=1)
    rng = random.Random(seed)

    def customer() -> object:
        with server.request() as request:
            yield request
            yield env.timeout(rng.expovariate(SERVICE_RATE))

    def source() -> object:
        for _ in range(arrivals):
            yield env.timeout(rng.expovariate(ARRIVAL_RATE))
            env.process(customer())

    env.process(source())
    start = time.perf_counter()
    env.run()
    return time.perf_counter() - start


def interleaved(
    runs: dict[str, Callable[[int, int], float]], arrivals: int, repeats: int
) -> dict[str, list[float]]:
    """Customers/s of every implementation, run in turn round after round.

    Interleaving puts every implementation under the same drift of a noisy machine (frequency
    changes, neighbours), so per-round ratios are steadier than ratios of separate medians.
    """
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for seed in range(repeats):
        for name, run in runs.items():
            rates[name].append(arrivals / run(arrivals, seed))
    return rates


def machine() -> str:
    """A one-line description of the machine the figures come from."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import os

    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arrivals", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    args = parser.parse_args()
    runs: dict[str, Callable[[int, int], float]] = {
        "ours": stormproof_kernel,
        "ours_with_trace_hash": lambda n, s: stormproof_kernel(n, s, hash_trace=True),
        "heapq": bare_heapq,
    }
    try:
        import simpy  # noqa: F401

        runs["simpy"] = simpy_model
    except ImportError:
        pass
    rates = interleaved(runs, args.arrivals, args.repeats)
    median = {name: statistics.median(values) for name, values in rates.items()}

    def ratio(a: str, b: str) -> float | None:
        if b not in rates:
            return None
        return round(statistics.median(x / y for x, y in zip(rates[a], rates[b], strict=True)), 2)

    result = {
        "ours": round(median["ours"]),
        "ours_with_trace_hash": round(median["ours_with_trace_hash"]),
        "simpy": round(median["simpy"]) if "simpy" in median else None,
        "heapq": round(median["heapq"]),
        "ratio_vs_simpy": ratio("ours", "simpy"),
        "ratio_vs_heapq": ratio("ours", "heapq"),
        "hashed_ratio_vs_simpy": ratio("ours_with_trace_hash", "simpy"),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"des-mm1, {args.arrivals} arrivals, {args.repeats} interleaved rounds; {machine()}")
    print(f"  stormproof kernel        {median['ours']:12,.0f} customers/s (median)")
    print(f"  ... with trace hash      {median['ours_with_trace_hash']:12,.0f} customers/s")
    if "simpy" in median:
        print(f"  SimPy 4                  {median['simpy']:12,.0f} customers/s")
    print(f"  bare heapq loop          {median['heapq']:12,.0f} customers/s")
    print(f"  ratio vs SimPy           {result['ratio_vs_simpy']}x (median of per-round ratios)")
    print(f"  ratio vs bare heapq      {result['ratio_vs_heapq']}")
    print(f"  hashed ratio vs SimPy    {result['hashed_ratio_vs_simpy']}x")


if __name__ == "__main__":
    main()
