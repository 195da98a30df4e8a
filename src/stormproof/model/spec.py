"""The typed topology API: frozen dataclasses describing a user's service graph.

A :class:`Topology` is what a topology file (YAML or TOML, see :mod:`stormproof.model.load`)
becomes, and what a Python user can build directly. Where stormproof already has a frozen
configuration object, the topology holds that object itself, so the file configures the very
objects that run in production: backoff schedules (:mod:`stormproof.policies.backoff`),
:class:`~stormproof.policies.breaker.BreakerConfig`, :class:`~stormproof.policies.pipeline.Hedge`
and :class:`~stormproof.policies.admission.QueueLimit`. Stateful mechanisms (retry budgets,
bulkheads, velocity limiters) are described by small specs whose ``build()`` returns a fresh
object, because every simulated run needs its own.

Every class validates itself on construction and raises
:class:`~stormproof.errors.ConfigError` naming the field and the rule. Checks that need the
whole graph (unknown services, cycles) live in :mod:`stormproof.model.graph`.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field
from typing import Literal

from stormproof._validate import finite_above, finite_at_least, int_at_least
from stormproof.errors import ConfigError
from stormproof.model.schema import NAME_PATTERN
from stormproof.policies.admission import QueueLimit, QueueRate
from stormproof.policies.backoff import Backoff, Constant, Decorrelated, Exponential, NoBackoff
from stormproof.policies.breaker import BreakerConfig
from stormproof.policies.budget import (
    AdaptiveTokenBucket,
    AwsRetryQuota,
    GrpcRetryThrottle,
    RatioBudget,
    RetryBudget,
)
from stormproof.policies.bulkhead import KeyedBulkhead
from stormproof.policies.pipeline import Hedge
from stormproof.policies.retry import RetryPolicy
from stormproof.policies.velocity import VelocityLimiter

__all__ = [
    "PROTECTIONS",
    "AutomationSpec",
    "AwsQuotaSpec",
    "BudgetSpec",
    "BulkheadSpec",
    "BurstLoad",
    "CapacityLoss",
    "ClientSpec",
    "ConstantLoad",
    "EdgeSpec",
    "EntrySpec",
    "FleetSpec",
    "GrpcThrottleSpec",
    "LatencyInjection",
    "LatencySpec",
    "LeaseSpec",
    "LoadShape",
    "LoadSpike",
    "Outage",
    "Partition",
    "PolicySet",
    "QueueRateSpec",
    "RatioBudgetSpec",
    "ServicePatch",
    "ServiceSpec",
    "ServiceTime",
    "SpikeLoad",
    "StuckRule",
    "TokenBucketSpec",
    "Topology",
    "Trigger",
    "VelocitySpec",
]


_NAME = re.compile(NAME_PATTERN)


def _name(field_name: str, value: str) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ConfigError(field_name, "must be a name of letters, digits and _ . : -", value)


def _window(start: float, duration: float) -> None:
    finite_at_least("start", start, 0.0)
    finite_above("duration", duration, 0.0)


# -- budgets --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RatioBudgetSpec:
    """A :class:`~stormproof.policies.budget.RatioBudget`: retries may add ``ratio`` of traffic."""

    ratio: float = 0.2
    min_retries_per_second: float = 10.0
    ttl: float = 10.0

    def __post_init__(self) -> None:
        self.build()

    def build(self) -> RetryBudget:
        """A fresh budget object."""
        return RatioBudget(self.ratio, self.min_retries_per_second, self.ttl)

    def outage_factor(self, max_attempts: int) -> float:
        """Long-run attempts per call while every attempt fails (see docs/model/lint.md)."""
        return min(float(max_attempts), 1.0 + self.ratio)


@dataclass(frozen=True, slots=True)
class AwsQuotaSpec:
    """An :class:`~stormproof.policies.budget.AwsRetryQuota` (the AWS SDKs' standard mode)."""

    capacity: float = 500.0
    retry_cost: float = 5.0
    timeout_cost: float = 10.0

    def __post_init__(self) -> None:
        self.build()

    def build(self) -> RetryBudget:
        """A fresh quota, full."""
        return AwsRetryQuota(self.capacity, self.retry_cost, self.timeout_cost)

    def outage_factor(self, max_attempts: int) -> float:
        """1: once ``capacity / retry_cost`` retries drained it, nothing refills it."""
        return 1.0


@dataclass(frozen=True, slots=True)
class GrpcThrottleSpec:
    """A :class:`~stormproof.policies.budget.GrpcRetryThrottle` (gRFC A6)."""

    max_tokens: float = 10.0
    token_ratio: float = 0.1

    def __post_init__(self) -> None:
        self.build()

    def build(self) -> RetryBudget:
        """A fresh throttle, full."""
        return GrpcRetryThrottle(self.max_tokens, self.token_ratio)

    def outage_factor(self, max_attempts: int) -> float:
        """1: after ``max_tokens / 2`` failures retries stop until successes return."""
        return 1.0


@dataclass(frozen=True, slots=True)
class TokenBucketSpec:
    """An :class:`~stormproof.policies.budget.AdaptiveTokenBucket` (successes earn retries)."""

    capacity: float = 10.0
    deposit: float = 0.1

    def __post_init__(self) -> None:
        self.build()

    def build(self) -> RetryBudget:
        """A fresh bucket, full."""
        return AdaptiveTokenBucket(self.capacity, self.deposit)

    def outage_factor(self, max_attempts: int) -> float:
        """1: with no successes nothing is deposited, so only the initial ``capacity`` is spent."""
        return 1.0


BudgetSpec = RatioBudgetSpec | AwsQuotaSpec | GrpcThrottleSpec | TokenBucketSpec


# -- clients and edges -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LatencySpec:
    """One-way network latency of an edge: ``constant`` or ``exponential`` with ``mean`` s."""

    mean: float = 0.0
    distribution: Literal["constant", "exponential"] = "exponential"

    def __post_init__(self) -> None:
        finite_at_least("mean", self.mean, 0.0)
        if self.distribution not in ("constant", "exponential"):
            raise ConfigError(
                "distribution", 'must be "constant" or "exponential"', self.distribution
            )

    def draw(self, rng: random.Random) -> float:
        """One latency draw in seconds."""
        if self.mean == 0.0 or self.distribution == "constant":
            return self.mean
        return rng.expovariate(1.0 / self.mean)


def backoff_has_jitter(backoff: Backoff) -> bool:
    """Whether ``backoff`` randomises its delays (decorrelated jitter always does)."""
    if isinstance(backoff, Decorrelated):
        return True
    jitter = getattr(backoff, "jitter", None)
    return jitter is not None and jitter.value != "none"


def backoff_max_delay(backoff: Backoff, retry: int) -> float:
    """The longest delay ``backoff`` can choose before retry number ``retry`` (1-based)."""
    if isinstance(backoff, NoBackoff):
        return 0.0
    if isinstance(backoff, Constant):
        return backoff.seconds
    if isinstance(backoff, Exponential):
        return min(backoff.cap, backoff.base * backoff.factor ** (retry - 1))
    if isinstance(backoff, Decorrelated):
        return min(backoff.cap, backoff.base * backoff.multiplier**retry)
    # Another schedule: ask it for its delay with a generator that always draws the maximum.
    return backoff.delay(retry, None, _MaxRandom())


class _MaxRandom(random.Random):
    """A random source whose uniform draws sit at the top of their range."""

    def random(self) -> float:
        return 1.0 - 1e-12


@dataclass(frozen=True, slots=True)
class ClientSpec:
    """How a caller calls one dependency: timeouts, retries, budget, breaker, hedging.

    Args:
        timeout: seconds after a send at which the caller gives up on that attempt.
        max_attempts: total attempts including the first (as :class:`RetryPolicy`).
        backoff: the delay schedule between attempts (a :mod:`stormproof.policies.backoff`
            object).
        budget: a retry budget shared by all calls on this edge, or ``None``.
        total_timeout: seconds the whole call may take, retries and waits included, or ``None``.
        breaker: a circuit breaker on this edge, or ``None``.
        hedge: send ``max_hedges`` extra copies of an attempt ``delay`` s apart, or ``None``.
    """

    timeout: float = 1.0
    max_attempts: int = 1
    backoff: Backoff = field(default_factory=NoBackoff)
    budget: BudgetSpec | None = None
    total_timeout: float | None = None
    breaker: BreakerConfig | None = None
    hedge: Hedge | None = None

    def __post_init__(self) -> None:
        finite_above("timeout", self.timeout, 0.0)
        int_at_least("max_attempts", self.max_attempts, 1)
        if not isinstance(self.backoff, Backoff):
            raise ConfigError("backoff", "must be a stormproof backoff schedule", self.backoff)
        if self.total_timeout is not None:
            finite_above("total_timeout", self.total_timeout, 0.0)
        if self.breaker is not None and not isinstance(self.breaker, BreakerConfig):
            raise ConfigError("breaker", "must be a BreakerConfig", self.breaker)
        if self.hedge is not None and not isinstance(self.hedge, Hedge):
            raise ConfigError("hedge", "must be a Hedge", self.hedge)

    @property
    def retries(self) -> bool:
        """Whether this client ever makes a second attempt."""
        return self.max_attempts > 1

    @property
    def copies_per_attempt(self) -> int:
        """Sends per attempt in the worst case (1 plus the hedges)."""
        return 1 + (self.hedge.max_hedges if self.hedge is not None else 0)

    def retry_policy(self, budget: RetryBudget | None) -> RetryPolicy:
        """The production :class:`RetryPolicy` of this client, with ``budget`` attached."""
        return RetryPolicy(
            max_attempts=self.max_attempts,
            backoff=self.backoff,
            budget=budget,
            total_timeout=self.total_timeout,
        )

    def worst_case_time(self) -> float:
        """The longest this client can take for one call: every attempt times out.

        ``max_attempts`` timeouts plus the longest backoff before each retry, bounded by
        ``total_timeout`` when one is set.
        """
        total = self.max_attempts * self.timeout + sum(
            backoff_max_delay(self.backoff, retry) for retry in range(1, self.max_attempts)
        )
        if self.total_timeout is not None:
            total = min(total, self.total_timeout)
        return total


@dataclass(frozen=True, slots=True)
class EdgeSpec:
    """A dependency: ``source`` calls ``target`` under ``client``, over a link of ``latency``.

    ``for_zone`` routes by zone: the call is made only for requests that reached ``source``
    from a caller in that zone (a regional service calling each zone's own cluster).
    """

    source: str
    target: str
    client: ClientSpec = field(default_factory=ClientSpec)
    latency: LatencySpec = field(default_factory=LatencySpec)
    for_zone: str | None = None

    def __post_init__(self) -> None:
        _name("from", self.source)
        _name("to", self.target)
        if self.for_zone is not None:
            _name("for_zone", self.for_zone)

    @property
    def key(self) -> str:
        """``source->target``, the edge's name in findings, metrics and policy sets."""
        return f"{self.source}->{self.target}"


# -- services ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServiceTime:
    """Seconds of work per request: ``base + per_request * concurrency``.

    ``concurrency`` counts the requests doing local work at the service, the new one included
    (contention for CPU, locks or disks); ``per_request = 0`` makes it load-independent.
    ``distribution`` draws the base part: ``constant``, or ``exponential`` with mean ``base``.
    """

    base: float
    per_request: float = 0.0
    distribution: Literal["constant", "exponential"] = "constant"

    def __post_init__(self) -> None:
        finite_at_least("base", self.base, 0.0)
        finite_at_least("per_request", self.per_request, 0.0)
        if self.distribution not in ("constant", "exponential"):
            raise ConfigError(
                "distribution", 'must be "constant" or "exponential"', self.distribution
            )

    def draw(self, concurrency: int, rng: random.Random) -> float:
        """Seconds of work for a request starting at ``concurrency``."""
        base = self.base
        if self.distribution == "exponential" and base > 0.0:
            base = rng.expovariate(1.0 / base)
        return base + self.per_request * concurrency


@dataclass(frozen=True, slots=True)
class QueueRateSpec:
    """A :class:`~stormproof.policies.admission.QueueRate` admission policy."""

    max_queue: int
    rate: float
    soft_queue: int | None = None

    def __post_init__(self) -> None:
        self.build()

    def build(self) -> QueueRate:
        """A fresh policy."""
        return QueueRate(self.max_queue, self.rate, soft_queue=self.soft_queue)


@dataclass(frozen=True, slots=True)
class BulkheadSpec:
    """A :class:`~stormproof.policies.bulkhead.KeyedBulkhead` keyed by the caller's zone."""

    max_concurrent: int
    max_queue: int = 0
    per: Literal["zone"] = "zone"

    def __post_init__(self) -> None:
        if self.per != "zone":
            raise ConfigError("per", 'must be "zone"', self.per)
        self.build()

    def build(self) -> KeyedBulkhead:
        """A fresh keyed bulkhead."""
        return KeyedBulkhead(self.max_concurrent, max_queue=self.max_queue)


@dataclass(frozen=True, slots=True)
class VelocitySpec:
    """A :class:`~stormproof.policies.velocity.VelocityLimiter` on capacity removal."""

    window: float
    max_removed: int | None = None
    max_fraction: float | None = None

    def __post_init__(self) -> None:
        self.build()

    def build(self) -> VelocityLimiter:
        """A fresh limiter."""
        return VelocityLimiter(
            self.window, max_removed=self.max_removed, max_fraction=self.max_fraction
        )


@dataclass(frozen=True, slots=True)
class AutomationSpec:
    """Automation that removes a service's capacity (health-check ejection, AZ failover).

    ``velocity`` bounds how fast it may remove capacity; without it, flapping checks can
    remove all of it (the 2025 NLB case). Described for the linter; not simulated.
    """

    removes_capacity: bool = True
    velocity: VelocitySpec | None = None


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """A service: a pool of ``workers`` (``None``: unbounded) and a queue of ``queue_limit``.

    A worker is held for the whole request: its local work, then its calls to dependencies --
    one after another in the order the edges are listed (``calls="sequential"``), or all at once
    (``calls="parallel"``, a fan-out that fails as soon as one call fails and succeeds when all
    have). ``zones`` names where the service runs; ``admission`` sheds before queueing;
    ``bulkhead`` limits concurrent requests per calling zone.
    """

    name: str
    service_time: ServiceTime
    workers: int | None = None
    queue_limit: int | None = None
    zones: tuple[str, ...] = ()
    admission: QueueLimit | QueueRateSpec | None = None
    bulkhead: BulkheadSpec | None = None
    automation: AutomationSpec | None = None
    calls: Literal["sequential", "parallel"] = "sequential"

    def __post_init__(self) -> None:
        _name("name", self.name)
        if self.calls not in ("sequential", "parallel"):
            raise ConfigError("calls", 'must be "sequential" or "parallel"', self.calls)
        if not isinstance(self.service_time, ServiceTime):
            raise ConfigError("service_time", "must be a ServiceTime", self.service_time)
        if self.workers is not None:
            int_at_least("workers", self.workers, 1)
        if self.queue_limit is not None:
            int_at_least("queue_limit", self.queue_limit, 0)
        for zone in self.zones:
            _name("zones", zone)

    def capacity(self) -> float:
        """Requests per second the pool completes at most, from local work alone.

        With ``workers`` bounded: ``workers / (base + per_request * workers)``. Unbounded:
        ``1 / per_request`` (the limit of ``n / (base + per_request * n)``), or infinity when
        the service time does not grow with load.
        """
        time = self.service_time
        if self.workers is not None:
            busy = time.base + time.per_request * self.workers
            return math.inf if busy == 0.0 else self.workers / busy
        return math.inf if time.per_request == 0.0 else 1.0 / time.per_request


# -- load ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConstantLoad:
    """Poisson arrivals at ``rate`` per second."""

    rate: float

    def __post_init__(self) -> None:
        finite_at_least("rate", self.rate, 0.0)


@dataclass(frozen=True, slots=True)
class SpikeLoad:
    """``rate`` per second, ``spike_rate`` during ``[start, start + duration)``."""

    rate: float
    spike_rate: float
    start: float
    duration: float

    def __post_init__(self) -> None:
        finite_at_least("rate", self.rate, 0.0)
        finite_at_least("spike_rate", self.spike_rate, 0.0)
        _window(self.start, self.duration)


@dataclass(frozen=True, slots=True)
class BurstLoad:
    """Bursts at ``rate`` for ``burst`` s separated by ``idle`` s at ``idle_rate``, from ``start``.

    Before ``start`` the load is ``idle_rate``.
    """

    rate: float
    burst: float
    idle: float
    idle_rate: float = 0.0
    start: float = 0.0

    def __post_init__(self) -> None:
        finite_at_least("rate", self.rate, 0.0)
        finite_above("burst", self.burst, 0.0)
        finite_above("idle", self.idle, 0.0)
        finite_at_least("idle_rate", self.idle_rate, 0.0)
        finite_at_least("start", self.start, 0.0)


LoadShape = ConstantLoad | SpikeLoad | BurstLoad


@dataclass(frozen=True, slots=True)
class EntrySpec:
    """An entry point: outside callers in ``zone`` sending ``load`` to ``target``."""

    name: str
    target: str
    load: LoadShape
    client: ClientSpec = field(default_factory=ClientSpec)
    latency: LatencySpec = field(default_factory=LatencySpec)
    zone: str | None = None

    def __post_init__(self) -> None:
        _name("name", self.name)
        _name("target", self.target)
        if not isinstance(self.load, ConstantLoad | SpikeLoad | BurstLoad):
            raise ConfigError("load", "must be a load shape", self.load)


@dataclass(frozen=True, slots=True)
class LeaseSpec:
    """Leases a fleet's members hold: each renewal that succeeds keeps one valid ``ttl`` s.

    A member whose lease is valid calls every ``period`` s (a failed renewal waits for the next
    one); once it has lapsed, the member tries to get a lease back ``retry_wait`` s after each
    failed call, so lapsed members call more often than leased ones -- the re-acquisition
    pressure of the 2025 DWFM collapse.
    """

    ttl: float
    retry_wait: float = 1.0

    def __post_init__(self) -> None:
        finite_above("ttl", self.ttl, 0.0)
        # A zero wait after an immediate error reply would loop without time passing.
        finite_above("retry_wait", self.retry_wait, 0.0)


@dataclass(frozen=True, slots=True)
class FleetSpec:
    """``size`` hosts, each renewing a lease (or answering a health check) every ``period`` s.

    The fleet offers ``size / period`` calls per second to ``target``. Without ``lease`` it is
    simulated as an entry point with that constant rate; with a :class:`LeaseSpec` each member
    is simulated on its own, holding a lease that lapses when renewals fail.
    """

    name: str
    target: str
    size: int
    period: float
    client: ClientSpec = field(default_factory=ClientSpec)
    latency: LatencySpec = field(default_factory=LatencySpec)
    zone: str | None = None
    lease: LeaseSpec | None = None

    def __post_init__(self) -> None:
        _name("name", self.name)
        _name("target", self.target)
        int_at_least("size", self.size, 1)
        finite_above("period", self.period, 0.0)
        if self.lease is not None and not isinstance(self.lease, LeaseSpec):
            raise ConfigError("lease", "must be a LeaseSpec", self.lease)

    @property
    def rate(self) -> float:
        """Calls per second the fleet offers."""
        return self.size / self.period


# -- triggers --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outage:
    """``target`` service fails for ``duration`` s: requests ``hang`` (no reply) or ``error``."""

    name: str
    target: str
    start: float
    duration: float
    mode: Literal["hang", "error"] = "hang"

    def __post_init__(self) -> None:
        _window(self.start, self.duration)
        if self.mode not in ("hang", "error"):
            raise ConfigError("mode", 'must be "hang" or "error"', self.mode)


@dataclass(frozen=True, slots=True)
class LatencyInjection:
    """Every request starting local work at ``target`` takes ``extra`` s longer in the window."""

    name: str
    target: str
    start: float
    duration: float
    extra: float

    def __post_init__(self) -> None:
        _window(self.start, self.duration)
        finite_above("extra", self.extra, 0.0)


@dataclass(frozen=True, slots=True)
class CapacityLoss:
    """``fraction`` of ``target``'s workers are gone during the window (needs bounded workers)."""

    name: str
    target: str
    start: float
    duration: float
    fraction: float

    def __post_init__(self) -> None:
        _window(self.start, self.duration)
        finite_above("fraction", self.fraction, 0.0)
        if self.fraction > 1.0:
            raise ConfigError("fraction", "must be within (0, 1]", self.fraction)


@dataclass(frozen=True, slots=True)
class Partition:
    """Messages on the ``target`` edge (``a->b``), or on every link into a service, are lost."""

    name: str
    target: str
    start: float
    duration: float

    def __post_init__(self) -> None:
        _window(self.start, self.duration)


@dataclass(frozen=True, slots=True)
class LoadSpike:
    """Entry point ``target`` sends ``rate`` per second during the window."""

    name: str
    target: str
    start: float
    duration: float
    rate: float

    def __post_init__(self) -> None:
        _window(self.start, self.duration)
        finite_at_least("rate", self.rate, 0.0)


Trigger = Outage | LatencyInjection | CapacityLoss | Partition | LoadSpike


# -- the topology ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StuckRule:
    """When a run counts as stuck.

    Stuck: the goodput of the entry points and fleets over ``[late_start, horizon)`` is below
    ``goodput_fraction`` of the load they offer then.
    """

    late_start: float
    goodput_fraction: float = 0.75

    def __post_init__(self) -> None:
        finite_at_least("late_start", self.late_start, 0.0)
        finite_above("goodput_fraction", self.goodput_fraction, 0.0)
        if self.goodput_fraction > 1.0:
            raise ConfigError("goodput_fraction", "must be within (0, 1]", self.goodput_fraction)


#: The service protections a policy set can set or remove.
PROTECTIONS = ("queue_limit", "admission", "bulkhead")


@dataclass(frozen=True, slots=True)
class ServicePatch:
    """How a policy set changes a service's protections.

    A field that is not ``None`` replaces the service's own setting (or adds it); a name in
    ``remove`` (one of ``queue_limit``, ``admission``, ``bulkhead``) takes the service's
    setting away, leaving the queue unbounded or the service without admission or bulkhead.
    Everything else stays as the topology writes it.
    """

    queue_limit: int | None = None
    admission: QueueLimit | QueueRateSpec | None = None
    bulkhead: BulkheadSpec | None = None
    remove: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.queue_limit is not None:
            int_at_least("queue_limit", self.queue_limit, 0)
        for name in self.remove:
            if name not in PROTECTIONS:
                raise ConfigError("remove", f"must name one of {', '.join(PROTECTIONS)}", name)
            if getattr(self, name) is not None:
                raise ConfigError("remove", f"{name} is both set and removed", name)
        if len(set(self.remove)) != len(self.remove):
            raise ConfigError("remove", "names a protection twice", self.remove)


@dataclass(frozen=True, slots=True)
class PolicySet:
    """A named alternative to the policies as written.

    It replaces the whole client of the edges it names (by ``source->target``) and of the
    entries and fleets it names -- so a breaker, budget or hedge the replacement does not list
    is gone -- and patches the services it names (:class:`ServicePatch`: set or remove a
    protection). ``fleets`` is the same as ``entries`` for fleets; ``entries`` also accepts
    fleet names, as it always has.
    """

    name: str
    edges: tuple[tuple[str, ClientSpec], ...] = ()
    entries: tuple[tuple[str, ClientSpec], ...] = ()
    services: tuple[tuple[str, ServicePatch], ...] = ()
    fleets: tuple[tuple[str, ClientSpec], ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        _name("name", self.name)

    def summary(self) -> str:
        """One line naming what the set changes (for tables and reports)."""
        parts = []
        if self.edges:
            parts.append("clients of " + ", ".join(key for key, _ in self.edges))
        callers = [name for name, _ in (*self.entries, *self.fleets)]
        if callers:
            parts.append("clients of " + ", ".join(callers))
        for name, patch in self.services:
            changed = [f for f in PROTECTIONS if getattr(patch, f) is not None]
            words = [*(f"sets {f}" for f in changed), *(f"removes {f}" for f in patch.remove)]
            parts.append(f"{name}: {', '.join(words) or 'no change'}")
        return "; ".join(parts) or "changes nothing"


@dataclass(frozen=True, slots=True)
class Topology:
    """A service graph with its load, triggers and alternatives.

    Build it directly, or load it with :func:`stormproof.model.load.load_file`; check it with
    :func:`stormproof.model.graph.check`, lint it with :func:`stormproof.model.lint.lint` and
    simulate it with :class:`stormproof.model.simulate.TopologyScenario`.
    """

    name: str
    services: tuple[ServiceSpec, ...]
    entries: tuple[EntrySpec, ...] = ()
    edges: tuple[EdgeSpec, ...] = ()
    fleets: tuple[FleetSpec, ...] = ()
    triggers: tuple[Trigger, ...] = ()
    zones: tuple[str, ...] = ()
    horizon: float = 60.0
    stuck: StuckRule | None = None
    policy_sets: tuple[PolicySet, ...] = ()
    allow_cycles: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        _name("name", self.name)
        finite_above("horizon", self.horizon, 0.0)
        if not self.services:
            raise ConfigError("services", "needs at least one service")

    def service(self, name: str) -> ServiceSpec:
        """The service called ``name``."""
        for service in self.services:
            if service.name == name:
                return service
        raise ConfigError("service", f"{name!r} is not a service of {self.name}")

    def stuck_rule(self) -> StuckRule:
        """The stuck rule, defaulting to the last quarter of the horizon."""
        return self.stuck or StuckRule(late_start=0.75 * self.horizon)
