"""simple-collapse as a splittable run: the same model, watched through the server's concurrency.

:class:`CollapseRun` builds exactly what :meth:`SimpleCollapse.run` builds (same parts, same
stream names, same policies), so a run that is never split ends in the same state and the same
stuck verdict as the scenario's run for that seed. Only the trace hash is off, because a hash
cannot be cloned (see :func:`~stormproof.sim.rare.splitting.clone_run`).

The progress measure is the number of requests in service. A healthy run peaks a little below
200 during a 4 s spike; a run that tips over keeps climbing past it and ends with well over a
thousand, because every request times out and is sent three times.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from stormproof.sim.kernel import Simulation
from stormproof.sim.metrics import BucketCounters
from stormproof.sim.parts.arrivals import PiecewisePoisson
from stormproof.sim.parts.client import OpenLoopClient
from stormproof.sim.parts.server import LinearSlowdown, Server
from stormproof.sim.scenarios.simple_collapse import SimpleCollapse

__all__ = ["CollapseBuilder", "CollapseRun"]


class _Exponential:
    """Exponential one-way latency with ``mean`` (a class, so copies and pickles work)."""

    __slots__ = ("rate",)

    def __init__(self, mean: float) -> None:
        self.rate = 1.0 / mean if mean > 0 else 0.0

    def __call__(self, rng: object) -> float:
        if self.rate == 0.0:
            return 0.0
        return rng.expovariate(self.rate)  # type: ignore[attr-defined, no-any-return]


class CollapseRun:
    """One simple-collapse run that splitting can watch, copy and judge."""

    __slots__ = ("_horizon", "client", "late_start", "metrics", "server", "sim", "stuck_below")

    def __init__(self, params: Mapping[str, float], policy: str, seed: int) -> None:
        scenario = SimpleCollapse()
        self.sim = Simulation(seed, hash_trace=False, max_events=scenario.max_events)
        self.metrics = BucketCounters(1.0)
        spike_end = params["spike_start"] + params["spike_s"]
        steps = [(0.0, params["rate"])]
        if params["spike_s"] > 0:
            spike = (params["spike_start"], params["spike_rate"])
            steps = [spike] if params["spike_start"] == 0 else [*steps, spike]
            steps.append((spike_end, params["rate"]))
        self.server = Server(
            self.sim, LinearSlowdown(params["service_base"], params["service_per_request"])
        )
        self._horizon = params["horizon"]
        self.late_start = params["late_start"]
        self.stuck_below = params["stuck_below"]
        self.client = OpenLoopClient(
            self.sim,
            PiecewisePoisson(steps),
            self.server,
            scenario.policy(policy, params),
            timeout=params["timeout"],
            network_latency=_Exponential(params["network_mean"]),
            metrics=self.metrics,
            horizon=self._horizon,
            breaker=scenario.breaker(policy),
        )
        self.client.start()

    @property
    def horizon(self) -> float:
        """The scenario's horizon."""
        return self._horizon

    def importance(self) -> float:
        """Requests in service now."""
        return float(self.server.in_service)

    def late_goodput(self) -> float:
        """Mean successes per second over the judged window (the scenario's metric)."""
        return self.metrics.rate("successes", self.late_start, self._horizon)

    def occurred(self) -> bool:
        """The scenario's stuck rule: late goodput below ``stuck_below``."""
        return self.late_goodput() < self.stuck_below


@dataclass(frozen=True, slots=True)
class CollapseBuilder:
    """Builds :class:`CollapseRun` for a seed (picklable, for worker processes).

    ``params`` are resolved scenario parameters (``SimpleCollapse().resolve(...)``), stored as
    sorted pairs so the builder is hashable and its repr stable.
    """

    params: tuple[tuple[str, float], ...]
    policy: str = "no_backoff"

    @classmethod
    def from_overrides(
        cls, overrides: Mapping[str, str | float] | None = None, policy: str = "no_backoff"
    ) -> CollapseBuilder:
        """Resolve ``overrides`` against the scenario's parameters and check the policy."""
        scenario = SimpleCollapse()
        scenario.check_policy(policy)
        return cls(tuple(sorted(scenario.resolve(overrides).items())), policy)

    def __call__(self, seed: int) -> CollapseRun:
        """A fresh run for ``seed``."""
        return CollapseRun(dict(self.params), self.policy, seed)
