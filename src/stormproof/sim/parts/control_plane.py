"""A regional control plane: one pool of worker threads serving API calls for every zone.

The AWS report of 29 April 2011: "The EBS control plane has a regional pool of available
threads it can use to service requests." Create-volume calls for the degraded zone could not
complete once its cluster "exhausted its available capacity", and "because the EBS control
plane (and the create volume API in particular) was configured with a long time-out period,
these slow API calls began to back up and resulted in thread starvation ... and began to fail
API requests for other Availability Zones in that Region as well."

Each zone sends calls as a Poisson process (its own named stream ``api.<zone>``, so every policy
sees the same calls); a share of them are create-volume calls. A call takes a worker for
``service_time`` seconds, except a create-volume call for a zone whose cluster is exhausted
(``is_exhausted(zone)`` is true when it starts), which holds its worker until ``timeout`` and
fails. A call that finds no worker fails at once (no queue).

The worker limit is a real :mod:`stormproof.policies.bulkhead` object: one
:class:`~stormproof.policies.bulkhead.Bulkhead` for the whole region (the 2011 design), or a
:class:`~stormproof.policies.bulkhead.KeyedBulkhead` keyed by zone, each zone getting
``workers // zones`` permits (the fix: one zone's slow calls cannot take the others' threads).

Besides customers' calls, a zone's storage cluster may **negotiate** with the control plane:
"When data for a volume needs to be re-mirrored, a negotiation must take place between the EC2
instance, the EBS nodes with the volume data, and the EBS control plane (which acts as an
authority in this process)". :meth:`ControlPlane.negotiate` starts such calls; each holds a
worker for ``negotiation_time`` seconds and is dropped (not retried here: the caller sends more)
when no worker is free. They are counted apart from customers' calls (``negotiations.<zone>``,
``negotiations_refused.<zone>``), but they take the same threads: that was the 5:30 AM brown-out.

:meth:`ControlPlane.cut_off` is the operators' 8:20 AM change: every call of a zone, negotiation or
customer's, is refused at once and holds no thread.

Per-minute counters (in :attr:`metrics`, 60 s buckets): ``calls.<zone>``, ``errors.<zone>``, the
negotiation counters, and the gauge ``threads_in_use`` (the most threads held at once in the
minute, seen at arrivals).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from stormproof._validate import finite_above, finite_at_least, int_at_least
from stormproof.errors import ConfigError
from stormproof.policies.bulkhead import Admitted, Bulkhead, KeyedBulkhead
from stormproof.sim.kernel import Simulation
from stormproof.sim.metrics import BucketCounters
from stormproof.sim.stats import poisson_draw

__all__ = ["ControlPlane"]


class ControlPlane:
    """API calls from ``zones`` served by a shared (or per-zone) pool of ``workers``.

    Args:
        sim: the simulation.
        zones: zone names; calls for each arrive at ``rate_per_zone`` per second.
        workers: threads in the region.
        per_zone: split the threads into a :class:`KeyedBulkhead` by zone.
        rate_per_zone: API calls per second per zone.
        create_fraction: share of calls that are create-volume calls.
        service_time: seconds a normal call holds a thread.
        timeout: seconds a create-volume call on an exhausted cluster holds its thread.
        is_exhausted: ``is_exhausted(zone)``, whether that zone's cluster has no free space.
        horizon: no calls arrive after this time.
        negotiation_time: seconds a negotiation call holds a worker.
    """

    def __init__(
        self,
        sim: Simulation,
        *,
        zones: Sequence[str],
        workers: int,
        per_zone: bool,
        rate_per_zone: float,
        create_fraction: float,
        service_time: float,
        timeout: float,
        is_exhausted: Callable[[str], bool],
        horizon: float,
        negotiation_time: float = 1.0,
    ) -> None:
        if not zones:
            raise ConfigError("zones", "needs at least one zone")
        int_at_least("workers", workers, 1)
        if per_zone and workers < len(zones):
            raise ConfigError("workers", f"must be >= the number of zones ({len(zones)})", workers)
        finite_above("rate_per_zone", rate_per_zone, 0.0)
        finite_at_least("create_fraction", create_fraction, 0.0)
        if create_fraction > 1.0:
            raise ConfigError("create_fraction", "must be <= 1", create_fraction)
        finite_above("service_time", service_time, 0.0)
        finite_above("timeout", timeout, 0.0)
        finite_at_least("horizon", horizon, 0.0)
        finite_above("negotiation_time", negotiation_time, 0.0)
        self.sim = sim
        self.zones = tuple(zones)
        self.rate = float(rate_per_zone)
        self.create_fraction = float(create_fraction)
        self.service_time = float(service_time)
        self.timeout = float(timeout)
        self.is_exhausted = is_exhausted
        self.horizon = float(horizon)
        self.negotiation_time = float(negotiation_time)
        self.metrics = BucketCounters(60.0)
        self._regional = None if per_zone else Bulkhead(workers)
        self._keyed = KeyedBulkhead(workers // len(zones)) if per_zone else None
        self._creates_disabled: set[str] = set()
        self._cut_off: set[str] = set()
        self._negotiation_rng = sim.rng("api.negotiations")
        self._negotiation_names: dict[str, tuple[str, str]] = {}
        self._rngs = {zone: sim.rng(f"api.{zone}") for zone in self.zones}
        self._calls = {zone: f"calls.{zone}" for zone in self.zones}
        self._errors = {zone: f"errors.{zone}" for zone in self.zones}
        self.peak_in_use = 0
        self._in_use = 0

    def start(self) -> None:
        """Start every zone's arrivals now."""
        for zone in self.zones:
            self._next(zone)

    def disable_creates(self, zone: str) -> None:
        """Refuse create-volume calls for ``zone`` at once (the operators' 2:40 AM change)."""
        self._creates_disabled.add(zone)

    def cut_off(self, zone: str) -> None:
        """Refuse every call of ``zone`` at once (the operators' 8:20 AM change)."""
        self._cut_off.add(zone)

    def negotiate(self, zone: str, rate: float, within: float) -> None:
        """Negotiation calls from ``zone``'s cluster at ``rate``/s (Poisson) over ``within`` s.

        They arrive in one batch per second of ``within``: a storm is tens of calls a second,
        and one event per batch rather than per call keeps a day of it cheap to simulate.
        """
        rng = self._negotiation_rng
        if zone in self._cut_off:
            # Refused on arrival, holding nothing: count the window's calls at once.
            self._count_negotiations(zone, poisson_draw(rng, rate * within), 0)
            return
        slots = max(1, round(within))
        width = within / slots
        for slot in range(slots):
            count = poisson_draw(rng, rate * width)
            if count:
                self.sim.schedule((slot + 0.5) * width, self._negotiations, zone, count)

    def _acquire(self, zone: str, now: float) -> bool:
        if self._keyed is not None:
            decision = self._keyed.acquire(zone, now)
        else:
            assert self._regional is not None
            decision = self._regional.acquire(now, zone)
        if not isinstance(decision, Admitted):
            return False
        self._in_use += 1
        if self._in_use > self.peak_in_use:
            self.peak_in_use = self._in_use
        self.metrics.peak("threads_in_use", now, float(self._in_use))
        return True

    def _negotiations(self, zone: str, count: int) -> None:
        now = self.sim.now()
        admitted = 0
        if zone not in self._cut_off:
            while admitted < count and self._acquire(zone, now):
                admitted += 1
                self.sim.schedule(self.negotiation_time, self._done, zone, True)
        self._count_negotiations(zone, count, admitted)

    def _count_negotiations(self, zone: str, count: int, admitted: int) -> None:
        names = self._negotiation_names.get(zone)
        if names is None:
            names = self._negotiation_names[zone] = (
                f"negotiations.{zone}",
                f"negotiations_refused.{zone}",
            )
        now = self.sim.now()
        self.metrics.add(names[0], now, float(count))
        if admitted < count:
            self.metrics.add(names[1], now, float(count - admitted))

    def _next(self, zone: str) -> None:
        rng = self._rngs[zone]
        gap = rng.expovariate(self.rate)
        is_create = rng.random() < self.create_fraction  # drawn for every call: CRN
        if self.sim.now() + gap <= self.horizon:
            self.sim.schedule(gap, self._arrive, zone, is_create)

    def _arrive(self, zone: str, is_create: bool) -> None:
        now = self.sim.now()
        self._next(zone)
        metrics = self.metrics
        metrics.add(self._calls[zone], now)
        if zone in self._cut_off or (is_create and zone in self._creates_disabled):
            metrics.add(self._errors[zone], now)  # refused fast, holds no thread
            return
        if not self._acquire(zone, now):
            metrics.add(self._errors[zone], now)
            return
        if is_create and self.is_exhausted(zone):
            self.sim.schedule(self.timeout, self._done, zone, False)
        else:
            self.sim.schedule(self.service_time, self._done, zone, True)

    def _done(self, zone: str, ok: bool) -> None:
        now = self.sim.now()
        self._in_use -= 1
        if self._keyed is not None:
            self._keyed.release(zone, now)
        else:
            assert self._regional is not None
            self._regional.release(now)
        if not ok:
            self.metrics.add(self._errors[zone], now)

    def recent_errors(self, zones: Sequence[str], window: float) -> float:
        """Calls of ``zones`` that failed in the last ``window`` seconds (whole minutes)."""
        end = (int(self.sim.now() // 60.0) + 1) * 60.0  # through the current minute
        start = end - 60.0 * max(1, math.ceil(window / 60.0))
        return sum(self.metrics.total_between(self._errors[zone], start, end) for zone in zones)

    def calls_and_errors(
        self, zones: Sequence[str], minutes: int
    ) -> tuple[list[float], list[float]]:
        """Customers' calls and failed calls of ``zones``, summed per minute, first ``minutes``."""
        calls = [0.0] * minutes
        errors = [0.0] * minutes
        for zone in zones:
            for i, value in enumerate(self.metrics.series(self._calls[zone], minutes)):
                calls[i] += value
            for i, value in enumerate(self.metrics.series(self._errors[zone], minutes)):
                errors[i] += value
        return calls, errors

    def error_minutes(self, zones: Sequence[str], threshold: float, minutes: int) -> int:
        """Count the first ``minutes`` minutes whose error rate over ``zones`` tops ``threshold``.

        Minutes without calls do not count.
        """
        calls, errors = self.calls_and_errors(zones, minutes)
        return sum(1 for c, e in zip(calls, errors, strict=True) if c > 0 and e / c > threshold)
