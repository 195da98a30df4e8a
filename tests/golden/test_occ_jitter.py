"""Golden test: Brooker's optimistic-concurrency contention model (../shared/golden, occ-jitter).

The model is re-implemented here on a bare heapq loop with stormproof's backoff schedules; the
point is that our Exponential / Jitter / Decorrelated formulas reproduce the published means and
orderings. Brooker writes ``base * 2**n`` with n from 1, so his base 5 ms is our base 10 ms for
the exponential kinds; decorrelated jitter starts from 5 ms in both.
"""

from __future__ import annotations

import csv
import heapq
import random
from functools import cache
from pathlib import Path

import pytest

from stormproof.policies.backoff import Backoff, Decorrelated, Exponential, Jitter, NoBackoff

GOLDEN = Path(__file__).resolve().parents[3] / "shared" / "golden"


def read_golden(name: str) -> list[dict[str, str]]:
    """Rows of a golden CSV beside the project (comment lines start with '#')."""
    with (GOLDEN / name).open() as handle:
        return list(csv.DictReader(line for line in handle if not line.startswith("#")))


MS = 0.001
CAP = 2000 * MS
POLICIES: dict[str, Backoff] = {
    "none": NoBackoff(),
    "exponential": Exponential(base=10 * MS, factor=2.0, cap=CAP, jitter=Jitter.NONE),
    "equal_jitter": Exponential(base=10 * MS, factor=2.0, cap=CAP, jitter=Jitter.EQUAL),
    "full_jitter": Exponential(base=10 * MS, factor=2.0, cap=CAP, jitter=Jitter.FULL),
    "decorrelated": Decorrelated(base=5 * MS, cap=CAP),
}
RUNS = 100

# Event kinds, in the order a client's cycle visits them.
READ_AT_SERVER, READ_REPLY, WRITE_AT_SERVER, WRITE_REPLY = range(4)


def run_once(clients: int, backoff: Backoff, rng: random.Random) -> tuple[float, int]:
    """One run: (completion time in s, write calls)."""

    def hop() -> float:
        return abs(rng.gauss(10 * MS, 2 * MS))

    version = 0
    writes = 0
    seq = 0
    queue: list[tuple[float, int, int, int, int]] = []  # (time, seq, kind, client, seen version)
    retries = [0] * clients
    previous: list[float | None] = [None] * clients
    for client in range(clients):
        seq += 1
        heapq.heappush(queue, (hop(), seq, READ_AT_SERVER, client, 0))
    now = 0.0
    while queue:
        now, _, kind, client, seen = heapq.heappop(queue)
        seq += 1
        if kind == READ_AT_SERVER:
            heapq.heappush(queue, (now + hop(), seq, READ_REPLY, client, version))
        elif kind == READ_REPLY:
            heapq.heappush(queue, (now + hop(), seq, WRITE_AT_SERVER, client, seen))
        elif kind == WRITE_AT_SERVER:
            writes += 1
            ok = seen == version
            if ok:
                version += 1
            heapq.heappush(queue, (now + hop(), seq, WRITE_REPLY, client, 1 if ok else 0))
        elif not seen:  # a failed write's reply: back off, then read again
            retries[client] += 1
            delay = backoff.delay(retries[client], previous[client], rng)
            previous[client] = delay
            heapq.heappush(queue, (now + delay + hop(), seq, READ_AT_SERVER, client, 0))
    return now, writes


@cache
def cell(clients: int, policy: str) -> tuple[float, float]:
    """Mean completion time (ms) and mean write calls over RUNS seeded runs."""
    total_time = 0.0
    total_writes = 0
    for run in range(RUNS):
        elapsed, writes = run_once(clients, POLICIES[policy], random.Random(f"occ-{clients}-{run}"))
        total_time += elapsed
        total_writes += writes
    return total_time / RUNS / MS, total_writes / RUNS


GOLDEN_ROWS = read_golden("brooker-occ-jitter.csv")


@pytest.mark.parametrize(
    "row", GOLDEN_ROWS, ids=[f"{r['clients']}-{r['policy']}" for r in GOLDEN_ROWS]
)
def test_cell_matches_golden_within_tolerance(row: dict[str, str]) -> None:
    mean_ms, mean_writes = cell(int(row["clients"]), row["policy"])
    expected_ms = float(row["mean_completion_ms"])
    expected_writes = float(row["mean_write_calls"])
    assert mean_ms == pytest.approx(expected_ms, rel=0.15)
    assert mean_writes == pytest.approx(expected_writes, rel=0.15)


def test_orderings_at_100_clients() -> None:
    ms = {policy: cell(100, policy)[0] for policy in POLICIES}
    calls = {policy: cell(100, policy)[1] for policy in POLICIES}
    assert calls["full_jitter"] < 0.5 * calls["exponential"]
    assert ms["exponential"] > 8 * ms["full_jitter"]
    assert ms["equal_jitter"] > ms["full_jitter"]
    assert calls["decorrelated"] > calls["full_jitter"]
    assert ms["none"] == min(ms.values())
    assert calls["none"] == max(calls.values())
