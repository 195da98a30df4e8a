"""What the HTTP client adapters (httpx, requests, aiohttp) share: the rules and the drivers.

The adapters differ only in how they send a request, read a status or header, close a response
and name their errors. Everything else lives here, with no third-party import:

* :class:`HttpPolicy` -- the frozen configuration of all three adapters;
* the decision rules -- which methods may be retried (:meth:`HttpPolicy.may_retry`), which
  statuses (:meth:`HttpPolicy.is_retryable_status`), what counts as a failure for the breaker;
* :func:`parse_retry_after` / :func:`parse_http_date` -- RFC 9110 ``Retry-After`` and HTTP-date;
* :class:`HostBreakers` -- one :class:`~stormproof.policies.breaker.CircuitBreaker` per origin,
  in a bounded map;
* :class:`HttpEngine` and :class:`HttpCall` -- the per-client and per-request state that asks the
  :class:`~stormproof.policies.retry.RetryCall` state machine for every decision;
* :func:`send_sync` / :func:`send_async` -- the two loops that carry the decisions out;
  :func:`send_async` also races hedged attempts when the policy has a
  :class:`~stormproof.policies.pipeline.Hedge` (async only: a race needs concurrency).

Decisions are made on the engine's clock (``ManualClock`` in tests); the attempt time limit is
applied to the real I/O by each adapter through its library's own timeouts.
"""

from __future__ import annotations

import asyncio
import calendar
import enum
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Protocol, TypeVar

from stormproof._validate import int_at_least
from stormproof.clock import SleepingClock, WallClock
from stormproof.errors import ConfigError, DeadlineExceeded, StormproofError
from stormproof.policies import presets
from stormproof.policies.breaker import BreakerConfig, BreakerOpen, BreakerState, CircuitBreaker
from stormproof.policies.deadline import Deadline, Timeouts
from stormproof.policies.pipeline import Hedge
from stormproof.policies.retry import GiveUp, GiveUpReason, RetryAfter, RetryCall, RetryPolicy
from stormproof.run._common import INSTANT_SLEEPS
from stormproof.run.pipeline import Pipeline, PipelineEvent

__all__ = [
    "IDEMPOTENT_METHODS",
    "RETRYABLE_STATUSES",
    "AsyncExchange",
    "AttemptTimedOut",
    "ClosingExchange",
    "HostBreakers",
    "HttpCall",
    "HttpEngine",
    "HttpPolicy",
    "Lease",
    "RetryableStatus",
    "StatusCodeReader",
    "StatusCodeResponse",
    "SyncExchange",
    "TransportFailure",
    "origin",
    "parse_http_date",
    "parse_retry_after",
    "refuse_hedging",
    "send_async",
    "send_sync",
]

#: Methods whose repetition has the same intended effect as one request (RFC 9110 §9.2.2):
#: the safe methods GET, HEAD, OPTIONS and TRACE, plus PUT and DELETE.
IDEMPOTENT_METHODS: frozenset[str] = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})

#: 429 Too Many Requests (RFC 6585 §4) and the 5xx statuses that signal a transient condition of
#: the server or a gateway: 500, 502 Bad Gateway, 503 Service Unavailable, 504 Gateway Timeout.
#: The AWS SDKs' standard mode retries the same set (plus SDK-specific throttling codes).
RETRYABLE_STATUSES: frozenset[int] = frozenset({429, 500, 502, 503, 504})

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def origin(scheme: str, host: str, port: int | None) -> str:
    """The breaker key of a request: ``scheme://host:port``, lower-case, default port filled in."""
    scheme = scheme.lower()
    if port is None:
        port = _DEFAULT_PORTS.get(scheme, 0)
    return f"{scheme}://{host.lower()}:{port}"


def _default_breaker() -> BreakerConfig:
    return BreakerConfig.polly_standard()


@dataclass(frozen=True, slots=True)
class HttpPolicy:
    """How an HTTP client adapter retries, times out and breaks circuits. Share one per client.

    Args:
        retry: attempts, backoff, budget and random source. Default
            :func:`stormproof.policies.presets.default` (3 attempts, exponential backoff from
            0.1 s doubling to 20 s with full jitter, a
            :class:`~stormproof.policies.budget.RatioBudget`).
            Its ``max_server_delay`` (default 60 s) caps ``Retry-After``. Leave its
            ``attempt_timeout`` and ``total_timeout`` unset: the timeouts are set here.
        attempt_timeout: seconds one attempt may take until the response headers arrive
            (``None``: no limit). Default 10 s, Polly v8's standard HTTP pipeline.
        total_timeout: seconds the whole request may take, waits included (``None``: no limit
            beyond the context deadline). Default 30 s, the same source.
        breaker: the configuration of the per-origin circuit breakers, or ``None`` for none.
            Default :meth:`BreakerConfig.polly_standard` (10 % failures over 30 s, at least 100
            calls, open for 5 s), as Microsoft.Extensions.Http.Resilience's standard handler.
        retry_statuses: statuses retried (per the method rule). Default
            :data:`RETRYABLE_STATUSES`.
        idempotent_methods: methods retried without an idempotency key. Default
            :data:`IDEMPOTENT_METHODS`. Names are compared upper-case.
        idempotency_header: the request header whose presence makes any other method (POST,
            PATCH, ...) retryable, or ``None`` to never retry them. Default ``Idempotency-Key``
            (IETF draft ``draft-ietf-httpapi-idempotency-key-header``). Compared case-insensitively.
        max_hosts: how many origins keep a breaker (least recently used ones are forgotten
            beyond it). Default 1024.
        hedge: a :class:`~stormproof.policies.pipeline.Hedge` (``delay``, ``max_hedges``) to
            race extra attempts against a slow one, or ``None`` (default) for no hedging. Only
            the async adapters (httpx ``AsyncStormproofTransport``, aiohttp) hedge; the sync
            ones refuse such a policy. Only requests that may be retried are hedged (an
            idempotent method or an idempotency key, and a body that can be sent again); each
            hedge takes a retry from the budget and passes the origin's breaker.
    """

    retry: RetryPolicy = field(default_factory=presets.default)
    attempt_timeout: float | None = 10.0
    total_timeout: float | None = 30.0
    breaker: BreakerConfig | None = field(default_factory=_default_breaker)
    retry_statuses: frozenset[int] = RETRYABLE_STATUSES
    idempotent_methods: frozenset[str] = IDEMPOTENT_METHODS
    idempotency_header: str | None = "Idempotency-Key"
    max_hosts: int = 1024
    hedge: Hedge | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.retry, RetryPolicy):
            raise ConfigError("retry", "must be a stormproof RetryPolicy", self.retry)
        if self.retry.attempt_timeout is not None or self.retry.total_timeout is not None:
            raise ConfigError(
                "retry",
                "must not set attempt_timeout or total_timeout: set them on HttpPolicy",
            )
        Timeouts(self.attempt_timeout, self.total_timeout)
        if self.breaker is not None and not isinstance(self.breaker, BreakerConfig):
            raise ConfigError("breaker", "must be a BreakerConfig or None", self.breaker)
        statuses = frozenset(self.retry_statuses)
        for status in statuses:
            if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
                raise ConfigError("retry_statuses", "must hold status codes 100..599", status)
        methods = frozenset(self.idempotent_methods)
        for method in methods:
            if not isinstance(method, str) or not method:
                raise ConfigError("idempotent_methods", "must hold method names", method)
        header = self.idempotency_header
        if header is not None and (not isinstance(header, str) or not header.strip()):
            raise ConfigError("idempotency_header", "must be a header name or None", header)
        int_at_least("max_hosts", self.max_hosts, 1)
        if self.hedge is not None and not isinstance(self.hedge, Hedge):
            raise ConfigError("hedge", "must be a stormproof Hedge or None", self.hedge)
        object.__setattr__(self, "retry_statuses", statuses)
        object.__setattr__(self, "idempotent_methods", frozenset(m.upper() for m in methods))

    def replace(self, **changes: Any) -> HttpPolicy:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def may_retry(self, method: str, has_idempotency_key: bool) -> bool:
        """Whether a request whose outcome is unknown may be sent again.

        Idempotent methods may; any other method (POST, PATCH, custom ones) only when the request
        carries the idempotency header and that header is configured.
        """
        if method.upper() in self.idempotent_methods:
            return True
        return has_idempotency_key and self.idempotency_header is not None

    def is_retryable_status(self, status: int) -> bool:
        """Whether a response with ``status`` is worth retrying (before the method rule)."""
        return status in self.retry_statuses

    def counts_as_failure(self, status: int) -> bool:
        """Whether a response counts as a failure for the breaker: any 5xx or retryable status.

        A 404 or 409 is the server working correctly and must not open a breaker; a 429 is the
        server shedding load, which a breaker should see.
        """
        return status >= 500 or status in self.retry_statuses


# -- Retry-After -------------------------------------------------------------------------------

_DAYS = "Mon|Tue|Wed|Thu|Fri|Sat|Sun"
_LONG_DAYS = "Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH = "|".join(_MONTHS)
_TIME = r"([0-9]{2}):([0-9]{2}):([0-9]{2})"
# The three forms of RFC 9110 §5.6.7; recipients must accept all of them.
_IMF_FIXDATE = re.compile(rf"(?:{_DAYS}), ([0-9]{{2}}) ({_MONTH}) ([0-9]{{4}}) {_TIME} GMT")
_RFC850 = re.compile(rf"(?:{_LONG_DAYS}), ([0-9]{{2}})-({_MONTH})-([0-9]{{2}}) {_TIME} GMT")
_ASCTIME = re.compile(rf"(?:{_DAYS}) ({_MONTH}) ([ 0-9][0-9]) {_TIME} ([0-9]{{4}})")
_DELAY_SECONDS = re.compile(r"[0-9]+")
# Beyond this many seconds (about 31 years) a delay is only "very long"; clamping keeps the
# conversion to float exact and cheap for absurd inputs.
_MAX_DELAY_SECONDS = 10**9


def _timestamp(
    year: int, month: int, day: int, hour: int, minute: int, second: int
) -> float | None:
    if not 1 <= day <= calendar.monthrange(year, month)[1] or year < 1:
        return None
    # RFC 9110 allows second 60 (a leap second); timegm counts it as the next second.
    if hour > 23 or minute > 59 or second > 60:
        return None
    return float(calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)))


def parse_http_date(value: str, *, now: float | None = None) -> float | None:
    """POSIX time of an HTTP-date (RFC 9110 §5.6.7), or ``None`` if ``value`` is not one.

    Accepts the preferred IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``) and the two obsolete
    forms recipients must still read: RFC 850 (``Sunday, 06-Nov-94 08:49:37 GMT``) and asctime
    (``Sun Nov  6 08:49:37 1994``). Matching is case-sensitive, as the grammar is. The weekday is
    not checked against the date. An RFC 850 two-digit year is read, as the RFC requires, as the
    most recent year with those digits that is not more than 50 years after ``now`` (POSIX
    seconds, default ``time.time()``).
    """
    text = value.strip()
    match = _IMF_FIXDATE.fullmatch(text)
    if match is not None:
        day, month, year, hh, mm, ss = match.groups()
        return _timestamp(int(year), _MONTHS.index(month) + 1, int(day), int(hh), int(mm), int(ss))
    match = _ASCTIME.fullmatch(text)
    if match is not None:
        month, day, hh, mm, ss, year = match.groups()
        return _timestamp(int(year), _MONTHS.index(month) + 1, int(day), int(hh), int(mm), int(ss))
    match = _RFC850.fullmatch(text)
    if match is not None:
        day, month, short_year, hh, mm, ss = match.groups()
        current = time.gmtime(time.time() if now is None else now).tm_year
        year = current - current % 100 + int(short_year)
        if year > current + 50:
            year -= 100
        return _timestamp(year, _MONTHS.index(month) + 1, int(day), int(hh), int(mm), int(ss))
    return None


def parse_retry_after(value: str, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (RFC 9110 §10.2.3), or ``None`` if invalid.

    ``Retry-After = HTTP-date / delay-seconds``. delay-seconds is a non-negative whole number
    (``"1.5"`` and ``"-1"`` are invalid); an HTTP-date gives the time until that date from
    ``now`` (POSIX seconds; default ``time.time()``; pass the response's ``Date`` so that the
    server's clock is compared with itself), and 0 for a date in the past. Never raises.
    """
    text = value.strip()
    if _DELAY_SECONDS.fullmatch(text):
        # int() of a digit string longer than Python's limit (4300 digits) raises; such a value
        # is as long a wait as any other absurd one.
        seconds = _MAX_DELAY_SECONDS if len(text) > 12 else min(int(text), _MAX_DELAY_SECONDS)
        return float(seconds)
    reference = time.time() if now is None else now
    at = parse_http_date(text, now=reference)
    if at is None:
        return None
    return max(0.0, at - reference)


# -- breakers per origin -----------------------------------------------------------------------


class HostBreakers:
    """A :class:`CircuitBreaker` per origin, created on demand, at most ``max_hosts`` of them.

    A new origin beyond the bound replaces the least recently used origin whose breaker is
    closed (its loss forgets only recent counts); if every breaker is open or half-open, the
    least recently used one goes. Thread-safe: every question to a breaker is asked under one
    lock, as a client may be shared by threads.
    """

    __slots__ = ("_breakers", "_lock", "config", "max_hosts", "on_state_change")

    def __init__(
        self,
        config: BreakerConfig,
        max_hosts: int = 1024,
        *,
        on_state_change: Callable[[str, Any], None] | None = None,
    ) -> None:
        int_at_least("max_hosts", max_hosts, 1)
        self.config = config
        self.max_hosts = max_hosts
        self.on_state_change = on_state_change
        self._breakers: OrderedDict[str, CircuitBreaker] = OrderedDict()
        self._lock = threading.Lock()

    def _get(self, key: str, now: float) -> CircuitBreaker:
        breakers = self._breakers
        breaker = breakers.get(key)
        if breaker is not None:
            breakers.move_to_end(key)
            return breaker
        if len(breakers) >= self.max_hosts:
            victim = next(
                (k for k, b in breakers.items() if b.state(now) is BreakerState.CLOSED),
                next(iter(breakers)),
            )
            del breakers[victim]
        hook = self.on_state_change
        breaker = CircuitBreaker(
            self.config,
            name=key,
            on_state_change=None if hook is None else (lambda change: hook(key, change)),
        )
        breakers[key] = breaker
        return breaker

    def check(self, key: str, now: float) -> CircuitBreaker:
        """The breaker of ``key`` if it lets a call through; raises :class:`BreakerOpen` if not."""
        with self._lock:
            breaker = self._get(key, now)
            breaker.check(now)
            return breaker

    def record(self, breaker: CircuitBreaker, now: float, success: bool, duration: float) -> None:
        """Record an allowed call's outcome."""
        with self._lock:
            breaker.record(now, success=success, duration=duration)

    def release(self, breaker: CircuitBreaker, now: float) -> None:
        """Give back the permit of an allowed call whose outcome is unknown."""
        with self._lock:
            breaker.release(now)

    def state(self, key: str, now: float) -> BreakerState:
        """The state of ``key``'s breaker (closed for an origin never seen)."""
        with self._lock:
            breaker = self._breakers.get(key)
            return BreakerState.CLOSED if breaker is None else breaker.state(now)

    def __len__(self) -> int:
        return len(self._breakers)

    def __contains__(self, key: object) -> bool:
        return key in self._breakers


# -- per-request decisions ---------------------------------------------------------------------


class TransportFailure(enum.Enum):
    """How an adapter classifies an I/O error: was the request possibly sent, was it a timeout.

    ``NOT_SENT*`` (connection refused, DNS failure, connect or pool timeout) means the server
    cannot have seen the request, so it is safe to retry whatever the method (RFC 9110 §9.2.2:
    a client may retry when it has "some means to detect that the original request was never
    applied"). ``SENT*`` (reset, read error, read timeout) means it may have been processed.
    """

    NOT_SENT = (False, False)
    NOT_SENT_TIMEOUT = (False, True)
    SENT = (True, False)
    SENT_TIMEOUT = (True, True)

    @property
    def sent(self) -> bool:
        """Whether the server may have received (and acted on) the request."""
        return bool(self.value[0])

    @property
    def timeout(self) -> bool:
        """Whether the failure was a timeout (priced as one by some budgets)."""
        return bool(self.value[1])


class RetryableStatus(StormproofError):
    """What a retryable response is, to the retry policy: ``status`` and its server delay.

    Never raised to users (a final retryable response is returned as it is); it is the error
    handed to :meth:`RetryCall.on_failure`, so a custom ``retry_on`` or ``is_throttling`` can
    classify statuses. ``throttling`` is true for 429.
    """

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after
        self.throttling = status == 429


class HttpEngine:
    """The state an adapter shares between requests: policy, clock, breakers, telemetry.

    Args:
        policy: default ``HttpPolicy()``.
        clock: where decisions read the time and waits happen; default the wall clock.
        on_event: receives a :class:`~stormproof.run.pipeline.PipelineEvent` per decision
            (``retry``/``retry``, ``retry``/``give_up``, ``breaker``/``rejected``,
            ``breaker``/``failure``, ``breaker``/``success``, ``breaker``/``state``; with a
            hedge also ``hedge``/``started``, ``hedge``/``won`` and ``hedge``/``refused``).
        wall_time: POSIX time for ``Retry-After`` dates when a response has no ``Date``.
    """

    __slots__ = ("breakers", "clock", "hedger", "on_event", "policy", "wall_time")

    def __init__(
        self,
        policy: HttpPolicy | None = None,
        *,
        clock: SleepingClock | None = None,
        on_event: Callable[[PipelineEvent], None] | None = None,
        wall_time: Callable[[], float] = time.time,
    ) -> None:
        if policy is None:
            policy = HttpPolicy()
        if not isinstance(policy, HttpPolicy):
            raise ConfigError("policy", "must be an HttpPolicy", policy)
        if clock is None:
            clock = WallClock()
        elif not isinstance(clock, SleepingClock):
            raise ConfigError("clock", "must have now(), sleep() and async_sleep()", clock)
        if on_event is not None and not callable(on_event):
            raise ConfigError("on_event", "must be callable(event)", on_event)
        self.policy = policy
        self.clock = clock
        self.on_event = on_event
        self.wall_time = wall_time
        self.breakers: HostBreakers | None = None
        if policy.breaker is not None:
            self.breakers = HostBreakers(
                policy.breaker,
                policy.max_hosts,
                on_state_change=None if on_event is None else self._state_changed,
            )
        #: Runs the policy's :class:`Hedge` (the pipeline's own hedging), or ``None``.
        self.hedger: Pipeline | None = None
        if policy.hedge is not None:
            self.hedger = Pipeline([policy.hedge], clock=clock, on_event=on_event)

    def _state_changed(self, key: str, change: Any) -> None:
        self.emit("breaker", "state", f"{key} {change.old.value}->{change.new.value}")

    def emit(self, mechanism: str, outcome: str, reason: str = "", **extra: Any) -> None:
        """Send a :class:`PipelineEvent` to ``on_event`` (if any)."""
        if self.on_event is not None:
            self.on_event(PipelineEvent(mechanism, outcome, reason, time=self.clock.now(), **extra))

    def start(
        self,
        method: str,
        key: str,
        headers_have_key: bool,
        replayable: Callable[[], bool] | None = None,
    ) -> HttpCall:
        """Begin one request to origin ``key``. See :class:`HttpCall`."""
        return HttpCall(self, method, key, headers_have_key, replayable)

    def sleep(self, delay: float) -> None:
        """Wait ``delay`` on the clock (recorded instead under ``instant_sleeps``)."""
        recorded = INSTANT_SLEEPS.get()
        if recorded is not None:
            recorded.append(delay)
        elif delay > 0.0:
            self.clock.sleep(delay)

    async def async_sleep(self, delay: float) -> None:
        """Await ``delay`` on the clock (recorded instead under ``instant_sleeps``)."""
        recorded = INSTANT_SLEEPS.get()
        if recorded is not None:
            recorded.append(delay)
        elif delay > 0.0:
            await self.clock.async_sleep(delay)


class Lease:
    """One attempt's pass through the origin's breaker: when it started and its time limit.

    Hedged attempts run side by side, so each holds its own lease and reports its own outcome
    to the breaker through :meth:`HttpCall.settle` or :meth:`HttpCall.release`.
    """

    __slots__ = ("breaker", "limit", "started")

    def __init__(self, breaker: CircuitBreaker | None, started: float, limit: float | None):
        self.breaker = breaker
        self.started = started
        self.limit = limit


class HttpCall:
    """One request under an :class:`HttpEngine`: breaker checks and retry decisions.

    The driver calls :meth:`begin` before each attempt, then exactly one of :meth:`on_response`,
    :meth:`on_error` or :meth:`cancelled`. Creating it starts the retry call (telling the budget)
    and raises :class:`DeadlineExceeded` if the context deadline has already passed.

    ``replayable`` is asked before a retry: a request whose body was a one-shot stream cannot be
    sent twice and is then not retried.

    A hedging driver instead takes a :class:`Lease` per concurrent attempt (:meth:`lease`,
    :meth:`hedge_lease`), reports each attempt's outcome to the breaker with :meth:`settle` or
    :meth:`release`, and asks for one decision per round with :meth:`decide_response`,
    :meth:`decide_error` or :meth:`accepted`.
    """

    __slots__ = (
        "_breaker",
        "_call",
        "_may_retry",
        "_replayable",
        "_started",
        "engine",
        "key",
        "last_error",
        "method",
    )

    def __init__(
        self,
        engine: HttpEngine,
        method: str,
        key: str,
        headers_have_key: bool,
        replayable: Callable[[], bool] | None,
    ) -> None:
        self.engine = engine
        self.method = method
        self.key = key
        policy = engine.policy
        now = engine.clock.now()
        total = policy.total_timeout
        self._call: RetryCall = policy.retry.start(
            now, deadline=None if total is None else Deadline(now + total)
        )
        self._may_retry = policy.may_retry(method, headers_have_key)
        self._replayable = replayable
        self._breaker: CircuitBreaker | None = None
        self._started = now
        #: The error of the latest failed attempt, chained to a later breaker refusal.
        self.last_error: BaseException | None = None

    @property
    def attempt(self) -> int:
        """The number of the current attempt (1 for the first)."""
        return self._call.attempt

    @property
    def deadline(self) -> Deadline | None:
        """The request's deadline (total timeout within the context deadline), or ``None``."""
        return self._call.deadline

    @property
    def hedging(self) -> bool:
        """Whether this request is hedged: the engine has a hedge and the request may be resent.

        The rule is the retry rule: an idempotent method or an idempotency key, and a body that
        can be sent again. A POST without a key is never sent twice at once.
        """
        if self.engine.hedger is None or not self._may_retry:
            return False
        return self._replayable is None or self._replayable()

    def _limit(self, now: float) -> float | None:
        limit = self.engine.policy.attempt_timeout
        deadline = self._call.deadline
        if deadline is not None:
            left = deadline.remaining(now)
            limit = left if limit is None else min(limit, left)
        return limit

    def lease(self) -> Lease:
        """Ask the breaker for an attempt; raises :class:`BreakerOpen` when it refuses.

        The lease's ``limit`` is the attempt timeout, shortened to the time left before the
        deadline (``None``: no limit).
        """
        engine = self.engine
        now = engine.clock.now()
        breakers = engine.breakers
        breaker = None
        if breakers is not None:
            try:
                breaker = breakers.check(self.key, now)
            except BreakerOpen as refused:
                engine.emit("breaker", "rejected", refused.state.value, delay=refused.retry_after)
                raise
        return Lease(breaker, now, self._limit(now))

    def hedge_lease(self) -> Lease | None:
        """A lease for a hedged attempt, or ``None`` (and a ``hedge``/``refused`` event).

        A hedge is refused when the deadline has passed, the breaker refuses it, or the retry
        budget has no retry to spare: a hedge is extra load, priced as a retry.
        """
        engine = self.engine
        now = engine.clock.now()
        limit = self._limit(now)
        if limit is not None and limit <= 0.0:
            engine.emit("hedge", "refused", "deadline")
            return None
        breaker = None
        if engine.breakers is not None:
            try:
                breaker = engine.breakers.check(self.key, now)
            except BreakerOpen as refused:
                engine.emit("hedge", "refused", f"breaker {refused.state.value}")
                return None
        budget = self._call.policy.budget
        if budget is not None and budget.acquire_retry(now) is None:
            if breaker is not None and engine.breakers is not None:
                engine.breakers.release(breaker, now)
            engine.emit("hedge", "refused", "budget")
            return None
        return Lease(breaker, now, limit)

    def settle(self, lease: Lease, success: bool, reason: str) -> None:
        """Record a leased attempt's outcome with the breaker."""
        breakers, breaker = self.engine.breakers, lease.breaker
        if breakers is not None and breaker is not None:
            now = self.engine.clock.now()
            breakers.record(breaker, now, success, now - lease.started)
            self.engine.emit("breaker", "success" if success else "failure", reason)
            lease.breaker = None

    def release(self, lease: Lease) -> None:
        """A leased attempt was cancelled or says nothing about the origin: record nothing."""
        breakers, breaker = self.engine.breakers, lease.breaker
        if breakers is not None and breaker is not None:
            breakers.release(breaker, self.engine.clock.now())
            lease.breaker = None

    def settle_response(self, lease: Lease, status: int) -> None:
        """Record a leased attempt that got a response with ``status``."""
        self.settle(lease, not self.engine.policy.counts_as_failure(status), str(status))

    def settle_error(self, lease: Lease, error: BaseException, failure: Any) -> None:
        """Record a leased attempt that raised ``error`` (classified as ``failure``)."""
        self.last_error = error
        if failure is None:
            self.release(lease)
        else:
            self.settle(lease, False, type(error).__name__)

    def begin(self) -> float | None:
        """Start an attempt: ask the breaker, return the attempt's time limit in seconds.

        Raises :class:`BreakerOpen` when the origin's breaker refuses the call. The limit is the
        attempt timeout, shortened to the time left before the deadline; ``None`` for no limit.
        """
        lease = self.lease()
        self._breaker = lease.breaker
        self._started = lease.started
        return lease.limit

    def _current(self) -> Lease:
        lease = Lease(self._breaker, self._started, None)
        self._breaker = None
        return lease

    def cancelled(self) -> None:
        """The attempt was cancelled or interrupted: its outcome is unknown, nothing is recorded."""
        self.release(self._current())

    def _refuse(self, code: str, detail: str) -> GiveUp:
        decision = GiveUp(GiveUpReason.NOT_RETRYABLE, self._call.attempt, detail)
        self.engine.emit("retry", "give_up", code, attempt=decision.attempts)
        return decision

    def _blocked(self, now: float, sent: bool) -> tuple[str, str] | None:
        """Why the request may not be retried now, as (code, detail), or ``None`` if it may."""
        if sent and not self._may_retry:
            header = self.engine.policy.idempotency_header
            return "not_idempotent", f"{self.method} is not idempotent and has no {header} header"
        if self._replayable is not None and not self._replayable():
            return "not_replayable", "the request body cannot be sent again"
        breakers = self.engine.breakers
        if breakers is not None:
            state = breakers.state(self.key, now)
            if state is BreakerState.OPEN or state is BreakerState.ISOLATED:
                return "breaker_open", f"the circuit breaker of {self.key} is {state.value}"
        return None

    def on_response(
        self, status: int, retry_after: str | None = None, date: str | None = None
    ) -> RetryAfter | GiveUp | None:
        """Decide what follows a response: ``None`` to accept it, a retry, or a give-up.

        On a give-up the response is still the caller's answer (the driver returns it).
        ``retry_after`` and ``date`` are the raw ``Retry-After`` and ``Date`` header values.
        """
        self.settle_response(self._current(), status)
        return self.decide_response(status, retry_after, date)

    def accepted(self) -> None:
        """The request's answer is a response that is not retried: tell the budget."""
        self._call.on_success(self.engine.clock.now())

    def decide_response(
        self, status: int, retry_after: str | None = None, date: str | None = None
    ) -> RetryAfter | GiveUp | None:
        """:meth:`on_response` without the breaker (a hedging driver has recorded it)."""
        engine = self.engine
        policy = engine.policy
        now = engine.clock.now()
        if status not in policy.retry_statuses:
            self._call.on_success(now)
            return None
        blocked = self._blocked(now, sent=True)
        if blocked is not None:
            return self._refuse(*blocked)
        server_delay = None
        if retry_after is not None:
            reference = parse_http_date(date) if date is not None else None
            server_delay = parse_retry_after(
                retry_after, now=engine.wall_time() if reference is None else reference
            )
        return self._decide(now, RetryableStatus(status, server_delay), server_delay, False)

    def on_error(
        self, error: BaseException, failure: TransportFailure | None
    ) -> RetryAfter | GiveUp:
        """Decide what follows an attempt that raised ``error`` (classified as ``failure``).

        ``failure=None`` marks an error that says nothing about the origin's health (a bad URL,
        a TLS verification failure): it is not retried and not recorded by the breaker.
        """
        self.settle_error(self._current(), error, failure)
        return self.decide_error(error, failure)

    def decide_error(
        self, error: BaseException, failure: TransportFailure | None
    ) -> RetryAfter | GiveUp:
        """:meth:`on_error` without the breaker (a hedging driver has recorded it)."""
        now = self.engine.clock.now()
        self.last_error = error
        if failure is None:
            name = type(error).__name__
            return self._refuse("not_transient", f"{name} is not a transient transport error")
        blocked = self._blocked(now, sent=failure.sent)
        if blocked is not None:
            return self._refuse(*blocked)
        return self._decide(now, error, None, failure.timeout)

    def _decide(
        self, now: float, error: BaseException, server_delay: float | None, timed_out: bool
    ) -> RetryAfter | GiveUp:
        call = self._call
        retry = call.policy
        reason = "backoff"
        if server_delay is not None:
            # Retry-After is a floor, not a replacement: max(backoff, Retry-After), so a crowd
            # of clients told the same date still spreads out by their jitter.
            exhausted = retry.max_attempts is not None and call.attempt >= retry.max_attempts
            backoff = 0.0 if exhausted else self._backoff(error)
            capped = min(server_delay, retry.max_server_delay)
            if capped > backoff:
                reason = "server_delay"
            server_delay = max(backoff, capped)
        decision = call.on_failure(now, error, retry_after=server_delay, timed_out=timed_out)
        if isinstance(decision, RetryAfter):
            self.engine.emit(
                "retry", "retry", reason, attempt=decision.attempt - 1, delay=decision.delay
            )
        else:
            self.engine.emit("retry", "give_up", decision.reason.value, attempt=decision.attempts)
        return decision

    def _backoff(self, error: BaseException) -> float:
        call = self._call
        retry = call.policy
        schedule = retry.backoff
        if (
            retry.throttling_backoff is not None
            and retry.is_throttling is not None
            and retry.is_throttling(error)
        ):
            schedule = retry.throttling_backoff
        return schedule.delay(call.attempt, call.last_delay, retry.rng)


def refuse_hedging(policy: HttpPolicy, adapter: str, instead: str) -> None:
    """Raise ``ConfigError`` if a sync ``adapter`` is given a policy with a hedge.

    A hedge races attempts; a sync adapter would need threads of its own for that, and
    stormproof starts no hidden threads. ``instead`` names the async adapter to use.
    """
    if policy.hedge is not None:
        raise ConfigError(
            "policy.hedge",
            f"hedging needs concurrency: {adapter} is sync, use {instead}",
            policy.hedge,
        )


# -- drivers -----------------------------------------------------------------------------------

R = TypeVar("R")
R_contra = TypeVar("R_contra", contravariant=True)


class SyncExchange(Protocol[R_contra]):
    """What :func:`send_sync` needs to know about a library's responses and errors."""

    def status(self, response: R_contra) -> int:
        """The response's status code."""
        ...

    def header(self, response: R_contra, name: str) -> str | None:
        """A response header, or ``None``."""
        ...

    def discard(self, response: R_contra) -> None:
        """Close a response that will be retried (its body is not wanted)."""
        ...

    def classify(self, error: BaseException) -> TransportFailure | None:
        """Classify an error raised by an attempt (``None``: not a transient transport error)."""
        ...

    def refused(self, error: BreakerOpen, key: str) -> BaseException:
        """The library-flavoured error to raise when origin ``key``'s breaker refuses a call."""
        ...


class AsyncExchange(Protocol[R_contra]):
    """What :func:`send_async` needs; like :class:`SyncExchange` with an async ``discard``."""

    def status(self, response: R_contra) -> int:
        """The response's status code."""
        ...

    def header(self, response: R_contra, name: str) -> str | None:
        """A response header, or ``None``."""
        ...

    async def discard(self, response: R_contra) -> None:
        """Close a response that will be retried."""
        ...

    def classify(self, error: BaseException) -> TransportFailure | None:
        """Classify an error raised by an attempt."""
        ...

    def refused(self, error: BreakerOpen, key: str) -> BaseException:
        """The library-flavoured error to raise when origin ``key``'s breaker refuses a call."""
        ...


class StatusCodeResponse(Protocol):
    """A response as httpx and requests both shape it."""

    @property
    def status_code(self) -> int:
        """The status code."""
        ...

    @property
    def headers(self) -> Any:
        """A case-insensitive mapping of header names to values."""
        ...

    def close(self) -> None:
        """Release the connection without reading the rest of the body."""
        ...


S = TypeVar("S", bound=StatusCodeResponse)


class StatusCodeReader(Generic[S]):
    """``status`` and ``header`` of an exchange over :class:`StatusCodeResponse` objects."""

    __slots__ = ()

    def status(self, response: S) -> int:
        """The response's status code."""
        return response.status_code

    def header(self, response: S, name: str) -> str | None:
        """A response header, or ``None``."""
        value: str | None = response.headers.get(name)
        return value


class ClosingExchange(StatusCodeReader[S]):
    """The :class:`SyncExchange` part httpx and requests share: a retried response is closed.

    A subclass adds ``classify`` and ``refused`` (the library's errors).
    """

    __slots__ = ()

    def discard(self, response: S) -> None:
        """Close the response."""
        response.close()


def _retry_after(
    call: HttpCall, io: SyncExchange[R] | AsyncExchange[R], response: R
) -> RetryAfter | None:
    """The wait before the next attempt if ``call`` retries ``response``, else ``None``."""
    decision = call.on_response(
        io.status(response), io.header(response, "Retry-After"), io.header(response, "Date")
    )
    return decision if isinstance(decision, RetryAfter) else None


def _begin(call: HttpCall, io: SyncExchange[Any] | AsyncExchange[Any]) -> float | None:
    try:
        return call.begin()
    except BreakerOpen as refused:
        raise io.refused(refused, call.key) from call.last_error


def send_sync(call: HttpCall, attempt: Callable[[float | None], R], io: SyncExchange[R]) -> R:
    """Run ``attempt(time_limit)`` until ``call`` accepts a response or gives up.

    Returns the accepted response, or the last one when retries stop on a retryable status.
    Re-raises the last error when they stop on an error; raises ``io.refused(...)`` when the
    breaker refuses an attempt.
    """
    engine = call.engine
    while True:
        limit = _begin(call, io)
        try:
            response = attempt(limit)
        except Exception as error:
            retry = call.on_error(error, io.classify(error))
            if isinstance(retry, GiveUp):
                raise
            engine.sleep(retry.delay)
            continue
        except BaseException:
            call.cancelled()
            raise
        wait = _retry_after(call, io, response)
        if wait is None:
            return response
        io.discard(response)
        engine.sleep(wait.delay)


async def _bounded(
    call: HttpCall, attempt: Callable[[float | None], Awaitable[R]], limit: float | None
) -> R:
    """``attempt(limit)``, cut by ``asyncio.timeout(limit)`` into an :class:`AttemptTimedOut`."""
    if limit is None:
        return await attempt(None)
    try:
        async with asyncio.timeout(limit) as block:
            return await attempt(limit)
    except TimeoutError as exc:
        if not block.expired():
            raise
        raise AttemptTimedOut(
            f"attempt {call.attempt} to {call.key} took over {limit:.3g} s",
            deadline=None,
            now=call.engine.clock.now(),
        ) from exc


def _failure(io: AsyncExchange[Any], error: BaseException) -> TransportFailure | None:
    if isinstance(error, AttemptTimedOut):
        return TransportFailure.SENT_TIMEOUT
    return io.classify(error)


async def send_async(
    call: HttpCall, attempt: Callable[[float | None], Awaitable[R]], io: AsyncExchange[R]
) -> R:
    """The asyncio form of :func:`send_sync`; it also bounds each attempt with ``asyncio.timeout``.

    An attempt cut by that bound fails with :class:`DeadlineExceeded` (a retryable timeout).
    When ``call.hedging``, each attempt is a race of hedged attempts (:func:`_send_hedged`), so
    ``attempt`` must then be safe to run concurrently.
    """
    if call.hedging:
        return await _send_hedged(call, attempt, io)
    engine = call.engine
    while True:
        limit = _begin(call, io)
        try:
            response = await _bounded(call, attempt, limit)
        except Exception as error:
            retry = call.on_error(error, _failure(io, error))
            if isinstance(retry, GiveUp):
                raise
            await engine.async_sleep(retry.delay)
            continue
        except BaseException:
            call.cancelled()
            raise
        wait = _retry_after(call, io, response)
        if wait is None:
            return response
        await io.discard(response)
        await engine.async_sleep(wait.delay)


class _Unwanted(Exception):
    """A hedged attempt's retryable response, raised so that the race counts it as a failure."""

    def __init__(self, response: Any) -> None:
        super().__init__("retryable response")
        self.response = response


class _HedgeRefused(Exception):
    """A hedge that was not sent: the budget, the breaker or the deadline said no."""


async def _send_hedged(
    call: HttpCall, attempt: Callable[[float | None], Awaitable[R]], io: AsyncExchange[R]
) -> R:
    """:func:`send_async` for a hedged request: every attempt of the retry loop is a race.

    The race is the pipeline's :class:`~stormproof.policies.pipeline.Hedge` (run by
    ``engine.hedger``): after ``delay`` without an answer, or at once after a failure, another
    attempt starts, up to ``max_hedges``; the first good response wins. Each attempt passes the
    breaker and reports its outcome to it; losers are cancelled (their connections closed) and
    awaited, and their responses closed, before this returns. When every attempt of a race
    failed, the last failure is what the retry policy decides on, as for a single attempt.
    """
    engine = call.engine
    while True:
        try:
            first = call.lease()
        except BreakerOpen as refused:
            raise io.refused(refused, call.key) from call.last_error
        won, error, failure = await _race(call, attempt, io, first)
        if won:
            call.accepted()
            return won[0]
        assert error is not None
        if isinstance(error, _Unwanted):
            response: R = error.response
            decision = call.decide_response(
                io.status(response),
                io.header(response, "Retry-After"),
                io.header(response, "Date"),
            )
            if not isinstance(decision, RetryAfter):
                return response
            await io.discard(response)
            await engine.async_sleep(decision.delay)
            continue
        retry = call.decide_error(error, failure)
        if isinstance(retry, GiveUp):
            raise error
        await engine.async_sleep(retry.delay)


async def _race(
    call: HttpCall,
    attempt: Callable[[float | None], Awaitable[R]],
    io: AsyncExchange[R],
    first: Lease,
) -> tuple[list[R], BaseException | None, TransportFailure | None]:
    """One hedged round: ``([winner], None, None)``, or ``([], last failure, its class)``."""
    hedger = call.engine.hedger
    assert hedger is not None
    produced: list[R] = []
    failures: list[tuple[BaseException, TransportFailure | None]] = []
    runners: list[asyncio.Task[Any]] = []

    async def one() -> R:
        task = asyncio.current_task()
        assert task is not None
        runners.append(task)
        lease = first if len(runners) == 1 else call.hedge_lease()
        if lease is None:
            raise _HedgeRefused("hedge refused")
        try:
            response = await _bounded(call, attempt, lease.limit)
        except Exception as error:
            failure = _failure(io, error)
            call.settle_error(lease, error, failure)
            failures.append((error, failure))
            raise
        except BaseException:
            call.release(lease)
            raise
        produced.append(response)
        status = io.status(response)
        call.settle_response(lease, status)
        if call.engine.policy.is_retryable_status(status):
            unwanted = _Unwanted(response)
            failures.append((unwanted, None))
            raise unwanted
        return response

    won: R | None = None
    raised: Exception | None = None
    try:
        won = await hedger.acall(one)
    except Exception as error:
        raised = error
    finally:
        # The hedge cancels its losers without waiting; wait here, so that their connections
        # are closed and their breaker permits returned before the caller goes on.
        losers = [task for task in runners if not task.done()]
        for task in losers:
            task.cancel()
        if losers:
            await asyncio.wait(losers)
        keep: Any = won
        if won is None and failures and isinstance(failures[-1][0], _Unwanted):
            keep = failures[-1][0].response
        for response in produced:
            if response is not keep:
                await io.discard(response)
    if won is not None:
        return [won], None, None
    if not failures:
        assert raised is not None
        raise raised
    last, failure = failures[-1]
    return [], last, failure


class AttemptTimedOut(DeadlineExceeded):
    """An async attempt ran past its time limit; raised to the caller if no retry follows."""
