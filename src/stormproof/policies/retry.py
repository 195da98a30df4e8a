"""The retry policy: a frozen configuration and a per-call, sans-IO state machine.

    call = policy.start(now)                       # one per logical call
    decision = call.on_failure(now, error)         # -> RetryAfter(delay, attempt) | GiveUp(reason)
    decision = call.on_result(now, result)         # -> None (accept) | RetryAfter | GiveUp
    call.on_success(now)                           # tells the budget

The policy never sleeps and never reads a clock: drivers (:mod:`stormproof.run`), the simulator
and the workflow engine ask it with the current time and carry out its answer.

Counting convention: ``max_attempts`` counts **total attempts**, the first call included, as the
AWS SDKs (``max_attempts=3``), resilience4j (``maxAttempts``) and stamina (``attempts``) do. Users
who think in retries (Polly's ``MaxRetryAttempts``, the States Language's ``MaxAttempts``,
urllib3's ``total``) can build a policy with :meth:`RetryPolicy.with_max_retries` and read
:attr:`RetryPolicy.max_retries`.

Giving up, in the order the checks are made on a failure:

1. ``not_retryable`` -- the error is not classified as retryable (the caller should re-raise it
   unchanged);
2. ``attempts_exhausted`` -- ``max_attempts`` attempts have been made;
3. ``deadline`` -- sleeping the chosen delay would reach the call's deadline (the tighter of
   ``total_timeout`` and the context deadline), so there would be no time left to try;
4. ``budget_exhausted`` -- the shared retry budget refused the retry.

The budget is asked last so that a call that gives up for another reason spends nothing.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from stormproof._validate import finite_at_least, int_at_least
from stormproof.errors import ConfigError, DeadlineExceeded, RetryError
from stormproof.policies.backoff import Backoff, Exponential
from stormproof.policies.budget import RetryBudget
from stormproof.policies.deadline import _CURRENT as _CURRENT_DEADLINE
from stormproof.policies.deadline import Deadline, Timeouts

__all__ = [
    "GiveUp",
    "GiveUpReason",
    "RetryAfter",
    "RetryCall",
    "RetryPolicy",
    "default_retry_after",
    "default_retryable",
]

ErrorClassifier = (
    type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
)


class GiveUpReason(enum.StrEnum):
    """Why a retried call stopped."""

    NOT_RETRYABLE = "not_retryable"
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    DEADLINE = "deadline"
    BUDGET_EXHAUSTED = "budget_exhausted"


# Decisions are plain slotted dataclasses, not frozen ones: a frozen dataclass's constructor
# costs several times more, and a decision is made on every failure. Treat them as read-only.
@dataclass(slots=True)
class RetryAfter:
    """Decision: wait ``delay`` seconds, then make attempt number ``attempt``.

    ``server_delay`` is true when the delay came from the server (Retry-After), not the backoff.
    """

    delay: float
    attempt: int
    server_delay: bool = False


@dataclass(slots=True)
class GiveUp:
    """Decision: stop after ``attempts`` attempts, for ``reason`` (details in ``detail``)."""

    reason: GiveUpReason
    attempts: int
    detail: str = ""

    def error(self, last_error: BaseException | None = None, last_result: Any = None) -> RetryError:
        """The :class:`RetryError` a driver raises for this decision."""
        return RetryError(
            attempts=self.attempts,
            reason=self.reason.value,
            last_error=last_error,
            last_result=last_result,
            detail=self.detail,
        )


def default_retryable(error: BaseException) -> bool:
    """stormproof's default classification: retry any ``Exception`` except a nested give-up.

    A :class:`RetryError` means a lower layer already retried and gave up; retrying it again here
    multiplies attempts across layers (3 layers x 3 attempts = 27 calls), which is how retry
    storms grow. ``BaseException``s that are not ``Exception`` (``KeyboardInterrupt``,
    ``asyncio.CancelledError``, ``SystemExit``) are never retried.
    """
    return isinstance(error, Exception) and not isinstance(error, RetryError)


_NUMBER = (int, float)


def default_retry_after(error: BaseException) -> float | None:
    """Read a server-given delay from ``error.retry_after`` (seconds, >= 0) if it has one."""
    value = getattr(error, "retry_after", None)
    if value is None:
        return None
    if isinstance(value, _NUMBER) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


_NO_TYPES: tuple[type[BaseException], ...] = ()


def _classifier(
    field_name: str, spec: ErrorClassifier
) -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...], Any]:
    """Split ``retry_on`` into (retryable types, excluded types, predicate or None).

    Exception types are checked with ``isinstance`` inline on the decision path; only a custom
    predicate costs a call.
    """
    if spec is default_retryable:
        return (Exception,), (RetryError,), None
    if isinstance(spec, type):
        if not issubclass(spec, BaseException):
            raise ConfigError(field_name, "a class must be an exception type", spec)
        return (spec,), _NO_TYPES, None
    if isinstance(spec, tuple):
        if not spec or not all(isinstance(t, type) and issubclass(t, BaseException) for t in spec):
            raise ConfigError(field_name, "a tuple must hold exception types only", spec)
        return spec, _NO_TYPES, None
    if callable(spec):
        return _NO_TYPES, _NO_TYPES, spec
    raise ConfigError(
        field_name, "must be an exception type, a tuple of them, or a predicate", spec
    )


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How to retry one kind of call. Immutable; share it freely; start one call per operation.

    Args:
        max_attempts: total attempts including the first (>= 1), or ``None`` for no limit (then
            bound the call with ``total_timeout`` or a ``budget``). Default 3, as the AWS SDKs'
            standard mode and resilience4j.
        backoff: the delay schedule (:mod:`stormproof.policies.backoff`). Default: exponential
            from 0.1 s, doubling, capped at 20 s, full jitter.
        retry_on: which exceptions are retryable -- a type, a tuple of types, or a predicate.
            Default :func:`default_retryable`.
        retry_on_result: a predicate on a returned value that makes it a retryable failure (for
            example an HTTP 503 response object). Default: results are never retried.
        retry_after: reads a server-given delay (seconds) from an error, or ``None``. A server
            delay replaces the backoff. Default :func:`default_retry_after`.
        max_server_delay: the cap applied to server-given delays (seconds). Default 60 s.
        attempt_timeout: seconds one attempt may take (enforced by the async driver, exposed as
            the context deadline to sync code). Default none.
        total_timeout: seconds the whole call may take, sleeps included. Default none.
        budget: a shared :class:`~stormproof.policies.budget.RetryBudget`. Default none.
        is_timeout: classifies an error as a timeout (priced differently by some budgets).
            Default: ``isinstance(error, TimeoutError)``.
        is_throttling: classifies an error as throttling (some budgets and the AWS 2026 preset
            treat it apart). Default: nothing is throttling.
        throttling_backoff: the schedule used after throttling errors. Default: ``backoff``.
        rng: the random source for jitter. Pass a seeded ``random.Random`` for reproducible
            schedules; the default is a fresh, OS-seeded one per policy.
    """

    max_attempts: int | None = 3
    backoff: Backoff = field(default_factory=Exponential)
    retry_on: ErrorClassifier = default_retryable
    retry_on_result: Callable[[Any], bool] | None = None
    retry_after: Callable[[BaseException], float | None] | None = default_retry_after
    max_server_delay: float = 60.0
    attempt_timeout: float | None = None
    total_timeout: float | None = None
    budget: RetryBudget | None = None
    is_timeout: Callable[[BaseException], bool] | None = None
    is_throttling: Callable[[BaseException], bool] | None = None
    throttling_backoff: Backoff | None = None
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)
    _retry_types: tuple[type[BaseException], ...] = field(
        init=False, repr=False, compare=False, default=_NO_TYPES
    )
    _retry_excluded: tuple[type[BaseException], ...] = field(
        init=False, repr=False, compare=False, default=_NO_TYPES
    )
    _retry_predicate: Callable[[BaseException], bool] | None = field(
        init=False, repr=False, compare=False, default=None
    )
    _timeouts: Timeouts = field(init=False, repr=False, compare=False, default=Timeouts())

    def __post_init__(self) -> None:
        if self.max_attempts is not None:
            int_at_least("max_attempts", self.max_attempts, 1)
        if not isinstance(self.backoff, Backoff):
            raise ConfigError("backoff", "must implement delay(retry, previous, rng)", self.backoff)
        if self.throttling_backoff is not None and not isinstance(self.throttling_backoff, Backoff):
            raise ConfigError(
                "throttling_backoff",
                "must implement delay(retry, previous, rng)",
                self.throttling_backoff,
            )
        finite_at_least("max_server_delay", self.max_server_delay, 0.0)
        for name in ("retry_on_result", "retry_after", "is_timeout", "is_throttling"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise ConfigError(name, "must be callable or None", value)
        if self.budget is not None and not isinstance(self.budget, RetryBudget):
            raise ConfigError("budget", "must implement the RetryBudget protocol", self.budget)
        if not isinstance(self.rng, random.Random):
            raise ConfigError("rng", "must be a random.Random instance", self.rng)
        types, excluded, predicate = _classifier("retry_on", self.retry_on)
        object.__setattr__(self, "_retry_types", types)
        object.__setattr__(self, "_retry_excluded", excluded)
        object.__setattr__(self, "_retry_predicate", predicate)
        object.__setattr__(self, "_timeouts", Timeouts(self.attempt_timeout, self.total_timeout))

    @classmethod
    def with_max_retries(cls, max_retries: int | None, **options: Any) -> RetryPolicy:
        """Build a policy that allows ``max_retries`` retries after the first attempt.

        ``RetryPolicy.with_max_retries(2)`` is ``RetryPolicy(max_attempts=3)``.
        """
        if "max_attempts" in options:
            raise ConfigError("max_retries", "give either max_retries or max_attempts, not both")
        if max_retries is None:
            return cls(max_attempts=None, **options)
        int_at_least("max_retries", max_retries, 0)
        return cls(max_attempts=max_retries + 1, **options)

    @property
    def max_retries(self) -> int | None:
        """Retries allowed after the first attempt (``max_attempts - 1``), or ``None``."""
        return None if self.max_attempts is None else self.max_attempts - 1

    @property
    def timeouts(self) -> Timeouts:
        """The attempt and total timeouts, validated together."""
        return self._timeouts

    def replace(self, **changes: Any) -> RetryPolicy:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def is_retryable(self, error: BaseException) -> bool:
        """Whether ``error`` is classified as retryable by ``retry_on``."""
        predicate = self._retry_predicate
        if predicate is not None:
            return bool(predicate(error))
        return isinstance(error, self._retry_types) and not isinstance(error, self._retry_excluded)

    def start(
        self,
        now: float,
        *,
        rng: random.Random | None = None,
        deadline: Deadline | None = None,
        inherit_deadline: bool = True,
    ) -> RetryCall:
        """Begin a call at ``now``; returns its state (the first attempt is number 1).

        The call's deadline is the tightest of ``deadline``, the context deadline
        (:func:`~stormproof.policies.deadline.current_deadline`) and ``now + total_timeout``.
        Raises :class:`DeadlineExceeded` if that deadline has already passed, so no attempt is
        started that could not finish. ``rng`` overrides the policy's random source for this call.
        ``inherit_deadline=False`` ignores the context deadline: the simulator uses it, because a
        deadline of the code that runs the simulation is on another clock than virtual time.
        """
        outer = _CURRENT_DEADLINE.get() if inherit_deadline else None
        if deadline is not None:
            outer = deadline.earliest(outer)
        total = self.total_timeout
        call_deadline = outer if total is None else Deadline(now + total).earliest(outer)
        if call_deadline is not None and now >= call_deadline.at:
            raise DeadlineExceeded(
                f"deadline {call_deadline.at:.6g} passed before the first attempt at {now:.6g}",
                deadline=call_deadline.at,
                now=now,
            )
        if self.budget is not None:
            self.budget.on_request(now)
        return RetryCall(self, now, call_deadline, self.rng if rng is None else rng)


class RetryCall:
    """The state of one logical call under a :class:`RetryPolicy`. Not shared between calls.

    Attributes:
        attempt: the number of the current attempt (1 for the first).
        started_at: when the call started.
        deadline: the call's deadline, or ``None``.
        last_delay: the delay chosen before the current attempt (``None`` before any retry).
    """

    __slots__ = ("_retry_cost", "_rng", "attempt", "deadline", "last_delay", "policy", "started_at")

    def __init__(
        self, policy: RetryPolicy, now: float, deadline: Deadline | None, rng: random.Random
    ) -> None:
        self.policy = policy
        self.started_at = now
        self.deadline = deadline
        self.attempt = 1
        self.last_delay: float | None = None
        self._rng = rng
        self._retry_cost: float | None = None

    def attempt_deadline(self, now: float) -> Deadline | None:
        """The deadline of an attempt starting at ``now`` (attempt timeout within the call's)."""
        return self.policy._timeouts.attempt_deadline(now, self.deadline)

    def on_failure(
        self,
        now: float,
        error: BaseException,
        *,
        retry_after: float | None = None,
        timed_out: bool = False,
    ) -> RetryAfter | GiveUp:
        """Decide what follows a failed attempt.

        Args:
            now: the time of the failure.
            error: what the attempt raised.
            retry_after: a server-given delay in seconds (overrides ``policy.retry_after``).
            timed_out: the attempt hit its own attempt timeout. Such a failure is always
                retryable (that is what an attempt timeout is for), whatever ``retry_on`` says,
                and is priced as a timeout by the budget.
        """
        policy = self.policy
        if not timed_out:
            predicate = policy._retry_predicate
            if predicate is None:
                retryable = isinstance(error, policy._retry_types) and not isinstance(
                    error, policy._retry_excluded
                )
            else:
                retryable = predicate(error)
            if not retryable:
                return GiveUp(GiveUpReason.NOT_RETRYABLE, self.attempt, type(error).__name__)
        throttling = policy.is_throttling is not None and bool(policy.is_throttling(error))
        if timed_out:
            is_timeout = True
        elif policy.is_timeout is None:
            is_timeout = isinstance(error, TimeoutError)
        else:
            is_timeout = bool(policy.is_timeout(error))
        if retry_after is None:
            reader = policy.retry_after
            if reader is default_retry_after:
                # The common case, inlined: most errors carry no server delay.
                if getattr(error, "retry_after", None) is not None:
                    retry_after = default_retry_after(error)
            elif reader is not None:
                retry_after = reader(error)
        if retry_after is not None and not retry_after >= 0.0:
            # A negative or NaN server delay is meaningless; fall back to the backoff.
            retry_after = None
        return self._decide(now, retry_after, is_timeout, throttling)

    def on_result(self, now: float, result: Any) -> RetryAfter | GiveUp | None:
        """Decide what follows an attempt that returned ``result``.

        Returns ``None`` when the result is accepted (and tells the budget of the success), or a
        retry decision when ``policy.retry_on_result`` classifies it as a failure.
        """
        predicate = self.policy.retry_on_result
        if predicate is None or not predicate(result):
            self.on_success(now)
            return None
        return self.on_rejected_result(now)

    def on_rejected_result(self, now: float) -> RetryAfter | GiveUp:
        """Decide what follows a result that ``retry_on_result`` has already rejected.

        For drivers that applied the predicate themselves, so that it runs once per attempt.
        """
        return self._decide(now, None, False, False)

    def on_success(self, now: float) -> None:
        """Record that the call succeeded (refunds or deposits in the budget)."""
        budget = self.policy.budget
        if budget is not None:
            budget.on_success(now, retry_cost=self._retry_cost)

    def _decide(
        self, now: float, server_delay: float | None, is_timeout: bool, throttling: bool
    ) -> RetryAfter | GiveUp:
        policy = self.policy
        budget = policy.budget
        if budget is not None:
            budget.on_failure(now)
        attempt = self.attempt
        if policy.max_attempts is not None and attempt >= policy.max_attempts:
            return GiveUp(GiveUpReason.ATTEMPTS_EXHAUSTED, attempt, f"max_attempts={attempt}")
        if server_delay is not None:
            delay = min(server_delay, policy.max_server_delay)
        else:
            schedule = policy.backoff
            if throttling and policy.throttling_backoff is not None:
                schedule = policy.throttling_backoff
            delay = schedule.delay(attempt, self.last_delay, self._rng)
        deadline = self.deadline
        if deadline is not None and now + delay >= deadline.at:
            return GiveUp(
                GiveUpReason.DEADLINE,
                attempt,
                f"a {delay:.3g} s wait would end at or after the deadline "
                f"({deadline.remaining(now):.3g} s left)",
            )
        if budget is not None:
            cost = budget.acquire_retry(now, timeout=is_timeout, throttling=throttling)
            if cost is None:
                return GiveUp(GiveUpReason.BUDGET_EXHAUSTED, attempt, repr(budget))
            self._retry_cost = cost
        self.attempt = attempt + 1
        self.last_delay = delay
        return RetryAfter(delay, attempt + 1, server_delay is not None)
