"""nlb-2025: flapping checks fail zones over; velocity control and panic mode keep capacity."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from statistics import fmean

import pytest

from stormproof.errors import ConfigError
from stormproof.policies.velocity import PanicThreshold, VelocityLimiter
from stormproof.sim.experiment import ExperimentResult, run_experiment
from stormproof.sim.kernel import Simulation
from stormproof.sim.metrics import BucketCounters
from stormproof.sim.parts.health_check import HealthCheckConfig, HealthCheckedFleet
from stormproof.sim.scenarios.nlb_2025 import Nlb2025, impact_timeline

SEEDS = [0, 1, 2]
DISABLED_AT = 14760.0  # 9:36 AM
NORMAL_AT = 18360.0  # 10:36 AM


@pytest.fixture(scope="module")
def result() -> ExperimentResult:
    scenario = Nlb2025()
    return run_experiment(
        scenario, scenario.resolve(), list(scenario.policies), SEEDS, workers=1, series=True
    )


def _mean(result: ExperimentResult, policy: str, metric: str) -> float:
    return fmean(run.metrics[metric] for run in result.policies[policy].results)


def test_policies_and_every_parameter_has_a_source() -> None:
    scenario = Nlb2025()
    assert scenario.name == "nlb-2025"
    assert scenario.policies == (
        "no_fix",
        "as_happened",
        "velocity_control",
        "panic_threshold",
        "all_fixes",
    )
    for param in scenario.params:
        assert param.source, param.name


def test_without_fixes_checks_flap_zones_fail_over_and_connections_fail(
    result: ExperimentResult,
) -> None:
    for run in result.policies["no_fix"].results:
        metrics = run.metrics
        assert metrics["flaps"] > 500
        assert metrics["az_failovers"] > 50
        # The checker falls behind by more than the 30 s after which results go stale.
        assert metrics["peak_check_delay_s"] > 30
        assert metrics["peak_capacity_removed_fraction"] > 0.3
        assert metrics["peak_connection_error_rate"] > 0.05
        assert metrics["impact_minutes"] > 60
        # Recovered only once propagation is normal again (10:36 AM).
        assert metrics["time_to_recover_s"] >= NORMAL_AT - 600


def test_velocity_control_keeps_capacity_on_the_same_seeds(result: ExperimentResult) -> None:
    for base, fixed in zip(
        result.policies["no_fix"].results,
        result.policies["velocity_control"].results,
        strict=True,
    ):
        # Common random numbers: the same launches and the same flapping checks...
        assert fixed.metrics["launches"] == base.metrics["launches"]
        assert fixed.metrics["flaps"] == base.metrics["flaps"]
        # ...but far less capacity taken out of DNS, and (nearly) no connection errors.
        assert fixed.metrics["velocity_refused"] > 0
        assert fixed.metrics["peak_capacity_removed_fraction"] <= 0.2
        assert (
            fixed.metrics["capacity_removed_node_hours"]
            < base.metrics["capacity_removed_node_hours"] / 5
        )
        assert fixed.metrics["impact_minutes"] < base.metrics["impact_minutes"] / 10
    for run in result.policies["all_fixes"].results:
        assert run.metrics["connection_error_rate"] < 1e-3


def test_panic_threshold_limits_the_depth_of_the_removal(result: ExperimentResult) -> None:
    assert _mean(result, "panic_threshold", "panics") > 0
    assert (
        _mean(result, "panic_threshold", "peak_connection_error_rate")
        < _mean(result, "no_fix", "peak_connection_error_rate") / 2
    )
    assert (
        _mean(result, "panic_threshold", "impact_minutes")
        < _mean(result, "no_fix", "impact_minutes") / 2
    )


def test_as_happened_recovers_when_failover_is_disabled_in_the_reports_order(
    result: ExperimentResult,
) -> None:
    for replay, base in zip(
        result.policies["as_happened"].results, result.policies["no_fix"].results, strict=True
    ):
        rate = replay.series["connection_error_rate"]
        # 5:30-6:21 AM: mild; after 6:21 AM the propagation delay grows and errors with it.
        assert fmean(rate[:51]) < fmean(rate[60:240])
        # Errors end within minutes of 9:36 AM, an hour before propagation is normal...
        assert DISABLED_AT - 600 <= replay.metrics["time_to_recover_s"] <= DISABLED_AT + 300
        assert max(rate[int(DISABLED_AT // 60) + 2 :]) == 0.0
        # ...while the system left to itself goes on until 10:36 AM.
        assert base.metrics["time_to_recover_s"] > replay.metrics["time_to_recover_s"] + 1800
        assert replay.metrics["impact_minutes"] < base.metrics["impact_minutes"]
        # Re-enabled at 2:09 PM, with propagation normal, nothing is removed again.
        removed = replay.series["removed_fraction"]
        assert max(removed[31140 // 60 :]) < 0.1


def test_never_recovers_when_propagation_stays_slow() -> None:
    scenario = Nlb2025()
    params = scenario.resolve(
        {"horizon_s": 10800, "propagation_normal_at_s": 20000, "propagation_slow_at_s": 0}
    )
    run = scenario.run(params, "no_fix", 0)
    assert math.isnan(run.metrics["time_to_recover_s"])
    assert run.stuck
    assert not scenario.run(params, "all_fixes", 0).stuck


def test_same_seed_same_trace_and_series() -> None:
    scenario = Nlb2025()
    params = scenario.resolve({"horizon_s": 7200})
    first = scenario.run(params, "panic_threshold", 4, series=True)
    again = scenario.run(params, "panic_threshold", 4, series=True)
    assert first.trace_hash == again.trace_hash
    assert first.metrics == again.metrics
    assert first.series == again.series
    assert len(first.series["connection_error_rate"]) == 120
    assert scenario.run(params, "panic_threshold", 5).trace_hash != first.trace_hash
    assert not scenario.run(params, "no_fix", 4).series  # only when asked


def test_trace_hash_is_the_same_in_another_process() -> None:
    scenario = Nlb2025()
    overrides = {"horizon_s": 7200}
    here = scenario.run(scenario.resolve(overrides), "all_fixes", 3).trace_hash
    code = (
        "from stormproof.sim.scenarios.nlb_2025 import Nlb2025\n"
        "s = Nlb2025()\n"
        f"print(s.run(s.resolve({overrides!r}), 'all_fixes', 3).trace_hash)\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "4242"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == here


def test_impact_timeline() -> None:
    assert impact_timeline([False] * 10, 600.0, 60.0) == (0.0, 0.0)
    assert impact_timeline([True, True, False, False, False], 300.0, 120.0) == (2.0, 120.0)
    impact, recover = impact_timeline([False, False, False, True, False], 300.0, 120.0)
    assert impact == 1.0
    assert math.isnan(recover)


def _fleet(
    sim: Simulation, config: HealthCheckConfig, ready: float, **kwargs: object
) -> HealthCheckedFleet:
    return HealthCheckedFleet(
        sim,
        config,
        ready_at=lambda now, rng: now + ready,
        launch_rate=0.05,
        metrics=BucketCounters(60.0),
        horizon=3600.0,
        **kwargs,  # type: ignore[arg-type]
    )


def test_fleet_with_propagated_instances_never_flaps() -> None:
    sim = Simulation(0)
    fleet = _fleet(sim, HealthCheckConfig(), ready=0.0)
    fleet.start()
    sim.run(until=3600.0)
    assert fleet.launches > 100
    assert fleet.flaps == 0
    assert fleet.az_failovers == 0
    assert fleet.routed_fraction() == 1.0
    assert fleet.metrics.total("errors") == 0.0


def test_fleet_fails_open_and_obeys_the_operator_switch() -> None:
    # Every check of a new node fails and nodes never propagate: all of them leave DNS.
    config = HealthCheckConfig(fail_prob=1.0, checker_rate=100.0)
    sim = Simulation(1)
    fleet = _fleet(sim, config, ready=1e9)
    fleet.start()
    sim.run(until=3000.0)
    assert fleet.flaps > 0
    # Route 53 answers with every record when none is healthy: never an empty answer.
    for b in range(config.balancers):
        per = fleet.per_balancer
        assert any(fleet.routed[b * per : (b + 1) * per])
    fleet.set_failover(False)
    sim.run(until=3020.0)
    assert fleet.routed_fraction() == 1.0


def test_fleet_uses_the_real_policy_objects() -> None:
    config = HealthCheckConfig(fail_prob=1.0, checker_rate=100.0)
    sim = Simulation(2)
    fleet = _fleet(
        sim,
        config,
        ready=1e9,
        velocity=lambda: VelocityLimiter(600.0, max_fraction=0.25),
        panic=lambda: PanicThreshold(0.5),
    )
    fleet.start()
    sim.run(until=590.0)
    assert fleet.velocity is not None and fleet.panic is not None
    assert all(isinstance(v, VelocityLimiter) for v in fleet.velocity)
    assert fleet.velocity_refused() > 0
    # At most a quarter of each balancer removed within the first 600 s window.
    assert fleet.peak_removed_fraction <= 0.25
    sim.run(until=3600.0)
    # The window slides, so more goes over the hour, but never below the panic threshold:
    # under half in DNS and DNS answers with every node.
    assert fleet.peak_removed_fraction <= 0.5
    assert fleet.panics() > 0


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"utilization": 0}, "utilization"),
        ({"fail_prob": 1.5}, "fail_prob"),
        ({"zones": 1}, "zones"),
        ({"tick_s": 20}, "tick_s"),
        ({"propagation_slow_at_s": 20000}, "propagation_slow_at_s"),
        ({"reenable_failover_at_s": 100}, "reenable_failover_at_s"),
        ({"nodes_per_zone": 2.5}, "nodes_per_zone"),
        ({"no_such": 1}, "no_such"),
    ],
)
def test_bad_parameters_name_the_field(overrides: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        Nlb2025().resolve(overrides)
    assert field in str(info.value)


def test_config_and_policy_validation() -> None:
    with pytest.raises(ConfigError, match="az_failover_below"):
        HealthCheckConfig(az_failover_below=2.0)
    with pytest.raises(ConfigError, match="checker_rate"):
        HealthCheckConfig(checker_rate=0.0)
    scenario = Nlb2025()
    with pytest.raises(ConfigError, match="velocity_control"):
        scenario.run(scenario.resolve(), "hope", 0)
