"""A grpcio client interceptor: retry, deadline propagation and a circuit breaker per target.

    import grpc
    from stormproof.integrations.grpc import TargetBreakers, resilient_channel

    breakers = TargetBreakers()                       # one breaker per target, shared
    channel = resilient_channel("orders:50051", policy, breakers=breakers)
    reply = channel.unary_unary("/orders.Orders/Get")(request_bytes, timeout=2.0)

Unary-unary calls made through the channel (blocking, ``with_call`` and ``future``; the latter
retries on the calling thread before returning) go through :class:`ResilientInterceptor`:

1. **Deadline.** The call's deadline is the tightest of its own ``timeout`` (as in gRPC, the
   timeout covers the whole call, retries included), the policy's ``total_timeout`` and the
   context deadline (:func:`~stormproof.policies.deadline.current_deadline`, for example one
   set from an incoming request by the ASGI middleware). A call whose deadline has passed
   raises :class:`~stormproof.errors.DeadlineExceeded` without being sent. Each attempt is sent
   with ``timeout`` = the time left to the attempt's deadline (``attempt_timeout`` within the
   call's), so the server sees it as ``grpc-timeout`` and can propagate it further.
2. **Breaker.** The target's :class:`~stormproof.policies.breaker.CircuitBreaker` is asked
   before each attempt; refused, the call raises
   :class:`~stormproof.policies.breaker.BreakerOpen` at once (nothing is sent and nothing
   retried). Attempts that end with a code in ``breaker_failure_codes`` count as failures,
   every other outcome (``OK``, ``NOT_FOUND`` ...) as a success: the server answered.
3. **Retry.** An attempt that fails with a code in ``retry_codes`` (``UNAVAILABLE`` by default,
   as gRFC A6 suggests), or that hit its own ``attempt_timeout``, is handed to the policy.
   Server pushback is honoured as in gRFC A6: trailing metadata ``grpc-retry-pushback-ms``
   with a non-negative integer replaces the backoff; a negative or malformed value means "do
   not retry". When the policy gives up, the caller receives the last attempt's ``RpcError``,
   as without the interceptor.

Sleeps happen on stormproof's clock, so :func:`stormproof.testing.instant_sleeps` and a
``ManualClock`` work in tests. Use the policy's budget (``GrpcRetryThrottle`` is gRPC's own
throttling, gRFC A6) to keep retries from multiplying load in an outage. grpcio's built-in
retries (a ``retryPolicy`` in the service config) should stay off on a channel that uses this
interceptor, or the two multiply. Only unary-unary calls are intercepted; streaming calls pass
through untouched.

``grpc.aio`` channels get the same behaviour from :class:`AsyncResilientInterceptor` (or
:func:`resilient_aio_channel`): both interceptors make their decisions in one shared class, so
only the sending and the sleeping differ (``await`` and ``clock.async_sleep``).
"""

from __future__ import annotations

import importlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from stormproof._validate import int_at_least
from stormproof.clock import SleepingClock, WallClock
from stormproof.errors import ConfigError
from stormproof.policies.breaker import BreakerConfig, CircuitBreaker
from stormproof.policies.deadline import Deadline
from stormproof.policies.retry import GiveUp, RetryPolicy
from stormproof.run._common import INSTANT_SLEEPS


def _import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"stormproof.integrations.grpc needs grpcio: pip install 'stormproof[grpc]' ({error})"
        ) from error


grpc = _import("grpc")
_aio = _import("grpc.aio")
# Base classes grpc requires of interceptors and call details (grpcio ships no type hints).
_ClientCallDetails: Any = grpc.ClientCallDetails
_UnaryUnaryClientInterceptor: Any = grpc.UnaryUnaryClientInterceptor
_AioUnaryUnaryClientInterceptor: Any = _aio.UnaryUnaryClientInterceptor

__all__ = [
    "AsyncResilientInterceptor",
    "GrpcRetryConfig",
    "ResilientInterceptor",
    "TargetBreakers",
    "parse_pushback",
    "resilient_aio_channel",
    "resilient_channel",
]

#: The canonical status codes (grpc/doc/statuscodes.md), by name.
STATUS_NAMES = frozenset(
    {
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    }
)

PUSHBACK_KEY = "grpc-retry-pushback-ms"


def _codes(field: str, names: frozenset[str]) -> frozenset[str]:
    if not isinstance(names, frozenset) or not all(isinstance(n, str) for n in names):
        raise ConfigError(field, "must be a frozenset of status code names", names)
    unknown = sorted(names - STATUS_NAMES)
    if unknown:
        raise ConfigError(field, "must name gRPC status codes such as 'UNAVAILABLE'", unknown)
    if "OK" in names:
        raise ConfigError(field, "cannot contain OK", names)
    return names


@dataclass(frozen=True, slots=True)
class GrpcRetryConfig:
    """Which outcomes the interceptor retries and which trip the breaker.

    Args:
        retry_codes: status names retried (default ``UNAVAILABLE``: the server did not
            process the call, so a retry is safe even for non-idempotent methods).
        breaker_failure_codes: status names counted as failures by the breaker (default:
            ``UNAVAILABLE``, ``DEADLINE_EXCEEDED``, ``RESOURCE_EXHAUSTED``, ``INTERNAL``,
            ``UNKNOWN``).
        methods: full method names (``/pkg.Service/Method``) that may be retried; ``None``
            (default) retries every method. Others still get the deadline and the breaker.
        pushback: honour ``grpc-retry-pushback-ms`` trailing metadata (gRFC A6).
    """

    retry_codes: frozenset[str] = frozenset({"UNAVAILABLE"})
    breaker_failure_codes: frozenset[str] = frozenset(
        {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "INTERNAL", "UNKNOWN"}
    )
    methods: frozenset[str] | None = None
    pushback: bool = True

    def __post_init__(self) -> None:
        _codes("retry_codes", self.retry_codes)
        _codes("breaker_failure_codes", self.breaker_failure_codes)
        if self.methods is not None and not isinstance(self.methods, frozenset):
            raise ConfigError(
                "methods", "must be a frozenset of method names or None", self.methods
            )


def parse_pushback(metadata: Sequence[tuple[str, Any]] | None) -> float | None:
    """The server's pushback in seconds; ``-1.0`` for "do not retry"; ``None`` if absent.

    gRFC A6: a non-negative integer of milliseconds is the delay before the next attempt;
    a negative or unparsable value means the client must not retry.
    """
    if not metadata:
        return None
    for key, value in metadata:
        if key == PUSHBACK_KEY:
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
            if not text.isdigit():
                return -1.0
            return int(text) / 1000.0
    return None


class TargetBreakers:
    """One :class:`CircuitBreaker` per target, created on first use (at most ``max_targets``).

    Share one instance between the channels of an application, so that every channel to the
    same target consults the same breaker. Beyond ``max_targets`` the least recently used
    target's breaker is forgotten.
    """

    def __init__(self, config: BreakerConfig | None = None, *, max_targets: int = 1_000) -> None:
        self.config = config if config is not None else BreakerConfig()
        if not isinstance(self.config, BreakerConfig):
            raise ConfigError("config", "must be a BreakerConfig", config)
        int_at_least("max_targets", max_targets, 1)
        self.max_targets = max_targets
        self._breakers: OrderedDict[str, CircuitBreaker] = OrderedDict()

    def get(self, target: str) -> CircuitBreaker:
        """The breaker of ``target`` (named after it)."""
        breaker = self._breakers.get(target)
        if breaker is None:
            if len(self._breakers) >= self.max_targets:
                self._breakers.popitem(last=False)
            breaker = self._breakers[target] = CircuitBreaker(self.config, name=target)
        else:
            self._breakers.move_to_end(target)
        return breaker

    def __len__(self) -> int:
        return len(self._breakers)


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: Any
    compression: Any


class _Details(_CallDetails, _ClientCallDetails):  # type: ignore[misc]
    """The call details of one attempt (grpc wants a ``ClientCallDetails`` instance)."""


class _Rules:
    """What both interceptors share: their configuration and the per-call decisions.

    Args:
        policy: the retry policy (its budget is shared by every call through it).
        config: :class:`GrpcRetryConfig`.
        breaker: the target's breaker, or ``None`` for none.
        clock: monotonic clock for deadlines, breaker and sleeps (default the wall clock).
    """

    def __init__(
        self,
        policy: RetryPolicy,
        config: GrpcRetryConfig | None = None,
        *,
        breaker: CircuitBreaker | None = None,
        clock: SleepingClock | None = None,
    ) -> None:
        if not isinstance(policy, RetryPolicy):
            raise ConfigError("policy", "must be a stormproof RetryPolicy", policy)
        self.policy = policy
        self.config = config if config is not None else GrpcRetryConfig()
        if not isinstance(self.config, GrpcRetryConfig):
            raise ConfigError("config", "must be a GrpcRetryConfig", config)
        if breaker is not None and not isinstance(breaker, CircuitBreaker):
            raise ConfigError("breaker", "must be a CircuitBreaker or None", breaker)
        self.breaker = breaker
        self.clock: SleepingClock = clock if clock is not None else WallClock()
        codes = grpc.StatusCode
        self._retry = frozenset(getattr(codes, name) for name in self.config.retry_codes)
        self._trip = frozenset(getattr(codes, name) for name in self.config.breaker_failure_codes)
        self._ok = codes.OK
        self._deadline_exceeded = codes.DEADLINE_EXCEEDED

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.policy!r}, breaker={self.breaker!r})"


class _UnaryCall:
    """The decisions of one unary call, whatever runs it (the sync or the asyncio interceptor).

    The driver loops: :meth:`begin` (breaker check, attempt timeout) -> send -> :meth:`settled`
    with the status code (breaker record; true when the outcome is final) -> otherwise
    :meth:`retry_delay` with the trailing metadata and the error (``None``: return the outcome).
    """

    __slots__ = ("_attempt_deadline", "_call", "_rules", "_started", "method", "retry_allowed")

    def __init__(self, rules: _Rules, details: Any) -> None:
        self._rules = rules
        raw = details.method
        self.method: str = raw.decode() if isinstance(raw, bytes) else raw
        methods = rules.config.methods
        self.retry_allowed = methods is None or self.method in methods
        now = rules.clock.now()
        own = None if details.timeout is None else Deadline(now + details.timeout)
        self._call = rules.policy.start(now, deadline=own)
        self._started = now
        self._attempt_deadline: Deadline | None = None

    def begin(self) -> float | None:
        """Ask the breaker (raises ``BreakerOpen``); return the attempt's ``timeout``."""
        rules = self._rules
        now = rules.clock.now()
        if rules.breaker is not None:
            rules.breaker.check(now)
        self._started = now
        self._attempt_deadline = self._call.attempt_deadline(now)
        deadline = self._attempt_deadline
        return None if deadline is None else deadline.remaining(now)

    def settled(self, code: Any) -> bool:
        """Record the attempt's outcome; true if it is final (OK, or a code not retried)."""
        rules = self._rules
        ended = rules.clock.now()
        if rules.breaker is not None:
            rules.breaker.record(
                ended, success=code not in rules._trip, duration=ended - self._started
            )
        if code == rules._ok:
            self._call.on_success(ended)
            return True
        return not self.retry_allowed or not (self._timed_out(code) or code in rules._retry)

    def _timed_out(self, code: Any) -> bool:
        # An attempt cut by its own attempt_timeout (not the call's deadline) is retried.
        attempt, call = self._attempt_deadline, self._call.deadline
        return (
            code == self._rules._deadline_exceeded
            and attempt is not None
            and (call is None or attempt.at < call.at)
        )

    def retry_delay(self, code: Any, trailing: Any, error: BaseException) -> float | None:
        """The wait before the next attempt, or ``None`` to return this outcome (give-up)."""
        rules = self._rules
        pushback = parse_pushback(trailing) if rules.config.pushback else None
        if pushback is not None and pushback < 0.0:
            return None
        decision = self._call.on_failure(
            rules.clock.now(), error, retry_after=pushback, timed_out=self._timed_out(code)
        )
        return None if isinstance(decision, GiveUp) else decision.delay


class ResilientInterceptor(_Rules, _UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """The unary-unary interceptor for sync channels; see the module docstring.

    Args:
        policy: the retry policy (its budget is shared by every call through it).
        config: :class:`GrpcRetryConfig`.
        breaker: the target's breaker, or ``None`` for none.
        clock: monotonic clock for deadlines, breaker and sleeps (default the wall clock).
    """

    def intercept_unary_unary(
        self, continuation: Callable[[Any, Any], Any], client_call_details: Any, request: Any
    ) -> Any:
        """Run one unary call with retries, deadlines and the breaker."""
        details = client_call_details
        call = _UnaryCall(self, details)
        while True:
            attempt = _Details(
                call.method,
                call.begin(),
                details.metadata,
                details.credentials,
                getattr(details, "wait_for_ready", None),
                getattr(details, "compression", None),
            )
            outcome = continuation(attempt, request)
            code = outcome.code()
            if call.settled(code):
                return outcome
            delay = call.retry_delay(code, outcome.trailing_metadata(), outcome.exception())
            if delay is None:
                return outcome
            recorded = INSTANT_SLEEPS.get()
            if recorded is not None:
                recorded.append(delay)
            elif delay > 0.0:
                self.clock.sleep(delay)


class AsyncResilientInterceptor(_Rules, _AioUnaryUnaryClientInterceptor):  # type: ignore[misc]
    """The same interceptor for ``grpc.aio`` channels: same rules, sleeps on ``async_sleep``.

    Pass it in ``grpc.aio.insecure_channel(target, interceptors=[...])`` or use
    :func:`resilient_aio_channel`. The arguments are those of :class:`ResilientInterceptor`.
    On a give-up the last attempt's call is returned, so awaiting it raises its
    ``grpc.aio.AioRpcError`` as without the interceptor.
    """

    async def intercept_unary_unary(
        self, continuation: Callable[[Any, Any], Any], client_call_details: Any, request: Any
    ) -> Any:
        """Run one unary call with retries, deadlines and the breaker."""
        details = client_call_details
        call = _UnaryCall(self, details)
        while True:
            attempt = _aio.ClientCallDetails(
                details.method,
                call.begin(),
                details.metadata,
                details.credentials,
                details.wait_for_ready,
            )
            outcome = await continuation(attempt, request)
            code = await outcome.code()
            if call.settled(code):
                return outcome
            trailing = await outcome.trailing_metadata()
            delay = call.retry_delay(code, trailing, await _error_of(outcome))
            if delay is None:
                return outcome
            recorded = INSTANT_SLEEPS.get()
            if recorded is not None:
                recorded.append(delay)
            elif delay > 0.0:
                await self.clock.async_sleep(delay)


async def _error_of(outcome: Any) -> BaseException:
    """The ``AioRpcError`` a finished, failed aio call raises when awaited."""
    try:
        await outcome
    except grpc.RpcError as error:
        failure: BaseException = error
        return failure
    raise AssertionError("a call with a non-OK code completed")  # pragma: no cover


def resilient_channel(
    target: str,
    policy: RetryPolicy,
    *,
    config: GrpcRetryConfig | None = None,
    breakers: TargetBreakers | None = None,
    clock: SleepingClock | None = None,
    credentials: Any = None,
    options: Sequence[tuple[str, Any]] = (),
) -> Any:
    """A channel to ``target`` whose unary calls run through a :class:`ResilientInterceptor`.

    ``credentials`` makes a secure channel (``grpc.secure_channel``), otherwise an insecure
    one. The breaker is ``breakers.get(target)`` when ``breakers`` is given.
    """
    if credentials is None:
        channel = grpc.insecure_channel(target, options=list(options))
    else:
        channel = grpc.secure_channel(target, credentials, options=list(options))
    breaker = breakers.get(target) if breakers is not None else None
    interceptor = ResilientInterceptor(policy, config, breaker=breaker, clock=clock)
    return grpc.intercept_channel(channel, interceptor)


def resilient_aio_channel(
    target: str,
    policy: RetryPolicy,
    *,
    config: GrpcRetryConfig | None = None,
    breakers: TargetBreakers | None = None,
    clock: SleepingClock | None = None,
    credentials: Any = None,
    options: Sequence[tuple[str, Any]] = (),
    interceptors: Sequence[Any] = (),
) -> Any:
    """A ``grpc.aio`` channel whose unary calls run through an :class:`AsyncResilientInterceptor`.

    The asyncio twin of :func:`resilient_channel`; call it inside the event loop that uses
    the channel. ``interceptors`` run inside stormproof's, so each attempt passes them again.
    """
    breaker = breakers.get(target) if breakers is not None else None
    chain = [AsyncResilientInterceptor(policy, config, breaker=breaker, clock=clock), *interceptors]
    if credentials is None:
        return _aio.insecure_channel(target, options=list(options), interceptors=chain)
    return _aio.secure_channel(target, credentials, options=list(options), interceptors=chain)
