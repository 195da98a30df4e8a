"""Network Manager: propagation of network state, with a backlog that slows it down.

The model follows the EC2 section of the AWS report on the us-east-1 event of 20 October 2025
(``shared/seeds/aws-2025-10-dynamodb-us-east-1.txt``): "a system called Network Manager
propagates the network configuration" of each new instance; after DWFM recovered, "a significant
backlog of network state propagations needed to be processed", "Network Manager started to
experience increased latencies in network propagation times as it worked to process the
backlog", and new instances "would not have the necessary network connectivity" until then.

:class:`PropagationManager` advances in steps of ``step`` seconds. Work of two classes --
``launch`` (a new instance's configuration, which a customer is waiting for) and ``backlog``
(delayed propagations for instances launched or terminated during the event) -- enters its
*working set*, a :class:`~stormproof.sim.parts.workqueue.BatchQueue` served first in, first
out at ``rate / (1 + (working_set / knee) ** exponent)`` items per second: the assumed reason
latency grows with the backlog is that every propagation costs more while many are outstanding
(state to reconcile against them, fan-out to appliances). Throughput therefore *falls* as the
working set grows, so a backlog beyond ``knee * (rate / inflow - 1) ** (1 / exponent)`` grows by
itself: the load has to come down before it drains.

Intake, in this order each step: the operator throttle (a
:class:`~stormproof.policies.ratelimit.TokenBucket`, :meth:`PropagationManager.throttle`), a
:class:`~stormproof.policies.admission.PriorityShedder` by class with ``load = working_set /
knee``, and a :class:`~stormproof.policies.admission.QueueAdmission` on the working-set length.
Refused backlog work waits upstream at no cost (it is durable state of the control plane) and is
offered again the next step; refused launches fail at once ("request limit exceeded").

Launch latency is from the launch to the end of its propagation. Counters per minute in
:attr:`metrics`: ``launches``, ``launch_refused``, ``propagated``, and the gauges
``launch_latency`` (the largest latency of a launch propagated in the minute, or the age of the
oldest waiting launch if larger) and ``working_set``.
"""

from __future__ import annotations

import random
from collections import deque

from stormproof._validate import finite_above, finite_at_least
from stormproof.policies.admission import PriorityShedder, QueueAdmission
from stormproof.policies.ratelimit import TokenBucket
from stormproof.sim.kernel import Simulation
from stormproof.sim.metrics import BucketCounters
from stormproof.sim.parts.workqueue import BatchQueue, WorkBatch
from stormproof.sim.stats import poisson_draw

__all__ = ["BACKLOG", "CLASSES", "LAUNCH", "PropagationManager"]

#: Work classes (indices into :data:`CLASSES`).
LAUNCH = 0
BACKLOG = 1
CLASSES = ("launch", "backlog")


class PropagationManager:
    """Network Manager's propagation working set; see the module docstring.

    Args:
        sim: the simulation.
        rate: propagations per second with a small working set.
        knee: working-set size at which propagation takes twice as long.
        exponent: how steeply the cost grows past the knee (1: linearly in the working set).
        step: seconds per step.
        admission: asked per incoming item with the working-set length (``None``: admit all).
        shedder: a :class:`PriorityShedder` over :data:`CLASSES` (``None``: no priorities).
        horizon: no step is scheduled after this time.
    """

    def __init__(
        self,
        sim: Simulation,
        *,
        rate: float,
        knee: float,
        exponent: float = 1.0,
        step: float,
        admission: QueueAdmission | None = None,
        shedder: PriorityShedder | None = None,
        horizon: float,
    ) -> None:
        finite_above("rate", rate, 0.0)
        finite_above("knee", knee, 0.0)
        finite_above("exponent", exponent, 0.0)
        finite_above("step", step, 0.0)
        finite_at_least("horizon", horizon, 0.0)
        self.sim = sim
        self.rate = float(rate)
        self.knee = float(knee)
        self.exponent = float(exponent)
        self.step = float(step)
        self.admission = admission
        self.shedder = shedder
        self.horizon = float(horizon)
        self.queue = BatchQueue((1.0, 1.0))
        self.upstream: deque[WorkBatch] = deque()
        self.upstream_items = 0
        self.throttle_bucket: TokenBucket | None = None
        self.metrics = BucketCounters(60.0)
        self._launches: deque[WorkBatch] = deque()  # launch batches in the working set, FIFO
        self._credit = 0.0
        self._launch_rate = 0.0
        self._launch_rng: random.Random = sim.rng("nm.launches")
        self._release_left = 0
        self._release_rate = 0.0
        self._release_carry = 0.0
        self.propagated = 0
        self.launches = 0
        self.launch_refused = 0
        self.peak_working_set = 0
        self.latency_sum = 0.0
        self.launches_propagated = 0
        #: Per step: (time, launch latency gauge, working set, upstream backlog).
        self.history: list[tuple[float, float, int, int]] = []
        self._level = 0

    # -- inputs ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Schedule the first step."""
        self.sim.schedule(self.step, self._step)

    def set_launch_rate(self, rate: float) -> None:
        """New instances per second from now on (each needs one propagation)."""
        finite_at_least("rate", rate, 0.0)
        self._launch_rate = float(rate)

    def release_backlog(self, items: int, rate: float) -> None:
        """Hand over ``items`` delayed propagations at ``rate`` per second from now."""
        finite_above("rate", rate, 0.0)
        self._release_left += int(items)
        self._release_rate = float(rate)

    def throttle(self, rate: float | None) -> None:
        """Operators cap the intake at ``rate`` items per second (``None`` removes the cap)."""
        if rate is None:
            self.throttle_bucket = None
        else:
            self.throttle_bucket = TokenBucket(rate, max(1.0, rate * self.step))

    # -- state ----------------------------------------------------------------------------------

    @property
    def working_set(self) -> int:
        """Propagations accepted and not yet done."""
        return self.queue.length

    @property
    def backlog(self) -> int:
        """Everything not yet propagated: working set, upstream, and not yet released."""
        return self.queue.length + self.upstream_items + self._release_left

    def throughput(self) -> float:
        """Propagations per second at the current working set."""
        pressure: float = (self.queue.length / self.knee) ** self.exponent
        return self.rate / (1.0 + pressure)

    def oldest_launch_age(self, now: float) -> float:
        """Seconds the oldest launch still waiting for its propagation has waited (0 if none)."""
        launches = self._launches
        while launches and launches[0].count == 0:
            launches.popleft()
        return now - launches[0].origin if launches else 0.0

    # -- the step -------------------------------------------------------------------------------

    def _mark(self, level: int) -> None:
        """The working set now has ``level`` binary digits (a trace marker)."""

    def _admit(self, now: float, kind: int, count: int) -> int:
        bucket = self.throttle_bucket
        if bucket is not None:
            count = min(count, int(bucket.available(now) + 1e-9))
        shedder = self.shedder
        if (
            shedder is not None
            and count > 0
            and not shedder.admit(now, CLASSES[kind], self.queue.length / self.knee)
        ):
            count = 0
        admission = self.admission
        if admission is not None and count > 0:
            length = self.queue.length
            admitted = 0
            while admitted < count and admission.admit(now, length + admitted):
                admitted += 1
            count = admitted
        if count > 0 and bucket is not None:
            bucket.acquire(now, float(count))
        return count

    def _enter(self, batch: WorkBatch, now: float) -> None:
        batch.enqueued_at = now
        self.queue.push(batch)
        if batch.kind == LAUNCH:
            self._launches.append(batch)

    def _step(self) -> None:
        now = self.sim.now()
        metrics = self.metrics
        step = self.step
        # New launches: refused ones fail fast, admitted ones enter the working set.
        launches = poisson_draw(self._launch_rng, self._launch_rate * step)
        if launches:
            self.launches += launches
            metrics.add("launches", now, launches)
            admitted = self._admit(now, LAUNCH, launches)
            if admitted:
                self._enter(WorkBatch(now, admitted, LAUNCH), now)
            if launches - admitted:
                self.launch_refused += launches - admitted
                metrics.add("launch_refused", now, launches - admitted)
        # Delayed propagations handed over by the control plane join the upstream backlog.
        if self._release_left:
            self._release_carry += self._release_rate * step
            released = min(self._release_left, int(self._release_carry))
            self._release_carry -= released
            if released:
                self._release_left -= released
                self.upstream.append(WorkBatch(now, released, BACKLOG))
                self.upstream_items += released
        # Upstream work enters as admission allows, oldest first.
        upstream = self.upstream
        while upstream:
            batch = upstream[0]
            admitted = self._admit(now, BACKLOG, batch.count)
            if admitted <= 0:
                break
            self.upstream_items -= admitted
            if admitted == batch.count:
                upstream.popleft()
                self._enter(batch, now)
            else:
                batch.count -= admitted
                self._enter(WorkBatch(now, admitted, BACKLOG, origin=batch.origin), now)
                break
        if self.queue.length > self.peak_working_set:
            self.peak_working_set = self.queue.length
        latency = 0.0
        if self.queue.length:
            budget = self._credit + self.throughput() * step
            served: list[tuple[WorkBatch, int]] = []
            leftover = self.queue.serve(
                now, budget, lambda batch, n, outcome: served.append((batch, n))
            )
            # Only a part-done item carries over: a step that emptied the working set had
            # capacity nobody used, and unused capacity is not stored for a later surge.
            self._credit = leftover if self.queue.length else 0.0
            for batch, n in served:
                self.propagated += n
                metrics.add("propagated", now, n)
                if batch.kind == LAUNCH:
                    wait = now - batch.origin
                    self.latency_sum += wait * n
                    self.launches_propagated += n
                    if wait > latency:
                        latency = wait
        else:
            self._credit = 0.0
        latency = max(latency, self.oldest_launch_age(now))
        metrics.peak("launch_latency", now, latency)
        metrics.peak("working_set", now, float(self.queue.length))
        self.history.append((now, latency, self.queue.length, self.upstream_items))
        level = self.queue.length.bit_length()
        if level != self._level:
            # A kernel event each time the working set crosses a power of two, so the trace
            # hash records the backlog's course, not only the fixed steps.
            self._level = level
            self.sim.schedule(0.0, self._mark, level)
        if now + step <= self.horizon + 1e-9:
            self.sim.schedule(step, self._step)
