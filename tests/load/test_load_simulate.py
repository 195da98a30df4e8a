"""One definition of a burst for both worlds: the simulator draws the runner's schedule."""

from __future__ import annotations

from typing import Any

from stormproof.load import Bursts, Exponential, Uniform, arrival_times
from stormproof.load.simulate import shape_arrivals, shape_plan
from stormproof.policies.retry import RetryPolicy
from stormproof.sim.kernel import Simulation
from stormproof.sim.metrics import BucketCounters
from stormproof.sim.parts.client import OpenLoopClient
from stormproof.sim.parts.server import Server

SHAPE = Bursts(Uniform(30, 60), Uniform(0.5, 2), Exponential(3, 1, 8), idle_rate=2)


class RecordingClient(OpenLoopClient):
    """An open-loop client that notes when each request arrives."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.arrived: list[float] = []

    def _begin(self) -> None:
        self.arrived.append(self.sim.now())
        super()._begin()


def simulated_arrivals(seed: int, horizon: float) -> list[float]:
    sim = Simulation(seed)
    client = RecordingClient(
        sim,
        shape_arrivals(SHAPE, sim, horizon),
        Server(sim, lambda concurrency, rng: 0.001, workers=1000),
        RetryPolicy(max_attempts=1),
        timeout=1.0,
        network_latency=lambda rng: 0.0,
        metrics=BucketCounters(1.0),
        horizon=horizon,
    )
    client.start()
    sim.run()
    return client.arrived


def test_simulated_client_draws_the_same_schedule_as_the_runner() -> None:
    for seed in (1, 7):
        plan = SHAPE.plan(30.0, seed)
        assert shape_plan(SHAPE, Simulation(seed), 30.0) == plan
        expected = arrival_times(plan, seed)
        assert len(expected) > 100
        assert simulated_arrivals(seed, 30.0) == expected
