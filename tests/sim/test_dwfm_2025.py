"""dwfm-2025: the lease queue collapses by itself, and each fix keeps it from collapsing."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from statistics import fmean

import pytest

from stormproof.errors import ConfigError
from stormproof.policies.admission import QueueLimit
from stormproof.policies.backoff import NoBackoff
from stormproof.policies.deadline import Deadline
from stormproof.policies.retry import RetryPolicy
from stormproof.sim.experiment import ExperimentResult, run_experiment
from stormproof.sim.kernel import Simulation
from stormproof.sim.parts.lease import DwfmConfig, DwfmFleet, HostControls
from stormproof.sim.parts.workqueue import DONE, DROPPED, WASTED, BatchQueue, WorkBatch
from stormproof.sim.scenarios.dwfm_2025 import LEASES_BACK_S, Dwfm2025

#: Two hosts of 1,000 droplets: about 0.1 s a run.
SMALL = {"droplets": 2000}
SEEDS = [0, 1, 2]
FIXES = (
    "queue_admission",
    "backoff_budget",
    "drop_expired",
    "adaptive_lifo",
    "bounded_concurrency",
)


@pytest.fixture(scope="module")
def small() -> ExperimentResult:
    scenario = Dwfm2025()
    return run_experiment(
        scenario, scenario.resolve(SMALL), list(scenario.policies), SEEDS, workers=1
    )


def _mean(result: ExperimentResult, policy: str, metric: str) -> float:
    return fmean(run.metrics[metric] for run in result.policies[policy].results)


def test_every_parameter_has_a_source_and_the_policy_names_are_stable() -> None:
    scenario = Dwfm2025()
    assert scenario.policies[:2] == ("no_fix", "as_happened")
    assert set(scenario.policies) == {"no_fix", "as_happened", "all_fixes", *FIXES}
    for param in scenario.params:
        assert param.source, param.name


def test_no_fix_collapses_and_stays_stuck(small: ExperimentResult) -> None:
    summary = small.policies["no_fix"]
    assert summary.stuck_runs == len(SEEDS)
    for run in summary.results:
        assert math.isnan(run.metrics["time_to_recover_s"])
        assert run.metrics["leases_established_fraction"] < 0.05
        # Timed-out attempts are queued again while their stale copies still cost work.
        assert run.metrics["amplification"] > 100
        assert run.metrics["wasted_work_fraction"] > 0.9
        assert run.metrics["insufficient_capacity_errors"] > 0
    # The JSON form says "never" as null.
    assert summary.to_json()["metrics"]["time_to_recover_s"] is None


@pytest.mark.parametrize("policy", [*FIXES, "all_fixes"])
def test_each_fix_prevents_the_collapse_without_operators(
    small: ExperimentResult, policy: str
) -> None:
    assert small.policies[policy].stuck_runs == 0
    for fixed, broken in zip(
        small.policies[policy].results, small.policies["no_fix"].results, strict=True
    ):
        assert fixed.metrics["leases_established_fraction"] == 1.0
        # Within an hour of DynamoDB's return (report: three hours, with operators).
        assert fixed.metrics["time_to_recover_s"] < 3600
        assert fixed.metrics["amplification"] < 5
        assert fixed.metrics["wasted_work_fraction"] < 0.1
        assert fixed.metrics["impact_minutes"] < broken.metrics["impact_minutes"]
        assert (
            fixed.metrics["insufficient_capacity_errors"]
            < broken.metrics["insufficient_capacity_errors"] / 5
        )


def test_admission_and_bounded_concurrency_waste_nothing(small: ExperimentResult) -> None:
    for policy in ("queue_admission", "bounded_concurrency"):
        for run in small.policies[policy].results:
            assert run.metrics["amplification"] == 1.0  # no attempt ever timed out
            assert run.metrics["lease_timeouts"] == 0


def test_as_happened_recovers_on_the_reports_timeline(small: ExperimentResult) -> None:
    for run in small.policies["as_happened"].results:
        assert not run.stuck
        recovered_at = 9420 + run.metrics["time_to_recover_s"]
        # After the 4:14 AM throttle and restarts, about the report's 5:28 AM.
        assert 15960 < recovered_at <= LEASES_BACK_S + 1800
        # Leases lapsed almost everywhere first ("slowly started to time out").
        assert run.metrics["min_leases_fraction"] < 0.15
        # The request throttle stays until 11:23 AM: "request limit exceeded" errors.
        assert run.metrics["request_limit_errors"] > 0


def test_default_scale_run_recovers_near_5_28_am() -> None:
    scenario = Dwfm2025()
    run = scenario.run(scenario.resolve(), "as_happened", 0)
    assert abs(9420 + run.metrics["time_to_recover_s"] - LEASES_BACK_S) < 1200


def test_same_seed_same_trace_and_series() -> None:
    scenario = Dwfm2025()
    params = scenario.resolve(SMALL)
    first = scenario.run(params, "no_fix", 5, series=True)
    again = scenario.run(params, "no_fix", 5, series=True)
    assert first.trace_hash == again.trace_hash
    assert first.metrics == again.metrics or all(
        (math.isnan(a) and math.isnan(b)) or a == b
        for a, b in zip(first.metrics.values(), again.metrics.values(), strict=True)
    )
    assert first.series == again.series
    assert scenario.run(params, "no_fix", 6).trace_hash != first.trace_hash
    minutes = math.ceil(params["horizon_s"] / 60)
    assert len(first.series["leased_fraction"]) == minutes
    assert not scenario.run(params, "no_fix", 5).series


def test_trace_hash_is_the_same_in_another_process() -> None:
    scenario = Dwfm2025()
    here = scenario.run(scenario.resolve(SMALL), "all_fixes", 3).trace_hash
    code = (
        "from stormproof.sim.scenarios.dwfm_2025 import Dwfm2025\n"
        "s = Dwfm2025()\n"
        f"print(s.run(s.resolve({SMALL!r}), 'all_fixes', 3).trace_hash)\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "4242"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == here


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"droplets": 10, "droplets_per_host": 100}, "droplets"),
        ({"throttle_at_s": 60000}, "throttle_at_s"),
        ({"throttle_at_s": 100}, "throttle_at_s"),
        ({"admission_soft_queue": 400}, "admission_soft_queue"),
        ({"backoff_cap_s": 10}, "backoff_cap_s"),
        ({"codel_target_s": 500}, "codel_target_s"),
        ({"step_s": 200}, "step_s"),
        ({"droplets": 1.5}, "droplets"),
        ({"nope": 1}, "nope"),
    ],
)
def test_bad_parameters_name_the_field(overrides: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        Dwfm2025().resolve(overrides)
    assert field in str(info.value)


def test_unknown_policy_lists_the_valid_ones() -> None:
    scenario = Dwfm2025()
    with pytest.raises(ConfigError, match="no_fix"):
        scenario.run(scenario.resolve(SMALL), "hope", 0)


def test_batch_queue_serves_stale_work_as_waste_unless_deadline_aware() -> None:
    for drop in (False, True):
        queue = BatchQueue((2.0,))
        queue.push(WorkBatch(0.0, 5, 0, deadline=Deadline(10.0)))
        queue.push(WorkBatch(5.0, 5, 0, deadline=Deadline(15.0)))
        expired = queue.expire(12.0)
        assert [b.count for b in expired] == [5]
        assert queue.stale_items == 5 and queue.length == 10
        outcomes: list[tuple[int, int]] = []

        def record(
            batch: WorkBatch, n: int, outcome: int, seen: list[tuple[int, int]] = outcomes
        ) -> None:
            seen.append((n, outcome))

        left = queue.serve(12.0, 11.0, record, drop_expired=drop)
        if drop:
            # The stale batch costs nothing; the live one gets all five units' worth.
            assert outcomes == [(5, DROPPED), (5, DONE)]
            assert left == pytest.approx(1.0)
        else:
            assert outcomes == [(5, WASTED)]
            assert left == pytest.approx(1.0)  # a live item costs 2 > 1 left
        assert queue.stale_items == 0


def test_fleet_part_keeps_leases_with_no_trigger() -> None:
    sim = Simulation(0)
    config = DwfmConfig(
        droplets_per_host=200,
        host_rate=8.0,
        establish_cost=3.0,
        check_interval=300.0,
        attempt_timeout=120.0,
        lapse_mean=3600.0,
        slowdown_knee=2000.0,
        slowdown_cap=4.0,
        api_rate=0.3,
        step=20.0,
    )
    fleet = DwfmFleet(
        sim,
        config,
        3,
        lambda i: HostControls(
            retry=RetryPolicy(max_attempts=None, backoff=NoBackoff()), admission=QueueLimit(50)
        ),
        launch_rate=0.5,
        horizon=3600.0,
    )
    fleet.start()
    sim.run(until=3600.0)
    # Normal operation: checks keep up, nothing lapses, launches succeed.
    assert fleet.leased == 600
    assert fleet.metrics.total("insufficient_capacity") == 0
    assert fleet.metrics.total("launch_ok") == fleet.metrics.total("launches") > 0
    with pytest.raises(ConfigError, match="step"):
        DwfmConfig(
            droplets_per_host=1,
            host_rate=1.0,
            establish_cost=1.0,
            check_interval=1.0,
            attempt_timeout=1.0,
            lapse_mean=1.0,
            slowdown_knee=1.0,
            slowdown_cap=1.0,
            api_rate=0.0,
            step=2.0,
        )
