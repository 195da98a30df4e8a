"""Pipelines: several mechanisms composed in order, outermost first, validated as a whole.

A pipeline is a list of strategies; a call passes through them from the first (outermost) to the
last (innermost) and then reaches the function. The order matters and has a conventional answer,
the standard pipeline of Polly v8 (.NET), also used by Microsoft.Extensions.Http.Resilience:

    concurrency limit -> total timeout -> retry -> circuit breaker -> attempt timeout

* the limit outermost, so retries do not take more permits than first calls;
* the total timeout outside the retry, so it bounds every attempt and every wait;
* the breaker inside the retry, so it sees (and counts) every attempt, and a retry can be told
  that the breaker is open;
* the attempt timeout innermost, so a hung attempt is cut and counted by the breaker.

:func:`validate` checks a pipeline against these rules: contradictions raise ``ConfigError``
(a total timeout shorter than the attempt timeout; a timeout or strategy given twice), doubtful
choices warn with :class:`PipelineWarning` (a retry inside a breaker hides failures from it, and
an attempt timeout outside the retry is really a total timeout).

Strategies here are configuration only; :mod:`stormproof.run.pipeline` runs them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from stormproof._validate import finite_above, int_at_least
from stormproof.errors import ConfigError
from stormproof.policies import presets
from stormproof.policies.backoff import Exponential, Jitter
from stormproof.policies.breaker import BreakerConfig, CircuitBreaker
from stormproof.policies.bulkhead import Bulkhead
from stormproof.policies.ratelimit import RateLimiter
from stormproof.policies.retry import ErrorClassifier, RetryPolicy

__all__ = [
    "AttemptTimeout",
    "Breaker",
    "Concurrency",
    "Fallback",
    "Hedge",
    "PipelineWarning",
    "RateLimit",
    "Retry",
    "Strategy",
    "TotalTimeout",
    "aws_client",
    "standard",
    "validate",
]


class PipelineWarning(UserWarning):
    """A pipeline that works, but probably not as its author meant."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Ask ``limiter`` for a permit; wait if told to, fail with ``RateLimited`` if rejected."""

    limiter: RateLimiter
    cost: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.limiter, RateLimiter):
            raise ConfigError("limiter", "must have acquire(now, cost)", self.limiter)
        finite_above("cost", self.cost, 0.0)


@dataclass(frozen=True, slots=True)
class Concurrency:
    """Hold a permit of ``bulkhead`` for the duration of the call (``BulkheadFull`` if none)."""

    bulkhead: Bulkhead

    def __post_init__(self) -> None:
        if not isinstance(self.bulkhead, Bulkhead):
            raise ConfigError("bulkhead", "must be a stormproof Bulkhead", self.bulkhead)


@dataclass(frozen=True, slots=True)
class TotalTimeout:
    """Bound the whole call, including retries and waits, to ``seconds``."""

    seconds: float

    def __post_init__(self) -> None:
        finite_above("seconds", self.seconds, 0.0)


@dataclass(frozen=True, slots=True)
class AttemptTimeout:
    """Bound one attempt to ``seconds`` (enforced in async code, published to sync code)."""

    seconds: float

    def __post_init__(self) -> None:
        finite_above("seconds", self.seconds, 0.0)


@dataclass(frozen=True, slots=True)
class Retry:
    """Retry the inner part of the pipeline under ``policy``."""

    policy: RetryPolicy

    def __post_init__(self) -> None:
        if not isinstance(self.policy, RetryPolicy):
            raise ConfigError("policy", "must be a RetryPolicy", self.policy)


def _is_exception(error: BaseException) -> bool:
    return isinstance(error, Exception)


@dataclass(frozen=True, slots=True)
class Breaker:
    """Refuse calls while ``breaker`` is open; record every outcome that reaches it.

    ``failure_on`` classifies which exceptions count as failures (default: any ``Exception``);
    others pass through and count as successes, as a 404 should not open a breaker.
    """

    breaker: CircuitBreaker
    failure_on: Callable[[BaseException], bool] = field(default=_is_exception)

    def __post_init__(self) -> None:
        if not isinstance(self.breaker, CircuitBreaker):
            raise ConfigError("breaker", "must be a stormproof CircuitBreaker", self.breaker)
        if not callable(self.failure_on):
            raise ConfigError("failure_on", "must be callable(error) -> bool", self.failure_on)


_NO_VALUE: Any = object()


@dataclass(frozen=True, slots=True)
class Fallback:
    """Return ``value`` (or ``factory(error)``) instead of raising, for errors matching ``on``."""

    value: Any = _NO_VALUE
    factory: Callable[[BaseException], Any] | None = None
    on: ErrorClassifier = Exception

    def __post_init__(self) -> None:
        if (self.value is _NO_VALUE) == (self.factory is None):
            raise ConfigError("value", "give exactly one of value and factory")
        if self.factory is not None and not callable(self.factory):
            raise ConfigError("factory", "must be callable(error)", self.factory)

    def matches(self, error: BaseException) -> bool:
        """Whether ``error`` is one this fallback replaces."""
        on = self.on
        if isinstance(on, type | tuple):
            return isinstance(error, on)
        return bool(on(error))

    def produce(self, error: BaseException) -> Any:
        """The fallback result for ``error``."""
        return self.factory(error) if self.factory is not None else self.value


@dataclass(frozen=True, slots=True)
class Hedge:
    """Async only: start up to ``max_hedges`` extra calls, one every ``delay`` s, first wins.

    If the call has not finished after ``delay`` seconds another is started, and so on; a call
    that fails is replaced at once (while hedges remain), as Polly's hedging does. The first
    success is returned and the others are cancelled; when every call failed, the last error.
    Hedging trades extra load for tail latency; keep ``max_hedges`` small and the delay near
    the p95 latency, and never hedge a dependency that is overloaded (put it inside a breaker).
    """

    delay: float
    max_hedges: int = 1

    def __post_init__(self) -> None:
        finite_above("delay", self.delay, 0.0)
        int_at_least("max_hedges", self.max_hedges, 1)


Strategy = (
    RateLimit | Concurrency | TotalTimeout | AttemptTimeout | Retry | Breaker | Fallback | Hedge
)
_STRATEGIES = (
    RateLimit,
    Concurrency,
    TotalTimeout,
    AttemptTimeout,
    Retry,
    Breaker,
    Fallback,
    Hedge,
)


def validate(strategies: Sequence[Strategy]) -> None:
    """Check a pipeline as a whole; raise ConfigError for contradictions, warn for doubts."""
    for index, strategy in enumerate(strategies):
        if not isinstance(strategy, _STRATEGIES):
            raise ConfigError(f"strategies[{index}]", "is not a pipeline strategy", strategy)
    kinds = [type(s) for s in strategies]
    for kind in (TotalTimeout, AttemptTimeout, Retry, Breaker):
        if kinds.count(kind) > 1:
            raise ConfigError("strategies", f"{kind.__name__} may appear only once")

    def position(kind: type) -> int | None:
        return kinds.index(kind) if kind in kinds else None

    total, attempt = position(TotalTimeout), position(AttemptTimeout)
    retry, breaker = position(Retry), position(Breaker)
    if total is not None and attempt is not None:
        total_s = strategies[total].seconds  # type: ignore[union-attr]
        attempt_s = strategies[attempt].seconds  # type: ignore[union-attr]
        if total_s < attempt_s:
            raise ConfigError(
                "TotalTimeout.seconds",
                f"must be >= AttemptTimeout.seconds ({attempt_s:g}): the total bounds attempts",
                total_s,
            )
    if retry is not None and total is not None and total > retry:
        raise ConfigError(
            "strategies", "TotalTimeout must come before (outside) Retry, or it bounds one attempt"
        )
    if retry is not None and attempt is not None and attempt < retry:
        warnings.warn(
            "AttemptTimeout outside Retry bounds all attempts together (a total timeout)",
            PipelineWarning,
            stacklevel=3,
        )
    if retry is not None and breaker is not None and retry > breaker:
        warnings.warn(
            "Retry inside Breaker: the breaker sees only the final outcome of each call, so "
            "failures that retries paper over never open it",
            PipelineWarning,
            stacklevel=3,
        )
    if retry is not None:
        policy = strategies[retry].policy  # type: ignore[union-attr]
        if attempt is not None and policy.attempt_timeout is not None:
            raise ConfigError(
                "Retry.policy.attempt_timeout",
                "is set and an AttemptTimeout strategy is present: give one of them",
            )


def standard() -> list[Strategy]:
    """The standard pipeline, with Polly v8's documented defaults.

    1000 concurrent permits, no queue -> 30 s total timeout -> 3 retries (4 attempts),
    exponential backoff from 2 s with jitter -> breaker opening at 10 % failures over 30 s with
    at least 100 calls, for 5 s -> 10 s per attempt.
    """
    return [
        Concurrency(Bulkhead(1000)),
        TotalTimeout(30.0),
        Retry(
            RetryPolicy(
                max_attempts=4,
                backoff=Exponential(base=2.0, factor=2.0, cap=30.0, jitter=Jitter.FULL),
            )
        ),
        Breaker(CircuitBreaker(BreakerConfig.polly_standard())),
        AttemptTimeout(10.0),
    ]


def aws_client(version: str = "2.0") -> list[Strategy]:
    """An AWS SDK client: standard-mode retries and quota, 60 s total, 10 s per attempt.

    The retry policy is :func:`stormproof.policies.presets.aws_sdk_standard`; the timeouts are
    stormproof's choice (the SDKs leave them to the HTTP client: botocore's read timeout is 60 s).
    """
    if version not in ("2.0", "2026"):
        raise ConfigError("version", 'must be "2.0" or "2026"', version)
    return [
        TotalTimeout(60.0),
        Retry(presets.aws_sdk_standard("2026" if version == "2026" else "2.0")),
        AttemptTimeout(10.0),
    ]
