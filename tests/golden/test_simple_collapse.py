"""Golden test: the simple-collapse retry storm (../shared/golden, simple-collapse).

Stuck counts over 20 seeds must land within +-4 of the published ones; no backoff must stick at a
5 s spike for a clear majority of seeds, backoff with full jitter for none, and 1 s and 3 s spikes
never.
"""

from __future__ import annotations

from functools import cache

import pytest
from test_occ_jitter import read_golden

from stormproof.sim import scenarios
from stormproof.sim.experiment import ExperimentResult, run_experiment

ROWS = read_golden("simple-collapse.csv")
SEEDS = list(range(20))


@cache
def experiment(spike_s: int) -> ExperimentResult:
    scenario = scenarios.get("simple-collapse")
    golden_policies = ["no_backoff", "backoff_full_jitter"]
    return run_experiment(
        scenario, scenario.resolve({"spike_s": spike_s}), golden_policies, SEEDS, workers=2
    )


@pytest.mark.parametrize("row", ROWS, ids=[f"{r['spike_s']}s-{r['policy']}" for r in ROWS])
def test_stuck_count_within_four_of_golden(row: dict[str, str]) -> None:
    summary = experiment(int(row["spike_s"])).policies[row["policy"]]
    assert abs(summary.stuck_runs - int(row["stuck_of_20"])) <= 4


def test_qualitative_outcomes() -> None:
    assert experiment(5).policies["no_backoff"].stuck_runs > 12  # a clear majority of 20
    for spike in (1, 3, 4, 5):
        assert experiment(spike).policies["backoff_full_jitter"].stuck_runs == 0
    for spike in (1, 3):
        assert experiment(spike).policies["no_backoff"].stuck_runs == 0


def test_stuck_runs_are_a_storm_of_resends() -> None:
    summary = experiment(5).policies["no_backoff"]
    stuck = [r for r in summary.results if r.stuck]
    healthy = experiment(5).policies["backoff_full_jitter"].results
    assert stuck, "expected stuck runs at a 5 s spike"
    # A stuck run sends each request about three times; a healthy one about once.
    assert min(r.metrics["amplification"] for r in stuck) > 2.5
    assert max(r.metrics["amplification"] for r in healthy) < 1.2
    assert all(r.metrics["wasted_work_fraction"] > 0.5 for r in stuck)
