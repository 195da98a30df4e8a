"""What the sync and async retry drivers share: hooks, events, the testing switch, give-up."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

from stormproof.clock import SleepingClock, WallClock
from stormproof.errors import ConfigError
from stormproof.policies import presets
from stormproof.policies.retry import GiveUp, GiveUpReason, RetryAfter, RetryCall, RetryPolicy

#: When set (by :func:`stormproof.testing.instant_sleeps`), drivers append each delay here
#: instead of sleeping. A ContextVar, not a module flag, so one test's switch cannot leak into
#: another thread or task.
INSTANT_SLEEPS: ContextVar[list[float] | None] = ContextVar("stormproof.instant", default=None)


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """What a hook is told about one decision of a retrying driver.

    Attributes:
        kind: ``"retry"`` (about to sleep, then retry) or ``"give_up"``.
        attempt: the number of the attempt that just ended (1 for the first).
        delay: seconds the driver will sleep before the next attempt (``None`` on give-up).
        reason: for a retry ``"backoff"`` or ``"server_delay"``; for a give-up the
            :class:`~stormproof.policies.retry.GiveUpReason` value.
        error: the exception of the attempt, if it raised.
        result: the result of the attempt, if it returned a value classified as a failure.
        elapsed: seconds since the call started, on the driver's clock.
        detail: a human-readable explanation of a give-up.
    """

    kind: Literal["retry", "give_up"]
    attempt: int
    delay: float | None
    reason: str
    error: BaseException | None
    result: Any
    elapsed: float
    detail: str = ""


Hook = Callable[[RetryEvent], None]
Hooks = Hook | Iterable[Hook] | None


def _hooks(name: str, hooks: Hooks) -> tuple[Hook, ...]:
    if hooks is None:
        return ()
    if callable(hooks):
        return (hooks,)
    try:
        collected = tuple(hooks)
    except TypeError:
        raise ConfigError(name, "must be a callable or an iterable of callables", hooks) from None
    for hook in collected:
        if not callable(hook):
            raise ConfigError(name, "must be a callable or an iterable of callables", hook)
    return collected


class RetryingBase:
    """Configuration and decision handling common to :class:`Retrying` and :class:`AsyncRetrying`.

    Args:
        policy: the retry policy; default :func:`stormproof.policies.presets.default`.
        clock: where time is read and sleeps happen; default :class:`~stormproof.clock.WallClock`.
        on_retry: hook(s) called with a :class:`RetryEvent` before each sleep.
        on_give_up: hook(s) called with a :class:`RetryEvent` before the driver raises.
        reraise: on give-up, re-raise the last exception itself instead of a
            :class:`~stormproof.errors.RetryError` (a non-retryable error is always re-raised
            unchanged).
    """

    __slots__ = ("_fast", "_on_give_up", "_on_retry", "clock", "policy", "reraise")

    def __init__(
        self,
        policy: RetryPolicy | None = None,
        *,
        clock: SleepingClock | None = None,
        on_retry: Hooks = None,
        on_give_up: Hooks = None,
        reraise: bool = False,
    ) -> None:
        if policy is None:
            policy = presets.default()
        if not isinstance(policy, RetryPolicy):
            raise ConfigError("policy", "must be a stormproof RetryPolicy", policy)
        if clock is None:
            clock = WallClock()
        elif not isinstance(clock, SleepingClock):
            raise ConfigError("clock", "must have now(), sleep() and async_sleep()", clock)
        self.policy = policy
        self.clock = clock
        self.reraise = reraise
        self._on_retry = _hooks("on_retry", on_retry)
        self._on_give_up = _hooks("on_give_up", on_give_up)
        timeouts = policy.timeouts
        # Without timeouts the first attempt needs no deadline scope and no call state, so the
        # success path is a plain call (plus budget bookkeeping when there is a budget). Hooks
        # report the time since the call started, so with hooks the start is always read.
        self._fast = (
            timeouts.attempt is None
            and timeouts.total is None
            and not self._on_retry
            and not self._on_give_up
        )

    def _retry_event(self, call: RetryCall, decision: RetryAfter, error: Any, result: Any) -> None:
        """Tell the on_retry hooks about a retry decision."""
        if self._on_retry:
            event = RetryEvent(
                "retry",
                decision.attempt - 1,
                decision.delay,
                "server_delay" if decision.server_delay else "backoff",
                error,
                result,
                self.clock.now() - call.started_at,
            )
            for hook in self._on_retry:
                hook(event)

    def _give_up(
        self,
        call: RetryCall,
        decision: GiveUp,
        error: BaseException | None,
        result: Any = None,
    ) -> NoReturn:
        """Tell the on_give_up hooks, then raise what the decision calls for."""
        if self._on_give_up:
            event = RetryEvent(
                "give_up",
                decision.attempts,
                None,
                decision.reason.value,
                error,
                result,
                self.clock.now() - call.started_at,
                decision.detail,
            )
            for hook in self._on_give_up:
                hook(event)
        if error is not None and (self.reraise or decision.reason is GiveUpReason.NOT_RETRYABLE):
            raise error
        raise decision.error(error, result) from error

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.policy!r}, clock={self.clock!r})"
