"""Golden test: Brooker's optimistic-concurrency contention model (../shared/golden, occ-jitter).

The scenario runs on stormproof's kernel with stormproof's backoff objects; the published means
must be reproduced within +-15 % per cell and the orderings must hold exactly.
"""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path

import pytest

from stormproof.sim import scenarios
from stormproof.sim.experiment import ExperimentResult, run_experiment

GOLDEN = Path(__file__).resolve().parents[3] / "shared" / "golden"
RUNS = 100


def read_golden(name: str) -> list[dict[str, str]]:
    """Rows of a golden CSV beside the project (comment lines start with '#')."""
    with (GOLDEN / name).open() as handle:
        return list(csv.DictReader(line for line in handle if not line.startswith("#")))


ROWS = read_golden("brooker-occ-jitter.csv")


@cache
def experiment(clients: int) -> ExperimentResult:
    scenario = scenarios.get("occ-jitter")
    return run_experiment(
        scenario,
        scenario.resolve({"clients": clients}),
        scenario.policies,
        range(RUNS),  # type: ignore[arg-type]
        workers=2,
    )


@pytest.mark.parametrize("row", ROWS, ids=[f"{r['clients']}-{r['policy']}" for r in ROWS])
def test_cell_matches_golden_within_tolerance(row: dict[str, str]) -> None:
    metrics = experiment(int(row["clients"])).policies[row["policy"]].metrics
    assert metrics["mean_completion_ms"] == pytest.approx(
        float(row["mean_completion_ms"]), rel=0.15
    )
    assert metrics["mean_calls"] == pytest.approx(float(row["mean_write_calls"]), rel=0.15)


def test_orderings_at_100_clients() -> None:
    policies = experiment(100).policies
    ms = {name: s.metrics["mean_completion_ms"] or 0.0 for name, s in policies.items()}
    calls = {name: s.metrics["mean_calls"] or 0.0 for name, s in policies.items()}
    assert calls["full_jitter"] < 0.5 * calls["exponential"]
    assert ms["exponential"] > 8 * ms["full_jitter"]
    assert ms["equal_jitter"] > ms["full_jitter"]
    assert calls["decorrelated"] > calls["full_jitter"]
    assert ms["none"] == min(ms.values())
    assert calls["none"] == max(calls.values())
