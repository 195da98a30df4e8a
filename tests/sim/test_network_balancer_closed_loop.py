from __future__ import annotations

import pytest

from stormproof.errors import ConfigError
from stormproof.policies.backoff import Constant
from stormproof.policies.retry import RetryPolicy
from stormproof.sim import Simulation
from stormproof.sim.metrics import BucketCounters
from stormproof.sim.parts.balancer import LoadBalancer
from stormproof.sim.parts.client import ClosedLoopClient
from stormproof.sim.parts.network import Link
from stormproof.sim.parts.server import LinearSlowdown, Server


def test_link_delivers_after_latency_and_drops_during_partitions() -> None:
    sim = Simulation()
    link = Link(sim, lambda rng: 0.5)
    link.partition(10.0, 20.0)
    arrived: list[tuple[float, str]] = []
    for at, label in ((1.0, "before"), (10.0, "start"), (19.9, "inside"), (20.0, "healed")):
        sim.at(at, link.send, lambda label=label: arrived.append((sim.now(), label)))
    sim.run()
    assert arrived == [(1.5, "before"), (20.5, "healed")]
    assert (link.sent, link.delivered, link.partitioned, link.lost) == (4, 2, 2, 0)


def test_link_loss_rate_is_close_to_configured() -> None:
    sim = Simulation(seed=3)
    link = Link(sim, lambda rng: 0.0, loss=0.2)
    delivered = sum(link.send(lambda: None) for _ in range(20_000))
    assert link.lost + delivered == 20_000
    assert 0.19 < link.lost / 20_000 < 0.21


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"loss": 1.0}, "loss"), ({"loss": -0.1}, "loss"), ({"latency": 3}, "latency")],
)
def test_link_rejects_bad_configuration(kwargs: dict[str, object], field: str) -> None:
    options: dict[str, object] = {"latency": lambda rng: 0.0, **kwargs}
    with pytest.raises(ConfigError) as excinfo:
        Link(Simulation(), **options)  # type: ignore[arg-type]
    assert excinfo.value.field == field


def test_overlapping_partitions_are_rejected() -> None:
    link = Link(Simulation(), lambda rng: 0.0)
    link.partition(5.0, 10.0)
    with pytest.raises(ConfigError):
        link.partition(9.0, 12.0)
    with pytest.raises(ConfigError):
        link.partition(1.0, 6.0)
    link.partition(10.0, 11.0)
    with pytest.raises(ConfigError) as excinfo:
        link.partition(3.0, 3.0)
    assert excinfo.value.field == "end"


def test_balancer_ejects_after_consecutive_failures_and_restores() -> None:
    sim = Simulation()
    healthy = {"a": True, "b": True}
    balancer = LoadBalancer(
        sim, ["a", "b"], lambda t: healthy[t], interval=1.0, unhealthy_after=3, healthy_after=2
    )
    balancer.start()
    sim.schedule(0.5, healthy.__setitem__, "b", False)
    sim.run(until=2.5)
    assert balancer.healthy == ["a", "b"]  # two failed checks: not yet ejected
    sim.run(until=3.5)
    assert balancer.healthy == ["a"]
    assert [balancer.pick() for _ in range(3)] == ["a", "a", "a"]
    healthy["b"] = True
    sim.run(until=4.5)
    assert balancer.healthy == ["a"]  # one good check is not enough
    sim.run(until=5.5)
    assert balancer.healthy == ["a", "b"]
    assert (balancer.ejections, balancer.restorations) == (1, 1)


def test_balancer_fails_open_when_every_target_is_unhealthy() -> None:
    sim = Simulation()
    balancer = LoadBalancer(sim, ["a", "b"], lambda t: False, interval=1.0, unhealthy_after=1)
    balancer.start()
    sim.run(until=1.5)
    assert not balancer.is_up(0) and not balancer.is_up(1)
    assert sorted(balancer.pick() for _ in range(4)) == ["a", "a", "b", "b"]
    assert balancer.fail_open_picks == 4
    assert balancer.healthy == ["a", "b"]


def test_balancer_round_robin_is_even() -> None:
    balancer = LoadBalancer(Simulation(), [1, 2, 3], lambda t: True)
    picks = [balancer.pick() for _ in range(9)]
    assert picks == [1, 2, 3] * 3
    with pytest.raises(ConfigError):
        LoadBalancer(Simulation(), [], lambda t: True)


def _closed_loop(service: float, timeout: float, users: int = 5) -> tuple[BucketCounters, Server]:
    sim = Simulation(seed=1)
    metrics = BucketCounters()
    server = Server(sim, LinearSlowdown(service, 0.0), metrics=metrics)
    client = ClosedLoopClient(
        sim,
        server,
        RetryPolicy(max_attempts=2, backoff=Constant(1.0)),
        users=users,
        think_time=0.0,
        timeout=timeout,
        network_latency=lambda rng: 0.0,
        metrics=metrics,
        horizon=100.0,
    )
    client.start()
    sim.run(until=100.0)
    return metrics, server


def test_closed_loop_users_wait_for_each_answer() -> None:
    metrics, server = _closed_loop(service=1.0, timeout=5.0)
    # Five users, one request each per second, back to back.
    assert metrics.total("requests") == 5 * 100
    assert metrics.total("successes") == 5 * 100  # the last ones finish exactly at t = 100
    assert server.peak_in_service == 5
    assert metrics.total("resends") == 0


def test_closed_loop_load_backs_off_when_the_server_is_slow() -> None:
    metrics, server = _closed_loop(service=10.0, timeout=3.0)
    # Each request: 3 s timeout, 1 s backoff, 3 s timeout, give up -> 7 s per request per user.
    assert metrics.total("failures") == metrics.total("requests") - 5
    assert metrics.total("successes") == 0
    assert metrics.total("requests") == 5 * 15
    assert server.peak_in_service <= 5 * 2 * 2
