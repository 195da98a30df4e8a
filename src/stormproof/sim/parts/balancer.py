"""A load balancer that spreads requests over targets and ejects the ones failing health checks.

Health checks decide which targets receive traffic. Every ``interval`` seconds the balancer probes
each target; after ``unhealthy_after`` failed probes in a row a target stops receiving traffic,
after ``healthy_after`` good ones it receives traffic again. The 2025 NLB report is about what
goes wrong when checks flap: capacity removed because the *checks* failed, not the targets. So the
balancer **fails open** -- when no target is healthy it sends to all of them, since ejecting
everything turns a partial failure into a total one (Envoy's panic mode does the same).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from stormproof._validate import finite_above, int_at_least
from stormproof.errors import ConfigError
from stormproof.sim.kernel import Simulation

__all__ = ["LoadBalancer"]

T = TypeVar("T")


class LoadBalancer(Generic[T]):
    """Round-robin over healthy targets, with periodic health checks.

    Args:
        sim: the simulation.
        targets: what requests are routed to (servers, links, anything).
        probe: ``probe(target) -> bool``, the result of one health check at the current time.
        interval: seconds between checks of each target.
        unhealthy_after: consecutive failed checks that eject a target.
        healthy_after: consecutive good checks that restore it.

    ``pick()`` returns the next target. ``healthy`` lists the targets receiving traffic;
    ``ejections`` and ``restorations`` count state changes; ``fail_open_picks`` counts picks made
    while no target was healthy.
    """

    def __init__(
        self,
        sim: Simulation,
        targets: Sequence[T],
        probe: Callable[[T], bool],
        *,
        interval: float = 10.0,
        unhealthy_after: int = 3,
        healthy_after: int = 2,
    ) -> None:
        if not targets:
            raise ConfigError("targets", "needs at least one target")
        if not callable(probe):
            raise ConfigError("probe", "must be callable(target) -> bool", probe)
        finite_above("interval", interval, 0.0)
        int_at_least("unhealthy_after", unhealthy_after, 1)
        int_at_least("healthy_after", healthy_after, 1)
        self.sim = sim
        self.targets = list(targets)
        self.probe = probe
        self.interval = interval
        self.unhealthy_after = unhealthy_after
        self.healthy_after = healthy_after
        self._up = [True] * len(self.targets)
        self._streak = [0] * len(self.targets)  # consecutive results contradicting the state
        self._next = 0
        self.ejections = 0
        self.restorations = 0
        self.fail_open_picks = 0

    def start(self) -> None:
        """Begin health checking (the first round after one interval)."""
        self.sim.schedule(self.interval, self._check_all)

    @property
    def healthy(self) -> list[T]:
        """Targets currently receiving traffic (all of them when failing open)."""
        chosen = [t for t, up in zip(self.targets, self._up, strict=True) if up]
        return chosen or list(self.targets)

    def is_up(self, index: int) -> bool:
        """Whether target ``index`` passed its health checks."""
        return self._up[index]

    def pick(self) -> T:
        """The next target in round-robin order among healthy ones (all, if none is healthy)."""
        count = len(self.targets)
        for step in range(count):
            index = (self._next + step) % count
            if self._up[index]:
                self._next = index + 1
                return self.targets[index]
        self.fail_open_picks += 1
        index = self._next % count
        self._next = index + 1
        return self.targets[index]

    def _check_all(self) -> None:
        for index, target in enumerate(self.targets):
            self._record(index, bool(self.probe(target)))
        self.sim.schedule(self.interval, self._check_all)

    def _record(self, index: int, ok: bool) -> None:
        up = self._up[index]
        if ok == up:
            self._streak[index] = 0
            return
        self._streak[index] += 1
        if up and self._streak[index] >= self.unhealthy_after:
            self._up[index] = False
            self._streak[index] = 0
            self.ejections += 1
        elif not up and self._streak[index] >= self.healthy_after:
            self._up[index] = True
            self._streak[index] = 0
            self.restorations += 1

    def route(self, send: Callable[[T], Any]) -> Any:
        """Pick a target and call ``send(target)``; returns what ``send`` returns."""
        return send(self.pick())
