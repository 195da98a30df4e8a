"""The moving parts of a simulated topology: services holding workers, and retrying clients.

A **service** takes a request through, in order: an outage check (a ``hang`` outage swallows
it, an ``error`` outage answers at once), its admission policy, its per-zone bulkhead, then its
worker pool and queue. A request holds its worker for the whole of its life at the service --
its local work, then its calls to each dependency in turn (or, for a ``parallel`` service, to
all of them at once: a fan-out that fails at the first failed call) -- so a slow dependency ties
up the caller's workers, the thread starvation of the 2011 control plane. Local work runs to
completion whatever the caller does, as :class:`~stormproof.sim.parts.server.Server` does; a
dependency call that gives up makes the request answer with an error.

A **client** is one edge (or entry point) and runs the production policy objects on virtual
time: :class:`~stormproof.policies.retry.RetryPolicy` with its budget,
:class:`~stormproof.policies.breaker.CircuitBreaker`, hedging after
:class:`~stormproof.policies.pipeline.Hedge`. Messages travel over a
:class:`~stormproof.sim.parts.network.Link`, so partitions drop them. Its semantics match
:class:`~stormproof.sim.parts.client.OpenLoopClient` (timeout per send, the reply of a
superseded attempt is ignored but its work is counted as wasted); it adds what a multi-tier
graph needs and that client has no use for: error replies, a completion callback per call,
breakers that see errors, and hedges.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from stormproof.model.spec import ClientSpec, LatencySpec, QueueRateSpec, ServiceSpec
from stormproof.policies.breaker import BreakerOpen, CircuitBreaker
from stormproof.policies.bulkhead import Full, Queued
from stormproof.policies.retry import GiveUp, RetryCall
from stormproof.sim.kernel import Simulation
from stormproof.sim.metrics import BucketCounters
from stormproof.sim.parts.network import Link

__all__ = ["Client", "Service"]

#: ``reply(ok, work, *args)``: how a service answers; ``work`` is its local work in seconds.
Reply = Callable[..., None]


class _ErrorReply(Exception):
    """The dependency answered with an error (shed, rejected, or its own call failed)."""


_ERROR = _ErrorReply("error reply")
_TIMEOUT = TimeoutError("attempt timed out at the client")


class _Job:
    __slots__ = ("args", "pending", "reply", "step", "work", "zone")

    def __init__(self, zone: str | None, reply: Reply, args: tuple[Any, ...]) -> None:
        self.zone = zone
        self.reply = reply
        self.args = args
        self.work = 0.0
        self.step = 0  # sequential calls: index of the next edge to call
        self.pending = 0  # parallel calls: replies still awaited; -1 once the job has finished


Window = tuple[float, float, Any]


def _active(windows: list[Window], now: float) -> Any:
    """The value of the last window containing ``now``, or ``None``."""
    found = None
    for start, end, value in windows:
        if start <= now < end:
            found = value
    return found


class Service:
    """A simulated service (see the module docstring).

    Counters (prefix ``service.<name>.``): ``arrivals``, ``hung``, ``shed``, ``rejected``,
    ``completed``, ``errors``, ``busy_time``; the clients calling it add ``useful_work``,
    ``wasted_work`` and ``goodput``. The gauge ``queue`` keeps, per bucket, the longest queue
    seen when a request joined, was turned away from or left the queue.
    """

    def __init__(self, sim: Simulation, spec: ServiceSpec, metrics: BucketCounters) -> None:
        self.sim = sim
        self.spec = spec
        self.metrics = metrics
        self.prefix = f"service.{spec.name}."
        self._rng = sim.rng(f"service.{spec.name}.service")
        admission = spec.admission
        self.admission = admission.build() if isinstance(admission, QueueRateSpec) else admission
        self.bulkhead = spec.bulkhead.build() if spec.bulkhead is not None else None
        self.calls: list[Client] = []
        self.queue: deque[_Job] = deque()
        self.busy = 0
        self.local = 0
        self.peak_busy = 0
        self.outages: list[Window] = []
        self.slowdowns: list[Window] = []
        self.losses: list[Window] = []

    def lose_capacity(self, start: float, end: float, fraction: float) -> None:
        """Remove ``fraction`` of the workers during ``[start, end)``."""
        self.losses.append((start, end, fraction))
        self.sim.at(end, self._drain)

    def workers_now(self, now: float) -> int | None:
        """Workers available at ``now`` (``None``: unbounded)."""
        workers = self.spec.workers
        if workers is None:
            return None
        lost = _active(self.losses, now)
        return workers if lost is None else round(workers * (1.0 - lost))

    def offer(self, zone: str | None, reply: Reply, *args: Any) -> None:
        """A request arrives from a caller in ``zone``; ``reply(ok, work, *args)`` answers."""
        now = self.sim.now()
        add = self.metrics.add
        prefix = self.prefix
        add(prefix + "arrivals", now)
        if self.outages:
            mode = _active(self.outages, now)
            if mode == "hang":
                add(prefix + "hung", now)
                return
            if mode == "error":
                add(prefix + "errors", now)
                reply(False, 0.0, *args)
                return
        job = _Job(zone, reply, args)
        admission = self.admission
        if admission is not None and not admission.admit(now, len(self.queue)):
            add(prefix + "shed", now)
            reply(False, 0.0, *args)
            return
        if self.bulkhead is not None:
            decision = self.bulkhead.acquire(zone, now)
            if isinstance(decision, Full):
                add(prefix + "shed", now)
                reply(False, 0.0, *args)
                return
            if isinstance(decision, Queued):
                decision.waiter = job
                return
        self._enter(job)

    def _enter(self, job: _Job) -> None:
        now = self.sim.now()
        workers = self.workers_now(now) if self.spec.workers is not None else None
        if workers is None or self.busy < workers:
            self._start(job)
            return
        limit = self.spec.queue_limit
        queue = self.queue
        self.metrics.peak(self.prefix + "queue", now, len(queue))
        if limit is not None and len(queue) >= limit:
            self.metrics.add(self.prefix + "rejected", now)
            self._release_permit(job, now)
            job.reply(False, 0.0, *job.args)
            return
        queue.append(job)

    def _start(self, job: _Job) -> None:
        sim = self.sim
        self.busy += 1
        self.local += 1
        if self.busy > self.peak_busy:
            self.peak_busy = self.busy
        work = self.spec.service_time.draw(self.local, self._rng)
        if self.slowdowns:
            extra = _active(self.slowdowns, sim.now())
            if extra is not None:
                work += extra
        job.work = work
        sim.schedule(work, self._local_done, job)

    def _local_done(self, job: _Job) -> None:
        self.local -= 1
        self.metrics.add(self.prefix + "busy_time", self.sim.now(), job.work)
        if self.spec.calls == "parallel":
            self._fan_out(job)
        else:
            self._next_call(job)

    def _fan_out(self, job: _Job) -> None:
        clients = [c for c in self.calls if c.for_zone is None or c.for_zone == job.zone]
        if not clients:
            self._finish(job, True)
            return
        job.pending = len(clients)
        for client in clients:
            if job.pending < 0:
                break  # a call failed at once (an open breaker): the rest are not made
            client.call(self._branch_done, job)

    def _branch_done(self, ok: bool, job: _Job) -> None:
        if job.pending < 0:
            return  # the job already failed; a late reply of another branch
        if not ok:
            job.pending = -1
            self._finish(job, False)
            return
        job.pending -= 1
        if job.pending == 0:
            job.pending = -1
            self._finish(job, True)

    def _next_call(self, job: _Job) -> None:
        calls = self.calls
        while job.step < len(calls):
            client = calls[job.step]
            job.step += 1
            if client.for_zone is None or client.for_zone == job.zone:
                client.call(self._call_done, job)
                return
        self._finish(job, True)

    def _call_done(self, ok: bool, job: _Job) -> None:
        if ok:
            self._next_call(job)
        else:
            self._finish(job, False)

    def _release_permit(self, job: _Job, now: float) -> None:
        if self.bulkhead is not None:
            admitted = self.bulkhead.release(job.zone, now)
            if admitted is not None:
                self._enter(admitted.waiter)

    def _finish(self, job: _Job, ok: bool) -> None:
        now = self.sim.now()
        self.busy -= 1
        self.metrics.add(self.prefix + ("completed" if ok else "errors"), now)
        self._release_permit(job, now)
        self._drain()
        job.reply(ok, job.work, *job.args)

    def _drain(self) -> None:
        queue = self.queue
        if not queue:
            return
        now = self.sim.now()
        workers = self.workers_now(now)
        while queue and (workers is None or self.busy < workers):
            self._start(queue.popleft())
        self.metrics.peak(self.prefix + "queue", now, len(queue))


class _Call:
    __slots__ = (
        "args",
        "arrived",
        "call",
        "done",
        "hedges",
        "live",
        "outstanding",
        "sent",
        "sent_at",
        "timer",
    )

    def __init__(
        self, arrived: float, call: RetryCall, done: Callable[..., None], args: tuple[Any, ...]
    ) -> None:
        self.arrived = arrived
        self.call = call
        self.done = done
        self.args = args
        self.sent = 0  # attempts sent so far; also the id of the newest attempt
        self.live = 0  # id of the attempt whose reply is awaited, 0 when none
        self.outstanding = 0  # copies of the live attempt not answered yet (hedging)
        self.hedges = 0
        self.sent_at = arrived
        self.timer: list[Any] | None = None


class Client:
    """One caller-to-service relation under a :class:`ClientSpec` (see the module docstring).

    Counters (prefix ``<name>.``): ``requests``, ``attempts``, ``resends``, ``hedges``,
    ``timeouts``, ``errors``, ``short_circuits``, ``successes``, ``failures``. Latencies of
    successful calls (first send to reply, retries included) are kept in :attr:`latencies`.
    """

    def __init__(
        self,
        sim: Simulation,
        name: str,
        target: Service,
        spec: ClientSpec,
        latency: LatencySpec,
        metrics: BucketCounters,
        *,
        zone: str | None,
        partitions: list[tuple[float, float]],
        for_zone: str | None = None,
    ) -> None:
        self.sim = sim
        self.for_zone = for_zone
        self.name = name
        self.target = target
        self.spec = spec
        self.metrics = metrics
        self.zone = zone
        self.prefix = f"{name}."
        self.link = Link(sim, latency.draw, name=f"{name}.link")
        for start, end in _merged(partitions):
            self.link.partition(start, end)
        self.policy = spec.retry_policy(spec.budget.build() if spec.budget is not None else None)
        self.breaker = CircuitBreaker(spec.breaker, name=name) if spec.breaker is not None else None
        self.latencies: list[float] = []
        self._backoff_rng = sim.rng(f"{name}.backoff")

    def call(self, done: Callable[..., None], *args: Any) -> None:
        """Start a call now; ``done(ok, *args)`` when it succeeds or is given up on."""
        now = self.sim.now()
        self.metrics.add(self.prefix + "requests", now)
        call = self.policy.start(now, rng=self._backoff_rng, inherit_deadline=False)
        self._send(_Call(now, call, done, args))

    def _send(self, request: _Call) -> None:
        sim = self.sim
        now = sim.now()
        add = self.metrics.add
        if self.breaker is not None:
            try:
                self.breaker.check(now)
            except BreakerOpen as refused:
                add(self.prefix + "short_circuits", now)
                self._failed(request, now, refused, False)
                return
        request.sent += 1
        request.live = request.sent
        request.outstanding = 1
        request.hedges = 0
        request.sent_at = now
        add(self.prefix + "attempts", now)
        if request.sent > 1:
            add(self.prefix + "resends", now)
        timeout = self.spec.timeout
        deadline = request.call.deadline
        if deadline is not None:
            timeout = min(timeout, deadline.remaining(now))
        request.timer = sim.schedule(timeout, self._timed_out, request, request.sent)
        self.link.send(self._deliver, request, request.sent)
        hedge = self.spec.hedge
        if hedge is not None:
            sim.schedule(hedge.delay, self._hedge, request, request.sent)

    def _hedge(self, request: _Call, attempt: int) -> None:
        hedge = self.spec.hedge
        if hedge is None or request.live != attempt or request.hedges >= hedge.max_hedges:
            return
        now = self.sim.now()
        request.hedges += 1
        request.outstanding += 1
        self.metrics.add(self.prefix + "attempts", now)
        self.metrics.add(self.prefix + "hedges", now)
        self.link.send(self._deliver, request, attempt)
        self.sim.schedule(hedge.delay, self._hedge, request, attempt)

    def _deliver(self, request: _Call, attempt: int) -> None:
        self.target.offer(self.zone, self._served, request, attempt)

    def _served(self, ok: bool, work: float, request: _Call, attempt: int) -> None:
        if not self.link.send(self._reply, ok, work, request, attempt) and work:
            self.metrics.add(self.target.prefix + "wasted_work", self.sim.now(), work)

    def _reply(self, ok: bool, work: float, request: _Call, attempt: int) -> None:
        now = self.sim.now()
        add = self.metrics.add
        if request.live != attempt:
            if work:
                add(self.target.prefix + "wasted_work", now, work)
            return
        if not ok:
            request.outstanding -= 1
            if request.outstanding > 0:
                return  # another copy of this attempt may still succeed
            request.live = 0
            if request.timer is not None:
                Simulation.cancel(request.timer)
            if self.breaker is not None:
                self.breaker.record(now, success=False, duration=now - request.sent_at)
            add(self.prefix + "errors", now)
            self._failed(request, now, _ERROR, False)
            return
        request.live = 0
        if request.timer is not None:
            Simulation.cancel(request.timer)
        if self.breaker is not None:
            self.breaker.record(now, success=True, duration=now - request.sent_at)
        target = self.target.prefix
        add(target + "useful_work", now, work)
        add(target + "goodput", now)
        add(self.prefix + "successes", now)
        self.latencies.append(now - request.arrived)
        request.call.on_success(now)
        request.done(True, *request.args)

    def _timed_out(self, request: _Call, attempt: int) -> None:
        if request.live != attempt:
            return
        now = self.sim.now()
        request.live = 0
        self.metrics.add(self.prefix + "timeouts", now)
        if self.breaker is not None:
            self.breaker.record(now, success=False, duration=now - request.sent_at)
        self._failed(request, now, _TIMEOUT, True)

    def _failed(self, request: _Call, now: float, error: BaseException, timed_out: bool) -> None:
        decision = request.call.on_failure(now, error, timed_out=timed_out)
        if isinstance(decision, GiveUp):
            self.metrics.add(self.prefix + "failures", now)
            request.done(False, *request.args)
            return
        self.sim.schedule(decision.delay, self._send, request)


def _merged(windows: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Overlapping windows joined (a link takes non-overlapping partitions only)."""
    merged: list[tuple[float, float]] = []
    for start, end in sorted(windows):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged
