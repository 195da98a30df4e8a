"""A capacity-limited worker fleet serving synchronous and queued invocations, with priorities.

The Lambda part of the October 2025 us-east-1 event as a reusable part: a fleet whose capacity
(invocations per second) follows a curve -- terminations take some away, launches bring it back
-- serves one synchronous class (a caller waits; an invocation not admitted fails at once, a
throttle) and any number of queued classes (asynchronous invocations, event-source mappings):
their invocations wait in a backlog, and pollers offer them to the fleet at up to
``poll_factor`` times their normal rate while a backlog exists.

The fleet is a fluid model stepped every ``step_s`` seconds; each step has ``capacity * step_s``
invocations of room. How the room is shared is the policy under test:

* **shared** (no priorities): every class gets the same share of what it offered, so pollers
  draining a backlog take room from synchronous callers;
* **priority**: a :class:`~stormproof.policies.admission.PriorityShedder` is asked for each
  invocation with ``load = admitted this step / room``; the synchronous class is asked first,
  then the queued classes in the shedder's order, each until its first refusal (the shedder's
  answer only gets worse as load rises within a step). Asking the synchronous class first is the
  fluid limit of the real dynamics: backlogged pollers stop at their threshold, and a caller
  arriving above it still finds the band up to its own.

Optionally each queued class also has a rate limiter (the operators' throttle,
:class:`~stormproof.policies.ratelimit.TokenBucket` or any ``acquire(now) -> GRANTED``) and an
:class:`~stormproof.policies.concurrency.AIMDLimit` on what its pollers offer per step (pollers
that back off when throttled instead of pushing harder).

Latency of the synchronous class: each step's admitted invocations see a mean response time of
``service_s + W``, with W the M/G/1 waiting time (Pollaczek-Khinchine, exponential service:
``rho * service_s / (1 - rho)``) for shared service, and Cobham's non-preemptive priority formula
(``rho * service_s / (1 - rho_sync)``) with priorities; ``rho`` is capped at ``rho_cap``. The
response time within a step is taken as exponential around that mean, so percentiles over the run
are those of a mixture of exponentials.
"""

from __future__ import annotations

import hashlib
import math
import random
import struct
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

from stormproof._validate import finite_above, finite_at_least
from stormproof.errors import ConfigError
from stormproof.policies.admission import PriorityShedder
from stormproof.policies.concurrency import AIMDLimit
from stormproof.policies.ratelimit import GRANTED, RateLimiter
from stormproof.sim.kernel import Simulation
from stormproof.sim.metrics import BucketCounters

__all__ = ["InvocationClass", "WorkerFleet", "mixture_percentile", "poisson"]

_STANDARD_NORMAL = NormalDist()


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw with exactly one uniform from ``rng``, whatever the mean.

    Inversion for means below 30, a rounded normal approximation above (its error is below a
    percent there); one draw per call keeps a stream's use independent of the values.
    """
    u = rng.random()
    if mean <= 0.0:
        return 0
    if mean < 30.0:
        term = math.exp(-mean)
        cumulative = term
        k = 0
        while u > cumulative and term > 0.0:
            k += 1
            term *= mean / k
            cumulative += term
        return k
    z = _STANDARD_NORMAL.inv_cdf(min(max(u, 1e-12), 1.0 - 1e-12))
    return max(0, round(mean + z * math.sqrt(mean)))


def mixture_percentile(means: Sequence[float], weights: Sequence[float], q: float) -> float:
    """The ``q`` quantile of a mixture of exponentials with ``means``, weighted by ``weights``.

    NaN when the weights sum to zero. Solved by bisection on the mixture's distribution function.
    """
    if not 0.0 < q < 1.0:
        raise ConfigError("q", "must be within (0, 1)", q)
    total = float(sum(weights))
    if total <= 0.0:
        return math.nan
    pairs = [(m, w) for m, w in zip(means, weights, strict=True) if w > 0.0]
    target = q * total

    def below(x: float) -> float:
        return sum(w * (1.0 - math.exp(-x / m)) for m, w in pairs)

    low, high = 0.0, max(m for m, _ in pairs) * -math.log(1.0 - q) + 1e-12
    for _ in range(60):
        mid = (low + high) / 2.0
        if below(mid) < target:
            low = mid
        else:
            high = mid
    return high


@dataclass(frozen=True, slots=True)
class InvocationClass:
    """One class of queued invocations: its name, normal arrival rate and pollers' reach.

    Args:
        name: the class name (a priority class of the shedder, when one is used).
        rate: arrivals per second (Poisson).
        poll_factor: pollers offer up to ``poll_factor * rate`` per second from the backlog.
    """

    name: str
    rate: float
    poll_factor: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("name", "must be a non-empty string", self.name)
        finite_at_least(f"{self.name}.rate", self.rate, 0.0)
        finite_at_least(f"{self.name}.poll_factor", self.poll_factor, 1.0)


class _Backlog:
    """A queued class's waiting invocations as arrival cohorts (for their age)."""

    __slots__ = ("cohorts", "size")

    def __init__(self) -> None:
        self.cohorts: deque[list[float]] = deque()  # [arrived_at, count]
        self.size = 0.0

    def add(self, now: float, count: float) -> None:
        if count > 0.0:
            self.cohorts.append([now, count])
            self.size += count

    def take(self, count: float) -> None:
        self.size = max(0.0, self.size - count)
        cohorts = self.cohorts
        while count > 1e-9 and cohorts:
            head = cohorts[0]
            if head[1] <= count:
                count -= head[1]
                cohorts.popleft()
            else:
                head[1] -= count
                count = 0.0
        if not cohorts:
            self.size = 0.0

    def oldest_age(self, now: float) -> float:
        return now - self.cohorts[0][0] if self.cohorts else 0.0


class WorkerFleet:
    """The fleet, stepped on the kernel (see the module docstring).

    Args:
        sim: the simulation.
        capacity: ``capacity(now)`` -> invocations per second the fleet can serve now.
        sync_rate: synchronous arrivals per second (Poisson; class name ``sync``).
        queued: the queued classes, in the order their pollers are asked when sharing.
        service_s: mean service time of an invocation (for the latency model).
        step_s: the step of the fluid model.
        shedder: ask this per invocation (priorities); ``None`` shares room proportionally.
        poller_limits: make an :class:`AIMDLimit` for a queued class's pollers (per step), or
            ``None`` for pollers that always offer up to their reach.
        rho_cap: utilisation cap in the latency formulas (keeps them finite at saturation).
        metrics: per-bucket counters (see :meth:`_record`).
        horizon: the last step ends at or before it.

    Streams: ``fleet.arrivals`` only (no policy draws from it).

    The kernel sees one event per step at fixed times, so its trace hash cannot tell two seeds
    apart; :meth:`digest` hashes every step's outcome (arrivals, admissions, backlog) as
    little-endian doubles, and scenarios fold it into their trace hash.
    """

    def __init__(
        self,
        sim: Simulation,
        *,
        capacity: Callable[[float], float],
        sync_rate: float,
        queued: Sequence[InvocationClass],
        service_s: float,
        step_s: float,
        shedder: PriorityShedder | None = None,
        poller_limits: Callable[[InvocationClass], AIMDLimit] | None = None,
        rho_cap: float = 0.99,
        metrics: BucketCounters,
        horizon: float,
    ) -> None:
        if not callable(capacity):
            raise ConfigError("capacity", "must be callable(now) -> invocations per second")
        finite_at_least("sync_rate", sync_rate, 0.0)
        finite_above("service_s", service_s, 0.0)
        finite_above("step_s", step_s, 0.0)
        finite_above("rho_cap", rho_cap, 0.0)
        if rho_cap >= 1.0:
            raise ConfigError("rho_cap", "must be < 1", rho_cap)
        names = [c.name for c in queued]
        if len(set(names)) != len(names) or "sync" in names:
            raise ConfigError("queued", "class names must be unique and not 'sync'", names)
        if shedder is not None:
            for name in ("sync", *names):
                if name not in shedder.levels:
                    raise ConfigError("shedder", f"has no level for class {name!r}", shedder)
        finite_above("horizon", horizon, 0.0)
        self.sim = sim
        self.capacity = capacity
        self.sync_rate = float(sync_rate)
        self.queued = list(queued)
        self.service_s = float(service_s)
        self.step_s = float(step_s)
        self.shedder = shedder
        self.rho_cap = float(rho_cap)
        self.metrics = metrics
        self.horizon = float(horizon)
        self.backlogs = {c.name: _Backlog() for c in self.queued}
        self.limiters: dict[str, RateLimiter | None] = {c.name: None for c in self.queued}
        self.poller_limits = (
            {c.name: poller_limits(c) for c in self.queued} if poller_limits else None
        )
        if shedder is not None:
            order = {name: i for i, name in enumerate(shedder.classes)}
            self._priority_order = sorted(self.queued, key=lambda c: order[c.name])
        else:
            self._priority_order = list(self.queued)
        self._rng = sim.rng("fleet.arrivals")
        self._hasher = hashlib.blake2b(digest_size=16)
        self.sync_offered = 0
        self.sync_rejected = 0.0
        self.peak_backlog = 0.0
        self.peak_age = 0.0
        #: Per step: mean sync response time and sync invocations admitted (for percentiles).
        self.latency_means: list[float] = []
        self.latency_weights: list[float] = []

    def start(self) -> None:
        """Schedule the first step."""
        self.sim.schedule(self.step_s, self._step)

    def set_limiter(self, name: str, limiter: RateLimiter | None) -> None:
        """Throttle queued class ``name`` with ``limiter`` from now on (``None`` lifts it)."""
        if name not in self.limiters:
            raise ConfigError("name", f"must be one of {', '.join(self.limiters)}", name)
        self.limiters[name] = limiter

    def digest(self) -> str:
        """Hex digest of every step's outcome so far (see the class docstring)."""
        return self._hasher.hexdigest()

    def backlog(self) -> float:
        """Queued invocations waiting, over all classes."""
        return sum(b.size for b in self.backlogs.values())

    def oldest_age(self, now: float) -> float:
        """Age of the oldest waiting queued invocation (0 when none waits)."""
        return max((b.oldest_age(now) for b in self.backlogs.values()), default=0.0)

    # -- one step -------------------------------------------------------------------------------

    def _step(self) -> None:
        now = self.sim.now()
        dt = self.step_s
        rng = self._rng
        # Arrivals of the step just ended; drawn in a fixed order, one uniform each.
        sync = poisson(rng, self.sync_rate * dt)
        for c in self.queued:
            self.backlogs[c.name].add(now, float(poisson(rng, c.rate * dt)))
        room = max(0.0, self.capacity(now) * dt)
        offered = {c.name: self._offer(now, c) for c in self.queued}
        if self.shedder is None:
            admitted_sync, admitted = self._share(room, sync, offered)
        else:
            admitted_sync, admitted = self._prioritise(now, room, sync, offered)
        for c in self.queued:
            self.backlogs[c.name].take(admitted[c.name])
            if self.poller_limits is not None:
                limit = self.poller_limits[c.name]
                refused = offered[c.name] - admitted[c.name] > 1e-9
                limit.on_sample(now, dt, math.ceil(offered[c.name]), refused)
        total = admitted_sync + sum(admitted.values())
        self._hasher.update(struct.pack("<4d", float(sync), admitted_sync, total, self.backlog()))
        self._record(now, room, sync, admitted_sync, total)
        if now + dt <= self.horizon:
            self.sim.schedule(dt, self._step)

    def _offer(self, now: float, c: InvocationClass) -> float:
        """What the pollers of class ``c`` offer this step, after the throttle if any."""
        reach = c.poll_factor * c.rate * self.step_s
        if self.poller_limits is not None:
            reach = min(reach, float(self.poller_limits[c.name].limit))
        offer = min(self.backlogs[c.name].size, reach)
        limiter = self.limiters[c.name]
        if limiter is None:
            return offer
        granted = 0
        while granted + 1 <= offer and limiter.acquire(now) is GRANTED:
            granted += 1
        return float(granted)

    def _share(
        self, room: float, sync: int, offered: dict[str, float]
    ) -> tuple[float, dict[str, float]]:
        total = sync + sum(offered.values())
        fraction = 1.0 if total <= room else (room / total if total else 0.0)
        return sync * fraction, {name: amount * fraction for name, amount in offered.items()}

    def _prioritise(
        self, now: float, room: float, sync: int, offered: dict[str, float]
    ) -> tuple[float, dict[str, float]]:
        shedder = self.shedder
        assert shedder is not None
        used = 0.0
        admit = shedder.admit
        admitted_sync = 0.0
        for _ in range(sync):
            if not admit(now, "sync", used / room if room > 0.0 else math.inf):
                break
            used += 1.0
            admitted_sync += 1.0
        admitted = dict.fromkeys(offered, 0.0)
        for c in self._priority_order:
            amount = offered[c.name]
            while admitted[c.name] + 1.0 <= amount and admit(
                now, c.name, used / room if room > 0.0 else math.inf
            ):
                used += 1.0
                admitted[c.name] += 1.0
        return admitted_sync, admitted

    def _record(
        self, now: float, room: float, sync: int, admitted_sync: float, total: float
    ) -> None:
        """Book one step.

        Counters ``sync``, ``sync_rejected``, ``sync_latency_sum``, ``sync_admitted``,
        ``queued_served``; gauges ``capacity``, ``backlog``, ``oldest_age_s``, ``utilisation``.
        """
        at = now - self.step_s  # the step covers (now - step, now]: book it at its start
        metrics = self.metrics
        rejected = sync - admitted_sync
        self.sync_offered += sync
        self.sync_rejected += rejected
        metrics.add("sync", at, float(sync))
        metrics.add("sync_rejected", at, rejected)
        metrics.add("queued_served", at, total - admitted_sync)
        cap = self.rho_cap
        rho = min(total / room, cap) if room > 0.0 else cap
        if self.shedder is None:
            busy = rho
        else:
            busy = min(admitted_sync / room, cap) if room > 0.0 else cap
        mean = self.service_s + rho * self.service_s / (1.0 - busy)
        if admitted_sync > 0.0:
            self.latency_means.append(mean)
            self.latency_weights.append(admitted_sync)
            metrics.add("sync_latency_sum", at, mean * admitted_sync)
            metrics.add("sync_admitted", at, admitted_sync)
        backlog = self.backlog()
        age = self.oldest_age(now)
        self.peak_backlog = max(self.peak_backlog, backlog)
        self.peak_age = max(self.peak_age, age)
        metrics.peak("capacity", at, room / self.step_s)
        metrics.peak("backlog", at, backlog)
        metrics.peak("oldest_age_s", at, age)
        metrics.peak("utilisation", at, total / room if room > 0.0 else 0.0)

    def sync_latency_percentile(self, q: float) -> float:
        """The ``q`` quantile of synchronous response time over the run (NaN if none ran)."""
        return mixture_percentile(self.latency_means, self.latency_weights, q)
