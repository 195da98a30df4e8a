"""A server whose work keeps going after the client has given up on it.

In every storm of the incident reports the sustaining mechanism is the same: a request that timed
out at the client is still being worked on by the server, so retries add load while the original
work keeps consuming capacity. This server models that directly: once accepted, a request runs to
completion whatever happened to the caller, and the time it took is reported back so the caller
can count it as useful or wasted work.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from typing import Any

from stormproof._validate import finite_at_least, int_at_least
from stormproof.errors import ConfigError
from stormproof.sim.kernel import Simulation
from stormproof.sim.metrics import BucketCounters

__all__ = ["LinearSlowdown", "Server"]

#: ``service_time(concurrency, rng)`` -> seconds of work for a request that starts when
#: ``concurrency`` requests (itself included) are in service.
ServiceTime = Callable[[int, random.Random], float]


class LinearSlowdown:
    """Service time ``base + per_request * concurrency``: each request in service slows all.

    Models contention for a shared resource (locks, CPU, a disk) whose cost grows with the number
    of requests in flight; the simple-collapse model uses base 1 s and 10 ms per request.
    """

    __slots__ = ("base", "per_request")

    def __init__(self, base: float, per_request: float) -> None:
        finite_at_least("base", base, 0.0)
        finite_at_least("per_request", per_request, 0.0)
        self.base = base
        self.per_request = per_request

    def __call__(self, concurrency: int, rng: random.Random) -> float:
        """Seconds of work for a request starting at ``concurrency``."""
        return self.base + self.per_request * concurrency


class Server:
    """A pool of ``workers`` (``None``: unlimited) with a FIFO queue of ``queue_limit`` entries.

    ``submit(done, *args)`` offers a request; when its work completes the server calls
    ``done(service_seconds, *args)``. A request that finds every worker busy and the queue full
    is rejected at once: ``submit`` returns ``False`` and ``done`` is never called.

    Counters: ``in_service``, ``queued``, ``completed``, ``rejected``, ``busy_time``,
    ``peak_in_service``. With ``metrics``, the per-bucket peak of requests in the server (in
    service plus queued) is recorded as ``<name>.load``.
    """

    __slots__ = (
        "_queue",
        "_rng",
        "busy_time",
        "completed",
        "in_service",
        "metrics",
        "name",
        "peak_in_service",
        "queue_limit",
        "rejected",
        "service_time",
        "sim",
        "workers",
    )

    def __init__(
        self,
        sim: Simulation,
        service_time: ServiceTime,
        *,
        workers: int | None = None,
        queue_limit: int | None = None,
        name: str = "server",
        metrics: BucketCounters | None = None,
    ) -> None:
        if workers is not None:
            int_at_least("workers", workers, 1)
        if queue_limit is not None:
            int_at_least("queue_limit", queue_limit, 0)
        if not callable(service_time):
            raise ConfigError("service_time", "must be callable(concurrency, rng)", service_time)
        self.sim = sim
        self.service_time = service_time
        self.workers = workers
        self.queue_limit = queue_limit
        self.name = name
        self._rng = sim.rng(f"{name}.service")
        self._queue: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self.in_service = 0
        self.completed = 0
        self.rejected = 0
        self.busy_time = 0.0
        self.peak_in_service = 0
        self.metrics = metrics

    @property
    def queued(self) -> int:
        """Requests waiting for a worker."""
        return len(self._queue)

    def submit(self, done: Callable[..., Any], *args: Any) -> bool:
        """Offer a request; ``False`` if it was rejected because the queue is full."""
        if self.workers is None or self.in_service < self.workers:
            self._start(done, args)
        elif self.queue_limit is not None and len(self._queue) >= self.queue_limit:
            self.rejected += 1
            return False
        else:
            self._queue.append((done, args))
        if self.metrics is not None:
            self.metrics.peak(
                f"{self.name}.load", self.sim.now(), self.in_service + len(self._queue)
            )
        return True

    def _start(self, done: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.in_service += 1
        if self.in_service > self.peak_in_service:
            self.peak_in_service = self.in_service
        work = self.service_time(self.in_service, self._rng)
        self.sim.schedule(work, self._finish, work, done, args)

    def _finish(self, work: float, done: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.in_service -= 1
        self.completed += 1
        self.busy_time += work
        if self._queue:
            self._start(*self._queue.popleft())
        done(work, *args)
