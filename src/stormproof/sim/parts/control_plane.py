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

Per-minute counters (in :attr:`metrics`, 60 s buckets): ``calls.<zone>``, ``errors.<zone>``, and
the gauge ``threads_in_use`` (the most threads held at once in the minute, seen at arrivals).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from stormproof._validate import finite_above, finite_at_least, int_at_least
from stormproof.errors import ConfigError
from stormproof.policies.bulkhead import Admitted, Bulkhead, KeyedBulkhead
from stormproof.sim.kernel import Simulation
from stormproof.sim.metrics import BucketCounters

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
        self.sim = sim
        self.zones = tuple(zones)
        self.rate = float(rate_per_zone)
        self.create_fraction = float(create_fraction)
        self.service_time = float(service_time)
        self.timeout = float(timeout)
        self.is_exhausted = is_exhausted
        self.horizon = float(horizon)
        self.metrics = BucketCounters(60.0)
        self._regional = None if per_zone else Bulkhead(workers)
        self._keyed = KeyedBulkhead(workers // len(zones)) if per_zone else None
        self._creates_disabled: set[str] = set()
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
        if is_create and zone in self._creates_disabled:
            metrics.add(self._errors[zone], now)  # refused fast, holds no thread
            return
        if self._keyed is not None:
            decision = self._keyed.acquire(zone, now)
        else:
            assert self._regional is not None
            decision = self._regional.acquire(now, zone)
        if not isinstance(decision, Admitted):
            metrics.add(self._errors[zone], now)
            return
        self._in_use += 1
        if self._in_use > self.peak_in_use:
            self.peak_in_use = self._in_use
        metrics.peak("threads_in_use", now, float(self._in_use))
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

    def error_minutes(self, zones: Sequence[str], threshold: float, minutes: int) -> int:
        """Count the first ``minutes`` minutes whose error rate over ``zones`` tops ``threshold``.

        Minutes without calls do not count.
        """
        calls = [0.0] * minutes
        errors = [0.0] * minutes
        for zone in zones:
            for i, value in enumerate(self.metrics.series(f"calls.{zone}", minutes)):
                calls[i] += value
            for i, value in enumerate(self.metrics.series(f"errors.{zone}", minutes)):
                errors[i] += value
        return sum(1 for c, e in zip(calls, errors, strict=True) if c > 0 and e / c > threshold)
