"""DWFM hosts keeping leases on droplets, with the lease work queue that collapsed in October 2025.

The model follows the EC2 section of the AWS report on the us-east-1 event of 19-20 October 2025
(``shared/seeds/aws-2025-10-dynamodb-us-east-1.txt``): "Each DWFM manages a set of droplets ...
and maintains a lease for each droplet currently under management"; "each DWFM host has to check
in and complete a state check with each droplet that it manages every few minutes"; the check
"depends on DynamoDB"; when it cannot complete, leases "slowly started to time out"; once the
dependency returned, "efforts to establish new droplet leases took long enough that the work
could not be completed before they timed out. Additional work was queued to reattempt
establishing the droplet lease ... DWFM had entered a state of congestive collapse".

One :class:`DwfmHost` per host, each with ``droplets_per_host`` droplets, advanced in steps of
``step`` seconds by its :class:`DwfmFleet` (one kernel event per step for the whole fleet). A
host's work is a :class:`~stormproof.sim.parts.workqueue.BatchQueue` of three kinds of items:

* **lease establishments** for droplets without a lease (``establish_cost`` work units each);
  every attempt carries a :class:`~stormproof.policies.deadline.Deadline` ``attempt_timeout``
  seconds out; when it passes, the attempt's caller gives up and asks its
  :class:`~stormproof.policies.retry.RetryPolicy` what to do -- re-queue at once (the 2025
  behaviour), after a jittered backoff, or give up on a refused budget and wait for the
  droplet's next check cycle -- while the stale item stays queued and still costs its work;
* **renewal checks** of leased droplets, one per droplet per ``check_interval`` (1 unit);
* **EC2 API work** (launch state changes and other calls; 1 unit).

A host serves ``host_rate`` units per second, slowed by ``1 + length / slowdown_knee`` (capped
at ``slowdown_cap``) as its queue grows ("Restarting the DWFM hosts cleared out the DWFM queues,
reduced processing times"). While a host's checks fail -- dependency down, host restarting, or
its queue longer than a caller waits -- each leased droplet loses its lease with hazard
``1 / lapse_mean`` per second.

Unleased droplets are lease *calls*. For a retry policy whose decision is the same for every call
(no jitter, no budget: the 2025 behaviour) the host keeps counts per attempt number and asks one
representative :class:`~stormproof.policies.retry.RetryCall` per batch; otherwise it keeps one
``RetryCall`` per droplet, so jitter and budget act per call, as in production.

Policies a host can be given (:class:`HostControls`), all real objects from
:mod:`stormproof.policies`: a :class:`~stormproof.policies.admission.QueueAdmission` on
incoming lease and API work (renewals of existing leases bypass it), a
:class:`~stormproof.policies.bulkhead.Bulkhead` on outstanding lease attempts, deadline-aware
dropping, an :class:`~stormproof.policies.admission.AdaptiveLifo`, and an operator throttle
(a :class:`~stormproof.policies.ratelimit.TokenBucket` set by :meth:`DwfmFleet.throttle`).
Work refused by admission, bulkhead or throttle costs the host nothing: refused lease work is
offered again the next step, refused API work fails ("request limit exceeded").

Random streams: ``dwfm.lapse.<host>`` (which leases lapse), ``dwfm.launches`` (launch arrivals),
``dwfm.placement`` (where a launch lands); policies draw jitter from the streams they are given.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from stormproof._validate import finite_above, finite_at_least, int_at_least
from stormproof.errors import ConfigError
from stormproof.policies.admission import AdaptiveLifo, QueueAdmission
from stormproof.policies.backoff import NoBackoff
from stormproof.policies.bulkhead import ADMITTED, Bulkhead
from stormproof.policies.deadline import Deadline
from stormproof.policies.ratelimit import GRANTED, TokenBucket
from stormproof.policies.retry import GiveUp, RetryCall, RetryPolicy
from stormproof.sim.kernel import Simulation
from stormproof.sim.metrics import BucketCounters
from stormproof.sim.parts.workqueue import (
    DONE,
    WASTED,
    BatchQueue,
    WorkBatch,
    stochastic_round,
)
from stormproof.sim.stats import poisson_draw

__all__ = ["API", "LEASE", "RENEWAL", "DwfmConfig", "DwfmFleet", "DwfmHost", "HostControls"]

#: Work kinds in a host's queue.
LEASE = 0
RENEWAL = 1
API = 2

_TIMEOUT = TimeoutError("lease attempt timed out in the DWFM queue")


@dataclass(frozen=True, slots=True)
class DwfmConfig:
    """The shape of every DWFM host; see the module docstring for the model.

    Args:
        droplets_per_host: droplets each host manages.
        host_rate: work units a host serves per second with a short queue.
        establish_cost: work units of one lease establishment (a renewal check costs 1).
        check_interval: seconds between a leased droplet's renewal checks.
        attempt_timeout: seconds a caller waits for a queued lease attempt (and a check).
        lapse_mean: mean seconds a lease survives while its checks fail.
        slowdown_knee: queued items at which processing takes twice as long.
        slowdown_cap: the most processing slows down (a factor >= 1).
        api_rate: background EC2 API work items per host per second.
        step: seconds per step.
    """

    droplets_per_host: int
    host_rate: float
    establish_cost: float
    check_interval: float
    attempt_timeout: float
    lapse_mean: float
    slowdown_knee: float
    slowdown_cap: float
    api_rate: float
    step: float

    def __post_init__(self) -> None:
        int_at_least("droplets_per_host", self.droplets_per_host, 1)
        finite_above("host_rate", self.host_rate, 0.0)
        finite_above("establish_cost", self.establish_cost, 0.0)
        finite_above("check_interval", self.check_interval, 0.0)
        finite_above("attempt_timeout", self.attempt_timeout, 0.0)
        finite_above("lapse_mean", self.lapse_mean, 0.0)
        finite_above("slowdown_knee", self.slowdown_knee, 0.0)
        finite_at_least("slowdown_cap", self.slowdown_cap, 1.0)
        finite_at_least("api_rate", self.api_rate, 0.0)
        finite_above("step", self.step, 0.0)
        if self.step > self.attempt_timeout:
            raise ConfigError("step", f"must be <= attempt_timeout ({self.attempt_timeout:g})")


@dataclass(frozen=True, slots=True)
class HostControls:
    """The policy objects of one host (each host gets its own; none are shared).

    Args:
        retry: what a lease caller does when its attempt times out.
        admission: asked for each incoming lease or API item with the queue length.
        bulkhead: bounds lease attempts outstanding (queued or in service) at once.
        lifo: serve newest first while the queue stands; CoDel drops the oldest batches.
        drop_expired: skip items whose deadline has passed instead of serving them.
        give_up_wait: seconds over which droplets whose call gave up (budget refused, attempts
            exhausted) start new calls, spread evenly; default the check interval (the
            droplets' next checks).
    """

    retry: RetryPolicy
    admission: QueueAdmission | None = None
    bulkhead: Bulkhead | None = None
    lifo: AdaptiveLifo | None = None
    drop_expired: bool = False
    give_up_wait: float | None = None

    def __post_init__(self) -> None:
        if self.give_up_wait is not None:
            finite_above("give_up_wait", self.give_up_wait, 0.0)


class _Counted:
    """Lease calls as plain counts, for a policy that answers every call alike.

    Used when the retry policy has no budget, no backoff, no attempt limit and no total
    timeout (the 2025 behaviour): its answer to a timed-out attempt is the same for every call
    and every attempt, so one representative :class:`RetryCall` is asked once per expired batch
    and its answer applied to all the batch's calls.
    """

    def __init__(self, policy: RetryPolicy, now: float) -> None:
        self._representative = policy.start(now, inherit_deadline=False)
        self.ready = 0
        self.delayed: dict[int, int] = {}
        self.waiting = 0  # ready + delayed
        self._phase = 0

    def add_new(self, index: int, count: int) -> None:
        if count > 0:
            self.delayed[index] = self.delayed.get(index, 0) + count
            self.waiting += count

    def release(self, index: int) -> None:
        self.ready += self.delayed.pop(index, 0)

    def ready_count(self) -> int:
        return self.ready

    def take(self, now: float, count: int) -> list[tuple[int, int, list[RetryCall] | None]]:
        count = min(count, self.ready)
        if count <= 0:
            return []
        self.ready -= count
        self.waiting -= count
        return [(1, count, None)]

    def fail(self, now: float, batch: WorkBatch, count: int, step: float, sweep: int) -> int:
        """Ask the representative once for the batch; returns how many calls gave up."""
        call = self._representative
        call.attempt = 1
        decision = call.on_failure(now, _TIMEOUT, timed_out=True)
        here = _index(now, step)
        if isinstance(decision, GiveUp):  # pragma: no cover - unlimited policies never give up
            spread, self._phase = _spread(here + 1, sweep, count, self._phase)
            for index in sorted(spread):
                self.add_new(index, spread[index])
            return count
        self.add_new(max(_index(now + decision.delay, step), here + 1), count)
        return 0

    def succeed(self, now: float, batch: WorkBatch, count: int) -> None:
        # No budget (the only case counted calls are used for): one success says it all.
        self._representative.on_success(now)


class _Tracked:
    """One :class:`RetryCall` per unleased droplet: jitter and budget act per call."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.fresh = 0  # droplets due a new call
        self.ready: list[RetryCall] = []
        self.delayed: dict[int, list[RetryCall]] = {}
        self.delayed_fresh: dict[int, int] = {}
        self.waiting = 0
        self._phase = 0

    def add_new(self, index: int, count: int) -> None:
        if count > 0:
            self.delayed_fresh[index] = self.delayed_fresh.get(index, 0) + count
            self.waiting += count

    def release(self, index: int) -> None:
        calls = self.delayed.pop(index, None)
        if calls:
            self.ready.extend(calls)
        self.fresh += self.delayed_fresh.pop(index, 0)

    def ready_count(self) -> int:
        return len(self.ready) + self.fresh

    def take(self, now: float, count: int) -> list[tuple[int, int, list[RetryCall] | None]]:
        calls: list[RetryCall] = []
        retries = min(count, len(self.ready))
        if retries:
            calls = self.ready[-retries:]
            del self.ready[-retries:]
        new = min(count - retries, self.fresh)
        self.fresh -= new
        start = self.policy.start
        for _ in range(new):
            calls.append(start(now, inherit_deadline=False))
        self.waiting -= len(calls)
        return [(1, len(calls), calls)] if calls else []

    def fail(self, now: float, batch: WorkBatch, count: int, step: float, sweep: int) -> int:
        calls = batch.calls or []
        batch.calls = None
        gave_up = 0
        here = _index(now, step)
        delayed = self.delayed
        for call in calls:
            decision = call.on_failure(now, _TIMEOUT, timed_out=True)
            if isinstance(decision, GiveUp):
                gave_up += 1
                continue
            index = max(_index(now + decision.delay, step), here + 1)
            bucket = delayed.get(index)
            if bucket is None:
                delayed[index] = [call]
            else:
                bucket.append(call)
        if gave_up:
            spread, self._phase = _spread(here + 1, sweep, gave_up, self._phase)
            for index in sorted(spread):
                self.delayed_fresh[index] = self.delayed_fresh.get(index, 0) + spread[index]
        self.waiting += len(calls)
        return gave_up

    def succeed(self, now: float, batch: WorkBatch, count: int) -> None:
        calls = batch.calls
        assert calls is not None
        for _ in range(count):
            calls.pop().on_success(now)


def _index(time: float, step: float) -> int:
    """The first step index at or after ``time``."""
    return math.ceil(time / step - 1e-9)


def _spread(first: int, steps: int, count: int, phase: int) -> tuple[dict[int, int], int]:
    """Spread ``count`` calls evenly over ``steps`` steps from ``first``, round-robin.

    The droplets' check phases: calls go to consecutive step offsets starting at ``phase``, so
    a few calls at a time still spread over the whole window. Returns the counts by step index
    and the next phase.
    """
    share, extra = divmod(count, steps)
    out: dict[int, int] = {}
    if share:
        for offset in range(steps):
            out[first + offset] = share
    for i in range(extra):
        index = first + (phase + i) % steps
        out[index] = out.get(index, 0) + 1
    return out, (phase + extra) % steps


def _deterministic(policy: RetryPolicy) -> bool:
    return (
        policy.budget is None
        and isinstance(policy.backoff, NoBackoff)
        and policy.max_attempts is None
        and policy.total_timeout is None
    )


class DwfmHost:
    """One DWFM host: its droplets' leases, its work queue and its policies.

    Attributes:
        leased: droplets with an active lease.
        established: leases established (successful lease attempts).
        attempts: lease attempts queued.
        timeouts: lease attempts whose caller gave up waiting.
        give_ups: lease calls that stopped retrying (budget or attempts) until the next check.
        useful_units, wasted_units: work spent on items served in time, and too late.
        renewal_timeouts: renewal checks served too late or never.
        api_shed, api_ok: API items refused at admission, and served in time.
        refused: lease items refused by admission, bulkhead or throttle (offered again later).
    """

    def __init__(
        self,
        config: DwfmConfig,
        controls: HostControls,
        rng: random.Random,
        *,
        now: float = 0.0,
    ) -> None:
        self.config = config
        self.controls = controls
        self.rng = rng
        self.queue = BatchQueue((config.establish_cost, 1.0, 1.0))
        self.calls: _Counted | _Tracked = (
            _Counted(controls.retry, now)
            if _deterministic(controls.retry)
            else _Tracked(controls.retry)
        )
        self.leased = config.droplets_per_host
        self.dependency_up = True
        self.down_until = -math.inf
        self.throttle: TokenBucket | None = None
        self._credit = 0.0
        self._renewal_carry = 0.0
        self._api_carry = 0.0
        wait = config.check_interval if controls.give_up_wait is None else controls.give_up_wait
        self._sweep_steps = max(1, round(wait / config.step))
        self._lapse_p = -math.expm1(-config.step / config.lapse_mean)
        self.established = 0
        self.attempts = 0
        self.timeouts = 0
        self.give_ups = 0
        self.useful_units = 0.0
        self.wasted_units = 0.0
        self.renewal_timeouts = 0
        self.api_shed = 0
        self.api_ok = 0
        self.refused = 0
        self.peak_length = 0
        self._now = now

    # -- state ----------------------------------------------------------------------------------

    def slowdown(self) -> float:
        """How many times longer an item takes now than with an empty queue."""
        config = self.config
        return min(1.0 + self.queue.length / config.slowdown_knee, config.slowdown_cap)

    def wait_estimate(self) -> float:
        """Seconds an item queued now would wait: queued units at the current speed."""
        return self.queue.units * self.slowdown() / self.config.host_rate

    def checks_failing(self, now: float) -> bool:
        """Whether renewal checks fail now (dependency down, restarting, or queue too long)."""
        return (
            not self.dependency_up
            or now < self.down_until
            or self.wait_estimate() >= self.config.attempt_timeout
        )

    # -- operator actions -----------------------------------------------------------------------

    def restart(self, now: float, downtime: float) -> None:
        """Restart the host: its queue is cleared; callers of lost items learn at their deadline."""
        self.queue.clear()
        self._credit = 0.0
        self.down_until = now + downtime

    # -- admission ------------------------------------------------------------------------------

    def _admit(self, now: float, count: int, *, lease: bool) -> int:
        """How many of ``count`` incoming items the throttle, bulkhead and admission let in."""
        throttle = self.throttle
        if throttle is not None:
            count = min(count, int(throttle.available(now) + 1e-9))
        bulkhead = self.controls.bulkhead if lease else None
        if bulkhead is not None:
            count = min(count, bulkhead.max_concurrent - bulkhead.in_use)
        admission = self.controls.admission
        if admission is not None and count > 0:
            length = self.queue.length
            admitted = 0
            while admitted < count and admission.admit(now, length + admitted):
                admitted += 1
            count = admitted
        if count <= 0:
            return 0
        if throttle is not None and throttle.acquire(now, float(count)) is not GRANTED:
            return 0  # unreachable: the tokens were counted above
        if bulkhead is not None:
            for _ in range(count):
                if bulkhead.acquire(now) is not ADMITTED:  # pragma: no cover - counted above
                    raise ConfigError("bulkhead", "refused a permit it reported free")
        return count

    def offer_api(self, now: float, count: int) -> int:
        """Offer ``count`` API items; returns how many were queued (the rest were shed)."""
        if not self.dependency_up or now < self.down_until:
            self.api_shed += count
            return 0
        admitted = self._admit(now, count, lease=False)
        if admitted:
            self.queue.push(
                WorkBatch(now, admitted, API, deadline=Deadline(now + self.config.attempt_timeout))
            )
        self.api_shed += count - admitted
        return admitted

    # -- the step -------------------------------------------------------------------------------

    def step(self, now: float, index: int) -> None:
        """Advance the host to ``now`` (step number ``index``)."""
        self._now = now
        config = self.config
        calls = self.calls
        for batch in self.queue.expire(now):
            self._expired(now, batch)
        calls.release(index)
        up = self.dependency_up and now >= self.down_until
        if up:
            self._renewal_carry += self.leased * config.step / config.check_interval
            renewals = int(self._renewal_carry)
            self._renewal_carry -= renewals
            if renewals:
                self.queue.push(
                    WorkBatch(
                        now, renewals, RENEWAL, deadline=Deadline(now + config.attempt_timeout)
                    )
                )
            self._api_carry += config.api_rate * config.step
            api = int(self._api_carry)
            self._api_carry -= api
            if api:
                self.offer_api(now, api)
            ready = calls.ready_count()
            if ready:
                admitted = self._admit(now, ready, lease=True)
                self.refused += ready - admitted
                deadline = Deadline(now + config.attempt_timeout)
                for attempt, n, tracked in calls.take(now, admitted):
                    self.queue.push(
                        WorkBatch(now, n, LEASE, deadline=deadline, attempt=attempt, calls=tracked)
                    )
                    self.attempts += n
        if self.queue.length > self.peak_length:
            self.peak_length = self.queue.length
        if now >= self.down_until and self.queue.length:
            budget = self._credit + config.host_rate * config.step / self.slowdown()
            leftover = self.queue.serve(
                now,
                budget,
                self._done,
                drop_expired=self.controls.drop_expired,
                lifo=self.controls.lifo,
            )
            # Only a part-done item carries over: a step that emptied the queue had capacity
            # nobody used, and unused capacity is not stored for a later surge.
            self._credit = leftover if self.queue.length else 0.0
        else:
            self._credit = 0.0
        if self.leased and self.checks_failing(now):
            lapsed = min(self.leased, stochastic_round(self.leased * self._lapse_p, self.rng))
            if lapsed:
                self.leased -= lapsed
                calls.add_new(index + 1, lapsed)
        else:
            self.rng.random()  # one draw a step either way: the stream stays aligned

    def _expired(self, now: float, batch: WorkBatch) -> None:
        count = batch.count
        if batch.kind == LEASE:
            self.timeouts += count
            bulkhead = self.controls.bulkhead
            if bulkhead is not None:
                for _ in range(count):
                    bulkhead.release(now)
            self.give_ups += self.calls.fail(now, batch, count, self.config.step, self._sweep_steps)
        elif batch.kind == RENEWAL:
            self.renewal_timeouts += count

    def _done(self, batch: WorkBatch, count: int, outcome: int) -> None:
        if count <= 0:
            return
        units = count * self.queue.costs[batch.kind]
        if outcome == DONE:
            self.useful_units += units
            if batch.kind == LEASE:
                self.leased += count
                self.established += count
                self.calls.succeed(self._now, batch, count)
                bulkhead = self.controls.bulkhead
                if bulkhead is not None:
                    for _ in range(count):
                        bulkhead.release(self._now)
            elif batch.kind == API:
                self.api_ok += count
        elif outcome == WASTED:
            self.wasted_units += units

    @property
    def unleased(self) -> int:
        """Droplets without a lease."""
        return self.config.droplets_per_host - self.leased


class DwfmFleet:
    """DWFM hosts advanced together, EC2 launch requests, and the operators' levers.

    Args:
        sim: the simulation.
        config: every host's shape.
        hosts: number of hosts.
        controls: ``controls(index)`` builds host ``index``'s policy objects.
        launch_rate: launch requests per second for the whole fleet.
        horizon: nothing is scheduled after this time.

    Launch requests arrive as a Poisson count per step. A launch fails with
    ``unavailable`` while the region's API is down (:meth:`api_down`), with ``request_limit``
    when the launch throttle or its host's admission refuses it, and with
    ``insufficient_capacity`` with probability ``1 - leased fraction`` ("any droplet without an
    active lease is not considered a candidate for new EC2 launches"); otherwise it becomes one
    API item on a random host. Counters per minute in :attr:`metrics`: ``launches``,
    ``launch_ok``, ``insufficient_capacity``, ``request_limit``, ``unavailable``.
    """

    def __init__(
        self,
        sim: Simulation,
        config: DwfmConfig,
        hosts: int,
        controls: Callable[[int], HostControls],
        *,
        launch_rate: float,
        horizon: float,
    ) -> None:
        int_at_least("hosts", hosts, 1)
        finite_at_least("launch_rate", launch_rate, 0.0)
        finite_above("horizon", horizon, 0.0)
        self.sim = sim
        self.config = config
        self.hosts = [
            DwfmHost(config, controls(i), sim.rng(f"dwfm.lapse.{i}"), now=sim.now())
            for i in range(hosts)
        ]
        self.droplets = hosts * config.droplets_per_host
        self.launch_rate = float(launch_rate)
        self.horizon = float(horizon)
        self.metrics = BucketCounters(60.0)
        self.api_up = True
        self.launch_throttle: TokenBucket | None = None
        self._launch_rng = sim.rng("dwfm.launches")
        self._placement_rng = sim.rng("dwfm.placement")
        self._index = 0
        #: Per step: (time, leased fraction, mean queue length per host).
        self.history: list[tuple[float, float, float]] = []
        self._milestones = [0.5, 0.9, 0.99]
        self._watch_from = math.inf

    # -- state ----------------------------------------------------------------------------------

    @property
    def leased(self) -> int:
        """Droplets with a lease, over all hosts."""
        return sum(host.leased for host in self.hosts)

    def total(self, name: str) -> float:
        """The sum of a host counter (``established``, ``wasted_units``, ...) over hosts."""
        return float(sum(getattr(host, name) for host in self.hosts))

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Schedule the first step."""
        self.sim.schedule(self.config.step, self._step)

    def dependency(self, host: int, up: bool) -> None:
        """Mark host ``host``'s dependency down or back."""
        self.hosts[host].dependency_up = up

    def api_down(self) -> None:
        """The region's EC2 API fails launches (its own dependency is down)."""
        self.api_up = False

    def api_back(self) -> None:
        """The region's EC2 API serves launches again; watch the lease milestones from now."""
        self.api_up = True
        self._watch_from = self.sim.now()

    def throttle(self, host_rate: float, launch_rate: float) -> None:
        """Operators throttle incoming work: each host's lease and API intake, and launches."""
        step = self.config.step
        for host in self.hosts:
            host.throttle = TokenBucket(host_rate, max(1.0, host_rate * step))
        self.launch_throttle = TokenBucket(launch_rate, max(1.0, launch_rate * step))

    def relax(self) -> None:
        """Operators remove the throttles."""
        for host in self.hosts:
            host.throttle = None
        self.launch_throttle = None

    def restart(self, host: int, downtime: float) -> None:
        """Restart host ``host`` (its queue is cleared; it serves nothing for ``downtime``)."""
        self.hosts[host].restart(self.sim.now(), downtime)

    # -- the step -------------------------------------------------------------------------------

    def _step(self) -> None:
        now = self.sim.now()
        self._index += 1
        index = self._index
        hosts = self.hosts
        for host in hosts:
            host.step(now, index)
        leased = self.leased
        fraction = leased / self.droplets
        self._launches(now, fraction)
        queued = sum(host.queue.length for host in hosts) / len(hosts)
        self.history.append((now, fraction, queued))
        self.metrics.peak("queue_items", now, queued)
        if now >= self._watch_from:
            while self._milestones and fraction >= self._milestones[0]:
                # A kernel event per milestone: the trace hash records when recovery happened.
                self.sim.schedule(0.0, self._milestone, self._milestones.pop(0))
        if now + self.config.step <= self.horizon + 1e-9:
            self.sim.schedule(self.config.step, self._step)

    def _milestone(self, level: float) -> None:
        """Marks that the leased fraction reached ``level`` (for the trace)."""

    def _launches(self, now: float, fraction: float) -> None:
        metrics = self.metrics
        arrivals = poisson_draw(self._launch_rng, self.launch_rate * self.config.step)
        placement = self._placement_rng
        throttle = self.launch_throttle
        hosts = self.hosts
        for _ in range(arrivals):
            draw = placement.random()  # drawn for every launch: common random numbers
            host = hosts[placement.randrange(len(hosts))]
            metrics.add("launches", now)
            if not self.api_up:
                metrics.add("unavailable", now)
            elif throttle is not None and throttle.acquire(now) is not GRANTED:
                metrics.add("request_limit", now)
            elif draw >= fraction:
                metrics.add("insufficient_capacity", now)
            elif host.offer_api(now, 1):
                metrics.add("launch_ok", now)
            else:
                metrics.add("request_limit", now)

    def leased_series(self, width: float, buckets: int) -> list[float]:
        """The leased fraction at the end of each ``width``-second bucket (last value carried)."""
        out: list[float] = []
        history = self.history
        position = 0
        value = 1.0
        for bucket in range(buckets):
            end = (bucket + 1) * width
            while position < len(history) and history[position][0] <= end + 1e-9:
                value = history[position][1]
                position += 1
            out.append(value)
        return out


def recovery_time(
    history: Sequence[tuple[float, float, float]], start: float, healthy: float
) -> float:
    """Seconds from ``start`` to the beginning of the final stretch at or above ``healthy``.

    NaN when the last step is below ``healthy`` (never recovered within the horizon); 0 when
    the fraction never dropped below it after ``start``.
    """
    if not history or history[-1][1] < healthy:
        return math.nan
    recovered_at = start
    for time, fraction, _ in reversed(history):
        if time < start:
            break
        if fraction < healthy:
            break
        recovered_at = time
    return max(0.0, recovered_at - start)
