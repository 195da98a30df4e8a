"""Clients that send requests to a server and retry them under a policy: open and closed loop.

Open loop (:class:`OpenLoopClient`) means new requests keep arriving whatever happens to earlier
ones -- the way users and upstream services behave, and the reason a retry storm can outlive its
trigger. Closed loop (:class:`ClosedLoopClient`) means a fixed population of users, each sending
its next request only after the previous one finished and a think time passed -- load that backs
off by itself when the system slows down, which is why closed-loop tests miss storms. Each request
runs
the production :class:`~stormproof.policies.retry.RetryPolicy` object on the simulation's clock:
the client times an attempt out after ``timeout`` seconds, asks the policy, and re-sends after the
delay it returns. Replies to attempts that were already timed out are ignored, but the server did
the work: it is counted as ``wasted_work``.

Counters recorded per bucket in ``metrics``: ``requests`` (new), ``attempts`` (sends),
``resends``, ``timeouts``, ``successes``, ``failures`` (gave up), ``rejections`` (refused by a
full server queue; the attempt then times out at the client), ``useful_work`` and
``wasted_work`` (server seconds), ``latency_sum`` (seconds, for successes). Every success's
latency (arrival to reply, retries included) is also kept in ``latencies`` for percentiles.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stormproof._validate import finite_above, finite_at_least, int_at_least
from stormproof.policies.breaker import BreakerOpen, CircuitBreaker
from stormproof.policies.retry import GiveUp, RetryCall, RetryPolicy
from stormproof.sim.kernel import Simulation
from stormproof.sim.metrics import BucketCounters
from stormproof.sim.parts.arrivals import PiecewisePoisson
from stormproof.sim.parts.server import Server

__all__ = ["ClosedLoopClient", "OpenLoopClient"]

_TIMEOUT = TimeoutError("attempt timed out at the client")


class _Request:
    __slots__ = ("arrived", "call", "live", "sent", "sent_at", "timer")

    def __init__(self, arrived: float, call: RetryCall) -> None:
        self.arrived = arrived
        self.call = call
        self.sent = 0  # attempts sent so far; also the id of the newest attempt
        self.live = 0  # id of the attempt whose reply is awaited, 0 when none
        self.sent_at = arrived
        self.timer: list[Any] | None = None


class _RetryingClient:
    """What both clients share: attempts, timeouts, retries, replies and counters.

    Args:
        sim: the simulation.
        server: where attempts go.
        policy: the retry policy (its budget, if any, is shared by all requests, as in a real
            client process).
        timeout: seconds after a send at which the client gives up on that attempt.
        network_latency: draws one-way latency (seconds) from a random stream.
        metrics: where counters go.
        name: prefix of the client's random streams.
        breaker: an optional circuit breaker shared by all requests; a refused attempt is
            counted as ``short_circuits`` and handed to the policy as a ``BreakerOpen`` error.
    """

    __slots__ = (
        "_backoff_rng",
        "_network_rng",
        "breaker",
        "latencies",
        "metrics",
        "network_latency",
        "policy",
        "server",
        "sim",
        "timeout",
    )

    def __init__(
        self,
        sim: Simulation,
        server: Server,
        policy: RetryPolicy,
        *,
        timeout: float,
        network_latency: Callable[[Any], float],
        metrics: BucketCounters,
        name: str = "client",
        breaker: CircuitBreaker | None = None,
    ) -> None:
        finite_above("timeout", timeout, 0.0)
        self.breaker = breaker
        self.sim = sim
        self.server = server
        self.policy = policy
        self.timeout = timeout
        self.network_latency = network_latency
        self.metrics = metrics
        self.latencies: list[float] = []
        # Separate streams keep the workload identical across policies (common random numbers).
        self._network_rng = sim.rng(f"{name}.network")
        self._backoff_rng = sim.rng(f"{name}.backoff")

    def _begin(self) -> None:
        """Start a new request now."""
        now = self.sim.now()
        self.metrics.add("requests", now)
        call = self.policy.start(now, rng=self._backoff_rng, inherit_deadline=False)
        self._send(_Request(now, call))

    def _finished(self, request: _Request, ok: bool) -> None:
        """A request succeeded or was given up on; subclasses may react."""

    def _send(self, request: _Request) -> None:
        sim = self.sim
        now = sim.now()
        if self.breaker is not None:
            try:
                self.breaker.check(now)
            except BreakerOpen as refused:
                # Refused before anything is sent: the policy decides, and by default honours
                # the breaker's retry_after (time until it half-opens) as a server delay.
                self.metrics.add("short_circuits", now)
                self._after_failure(request, now, refused, False)
                return
        request.sent += 1
        request.sent_at = now
        request.live = request.sent
        self.metrics.add("attempts", now)
        if request.sent > 1:
            self.metrics.add("resends", now)
        request.timer = sim.schedule(self.timeout, self._timed_out, request, request.sent)
        sim.schedule(self.network_latency(self._network_rng), self._deliver, request, request.sent)

    def _deliver(self, request: _Request, attempt: int) -> None:
        if not self.server.submit(self._served, request, attempt):
            self.metrics.add("rejections", self.sim.now())

    def _served(self, work: float, request: _Request, attempt: int) -> None:
        latency = self.network_latency(self._network_rng)
        self.sim.schedule(latency, self._reply, work, request, attempt)

    def _reply(self, work: float, request: _Request, attempt: int) -> None:
        now = self.sim.now()
        if request.live != attempt:
            self.metrics.add("wasted_work", now, work)
            return
        request.live = 0
        if request.timer is not None:
            Simulation.cancel(request.timer)
        if self.breaker is not None:
            self.breaker.record(now, success=True, duration=now - request.sent_at)
        self.metrics.add("useful_work", now, work)
        self.metrics.add("successes", now)
        self.metrics.add("latency_sum", now, now - request.arrived)
        self.latencies.append(now - request.arrived)
        request.call.on_success(now)
        self._finished(request, True)

    def _timed_out(self, request: _Request, attempt: int) -> None:
        if request.live != attempt:
            return
        now = self.sim.now()
        request.live = 0
        self.metrics.add("timeouts", now)
        if self.breaker is not None:
            self.breaker.record(now, success=False, duration=now - request.sent_at)
        self._after_failure(request, now, _TIMEOUT, True)

    def _after_failure(
        self, request: _Request, now: float, error: BaseException, timed_out: bool
    ) -> None:
        decision = request.call.on_failure(now, error, timed_out=timed_out)
        if isinstance(decision, GiveUp):
            self.metrics.add("failures", now)
            self._finished(request, False)
            return
        self.sim.schedule(decision.delay, self._send, request)


class OpenLoopClient(_RetryingClient):
    """Sends requests arriving by ``arrivals`` to ``server`` under ``policy``.

    Args:
        sim: the simulation.
        arrivals: when new requests arrive.
        server: where attempts go.
        policy: the retry policy (its budget, if any, is shared by all requests, as in a real
            client process).
        timeout: seconds after a send at which the client gives up on that attempt.
        network_latency: draws one-way latency (seconds) from a random stream.
        metrics: where counters go.
        horizon: no new requests arrive after this time.
        name: prefix of the client's random streams.
    """

    __slots__ = ("_arrival_rng", "arrivals", "horizon")

    def __init__(
        self,
        sim: Simulation,
        arrivals: PiecewisePoisson,
        server: Server,
        policy: RetryPolicy,
        *,
        timeout: float,
        network_latency: Callable[[Any], float],
        metrics: BucketCounters,
        horizon: float,
        name: str = "client",
        breaker: CircuitBreaker | None = None,
    ) -> None:
        super().__init__(
            sim,
            server,
            policy,
            timeout=timeout,
            network_latency=network_latency,
            metrics=metrics,
            name=name,
            breaker=breaker,
        )
        self.arrivals = arrivals
        self.horizon = horizon
        self._arrival_rng = sim.rng(f"{name}.arrivals")

    def start(self) -> None:
        """Schedule the first arrival."""
        self._schedule_arrival()

    def _schedule_arrival(self) -> None:
        at = self.arrivals.next_after(self.sim.now(), self._arrival_rng)
        if at < self.horizon:
            self.sim.at(at, self._arrive)

    def _arrive(self) -> None:
        self._schedule_arrival()
        self._begin()


class ClosedLoopClient(_RetryingClient):
    """``users`` users, each sending a request, waiting for its outcome, thinking, repeating.

    Think times are exponential with mean ``think_time`` (0 means none). Users start spread
    uniformly over the first ``think_time`` seconds (at once if it is 0). No request starts
    after ``horizon``.
    """

    __slots__ = ("_think_rng", "horizon", "think_time", "users")

    def __init__(
        self,
        sim: Simulation,
        server: Server,
        policy: RetryPolicy,
        *,
        users: int,
        think_time: float,
        timeout: float,
        network_latency: Callable[[Any], float],
        metrics: BucketCounters,
        horizon: float,
        name: str = "client",
        breaker: CircuitBreaker | None = None,
    ) -> None:
        int_at_least("users", users, 1)
        finite_at_least("think_time", think_time, 0.0)
        super().__init__(
            sim,
            server,
            policy,
            timeout=timeout,
            network_latency=network_latency,
            metrics=metrics,
            name=name,
            breaker=breaker,
        )
        self.users = users
        self.think_time = think_time
        self.horizon = horizon
        self._think_rng = sim.rng(f"{name}.think")

    def start(self) -> None:
        """Start every user."""
        for _ in range(self.users):
            self.sim.schedule(self._think_rng.random() * self.think_time, self._next)

    def _next(self) -> None:
        if self.sim.now() < self.horizon:
            self._begin()

    def _finished(self, request: _Request, ok: bool) -> None:
        think = self._think_rng.expovariate(1.0 / self.think_time) if self.think_time else 0.0
        self.sim.schedule(think, self._next)
