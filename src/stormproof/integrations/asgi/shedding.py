"""Load shedding for ASGI apps, answered with ``503``/``429`` and ``Retry-After``.

A concurrency limit, a bounded wait queue, priorities, and per-client rate limits.

The decision for each HTTP request, in order:

1. **per-client rate limit** (optional): ``client_key(scope)`` names the client; its token bucket
   (:class:`~stormproof.policies.ratelimit.TokenBucket` by default) refuses -> ``429`` with
   ``Retry-After`` set to when a token will be there;
2. **priority**: the request's class (``classify(scope)``, else the ``priority_header``, else
   ``default_priority``) is asked of a :class:`~stormproof.policies.admission.PriorityShedder`
   with ``load = (in flight + waiting) / (max_concurrent + max_queue)``; refused -> ``503``;
3. **queue admission** (only when every permit is taken): ``queue_policy.admit(now, waiting)``
   (default :class:`~stormproof.policies.admission.QueueLimit` of ``max_queue``); refused ->
   ``503``;
4. **concurrency**: a :class:`~stormproof.policies.bulkhead.Bulkhead` permit, or a place in its
   FIFO queue for at most ``queue_timeout`` seconds; still waiting then -> ``503``.

Shedding early and cheaply is the point: a request refused in microseconds costs the server
nothing, while one that waits until its caller has given up costs a full request and is then
retried (the congestive collapse of EC2's DWFM in October 2025).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from stormproof._validate import finite_above, finite_at_least, int_at_least
from stormproof.clock import SleepingClock, WallClock
from stormproof.errors import ConfigError
from stormproof.integrations.asgi._common import (
    ASGIApp,
    Receive,
    Scope,
    Send,
    header,
    json_body,
    retry_after_value,
    send_response,
)
from stormproof.policies.admission import PriorityShedder, QueueAdmission, QueueLimit
from stormproof.policies.bulkhead import Bulkhead, Full, Queued
from stormproof.policies.ratelimit import KeyedLimiter, RateLimiter, Rejected, TokenBucket, Wait

__all__ = ["LoadShedding", "SheddingConfig", "SheddingStats"]

#: Three classes with the thresholds of ``PriorityShedder.sync_first`` (assumed values: each step
#: leaves a fifth of capacity to the classes above it).
DEFAULT_PRIORITIES: Mapping[str, float] = MappingProxyType({"high": 1.0, "normal": 0.8, "low": 0.6})


@dataclass(frozen=True, slots=True)
class SheddingConfig:
    """How :class:`LoadShedding` admits requests. Invalid values raise ``ConfigError``.

    Args:
        max_concurrent: requests handled at once (>= 1).
        max_queue: requests that may wait for a permit (>= 0; 0 sheds at once when full).
        queue_timeout: seconds a request may wait in the queue before it is shed (> 0).
        priorities: class name -> load threshold in (0, 1] (see ``PriorityShedder``).
        default_priority: the class of a request that names none (must be in ``priorities``).
        priority_header: request header naming the class; an unknown value gets the default.
            Trust it only when a proxy you run sets it; ``None`` ignores headers.
        classify: ``scope -> class name or None``; takes precedence over the header. An
            unknown name it returns raises ``ConfigError`` (a bug in the classifier).
        retry_after: seconds sent in ``Retry-After`` with a ``503`` (rounded up to whole s).
        queue_policy: asked before a request joins the wait queue, e.g. a ``QueueRate`` that
            throttles while a queue stands; default ``QueueLimit(max_queue)``.
        client_key: ``scope -> client id or None``; enables per-client rate limits (``429``).
        client_rate / client_burst: the default per-client token bucket (requests per second,
            bucket size) when ``client_key`` is given.
        limiter_factory: builds one limiter per client instead of the default bucket.
        max_clients: clients whose limiters are remembered (least recently seen forgotten).
        exempt_paths: paths never shed (health checks, metrics).
    """

    max_concurrent: int = 100
    max_queue: int = 0
    queue_timeout: float = 1.0
    priorities: Mapping[str, float] = field(default_factory=lambda: DEFAULT_PRIORITIES)
    default_priority: str = "normal"
    priority_header: str | None = "x-priority"
    classify: Callable[[Scope], str | None] | None = None
    retry_after: float = 1.0
    queue_policy: QueueAdmission | None = None
    client_key: Callable[[Scope], str | None] | None = None
    client_rate: float = 10.0
    client_burst: float = 20.0
    limiter_factory: Callable[[], RateLimiter] | None = None
    max_clients: int = 10_000
    exempt_paths: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        int_at_least("max_concurrent", self.max_concurrent, 1)
        int_at_least("max_queue", self.max_queue, 0)
        finite_above("queue_timeout", self.queue_timeout, 0.0)
        finite_at_least("retry_after", self.retry_after, 0.0)
        finite_above("client_rate", self.client_rate, 0.0)
        finite_at_least("client_burst", self.client_burst, 1.0)
        int_at_least("max_clients", self.max_clients, 1)
        shedder = PriorityShedder(self.priorities)  # validates the levels
        if self.default_priority not in shedder.levels:
            valid = ", ".join(repr(name) for name in shedder.classes)
            raise ConfigError("default_priority", f"must be one of {valid}", self.default_priority)
        object.__setattr__(self, "priorities", shedder.levels)
        if self.priority_header is not None and not self.priority_header:
            raise ConfigError("priority_header", "must be a header name or None", "")
        for name in ("classify", "client_key", "limiter_factory"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise ConfigError(name, "must be callable or None", value)
        if self.queue_policy is not None and not isinstance(self.queue_policy, QueueAdmission):
            raise ConfigError(
                "queue_policy", "must have admit(now, queue_length)", self.queue_policy
            )
        if not isinstance(self.exempt_paths, tuple):
            raise ConfigError("exempt_paths", "must be a tuple of paths", self.exempt_paths)


@dataclass(slots=True)
class SheddingStats:
    """Counts kept by one :class:`LoadShedding` (read them for metrics or tests)."""

    admitted: int = 0
    queued: int = 0
    shed_priority: int = 0
    shed_queue: int = 0
    shed_timeout: int = 0
    rate_limited: int = 0


class LoadShedding:
    """Pure ASGI middleware that sheds load before it queues up. See the module docstring.

    ``clock`` measures queue waits (its ``timeout``) and rate limits; default
    :class:`~stormproof.clock.WallClock`. Lifespan and websocket scopes pass through.

    Use with Starlette: ``app.add_middleware(LoadShedding, config=SheddingConfig(...))``.
    """

    def __init__(
        self,
        app: ASGIApp,
        config: SheddingConfig | None = None,
        *,
        clock: SleepingClock | None = None,
    ) -> None:
        self.app = app
        self.config = config if config is not None else SheddingConfig()
        if not isinstance(self.config, SheddingConfig):
            raise ConfigError("config", "must be a SheddingConfig", config)
        self.clock: SleepingClock = clock if clock is not None else WallClock()
        config = self.config
        self.stats = SheddingStats()
        self._bulkhead = Bulkhead(config.max_concurrent, max_queue=config.max_queue)
        self._shedder = PriorityShedder(config.priorities)
        self._capacity = config.max_concurrent + config.max_queue
        self._queue_policy: QueueAdmission = (
            config.queue_policy
            if config.queue_policy is not None
            else QueueLimit(max(1, config.max_queue))
        )
        self._header = (
            config.priority_header.lower().encode("latin-1")
            if config.priority_header is not None
            else None
        )
        self._limiters: KeyedLimiter[Any] | None = None
        if config.client_key is not None:
            rate, burst = config.client_rate, config.client_burst
            factory = config.limiter_factory or (lambda: TokenBucket(rate, burst))
            self._limiters = KeyedLimiter(factory, max_keys=config.max_clients)

    @property
    def in_flight(self) -> int:
        """Requests holding a permit now."""
        return self._bulkhead.in_use

    @property
    def waiting(self) -> int:
        """Requests waiting for a permit now."""
        return self._bulkhead.queued

    def priority(self, scope: Scope) -> str:
        """The priority class of a request (``classify``, then the header, then the default)."""
        config = self.config
        if config.classify is not None:
            chosen = config.classify(scope)
            if chosen is not None:
                return chosen
        if self._header is not None:
            value = header(scope, self._header)
            if value is not None and value.strip() in config.priorities:
                return value.strip()
        return config.default_priority

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Admit, queue or shed one request."""
        if scope["type"] != "http" or scope.get("path") in self.config.exempt_paths:
            await self.app(scope, receive, send)
            return
        clock = self.clock
        if self._limiters is not None and not await self._rate_limit(scope, send):
            return
        bulkhead = self._bulkhead
        now = clock.now()
        load = (bulkhead.in_use + bulkhead.queued) / self._capacity
        priority = self.priority(scope)
        if not self._shedder.admit(now, priority, load):
            self.stats.shed_priority += 1
            await self._shed(send, "priority")
            return
        if bulkhead.in_use >= bulkhead.max_concurrent and not self._queue_policy.admit(
            now, bulkhead.queued
        ):
            self.stats.shed_queue += 1
            await self._shed(send, "queue")
            return
        decision = bulkhead.acquire(now)
        if isinstance(decision, Full):
            self.stats.shed_queue += 1
            await self._shed(send, "queue")
            return
        if isinstance(decision, Queued) and not await self._wait(decision):
            self.stats.shed_timeout += 1
            await self._shed(send, "queue_timeout")
            return
        self.stats.admitted += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self._release()

    async def _rate_limit(self, scope: Scope, send: Send) -> bool:
        """Apply the client's limiter; ``False`` when a 429 was sent."""
        config = self.config
        assert self._limiters is not None and config.client_key is not None
        client = config.client_key(scope)
        if client is None:
            return True
        decision = self._limiters.acquire(client, self.clock.now())
        if isinstance(decision, Rejected):
            self.stats.rate_limited += 1
            await send_response(
                send,
                429,
                json_body(error="rate_limited"),
                [
                    (b"retry-after", retry_after_value(decision.retry_after).encode()),
                    (b"x-stormproof-shed", b"rate"),
                ],
            )
            return False
        if isinstance(decision, Wait):
            # The permit is reserved: only the wait is left to do.
            await self.clock.async_sleep(decision.delay)
        return True

    async def _wait(self, ticket: Queued) -> bool:
        """Wait for a queued ticket's permit; ``False`` when the wait timed out (shed)."""
        import asyncio

        self.stats.queued += 1
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ticket.waiter = waiter
        try:
            async with self.clock.timeout(self.config.queue_timeout):
                await waiter
        except TimeoutError:
            # A permit handed over at the same instant as the timeout is kept, not leaked.
            return not self._bulkhead.cancel(ticket)
        except BaseException:
            # Cancelled while waiting (the client went away): give back a permit it was given.
            if not self._bulkhead.cancel(ticket):
                self._release()
            raise
        return True

    def _release(self) -> None:
        ticket = self._bulkhead.release(self.clock.now())
        if ticket is not None:
            waiter = ticket.waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    async def _shed(self, send: Send, reason: str) -> None:
        await send_response(
            send,
            503,
            json_body(error="overloaded", reason=reason),
            [
                (b"retry-after", retry_after_value(self.config.retry_after).encode()),
                (b"x-stormproof-shed", reason.encode()),
            ],
        )

    def __repr__(self) -> str:
        return (
            f"LoadShedding(max_concurrent={self.config.max_concurrent}, "
            f"max_queue={self.config.max_queue}, in_flight={self.in_flight}, "
            f"waiting={self.waiting})"
        )
