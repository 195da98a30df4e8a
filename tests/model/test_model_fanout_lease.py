"""Parallel fan-out calls and fleets with leases: the engine parts the new examples need."""

from __future__ import annotations

from dataclasses import replace

import pytest

from stormproof.errors import ConfigError
from stormproof.model.lint import callee_time, lint
from stormproof.model.simulate import TopologyScenario
from stormproof.model.spec import (
    ClientSpec,
    ConstantLoad,
    EdgeSpec,
    EntrySpec,
    FleetSpec,
    LeaseSpec,
    Outage,
    ServiceSpec,
    ServiceTime,
    Topology,
)


def fan_out(calls: str = "parallel", *triggers: Outage) -> Topology:
    """gw calls a, b and c, each 0.1 s of constant work, at 5 requests/s."""
    backends = ("a", "b", "c")
    return Topology(
        "fan",
        (
            ServiceSpec("gw", ServiceTime(0.0), calls=calls),  # type: ignore[arg-type]
            *(ServiceSpec(name, ServiceTime(0.1)) for name in backends),
        ),
        entries=(EntrySpec("users", "gw", ConstantLoad(5.0), ClientSpec(timeout=5.0)),),
        edges=tuple(EdgeSpec("gw", name, ClientSpec(timeout=1.0)) for name in backends),
        triggers=triggers,
        horizon=20.0,
    )


def test_parallel_calls_take_the_slowest_branch_not_the_sum() -> None:
    parallel = TopologyScenario(fan_out()).run({}, "as_written", 1)
    sequential = TopologyScenario(fan_out("sequential")).run({}, "as_written", 1)
    assert parallel.metrics["latency_p50_s"] == pytest.approx(0.1, abs=1e-9)
    assert sequential.metrics["latency_p50_s"] == pytest.approx(0.3, abs=1e-9)
    for name in ("a", "b", "c"):
        assert parallel.metrics[f"service.{name}.amplification"] == pytest.approx(1.0)


def test_a_failed_branch_fails_the_request_at_once() -> None:
    down = Outage("b-down", "b", start=0.0, duration=20.0, mode="error")
    result = TopologyScenario(fan_out("parallel", down)).run({}, "as_written", 2)
    assert result.metrics["entry.users.success_ratio"] == 0.0
    # a and c were called all the same (a fan-out sends every call at once).
    assert result.metrics["service.a.amplification"] == pytest.approx(1.0)
    assert result.metrics["service.gw.throughput_per_s"] == 0.0


def test_lint_times_a_parallel_service_by_its_slowest_call() -> None:
    assert callee_time(fan_out(), "gw") == pytest.approx(1.0)
    assert callee_time(fan_out("sequential"), "gw") == pytest.approx(3.0)


def test_calls_must_be_sequential_or_parallel() -> None:
    with pytest.raises(ConfigError, match="calls"):
        ServiceSpec("gw", ServiceTime(0.0), calls="random")  # type: ignore[arg-type]


def leases(ttl: float = 5.0, *, retry_wait: float = 0.5, outage: float = 10.0) -> Topology:
    """100 members renew every 2 s with a manager of 4 threads x 10 ms (400/s)."""
    return Topology(
        "leases",
        (ServiceSpec("manager", ServiceTime(0.01), workers=4),),
        fleets=(
            FleetSpec(
                "members",
                "manager",
                size=100,
                period=2.0,
                client=ClientSpec(timeout=1.0),
                lease=LeaseSpec(ttl=ttl, retry_wait=retry_wait),
            ),
        ),
        triggers=(Outage("down", "manager", start=5.0, duration=outage, mode="error"),),
        horizon=40.0,
    )


def test_leases_lapse_in_a_long_outage_and_come_back_after_it() -> None:
    result = TopologyScenario(leases()).run({}, "as_written", 3, series=True)
    leased = result.series["fleet.members.leased"]
    assert leased[4] == 100.0  # before the outage
    assert leased[14] == 0.0  # 5 s leases, renewals failing from 5 s to 15 s
    assert leased[20] == 100.0  # back within a retry_wait of the outage's end
    assert result.metrics["fleet.members.leased_fraction_end"] == 1.0
    assert result.metrics["fleet.members.min_leased_fraction"] == 0.0
    assert result.metrics["fleet.members.reacquired"] == 100.0
    assert 0.0 <= result.metrics["fleet.members.time_to_recover_s"] < 2.0
    assert not result.stuck


def test_a_short_outage_keeps_the_leases() -> None:
    # The last renewal before 5 s was under 2 s earlier; the one 4 s after it, at 7-9 s, works.
    result = TopologyScenario(leases(outage=2.0)).run({}, "as_written", 3)
    assert result.metrics["fleet.members.min_leased_fraction"] == 1.0
    assert result.metrics["fleet.members.reacquired"] == 0.0


def test_lapsed_members_call_every_retry_wait() -> None:
    scenario = TopologyScenario(replace(leases(), horizon=15.0))
    failures = scenario.run({}, "as_written", 4).metrics["failures"]
    # 5-10 s: leased members renew every 2 s (50 calls/s); by 10 s every lease has lapsed and
    # the 100 members call every 0.5 s (200/s): about 250 + 1,000 failed calls.
    assert 1100 < failures < 1300


def test_lint_warns_when_lapsed_members_would_exceed_capacity() -> None:
    # 80 calls/s at most: enough for the 50/s of renewals, not for 200/s of lapsed members.
    slow = replace(leases(), services=(ServiceSpec("manager", ServiceTime(0.05), workers=4),))
    found = [f for f in lint(slow) if f.rule == "fleet-exceeds-capacity"]
    assert [f.severity for f in found] == ["warning"]
    assert found[0].data["offered_per_s"] == 200.0  # 100 members / 0.5 s
    assert not [f for f in lint(leases()) if f.rule == "fleet-exceeds-capacity"]


def test_lease_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="retry_wait"):
        LeaseSpec(ttl=5.0, retry_wait=0.0)
    with pytest.raises(ConfigError, match="ttl"):
        LeaseSpec(ttl=-1.0)


def test_lease_runs_are_deterministic() -> None:
    scenario = TopologyScenario(leases())
    first = scenario.run({}, "as_written", 7)
    assert scenario.run({}, "as_written", 7).trace_hash == first.trace_hash
