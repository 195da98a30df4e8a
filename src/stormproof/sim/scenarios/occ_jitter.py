"""occ-jitter: clients contending for one row with optimistic concurrency, under each backoff.

The model of ``shared/golden/README.md`` (section occ-jitter), after M. Brooker, "Exponential
Backoff and Jitter" (AWS Architecture Blog, 2015): N clients start together; each reads the row's
version, then writes conditionally on it; a write that finds a newer version fails, and the client
backs off and starts over. It shows why jitter matters: without it, clients that collided once
collide again in lock-step; exponential backoff alone only makes them wait longer together.

Brooker writes ``base * 2**n`` with n from 1; stormproof's exponential schedules count so that the
first retry waits ``base``, so his base 5 ms is base 10 ms here for the exponential kinds, while
decorrelated jitter starts from 5 ms in both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from stormproof.policies.backoff import Backoff, Decorrelated, Exponential, Jitter, NoBackoff
from stormproof.sim.kernel import Simulation
from stormproof.sim.scenario import Param, RunResult, Scenario

__all__ = ["OccJitter"]

_GOLDEN = "shared/golden/README.md, occ-jitter"
_MS = 0.001


class OccJitter(Scenario):
    """Optimistic-concurrency contention on one row (golden model, Brooker 2015)."""

    name = "occ-jitter"
    description = "Clients racing conditional writes on one row, per backoff kind (Brooker 2015)"
    policies = ("none", "exponential", "equal_jitter", "full_jitter", "decorrelated")
    stuck_rule = "never: contention always resolves; the metrics are time and calls"
    params = (
        Param(
            "clients",
            10,
            "clients starting at t = 0",
            f"{_GOLDEN}: 'N clients'",
            1,
            100_000,
            integer=True,
        ),
        Param("base_ms", 5, "Brooker's backoff base (ms)", f"{_GOLDEN}: 'base = 5 ms'", 0.001),
        Param("cap_ms", 2000, "backoff cap (ms)", f"{_GOLDEN}: 'cap = 2000 ms'", 0.001),
        Param(
            "hop_mean_ms",
            10,
            "mean one-way delay (ms)",
            f"{_GOLDEN}: 'd = |Normal(mean 10 ms, sd 2 ms)|'",
            0,
        ),
        Param("hop_sd_ms", 2, "sd of the one-way delay (ms)", f"{_GOLDEN}: 'sd 2 ms'", 0),
    )

    def backoff(self, policy: str, params: Mapping[str, float]) -> Backoff:
        """The backoff schedule called ``policy``."""
        self.check_policy(policy)
        base = params["base_ms"] * _MS
        cap = max(params["cap_ms"] * _MS, 2 * base)
        if policy == "none":
            return NoBackoff()
        if policy == "decorrelated":
            return Decorrelated(base=base, cap=cap)
        jitter = {"exponential": Jitter.NONE, "equal_jitter": Jitter.EQUAL}.get(policy, Jitter.FULL)
        return Exponential(base=2 * base, factor=2.0, cap=cap, jitter=jitter)

    def run(
        self, params: Mapping[str, float], policy: str, seed: int, *, series: bool = False
    ) -> RunResult:
        """Run the contention once; completion time is the last event's time."""
        sim = Simulation(seed, max_events=self.max_events)
        model = _Contention(sim, self.backoff(policy, params), params)
        model.start(int(params["clients"]))
        sim.run()
        return RunResult(
            scenario=self.name,
            policy=policy,
            seed=seed,
            stuck=False,
            metrics={"completion_ms": sim.now() / _MS, "calls": float(model.writes)},
            trace_hash=sim.trace_hash(),
        )

    def summarize(self, runs: Sequence[RunResult]) -> dict[str, float | None]:
        """Means over runs, named as in the golden table."""
        count = len(runs)
        return {
            "mean_completion_ms": sum(r.metrics["completion_ms"] for r in runs) / count,
            "mean_calls": sum(r.metrics["calls"] for r in runs) / count,
        }


class _Contention:
    """The clients and the row; each method is one step of a client's read-write cycle."""

    __slots__ = (
        "_backoff",
        "_hop",
        "_jitter",
        "_mean",
        "_retries",
        "_sd",
        "previous",
        "sim",
        "version",
        "writes",
    )

    def __init__(self, sim: Simulation, backoff: Backoff, params: Mapping[str, float]) -> None:
        self.sim = sim
        self._backoff = backoff
        # Delays and jitter come from separate streams, so every policy sees the same network
        # delays draw for draw (common random numbers) and only the backoff differs.
        self._hop = sim.rng("occ.network")
        self._jitter = sim.rng("occ.backoff")
        self._mean = params["hop_mean_ms"] * _MS
        self._sd = params["hop_sd_ms"] * _MS
        self.version = 0
        self.writes = 0
        self._retries: list[int] = []
        self.previous: list[float | None] = []

    def hop(self) -> float:
        return abs(self._hop.gauss(self._mean, self._sd))

    def start(self, clients: int) -> None:
        self._retries = [0] * clients
        self.previous = [None] * clients
        for client in range(clients):
            self.sim.schedule(self.hop(), self.read_at_server, client)

    def read_at_server(self, client: int) -> None:
        self.sim.schedule(self.hop(), self.read_reply, client, self.version)

    def read_reply(self, client: int, seen: int) -> None:
        self.sim.schedule(self.hop(), self.write_at_server, client, seen)

    def write_at_server(self, client: int, seen: int) -> None:
        self.writes += 1
        won = seen == self.version
        if won:
            self.version += 1
        self.sim.schedule(self.hop(), self.write_reply, client, won)

    def write_reply(self, client: int, won: bool) -> None:
        if won:
            return
        self._retries[client] += 1
        delay = self._backoff.delay(self._retries[client], self.previous[client], self._jitter)
        self.previous[client] = delay
        self.sim.schedule(delay + self.hop(), self.read_at_server, client)
