"""lambda-2025: without priorities sync callers pay; shedding async protects them, then drains."""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
from statistics import fmean

import pytest

from stormproof.errors import ConfigError
from stormproof.policies.admission import PriorityShedder
from stormproof.sim.experiment import ExperimentResult, run_experiment
from stormproof.sim.kernel import Simulation
from stormproof.sim.metrics import BucketCounters
from stormproof.sim.parts.worker_fleet import (
    InvocationClass,
    WorkerFleet,
    mixture_percentile,
    poisson,
)
from stormproof.sim.scenarios.lambda_2025 import Lambda2025, StepCapacity

SEEDS = [0, 1, 2]
THROTTLE_AT = 1800.0
RESTORED_AT = 15780.0  # 11:27 AM
BACKLOGS_DONE_AT = 25860.0  # 2:15 PM


@pytest.fixture(scope="module")
def result() -> ExperimentResult:
    scenario = Lambda2025()
    return run_experiment(
        scenario, scenario.resolve(), list(scenario.policies), SEEDS, workers=1, series=True
    )


def _mean(result: ExperimentResult, policy: str, metric: str) -> float:
    return fmean(run.metrics[metric] for run in result.policies[policy].results)


def test_policies_and_every_parameter_has_a_source() -> None:
    scenario = Lambda2025()
    assert scenario.name == "lambda-2025"
    assert scenario.policies == (
        "no_fix",
        "as_happened",
        "priority_shedding",
        "poller_backoff",
        "all_fixes",
    )
    for param in scenario.params:
        assert param.source, param.name


def test_without_priorities_sync_callers_are_throttled_and_slow(result: ExperimentResult) -> None:
    for run in result.policies["no_fix"].results:
        assert run.metrics["sync_error_rate"] > 0.05
        assert run.metrics["sync_latency_p99_s"] > 10.0
        assert run.metrics["impact_minutes"] > 150
        # The pollers keep the queued work flowing: it is the sync callers who pay.
        assert run.metrics["async_max_age_s"] < 600


def test_priority_shedding_protects_sync_on_the_same_seeds(result: ExperimentResult) -> None:
    for policy in ("priority_shedding", "all_fixes"):
        for base, fixed in zip(
            result.policies["no_fix"].results, result.policies[policy].results, strict=True
        ):
            assert fixed.metrics["sync_error_rate"] < 0.001
            assert fixed.metrics["sync_latency_p99_s"] < base.metrics["sync_latency_p99_s"] / 3
            assert fixed.metrics["impact_minutes"] < base.metrics["impact_minutes"] / 3
            # The price: async work waits, then drains once capacity is back.
            assert fixed.metrics["async_backlog_peak"] > 10_000
            assert RESTORED_AT < fixed.metrics["async_drain_time_s"] < 28800
            assert fixed.metrics["recovered"] == 1.0
        assert result.policies[policy].stuck_runs == 0


def test_poller_backoff_alone_cuts_sync_errors(result: ExperimentResult) -> None:
    assert (
        _mean(result, "poller_backoff", "sync_error_rate")
        < _mean(result, "no_fix", "sync_error_rate") / 2
    )


def test_as_happened_in_the_reports_order(result: ExperimentResult) -> None:
    for run in result.policies["as_happened"].results:
        errors = run.series["sync_error_rate"]
        capacity = run.series["capacity"]
        throttled = int(THROTTLE_AT // 60)
        # Sync errors before the throttle, (nearly) none once async and ESM are throttled.
        assert fmean(errors[10:throttled]) > 0.05
        assert fmean(errors[throttled + 1 : int(RESTORED_AT // 60)]) < 0.01
        # Capacity back by 11:27 AM, backlogs processed afterwards, near 2:15 PM.
        assert capacity[int(RESTORED_AT // 60) + 1] == pytest.approx(20.0)
        drained = run.metrics["async_drain_time_s"]
        assert drained > RESTORED_AT
        assert abs(drained - BACKLOGS_DONE_AT) < 3600
        assert run.metrics["impact_minutes"] < _mean(result, "no_fix", "impact_minutes")


def test_same_seed_same_trace_and_series() -> None:
    scenario = Lambda2025()
    params = scenario.resolve({"horizon_s": 7200})
    first = scenario.run(params, "priority_shedding", 4, series=True)
    again = scenario.run(params, "priority_shedding", 4, series=True)
    assert first.trace_hash == again.trace_hash
    assert first.metrics == again.metrics
    assert first.series == again.series
    assert len(first.series["backlog"]) == 120
    assert scenario.run(params, "priority_shedding", 5).trace_hash != first.trace_hash
    assert scenario.run(params, "no_fix", 4).trace_hash != first.trace_hash


def test_trace_hash_is_the_same_in_another_process() -> None:
    scenario = Lambda2025()
    overrides = {"horizon_s": 7200}
    here = scenario.run(scenario.resolve(overrides), "all_fixes", 3).trace_hash
    code = (
        "from stormproof.sim.scenarios.lambda_2025 import Lambda2025\n"
        "s = Lambda2025()\n"
        f"print(s.run(s.resolve({overrides!r}), 'all_fixes', 3).trace_hash)\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "999"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == here


def test_poisson_uses_one_draw_and_has_the_right_mean() -> None:
    for mean in (0.5, 4.0, 80.0):
        rng = random.Random(1)
        draws = [poisson(rng, mean) for _ in range(20_000)]
        assert fmean(draws) == pytest.approx(mean, rel=0.03)
        check = random.Random(1)
        for _ in range(20_000):
            check.random()
        assert rng.random() == check.random()  # exactly one uniform per draw
    assert poisson(random.Random(0), 0.0) == 0


def test_mixture_percentile() -> None:
    # One exponential of mean 2: its 99th percentile is 2 ln 100.
    assert mixture_percentile([2.0], [5.0], 0.99) == pytest.approx(2 * math.log(100), rel=1e-6)
    assert math.isnan(mixture_percentile([1.0], [0.0], 0.5))
    with pytest.raises(ConfigError, match="q"):
        mixture_percentile([1.0], [1.0], 1.0)


def test_step_capacity() -> None:
    capacity = StepCapacity(20.0, 0.5, 100.0, 1000.0, 2000.0)
    assert capacity(0.0) == 20.0
    assert capacity(50.0) == pytest.approx(15.0)
    assert capacity(500.0) == pytest.approx(10.0)
    assert capacity(1500.0) == pytest.approx(15.0)
    assert capacity(2500.0) == 20.0


def _fleet(sim: Simulation, capacity: float, **kwargs: object) -> WorkerFleet:
    return WorkerFleet(
        sim,
        capacity=lambda now: capacity,
        sync_rate=5.0,
        queued=(InvocationClass("async", 2.0, 3.0), InvocationClass("background", 1.0, 3.0)),
        service_s=0.1,
        step_s=10.0,
        metrics=BucketCounters(60.0),
        horizon=3600.0,
        **kwargs,  # type: ignore[arg-type]
    )


def test_fleet_with_room_serves_everything() -> None:
    sim = Simulation(0)
    fleet = _fleet(sim, 20.0, shedder=PriorityShedder.sync_first())
    fleet.start()
    sim.run(until=3600.0)
    assert fleet.sync_offered > 15_000
    assert fleet.sync_rejected == 0.0
    assert fleet.backlog() < 100
    assert fleet.sync_latency_percentile(0.99) < 1.0


def test_fleet_priorities_shed_queued_work_first() -> None:
    shared_sim, priority_sim = Simulation(3), Simulation(3)
    shared = _fleet(shared_sim, 6.0)
    priority = _fleet(priority_sim, 6.0, shedder=PriorityShedder.sync_first())
    for fleet, sim in ((shared, shared_sim), (priority, priority_sim)):
        fleet.start()
        sim.run(until=3600.0)
    assert shared.sync_offered == priority.sync_offered  # the same arrivals
    assert shared.sync_rejected > 0.05 * shared.sync_offered
    assert priority.sync_rejected < 0.01 * priority.sync_offered
    assert priority.backlog() > shared.backlog()


def test_fleet_validation() -> None:
    sim = Simulation(0)
    with pytest.raises(ConfigError, match="shedder"):
        _fleet(sim, 5.0, shedder=PriorityShedder({"sync": 1.0, "async": 0.5}))
    with pytest.raises(ConfigError, match="queued"):
        WorkerFleet(
            sim,
            capacity=lambda now: 1.0,
            sync_rate=1.0,
            queued=(InvocationClass("a", 1.0), InvocationClass("a", 1.0)),
            service_s=0.1,
            step_s=1.0,
            metrics=BucketCounters(),
            horizon=10.0,
        )
    with pytest.raises(ConfigError, match="poll_factor"):
        InvocationClass("a", 1.0, 0.5)
    with pytest.raises(ConfigError, match="name"):
        _fleet(sim, 5.0).set_limiter("nope", None)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"capacity_lost_fraction": 1.5}, "capacity_lost_fraction"),
        ({"restore_done_s": 100}, "restore_done_s"),
        ({"shed_background_at": 0.9}, "shed_background_at"),
        ({"poll_factor": 0.5}, "poll_factor"),
        ({"no_such": 1}, "no_such"),
    ],
)
def test_bad_parameters_name_the_field(overrides: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        Lambda2025().resolve(overrides)
    assert field in str(info.value)
