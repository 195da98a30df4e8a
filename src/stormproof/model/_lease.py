"""A fleet whose members hold leases: each member simulated on its own, closed-loop.

Member ``i`` starts with a fresh lease (valid ``ttl`` s from time 0) and makes its first call at
a phase drawn uniformly from ``[0, period)`` from the stream ``fleet.<name>.phase``, so the
renewals are spread and every policy sees the same phases (common random numbers). After each
call -- the client's whole call, its own retries included:

* success: the lease is valid until ``now + ttl``; the next call is ``period`` s later;
* failure while the lease is still valid: the next renewal is ``period`` s later, as planned;
* failure after it lapsed: the member tries again ``retry_wait`` s later.

So members call at ``1 / period`` while leased and about ``1 / (call time + retry_wait)``
once their lease has lapsed: a long enough outage of what the renewals depend on turns a
steady trickle of renewals into a crowd of re-acquisitions when it ends, the shape of the 2025
DWFM collapse (docs/scenarios/dwfm-2025.md).

A lease lapses silently, with no event: each member keeps the intervals in which it held one,
and the fleet computes its leased count per second from them at the end of the run.
"""

from __future__ import annotations

import math

from stormproof.errors import ConfigError
from stormproof.model._engine import Client
from stormproof.model.spec import FleetSpec, LeaseSpec
from stormproof.sim.kernel import Simulation

__all__ = ["LeaseFleet"]


class LeaseFleet:
    """The members of ``spec`` (which must have a ``lease``) calling through ``client``."""

    def __init__(
        self, sim: Simulation, name: str, client: Client, spec: FleetSpec, horizon: float
    ) -> None:
        if spec.lease is None:
            raise ConfigError("lease", "a lease fleet needs a fleet with a lease", spec.name)
        self.sim = sim
        self.client = client
        self.lease: LeaseSpec = spec.lease
        self.period = spec.period
        self.size = spec.size
        self.horizon = horizon
        self.since = [0.0] * spec.size
        self.expiry = [spec.lease.ttl] * spec.size
        self.held: list[tuple[float, float]] = []  # closed leased intervals
        self.acquired = 0  # leases got back after lapsing
        self._rng = sim.rng(f"{name}.phase")

    def start(self) -> None:
        """Schedule every member's first call."""
        for member in range(self.size):
            at = self._rng.uniform(0.0, self.period)
            if at < self.horizon:
                self.sim.at(at, self._call, member)

    def _call(self, member: int) -> None:
        self.client.call(self._done, member)

    def _done(self, ok: bool, member: int) -> None:
        now = self.sim.now()
        leased = self.expiry[member] > now
        if ok:
            if not leased:
                self.held.append((self.since[member], self.expiry[member]))
                self.since[member] = now
                self.acquired += 1
            self.expiry[member] = now + self.lease.ttl
            wait = self.period
        else:
            wait = self.period if leased else self.lease.retry_wait
        if now + wait < self.horizon:
            self.sim.schedule(wait, self._call, member)

    def leased_series(self, buckets: int) -> list[float]:
        """Members holding a lease at the start of each one-second bucket."""
        change = [0.0] * (buckets + 1)
        for start, end in self._all():
            first = min(buckets, math.ceil(start))
            last = min(buckets, math.ceil(end))
            if last > first:
                change[first] += 1.0
                change[last] -= 1.0
        series = []
        count = 0.0
        for index in range(buckets):
            count += change[index]
            series.append(count)
        return series

    def leased_at(self, time: float) -> int:
        """Members holding a lease at ``time``."""
        return sum(1 for start, end in self._all() if start <= time < end)

    def _all(self) -> list[tuple[float, float]]:
        return [*self.held, *zip(self.since, self.expiry, strict=True)]
