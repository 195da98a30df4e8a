"""Circuit breaker: stop calling a dependency that is failing, and probe it before trusting it.

When a dependency is down, every call that still goes to it costs a timeout, a thread and, with
retries, more load on the thing that is already failing. The 2011 EBS control plane filled its
regional thread pool with calls to a degraded cluster that would not answer in time; a breaker
around those calls would have failed them fast and left the threads to other zones.

States (the resilience4j and Polly v8 model):

* **closed** -- calls flow; outcomes are recorded in a sliding window (the last ``window_size``
  calls, or the calls of the last ``window_size`` seconds). Once the window holds at least
  ``minimum_calls`` calls and the failure rate or the slow-call rate reaches its threshold, the
  breaker opens.
* **open** -- calls are refused (``allow`` returns ``False``) for ``open_duration`` seconds.
* **half-open** -- then up to ``half_open_probes`` calls are let through; once all of them have
  reported, the breaker closes if their failure and slow rates are under the thresholds, and
  opens again otherwise. Other calls are refused meanwhile.
* **isolated** -- forced open by an operator (:meth:`CircuitBreaker.isolate`) until
  :meth:`CircuitBreaker.reset`.

Defaults follow resilience4j (failure rate 50 %, window of 100 calls, minimum 100 calls, 60 s
open, 10 probes, slow calls off); Polly v8's standard pipeline uses a 10 % ratio over 30 s with
minimum throughput 100 and a 5 s break, which :meth:`BreakerConfig.polly_standard` gives.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from stormproof._validate import finite_above, finite_at_least, int_at_least
from stormproof.errors import ConfigError, StormproofError

__all__ = ["BreakerConfig", "BreakerOpen", "BreakerState", "CircuitBreaker", "StateChange"]


class BreakerState(enum.StrEnum):
    """The state of a circuit breaker."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    ISOLATED = "isolated"


# Enum attribute lookups cost ~80 ns each on Python 3.11; the decision path uses these.
_CLOSED = BreakerState.CLOSED
_OPEN = BreakerState.OPEN
_HALF_OPEN = BreakerState.HALF_OPEN
_ISOLATED = BreakerState.ISOLATED


class BreakerOpen(StormproofError):
    """A call was refused because the breaker is open, half-open with no probe left, or isolated.

    ``retry_after`` is the time until the breaker will let a probe through (``None`` when
    isolated), which retry policies honour as a server-given delay.
    """

    def __init__(self, name: str, state: BreakerState, retry_after: float | None) -> None:
        super().__init__(f"circuit breaker {name!r} is {state.value}")
        self.state = state
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class StateChange:
    """Telemetry for a transition: ``at`` (time), ``old`` and ``new`` states, and why."""

    at: float
    old: BreakerState
    new: BreakerState
    reason: str


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """How a breaker judges health. Invalid values raise ConfigError naming the field."""

    window: Literal["count", "time"] = "count"
    window_size: float = 100
    minimum_calls: int = 100
    failure_rate_threshold: float = 0.5
    slow_call_rate_threshold: float = 1.0
    slow_call_duration: float | None = None
    open_duration: float = 60.0
    half_open_probes: int = 10

    def __post_init__(self) -> None:
        if self.window not in ("count", "time"):
            raise ConfigError("window", 'must be "count" or "time"', self.window)
        if self.window == "count":
            finite_at_least("window_size", self.window_size, 1.0)
            if self.window_size != int(self.window_size):
                raise ConfigError(
                    "window_size", "must be a whole number of calls", self.window_size
                )
            if self.minimum_calls > self.window_size:
                raise ConfigError(
                    "minimum_calls",
                    f"must be <= window_size ({self.window_size:g}): a count window never "
                    "holds more calls than its size",
                    self.minimum_calls,
                )
        else:
            finite_at_least("window_size", self.window_size, 1.0)
            if self.window_size != int(self.window_size):
                raise ConfigError(
                    "window_size",
                    "must be whole seconds (the window keeps 1 s buckets)",
                    self.window_size,
                )
        int_at_least("minimum_calls", self.minimum_calls, 1)
        for name in ("failure_rate_threshold", "slow_call_rate_threshold"):
            value = getattr(self, name)
            finite_above(name, value, 0.0)
            if value > 1.0:
                raise ConfigError(name, "must be within (0, 1]", value)
        if self.slow_call_duration is not None:
            finite_above("slow_call_duration", self.slow_call_duration, 0.0)
        finite_above("open_duration", self.open_duration, 0.0)
        int_at_least("half_open_probes", self.half_open_probes, 1)

    @classmethod
    def polly_standard(cls) -> BreakerConfig:
        """Polly v8 standard resilience pipeline: 10 % over 30 s, minimum 100 calls, 5 s open."""
        return cls(
            window="time",
            window_size=30.0,
            minimum_calls=100,
            failure_rate_threshold=0.1,
            open_duration=5.0,
            half_open_probes=1,
        )


class _CountWindow:
    """The outcomes of the last ``size`` calls, with running totals.

    Outcomes are kept as small codes (1 = failed, 2 = slow) in a ring, so adding one is a few
    integer operations rather than a deque of tuples.
    """

    __slots__ = ("_next", "_ring", "calls", "failures", "size", "slow")

    def __init__(self, size: int) -> None:
        self.size = size
        self._ring = [0] * size
        self._next = 0
        self.calls = self.failures = self.slow = 0

    def add(self, now: float, failed: bool, slow: bool) -> None:
        index = self._next
        if self.calls == self.size:
            old = self._ring[index]
            self.failures -= old & 1
            self.slow -= old >> 1
        else:
            self.calls += 1
        self._ring[index] = failed + 2 * slow
        self.failures += failed
        self.slow += slow
        index += 1
        self._next = 0 if index == self.size else index

    def expire(self, now: float) -> None:
        """Count windows do not age."""

    def clear(self) -> None:
        self._next = 0
        self.calls = self.failures = self.slow = 0


class _TimeWindow:
    """Per-second buckets of (calls, failures, slow) over the last ``seconds`` seconds."""

    __slots__ = ("buckets", "calls", "failures", "seconds", "slow")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.buckets: deque[list[int]] = deque()  # [second, calls, failures, slow]
        self.calls = self.failures = self.slow = 0

    def expire(self, now: float) -> None:
        oldest = int(now // 1.0) - int(self.seconds) + 1
        buckets = self.buckets
        while buckets and buckets[0][0] < oldest:
            _, calls, failures, slow = buckets.popleft()
            self.calls -= calls
            self.failures -= failures
            self.slow -= slow

    def add(self, now: float, failed: bool, slow: bool) -> None:
        self.expire(now)
        second = int(now // 1.0)
        buckets = self.buckets
        if buckets and buckets[-1][0] >= second:
            bucket = buckets[-1]  # a time before the newest seen is booked into the newest
        else:
            bucket = [second, 0, 0, 0]
            buckets.append(bucket)
        bucket[1] += 1
        bucket[2] += failed
        bucket[3] += slow
        self.calls += 1
        self.failures += failed
        self.slow += slow

    def clear(self) -> None:
        self.buckets.clear()
        self.calls = self.failures = self.slow = 0


class CircuitBreaker:
    """A sans-IO circuit breaker. Ask :meth:`allow` before a call, :meth:`record` after it.

    Args:
        config: thresholds and windows (:class:`BreakerConfig`); default resilience4j's.
        name: used in errors and telemetry.
        on_state_change: called with a :class:`StateChange` on every transition.

    Every call that was allowed must be recorded exactly once (success or failure); a call
    that was refused must not be. :meth:`allow` is where time moves the breaker from open to
    half-open, so asking it is enough to let probes through once ``open_duration`` has passed.
    """

    __slots__ = (
        "_half_open_failures",
        "_half_open_permits",
        "_half_open_recorded",
        "_half_open_slow",
        "_on_state_change",
        "_opened_at",
        "_state",
        "_window",
        "config",
        "name",
    )

    def __init__(
        self,
        config: BreakerConfig | None = None,
        *,
        name: str = "breaker",
        on_state_change: Callable[[StateChange], None] | None = None,
    ) -> None:
        self.config = config if config is not None else BreakerConfig()
        if not isinstance(self.config, BreakerConfig):
            raise ConfigError("config", "must be a BreakerConfig", config)
        if on_state_change is not None and not callable(on_state_change):
            raise ConfigError("on_state_change", "must be callable", on_state_change)
        self.name = name
        self._on_state_change = on_state_change
        self._window: _CountWindow | _TimeWindow = (
            _CountWindow(int(self.config.window_size))
            if self.config.window == "count"
            else _TimeWindow(self.config.window_size)
        )
        self._state = _CLOSED
        self._opened_at = 0.0
        self._half_open_permits = 0
        self._half_open_recorded = 0
        self._half_open_failures = 0
        self._half_open_slow = 0

    # -- questions ------------------------------------------------------------------------

    def state(self, now: float) -> BreakerState:
        """The state at ``now`` (an open breaker whose time is up reports half-open)."""
        if self._state is _OPEN and now >= self._opened_at + self.config.open_duration:
            return _HALF_OPEN
        return self._state

    def allow(self, now: float) -> bool:
        """Whether a call may go ahead now. In half-open, each ``True`` uses up one probe."""
        state = self._state
        if state is _CLOSED:
            return True
        if state is _OPEN:
            if now < self._opened_at + self.config.open_duration:
                return False
            self._transition(now, _HALF_OPEN, "open_duration elapsed")
        elif state is _ISOLATED:
            return False
        if self._half_open_permits < self.config.half_open_probes:
            self._half_open_permits += 1
            return True
        return False

    def check(self, now: float) -> None:
        """Like :meth:`allow`, but raise :class:`BreakerOpen` when the call is refused."""
        if not self.allow(now):
            state = self.state(now)
            retry_after = None
            if state is _OPEN:
                retry_after = self._opened_at + self.config.open_duration - now
            elif state is _HALF_OPEN:
                retry_after = 0.0
            raise BreakerOpen(self.name, state, retry_after)

    def failure_rate(self, now: float) -> float:
        """Failure rate over the closed-state window (0 when it is empty)."""
        window = self._window
        window.expire(now)
        return window.failures / window.calls if window.calls else 0.0

    # -- outcomes -------------------------------------------------------------------------

    def record(self, now: float, *, success: bool, duration: float = 0.0) -> None:
        """Record the outcome of an allowed call that took ``duration`` seconds."""
        slow_limit = self.config.slow_call_duration
        slow = slow_limit is not None and duration >= slow_limit
        failed = not success
        state = self._state
        if state is _CLOSED:
            window = self._window
            window.add(now, failed, slow)
            # A window with neither failures nor slow calls cannot trip: skip the rate check
            # on the healthy path, which is most calls.
            if (window.failures or window.slow) and window.calls >= self.config.minimum_calls:
                reason = self._tripped(window.failures, window.slow, window.calls)
                if reason:
                    self._open(now, reason)
        elif state is _HALF_OPEN:
            self._half_open_recorded += 1
            self._half_open_failures += failed
            self._half_open_slow += slow
            if self._half_open_recorded >= self.config.half_open_probes:
                reason = self._tripped(
                    self._half_open_failures, self._half_open_slow, self._half_open_recorded
                )
                if reason:
                    self._open(now, f"probes: {reason}")
                else:
                    self._transition(now, _CLOSED, "probes succeeded")
        # Outcomes that arrive while open or isolated belong to calls started before the
        # breaker opened; they no longer change anything.

    def release(self, now: float) -> None:
        """Give back the permit of an allowed call whose outcome is unknown (it was cancelled).

        Nothing is recorded. In half-open this returns the probe permit, so another probe may
        run; otherwise it has no effect.
        """
        if self._state is _HALF_OPEN and self._half_open_permits > self._half_open_recorded:
            self._half_open_permits -= 1

    def record_success(self, now: float, duration: float = 0.0) -> None:
        """Shorthand for ``record(now, success=True, duration=duration)``."""
        self.record(now, success=True, duration=duration)

    def record_failure(self, now: float, duration: float = 0.0) -> None:
        """Shorthand for ``record(now, success=False, duration=duration)``."""
        self.record(now, success=False, duration=duration)

    # -- manual control -------------------------------------------------------------------

    def isolate(self, now: float) -> None:
        """Force the breaker open until :meth:`reset` (an operator's kill switch)."""
        self._transition(now, _ISOLATED, "isolated by operator")

    def force_open(self, now: float) -> None:
        """Open the breaker now, for ``open_duration``, as if it had tripped."""
        self._open(now, "forced open")

    def reset(self, now: float) -> None:
        """Close the breaker and forget the window (also ends isolation)."""
        self._window.clear()
        self._transition(now, _CLOSED, "reset")

    # -- internals ------------------------------------------------------------------------

    def _tripped(self, failures: int, slow: int, calls: int) -> str:
        config = self.config
        if failures >= config.failure_rate_threshold * calls:
            return f"failure rate {failures}/{calls} >= {config.failure_rate_threshold:g}"
        if (
            config.slow_call_duration is not None
            and slow >= config.slow_call_rate_threshold * calls
        ):
            return f"slow-call rate {slow}/{calls} >= {config.slow_call_rate_threshold:g}"
        return ""

    def _open(self, now: float, reason: str) -> None:
        self._opened_at = now
        self._transition(now, _OPEN, reason)

    def _transition(self, now: float, new: BreakerState, reason: str) -> None:
        old = self._state
        self._state = new
        self._half_open_permits = 0
        self._half_open_recorded = 0
        self._half_open_failures = 0
        self._half_open_slow = 0
        if new is _CLOSED or new is _OPEN:
            self._window.clear()
        if self._on_state_change is not None and old is not new:
            self._on_state_change(StateChange(now, old, new, reason))

    def __repr__(self) -> str:
        return f"CircuitBreaker(name={self.name!r}, state={self._state.value})"
