"""Simulating topologies: the one-service topology reproduces the simple-collapse golden results,
and the triggers, protections and policy sets do what they say."""

from __future__ import annotations

import csv
import math
from dataclasses import replace
from functools import cache
from pathlib import Path

import pytest

from stormproof.errors import ConfigError
from stormproof.model.load import load_file
from stormproof.model.simulate import TopologyScenario, with_policy_set
from stormproof.model.spec import (
    BulkheadSpec,
    CapacityLoss,
    ClientSpec,
    ConstantLoad,
    EdgeSpec,
    EntrySpec,
    FleetSpec,
    LatencyInjection,
    LoadSpike,
    Outage,
    Partition,
    PolicySet,
    ServicePatch,
    ServiceSpec,
    ServiceTime,
    Topology,
    Trigger,
)
from stormproof.policies.pipeline import Hedge
from stormproof.sim.experiment import ExperimentResult, run_experiment
from stormproof.sim.scenario import RunResult

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT.parent / "shared" / "golden" / "simple-collapse.csv"
EXAMPLES = ROOT / "examples" / "topologies"
SEEDS = list(range(20))
#: The golden policies and the policy of the example topology configured the same way.
SAME_AS = {"no_backoff": "as_written", "backoff_full_jitter": "backoff_full_jitter"}


def golden_rows() -> list[dict[str, str]]:
    with GOLDEN.open() as handle:
        return list(csv.DictReader(line for line in handle if not line.startswith("#")))


ROWS = golden_rows()


@cache
def collapse(spike_s: int) -> ExperimentResult:
    topology = load_file(EXAMPLES / "simple-collapse.yaml")
    spike = LoadSpike("spike", "clients", start=20, duration=spike_s, rate=80)
    scenario = TopologyScenario(replace(topology, triggers=(spike,)))
    return run_experiment(scenario, {}, list(SAME_AS.values()), SEEDS, workers=2)


# Mirrors tests/golden/test_simple_collapse.py: stuck counts within +-4 of the golden ones, and
# the qualitative outcomes.
@pytest.mark.parametrize("row", ROWS, ids=[f"{r['spike_s']}s-{r['policy']}" for r in ROWS])
def test_one_service_topology_matches_the_golden_stuck_counts(row: dict[str, str]) -> None:
    summary = collapse(int(row["spike_s"])).policies[SAME_AS[row["policy"]]]
    assert abs(summary.stuck_runs - int(row["stuck_of_20"])) <= 4


def test_one_service_topology_keeps_the_golden_qualitative_outcomes() -> None:
    assert collapse(5).policies["as_written"].stuck_runs > 12
    for spike in (1, 3, 4, 5):
        assert collapse(spike).policies["backoff_full_jitter"].stuck_runs == 0
    for spike in (1, 3):
        assert collapse(spike).policies["as_written"].stuck_runs == 0
    stuck = [r for r in collapse(5).policies["as_written"].results if r.stuck]
    assert min(r.metrics["amplification"] for r in stuck) > 2.5
    assert all(r.metrics["wasted_work_fraction"] > 0.5 for r in stuck)
    late = [r.metrics["late_goodput_per_s"] for r in stuck]
    assert sum(late) / len(late) < 30


# -- small topologies ------------------------------------------------------------------------------


def small(
    triggers: tuple[Trigger, ...] = (),
    *,
    rate: float = 20.0,
    client: ClientSpec | None = None,
    horizon: float = 30.0,
    **options: object,
) -> Topology:
    """users -> web (4 workers) -> db (4 workers, 0.05 s): about 25 % busy at 20/s."""
    return Topology(
        "small",
        (
            ServiceSpec("web", ServiceTime(0.01), workers=8, queue_limit=20),
            ServiceSpec("db", ServiceTime(0.05), workers=4, queue_limit=20),
        ),
        entries=(EntrySpec("users", "web", ConstantLoad(rate), client or ClientSpec(timeout=1.0)),),
        edges=(EdgeSpec("web", "db", ClientSpec(timeout=0.5)),),
        triggers=triggers,
        horizon=horizon,
        **options,  # type: ignore[arg-type]
    )


def run(topology: Topology, policy: str = "as_written", seed: int = 1) -> RunResult:
    return TopologyScenario(topology).run({}, policy, seed)


def test_healthy_topology_serves_everything() -> None:
    result = run(small())
    assert result.metrics["entry.users.success_ratio"] > 0.99  # a few still in flight at the end
    assert not result.stuck
    assert result.metrics["service.db.amplification"] == pytest.approx(1.0, rel=0.01)


@pytest.mark.parametrize(
    "trigger",
    [
        Outage("o", "db", start=10, duration=5, mode="error"),
        Outage("o", "db", start=10, duration=5, mode="hang"),
        LatencyInjection("l", "db", start=10, duration=5, extra=2.0),
        CapacityLoss("c", "db", start=10, duration=5, fraction=1.0),
        Partition("p", "web->db", start=10, duration=5),
        Partition("p", "db", start=10, duration=5),
    ],
    ids=["outage-error", "outage-hang", "latency", "capacity", "partition-edge", "partition-svc"],
)
def test_each_trigger_costs_requests_during_its_window_only(trigger: Trigger) -> None:
    result = run(small((trigger,)))
    ratio = result.metrics["entry.users.success_ratio"]
    assert 0.5 < ratio < 0.95  # about 5 s of 30 s lost
    assert not result.stuck and result.metrics["recovered"] == 1.0


def test_load_spike_trigger_raises_the_arrival_rate() -> None:
    quiet = run(small())
    spiked = run(small((LoadSpike("s", "users", start=5, duration=10, rate=60.0),)))
    requests = quiet.metrics["service.web.throughput_per_s"] * 30
    assert spiked.metrics["service.web.throughput_per_s"] * 30 == pytest.approx(
        requests + 400, rel=0.15
    )


def test_retries_multiply_attempts_at_the_failed_dependency() -> None:
    down = (Outage("o", "db", start=0, duration=30, mode="error"),)
    retrying = replace(
        small(down),
        edges=(EdgeSpec("web", "db", ClientSpec(timeout=0.5, max_attempts=3)),),
    )
    result = run(retrying, seed=3)
    assert result.metrics["service.db.amplification"] == pytest.approx(3.0)
    assert result.metrics["entry.users.success_ratio"] == 0.0


def test_hedges_add_attempts() -> None:
    slow = ClientSpec(timeout=1.0, hedge=Hedge(delay=0.001, max_hedges=1))
    result = run(small(client=slow))
    assert result.metrics["service.web.amplification"] == pytest.approx(2.0, rel=0.05)
    assert result.metrics["entry.users.success_ratio"] > 0.99  # a few still in flight at the end


def test_fleets_offer_size_over_period() -> None:
    fleet = FleetSpec("hosts", "db", size=300, period=30.0)  # 10/s
    topology = replace(small(), fleets=(fleet,))
    result = run(topology)
    assert result.metrics["service.db.throughput_per_s"] == pytest.approx(30.0, rel=0.15)


def zones_topology() -> Topology:
    """A regional pool of 10 threads; zone a's cluster hangs for 20 s with 5 s timeouts."""
    return Topology(
        "zones",
        (
            ServiceSpec("cp", ServiceTime(0.01), workers=10, queue_limit=10),
            ServiceSpec("ebs-a", ServiceTime(0.02), workers=10, zones=("a",)),
            ServiceSpec("ebs-b", ServiceTime(0.02), workers=10, zones=("b",)),
        ),
        zones=("a", "b"),
        entries=tuple(
            EntrySpec(f"api-{z}", "cp", ConstantLoad(5.0), ClientSpec(timeout=10.0), zone=z)
            for z in ("a", "b")
        ),
        edges=(
            EdgeSpec("cp", "ebs-a", ClientSpec(timeout=5.0), for_zone="a"),
            EdgeSpec("cp", "ebs-b", ClientSpec(timeout=5.0), for_zone="b"),
        ),
        triggers=(Outage("a-down", "ebs-a", start=5, duration=20),),
        policy_sets=(
            PolicySet("bulkhead", services=(("cp", ServicePatch(bulkhead=BulkheadSpec(4))),)),
        ),
        horizon=40.0,
    )


def test_per_zone_bulkhead_keeps_the_other_zone_served() -> None:
    topology = zones_topology()
    shared = run(topology)
    isolated = run(topology, "bulkhead")
    assert shared.metrics["entry.api-b.success_ratio"] < 0.8  # zone a starved zone b
    assert isolated.metrics["entry.api-b.success_ratio"] == 1.0
    assert isolated.metrics["entry.api-a.success_ratio"] < 0.7


def test_policy_sets_use_common_random_numbers_and_are_deterministic() -> None:
    topology = zones_topology()
    scenario = TopologyScenario(topology)
    result = run_experiment(scenario, {}, ["as_written", "bulkhead"], [4, 5], workers=1)
    first, second = (result.policies[p].results for p in ("as_written", "bulkhead"))
    for a, b in zip(first, second, strict=True):
        assert a.metrics["entry.api-a.success_ratio"] != b.metrics["entry.api-a.success_ratio"]
    again = run_experiment(scenario, {}, ["as_written"], [4, 5], workers=2)
    assert again.policies["as_written"].trace_hashes == result.policies["as_written"].trace_hashes


def test_policy_set_swaps_clients_and_patches_services() -> None:
    topology = zones_topology()
    assert with_policy_set(topology, "as_written") is topology
    patched = with_policy_set(topology, "bulkhead")
    assert patched.service("cp").bulkhead == BulkheadSpec(4)
    with pytest.raises(ConfigError, match="valid: as_written, bulkhead"):
        with_policy_set(topology, "nope")


def test_unknown_trigger_or_policy_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="valid: a-down"):
        TopologyScenario(zones_topology(), ["b-down"])
    scenario = TopologyScenario(zones_topology(), [])
    assert scenario.topology.triggers == ()
    with pytest.raises(ConfigError, match="valid: as_written, bulkhead"):
        scenario.check_policy("nope")
    with pytest.raises(ConfigError, match="no parameters"):
        scenario.resolve({"horizon": 5})


def test_recovery_is_nan_when_the_run_never_recovers() -> None:
    down = small((Outage("o", "db", start=5, duration=25, mode="error"),))
    result = run(down)
    assert result.stuck
    assert math.isnan(result.metrics["time_to_recover_s"])
    assert result.metrics["recovered"] == 0.0
