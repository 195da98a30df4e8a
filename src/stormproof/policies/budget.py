"""Retry budgets and quotas: limits on how much extra load retries may add, shared across calls.

Per-call limits (``max_attempts``) do not stop a storm: when a dependency fails, every call
retries to its limit and the offered load multiplies (three layers of three attempts each make
27 calls). A budget is shared by many calls and refuses retries once failures are common, so
retries help with rare, independent failures and stay out of the way in an outage -- the lesson
of the 2011 EBS re-mirroring storm and of the October 2025 DWFM lease backlog.

Every budget implements the small :class:`RetryBudget` protocol, which the retry policy calls:

* ``on_request(now)`` -- a new call (its first attempt) starts;
* ``on_failure(now)`` -- an attempt failed with a retryable error;
* ``acquire_retry(now, timeout=...)`` -- may this call retry? Returns the amount withdrawn, or
  ``None`` to refuse (the retry policy then gives up with ``budget_exhausted``);
* ``on_success(now, retry_cost=...)`` -- the call succeeded; ``retry_cost`` is what its latest
  retry withdrew (``None`` if it never retried).

Budgets are sans-IO (time is passed in) and safe to share between threads: each holds a lock
for the few arithmetic operations of a call.
"""

from __future__ import annotations

import threading
from typing import Protocol, runtime_checkable

from stormproof._validate import finite_above, finite_at_least, int_at_least
from stormproof.errors import ConfigError
from stormproof.policies._window import SlicedCounts

__all__ = [
    "AdaptiveTokenBucket",
    "AwsRetryQuota",
    "GrpcRetryThrottle",
    "RatioBudget",
    "RetryBudget",
]

# The counters of RatioBudget's window.
_REQUESTS = 0
_RETRIES = 1


@runtime_checkable
class RetryBudget(Protocol):
    """What a retry policy asks of a shared budget. See the module docstring."""

    def on_request(self, now: float) -> None:
        """A new call starts."""
        ...

    def on_failure(self, now: float) -> None:
        """An attempt failed with a retryable error."""
        ...

    def acquire_retry(
        self, now: float, *, timeout: bool = False, throttling: bool = False
    ) -> float | None:
        """Withdraw for one retry; return the amount withdrawn, or ``None`` to refuse it.

        ``timeout`` and ``throttling`` say what kind of failure the retry follows; budgets that
        price retries differently by kind (the AWS quota) use them, others ignore them.
        """
        ...

    def on_success(self, now: float, *, retry_cost: float | None = None) -> None:
        """A call succeeded; ``retry_cost`` is what its latest retry withdrew."""
        ...

    def available(self, now: float) -> float:
        """The balance now, in the budget's own unit (for telemetry and tests)."""
        ...


class AwsRetryQuota:
    """The AWS SDKs' client-side retry quota ("standard" retry mode).

    A bucket of ``capacity`` tokens, full at start. A retry withdraws ``retry_cost`` tokens, or
    ``timeout_cost`` when the failure was a timeout; with too few tokens the retry is refused. A
    successful call refunds what its latest retry withdrew, or adds ``no_retry_increment`` when it
    did not retry, never above ``capacity``.

    Defaults are those of botocore's standard mode (``botocore/retries/quota.py`` and
    ``standard.py``): capacity 500, retry cost 5, timeout cost 10 (botocore counts connect and
    read timeouts), increment 1 -- so a full bucket allows 100 retries in a row before the client
    stops retrying. Only 2xx responses refund in the SDK; here, whatever the caller reports with
    ``on_success``. ``throttling_cost`` defaults to ``retry_cost``.

    :meth:`v2026` gives the costs of the AWS SDKs' 2026 retry behaviour (opt-in with
    ``AWS_NEW_RETRIES_2026=true``; botocore ``_RETRY_COST_V2 = 14``, ``_THROTTLING_RETRY_COST =
    5``): retry cost 14, timeouts no longer priced apart (14), throttling errors 5.
    """

    __slots__ = (
        "_lock",
        "_tokens",
        "capacity",
        "no_retry_increment",
        "retry_cost",
        "throttling_cost",
        "timeout_cost",
    )

    def __init__(
        self,
        capacity: float = 500.0,
        retry_cost: float = 5.0,
        timeout_cost: float = 10.0,
        no_retry_increment: float = 1.0,
        throttling_cost: float | None = None,
    ) -> None:
        finite_above("capacity", capacity, 0.0)
        finite_at_least("retry_cost", retry_cost, 0.0)
        if throttling_cost is None:
            throttling_cost = retry_cost
        finite_at_least("throttling_cost", throttling_cost, 0.0)
        finite_at_least("timeout_cost", timeout_cost, 0.0)
        finite_at_least("no_retry_increment", no_retry_increment, 0.0)
        self.capacity = float(capacity)
        self.retry_cost = float(retry_cost)
        self.timeout_cost = float(timeout_cost)
        self.no_retry_increment = float(no_retry_increment)
        self.throttling_cost = float(throttling_cost)
        self._tokens = float(capacity)
        self._lock = threading.Lock()

    @classmethod
    def v2026(cls) -> AwsRetryQuota:
        """The quota of the AWS SDKs' 2026 retry behaviour: 500 tokens, cost 14, throttling 5."""
        return cls(
            capacity=500.0,
            retry_cost=14.0,
            timeout_cost=14.0,
            no_retry_increment=1.0,
            throttling_cost=5.0,
        )

    def on_request(self, now: float) -> None:
        """No effect: this quota is charged per retry, not per request."""

    def on_failure(self, now: float) -> None:
        """No effect: the charge happens in :meth:`acquire_retry`."""

    def acquire_retry(
        self, now: float, *, timeout: bool = False, throttling: bool = False
    ) -> float | None:
        """Withdraw the cost for this kind of failure; ``None`` if the bucket holds too few.

        Throttling is priced before timeout when a failure is reported as both.
        """
        if throttling:
            cost = self.throttling_cost
        elif timeout:
            cost = self.timeout_cost
        else:
            cost = self.retry_cost
        with self._lock:
            if cost > self._tokens:
                return None
            self._tokens -= cost
        return cost

    def on_success(self, now: float, *, retry_cost: float | None = None) -> None:
        """Refund the latest retry's cost, or add ``no_retry_increment``; cap at capacity."""
        amount = self.no_retry_increment if retry_cost is None else retry_cost
        with self._lock:
            self._tokens = min(self.capacity, self._tokens + amount)

    def available(self, now: float) -> float:
        """Tokens in the bucket."""
        return self._tokens

    def __repr__(self) -> str:
        return (
            f"AwsRetryQuota(capacity={self.capacity:g}, retry_cost={self.retry_cost:g}, "
            f"timeout_cost={self.timeout_cost:g}, throttling_cost={self.throttling_cost:g}, "
            f"tokens={self._tokens:g})"
        )


class RatioBudget:
    """A Finagle/tower-style retry budget: retries may add ``ratio`` of recent traffic.

    Every request deposits ``ratio`` of a retry into the budget; every retry withdraws one. Both
    expire ``ttl`` seconds later, so the budget reflects recent traffic only. A reserve of
    ``min_retries_per_second * ttl`` lets a low-traffic client still retry. A retry is allowed
    while ``ratio * requests + reserve - retries >= 1`` over the last ``ttl`` seconds.

    Defaults are Finagle's (``RetryBudget()``: 20 % of requests, 10 retries/s minimum, ttl 10 s).
    Time is divided into ``slots`` buckets of ``ttl / slots`` seconds; deposits expire a whole
    bucket at a time, as in tower's ``TpsBudget``.
    """

    __slots__ = (
        "_lock",
        "_slot_requests",
        "_slot_retries",
        "_totals",
        "_window",
        "min_retries_per_second",
        "ratio",
        "reserve",
        "slots",
        "ttl",
    )

    def __init__(
        self,
        ratio: float = 0.2,
        min_retries_per_second: float = 10.0,
        ttl: float = 10.0,
        slots: int = 10,
    ) -> None:
        finite_at_least("ratio", ratio, 0.0)
        finite_at_least("min_retries_per_second", min_retries_per_second, 0.0)
        finite_above("ttl", ttl, 0.0)
        int_at_least("slots", slots, 1)
        if ratio == 0.0 and min_retries_per_second == 0.0:
            raise ConfigError(
                "ratio", "and min_retries_per_second cannot both be 0: no retry would be allowed"
            )
        self.ratio = float(ratio)
        self.min_retries_per_second = float(min_retries_per_second)
        self.ttl = float(ttl)
        self.slots = slots
        self.reserve = self.min_retries_per_second * self.ttl
        self._window = window = SlicedCounts(self.ttl, slots, 2)
        self._slot_requests, self._slot_retries = window.rings
        self._totals = window.totals  # [_REQUESTS, _RETRIES]
        self._lock = threading.Lock()

    def _balance(self) -> float:
        totals = self._totals
        return self.ratio * totals[_REQUESTS] + self.reserve - totals[_RETRIES]

    def on_request(self, now: float) -> None:
        """Deposit ``ratio`` of a retry."""
        with self._lock:
            index = self._window.advance(now)
            self._slot_requests[index] += 1
            self._totals[_REQUESTS] += 1

    def on_failure(self, now: float) -> None:
        """No effect: only requests and retries count."""

    def acquire_retry(
        self, now: float, *, timeout: bool = False, throttling: bool = False
    ) -> float | None:
        """Withdraw one retry if the balance over the last ``ttl`` seconds allows it."""
        with self._lock:
            index = self._window.advance(now)
            if self._balance() < 1.0:
                return None
            self._slot_retries[index] += 1
            self._totals[_RETRIES] += 1
        return 1.0

    def on_success(self, now: float, *, retry_cost: float | None = None) -> None:
        """No effect: successes neither deposit nor refund."""

    def available(self, now: float) -> float:
        """Retries the budget would allow right now (never negative)."""
        with self._lock:
            self._window.advance(now)
            return max(0.0, self._balance())

    def __repr__(self) -> str:
        return (
            f"RatioBudget(ratio={self.ratio:g}, min_retries_per_second="
            f"{self.min_retries_per_second:g}, ttl={self.ttl:g})"
        )


def _snap(tokens: float) -> float:
    """Round away binary drift, so that ten deposits of 0.1 make exactly one token."""
    return round(tokens, 9)


class GrpcRetryThrottle:
    """gRPC client retry throttling (gRFC A6).

    ``tokens`` starts at ``max_tokens``. Every failed attempt removes 1, every successful call
    adds ``token_ratio``, within ``[0, max_tokens]``. Retries are allowed only while
    ``tokens > max_tokens / 2``, so once about half the recent calls fail the client stops
    retrying entirely and recovers as successes return. gRPC requires both values in the service
    config (``retryThrottling``); stormproof defaults to the example of the gRFC: 10 and 0.1.
    Token sums are rounded to 1e-9 so that binary drift (0.1 + 0.2 != 0.3) cannot push the count
    across the strict threshold.
    """

    __slots__ = ("_lock", "_tokens", "max_tokens", "threshold", "token_ratio")

    def __init__(self, max_tokens: float = 10.0, token_ratio: float = 0.1) -> None:
        finite_above("max_tokens", max_tokens, 0.0)
        if max_tokens > 1000:
            raise ConfigError("max_tokens", "must be <= 1000 (gRFC A6)", max_tokens)
        finite_above("token_ratio", token_ratio, 0.0)
        self.max_tokens = float(max_tokens)
        self.token_ratio = float(token_ratio)
        self.threshold = self.max_tokens / 2.0
        self._tokens = float(max_tokens)
        self._lock = threading.Lock()

    def on_request(self, now: float) -> None:
        """No effect: only outcomes move the token count."""

    def on_failure(self, now: float) -> None:
        """Remove one token (not below 0)."""
        with self._lock:
            self._tokens = max(0.0, _snap(self._tokens - 1.0))

    def acquire_retry(
        self, now: float, *, timeout: bool = False, throttling: bool = False
    ) -> float | None:
        """Allow the retry (withdrawing nothing) while tokens exceed half of ``max_tokens``."""
        return 0.0 if self._tokens > self.threshold else None

    def on_success(self, now: float, *, retry_cost: float | None = None) -> None:
        """Add ``token_ratio`` (not above ``max_tokens``)."""
        with self._lock:
            self._tokens = min(self.max_tokens, _snap(self._tokens + self.token_ratio))

    def available(self, now: float) -> float:
        """The token count."""
        return self._tokens

    def __repr__(self) -> str:
        return (
            f"GrpcRetryThrottle(max_tokens={self.max_tokens:g}, "
            f"token_ratio={self.token_ratio:g}, tokens={self._tokens:g})"
        )


class AdaptiveTokenBucket:
    """Brooker's adaptive retry bucket: successes earn retries, retries spend them.

    The bucket starts full at ``capacity``. A retry costs 1 token and is refused below 1; each
    successful call deposits ``deposit`` (a fraction of a token), never above ``capacity``. In
    steady state retries can be at most ``deposit`` times the success rate, so when successes stop
    the retries stop too (M. Brooker, "Fixing retries with token buckets and circuit breakers",
    2022). Token sums are rounded to 1e-9, so ten deposits of 0.1 earn exactly one retry.
    """

    __slots__ = ("_lock", "_tokens", "capacity", "deposit")

    def __init__(self, capacity: float = 10.0, deposit: float = 0.1) -> None:
        finite_at_least("capacity", capacity, 1.0)
        finite_above("deposit", deposit, 0.0)
        self.capacity = float(capacity)
        self.deposit = float(deposit)
        self._tokens = float(capacity)
        self._lock = threading.Lock()

    def on_request(self, now: float) -> None:
        """No effect."""

    def on_failure(self, now: float) -> None:
        """No effect: only retries spend."""

    def acquire_retry(
        self, now: float, *, timeout: bool = False, throttling: bool = False
    ) -> float | None:
        """Spend one token, or refuse if fewer than one is left."""
        with self._lock:
            if self._tokens < 1.0:
                return None
            self._tokens = _snap(self._tokens - 1.0)
        return 1.0

    def on_success(self, now: float, *, retry_cost: float | None = None) -> None:
        """Deposit ``deposit`` tokens, up to ``capacity``."""
        with self._lock:
            self._tokens = min(self.capacity, _snap(self._tokens + self.deposit))

    def available(self, now: float) -> float:
        """Tokens in the bucket."""
        return self._tokens

    def __repr__(self) -> str:
        return (
            f"AdaptiveTokenBucket(capacity={self.capacity:g}, deposit={self.deposit:g}, "
            f"tokens={self._tokens:g})"
        )
