"""us-east-1-2025: the chain reproduces the report's order; the announced fixes stop it."""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stormproof.errors import ConfigError
from stormproof.policies.fencing import FencedRegister
from stormproof.sim.experiment import ExperimentResult, run_experiment
from stormproof.sim.kernel import Simulation
from stormproof.sim.parts.cascade import ImpairedCapacity, PropagationReadyTime, drain_time
from stormproof.sim.parts.propagation import PropagationManager
from stormproof.sim.parts.resolver import NegativeCachingResolver
from stormproof.sim.scenarios.us_east_1_2025 import (
    MILESTONES,
    SUBSYSTEMS,
    USEast12025,
    milestone_table,
)

SEEDS = [0, 1, 2]
#: Reduced scale: two DWFM hosts and half the NLB fleet (checker and replacements halved too,
#: so each node sees the same load); the timeline is the same.
SMALL = {
    "dwfm_droplets": 2000,
    "nlb_balancers": 2,
    "nlb_checker_rate": 4,
    "nlb_launch_rate_per_h": 30,
}


@pytest.fixture(scope="module")
def result() -> ExperimentResult:
    scenario = USEast12025()
    return run_experiment(
        scenario, scenario.resolve(SMALL), list(scenario.policies), SEEDS, workers=1
    )


def _runs(result: ExperimentResult, policy: str) -> list[dict[str, float]]:
    return [run.metrics for run in result.policies[policy].results]


def _total(result: ExperimentResult, policy: str, metric: str) -> float:
    return sum(metrics[metric] for metrics in _runs(result, policy))


def test_policy_names_and_sources() -> None:
    scenario = USEast12025()
    assert scenario.policies == (
        "no_fix",
        "as_happened",
        "fenced_dns",
        "queue_admission",
        "velocity_control",
        "priority_shedding",
        "downstream_fixes",
        "all_fixes",
    )
    names = [param.name for param in scenario.params]
    assert len(names) == len(set(names))
    for param in scenario.params:
        assert param.source, param.name
    by_name = {param.name: param for param in scenario.params}
    # Borrowed parameters cite the scenario they come from.
    assert "dwfm-2025" in by_name["dwfm_host_rate"].source
    assert "nlb-2025" in by_name["nlb_change_cost"].source
    assert "dwfm-2025" in by_name["dwfm_droplets"].source  # changed default, still cited


def test_as_happened_reproduces_the_reports_order(result: ExperimentResult) -> None:
    for metrics in _runs(result, "as_happened"):
        assert metrics["milestones_in_order"] == 1.0
        assert metrics["milestone_inversions"] == 0
        times = [metrics[name] for name, _, _ in MILESTONES]
        assert all(not math.isnan(t) for t in times)
        assert times == sorted(times)
        # Anchored to the report's clock where the report's actions set it.
        assert metrics["dns_restored_at_s"] == 9420.0
        assert abs(metrics["leases_back_at_s"] - 20400.0) < 1800
        assert abs(metrics["nlb_stable_at_s"] - 35280.0) < 1800
        assert abs(metrics["ec2_normal_at_s"] - 50520.0) < 600
        # Every link was hit, one after the other.
        for name in SUBSYSTEMS:
            assert metrics[f"{name}_impact_minutes"] > 0, name
        assert metrics["lambda_min_capacity_share"] < 0.5
    assert result.policies["as_happened"].stuck_runs == 0


def test_all_fixes_stop_the_chain_at_the_first_link(result: ExperimentResult) -> None:
    for fixed, replay in zip(_runs(result, "all_fixes"), _runs(result, "as_happened"), strict=True):
        assert fixed["dns_record_emptied"] == 0
        assert fixed["subsystems_impacted"] == 0
        assert fixed["impact_minutes"] == 0
        assert fixed["time_to_recover_s"] == 0
        assert replay["dns_record_emptied"] == 1
        assert replay["impact_minutes"] > 600  # most of the 14 h from 11:48 PM


def test_downstream_fixes_contain_an_empty_record(result: ExperimentResult) -> None:
    """Without fenced DNS the record still empties, but the chain stops at DWFM's repair."""
    for fixed, replay in zip(
        _runs(result, "downstream_fixes"), _runs(result, "as_happened"), strict=True
    ):
        assert fixed["dns_record_emptied"] == 1
        assert fixed["dynamodb_impact_minutes"] == replay["dynamodb_impact_minutes"]
        assert fixed["nlb_impact_minutes"] == 0
        assert fixed["lambda_impact_minutes"] == 0
        assert fixed["impact_minutes"] < replay["impact_minutes"] / 2


@pytest.mark.parametrize(
    ("policy", "links"),
    [
        ("fenced_dns", ("dynamodb",)),
        ("queue_admission", ("dwfm", "network")),
        ("velocity_control", ("nlb",)),
        ("priority_shedding", ("lambda",)),
    ],
)
def test_each_fix_cuts_its_own_links_impact(
    result: ExperimentResult, policy: str, links: tuple[str, ...]
) -> None:
    for link in links:
        fixed = _total(result, policy, f"{link}_impact_minutes")
        replay = _total(result, "as_happened", f"{link}_impact_minutes")
        assert fixed < replay, link
    if policy == "fenced_dns":
        assert _total(result, policy, "impact_subsystem_minutes") == 0
    if policy == "velocity_control":
        assert _total(result, policy, "nlb_impact_minutes") == 0


def test_no_fix_stalls_at_dwfm(result: ExperimentResult) -> None:
    """Left to itself (the DNS repaired), DWFM stays collapsed: no launch ever reaches NLB."""
    assert result.policies["no_fix"].stuck_runs == len(SEEDS)
    for metrics in _runs(result, "no_fix"):
        assert math.isnan(metrics["time_to_recover_s"])
        assert math.isnan(metrics["leases_back_at_s"])
        assert metrics["dwfm_leases_end_fraction"] < 0.01
        assert metrics["nlb_impact_minutes"] == 0
        assert metrics["nm_backlog_released"] == 0


def test_milestone_table_and_timeline() -> None:
    scenario = USEast12025()
    params = scenario.resolve()
    marks = scenario.milestones(params)
    times = [at for at, _ in marks]
    assert times == sorted(times)
    assert all(0 <= at < params["horizon_s"] for at in times)
    assert marks[0] == (0.0, "11:48 PM: DynamoDB endpoint record empty; DWFM state checks fail")
    reported = [reported for _, reported, _ in MILESTONES]
    assert reported == sorted(reported)


def test_same_seed_same_trace_and_series() -> None:
    scenario = USEast12025()
    params = scenario.resolve(SMALL)
    first = scenario.run(params, "as_happened", 4, series=True)
    again = scenario.run(params, "as_happened", 4, series=True)
    assert first.trace_hash == again.trace_hash
    assert first.series == again.series
    minutes = math.ceil(params["horizon_s"] / 60)
    assert {len(values) for values in first.series.values()} == {minutes}
    assert "dwfm_leased_fraction" in first.series
    assert "nlb_connection_error_rate" in first.series
    assert scenario.run(params, "as_happened", 5).trace_hash != first.trace_hash
    rows = milestone_table([first, again])
    assert [row[1] for row in rows] == [reported for _, reported, _ in MILESTONES]
    assert rows[0][2] == 9420.0


def test_trace_hash_is_the_same_in_another_process() -> None:
    scenario = USEast12025()
    here = scenario.run(scenario.resolve(SMALL), "downstream_fixes", 1).trace_hash
    code = (
        "from stormproof.sim.scenarios.us_east_1_2025 import USEast12025\n"
        "s = USEast12025()\n"
        f"print(s.run(s.resolve({SMALL!r}), 'downstream_fixes', 1).trace_hash)\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "31337"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == here


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"dns_repair_at_s": 60000}, "dns_repair_at_s"),
        ({"dwfm_throttle_at_s": 100}, "dwfm_throttle_at_s"),
        ({"ec2_normal_at_s": 30000}, "ec2_normal_at_s"),
        ({"nm_admission_soft_queue": 20000}, "nm_admission_soft_queue"),
        ({"nlb_reenable_failover_at_s": 100}, "nlb_reenable_failover_at_s"),
        ({"lambda_terminate_above": 0}, "lambda_terminate_above"),
        ({"dwfm_droplets": 10}, "dwfm_droplets"),
        ({"nope": 1}, "nope"),
    ],
)
def test_bad_parameters_name_the_field(overrides: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        USEast12025().resolve(overrides)
    assert field in str(info.value)


# -- the parts the chain adds -------------------------------------------------------------------


def _record(value: tuple[str, ...]) -> FencedRegister[tuple[str, ...]]:
    register: FencedRegister[tuple[str, ...]] = FencedRegister()
    register.apply(1, value)
    register.value = value
    return register


def test_resolver_caches_empty_answers_up_to_the_negative_ttl() -> None:
    rng = random.Random(1)
    resolver = NegativeCachingResolver(60.0, 900.0, rng, answer=("a",), expires=30.0)
    record = _record(())
    assert resolver.resolve(10.0, record) == ("a",)  # cached answer still fresh
    assert resolver.resolve(30.0, record) == ()
    assert 30.0 < resolver.expires <= 930.0
    record.value = ("b",)
    assert resolver.resolve(resolver.expires - 1e-6, record) == ()  # negative answer cached
    assert resolver.resolve(resolver.expires, record) == ("b",)
    assert resolver.fetches == 2
    with pytest.raises(ConfigError, match="ttl"):
        NegativeCachingResolver(0.0, 1.0, rng)


@settings(max_examples=30, deadline=None)
@given(items=st.integers(0, 50_000), exponent=st.sampled_from([1.0, 2.0]))
def test_drain_time_matches_stepping_the_service(items: int, exponent: float) -> None:
    rate, knee = 50.0, 5000.0
    left, elapsed, dt = float(items), 0.0, 0.01
    while left > 0:
        left -= dt * rate / (1.0 + (left / knee) ** exponent)
        elapsed += dt
    assert drain_time(items, rate, knee, exponent) == pytest.approx(elapsed, rel=0.02, abs=0.05)


def test_ready_time_follows_the_working_set() -> None:
    sim = Simulation(0)
    manager = PropagationManager(sim, rate=10.0, knee=100.0, step=10.0, horizon=100.0)
    ready = PropagationReadyTime(manager, normal=0.0)
    assert ready(5.0, random.Random(0)) == 5.0
    manager.start()
    manager.release_backlog(1000, 1000.0)
    sim.run(until=10.0)
    waiting = manager.working_set
    assert waiting > 0
    assert ready(10.0, random.Random(0)) == pytest.approx(10.0 + drain_time(waiting, 10, 100, 1))


def test_impaired_capacity_falls_and_recovers() -> None:
    state = {"losing": True, "restoring": False}
    capacity = ImpairedCapacity(
        100.0,
        0.5,
        loss_s=100.0,
        restore_s=200.0,
        losing=lambda now: state["losing"],
        restoring=lambda now: state["restoring"],
    )
    assert capacity(0.0) == 100.0
    assert capacity(50.0) == pytest.approx(75.0)
    assert capacity.first_loss_at == 50.0
    assert capacity(500.0) == pytest.approx(50.0)  # all of ``lost`` gone, no further
    state["losing"] = False
    assert capacity(600.0) == pytest.approx(50.0)  # neither condition: stays down
    state["restoring"] = True
    assert capacity(700.0) == pytest.approx(75.0)
    assert capacity(1000.0) == 100.0
    assert capacity.restored_at == 1000.0
    with pytest.raises(ConfigError, match="now"):
        capacity(10.0)
    with pytest.raises(ConfigError, match="lost"):
        ImpairedCapacity(1.0, 2.0, loss_s=1, restore_s=1, losing=bool, restoring=bool)
