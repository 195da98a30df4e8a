"""The synchronous retry driver: run a retry policy on a clock, for plain functions and blocks.

Three ways to use it::

    retrying = Retrying(policy)

    retrying.call(fetch, url)                  # call a function

    @retrying                                  # decorate a function
    def fetch(url): ...

    for attempt in retrying:                   # retry a block of code
        with attempt:
            response = session.get(url)

Sync code cannot be interrupted safely, so an ``attempt_timeout`` is not enforced here: it is
published as the context deadline (:func:`stormproof.current_deadline`) for the attempt, which
code inside should pass on to its I/O (a socket timeout, a database statement timeout). The total
timeout is enforced between attempts: the driver never sleeps past it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from stormproof.policies.deadline import _CURRENT as _CURRENT_DEADLINE
from stormproof.policies.deadline import Deadline, deadline_scope
from stormproof.policies.retry import GiveUp, RetryAfter, RetryCall
from stormproof.run._common import INSTANT_SLEEPS, RetryingBase

__all__ = ["Attempt", "Retrying"]

P = ParamSpec("P")
R = TypeVar("R")

_NO_RESULT: Any = object()


class Attempt:
    """One attempt of a retried block; use it as a context manager (``with attempt:``).

    An exception raised in the block is caught and handed to the retry policy; the loop then
    either sleeps and yields the next attempt, or gives up by raising. Call :meth:`set_result` in
    the block to have the result checked by ``retry_on_result``.
    """

    __slots__ = ("_error", "_result", "_scope", "deadline", "number")

    def __init__(self, number: int, deadline: Deadline | None) -> None:
        self.number = number
        self.deadline = deadline
        self._error: BaseException | None = None
        self._result: Any = _NO_RESULT
        self._scope: AbstractContextManager[Any] = nullcontext()

    @property
    def result(self) -> Any:
        """The result handed to :meth:`set_result`, or ``None``."""
        return None if self._result is _NO_RESULT else self._result

    def _decide(self, call: RetryCall, now: float) -> RetryAfter | GiveUp | None:
        """The policy's answer to how this attempt ended; ``None`` means the block succeeded."""
        if self._error is not None:
            return call.on_failure(now, self._error)
        if self._result is _NO_RESULT:
            call.on_success(now)
            return None
        return call.on_result(now, self._result)

    def set_result(self, result: Any) -> None:
        """Hand the block's result to the policy (for ``retry_on_result``)."""
        self._result = result

    def __enter__(self) -> Attempt:
        if self.deadline is not None:
            self._scope = deadline_scope(self.deadline)
            self._scope.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self._scope.__exit__(exc_type, exc, tb)
        self._error = exc
        # GeneratorExit must pass: it means the loop itself is being closed.
        return exc is not None and not isinstance(exc, GeneratorExit)

    def __repr__(self) -> str:
        return f"Attempt(number={self.number})"


class Retrying(RetryingBase):
    """Retries synchronous calls and blocks under one policy. Reusable and thread-safe to share.

    See :class:`stormproof.run._common.RetryingBase` for the arguments.
    """

    __slots__ = ()

    def _sleep(self, delay: float) -> None:
        recorded = INSTANT_SLEEPS.get()
        if recorded is not None:
            recorded.append(delay)
        elif delay > 0.0:
            self.clock.sleep(delay)

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call ``fn(*args, **kwargs)`` under the policy and return its result."""
        return self._invoke(fn, args, kwargs)

    def _invoke(self, fn: Callable[..., R], args: Any, kwargs: Any) -> R:
        policy = self.policy
        if self._fast and _CURRENT_DEADLINE.get() is None:
            budget = policy.budget
            predicate = policy.retry_on_result
            if budget is None:
                try:
                    result = fn(*args, **kwargs)
                except BaseException as error:
                    return self._after_failure(fn, args, kwargs, None, error)
                if predicate is None or not predicate(result):
                    return result
                return self._after_result(fn, args, kwargs, None, result)
            started = self.clock.now()
            budget.on_request(started)
            try:
                result = fn(*args, **kwargs)
            except BaseException as error:
                return self._after_failure(fn, args, kwargs, started, error)
            if predicate is None or not predicate(result):
                budget.on_success(self.clock.now(), retry_cost=None)
                return result
            return self._after_result(fn, args, kwargs, started, result)
        call = policy.start(self.clock.now())
        return self._loop(call, fn, args, kwargs)

    def _carry_out(
        self, call: RetryCall, decision: RetryAfter | GiveUp, error: Any, result: Any
    ) -> None:
        """Raise for a give-up; otherwise tell the hooks and sleep the delay."""
        if isinstance(decision, GiveUp):
            self._give_up(call, decision, error, result)
        self._retry_event(call, decision, error, result)
        self._sleep(decision.delay)

    def _resume(self, started: float | None) -> RetryCall:
        """The call state for a call that began on the fast path (budget already told)."""
        now = self.clock.now()
        return RetryCall(self.policy, now if started is None else started, None, self.policy.rng)

    def _after_failure(
        self, fn: Callable[..., R], args: Any, kwargs: Any, started: float | None, error: Any
    ) -> R:
        call = self._resume(started)
        decision = call.on_failure(self.clock.now(), error)
        return self._next(call, decision, fn, args, kwargs, error, None)

    def _after_result(
        self, fn: Callable[..., R], args: Any, kwargs: Any, started: float | None, result: Any
    ) -> R:
        call = self._resume(started)
        decision = call.on_rejected_result(self.clock.now())
        return self._next(call, decision, fn, args, kwargs, None, result)

    def _next(
        self,
        call: RetryCall,
        decision: RetryAfter | GiveUp,
        fn: Callable[..., R],
        args: Any,
        kwargs: Any,
        error: BaseException | None,
        result: Any,
    ) -> R:
        self._carry_out(call, decision, error, result)
        return self._loop(call, fn, args, kwargs)

    def _loop(self, call: RetryCall, fn: Callable[..., R], args: Any, kwargs: Any) -> R:
        clock = self.clock
        while True:
            deadline = call.attempt_deadline(clock.now())
            error: BaseException | None = None
            try:
                if deadline is None:
                    result = fn(*args, **kwargs)
                else:
                    with deadline_scope(deadline):
                        result = fn(*args, **kwargs)
            except BaseException as exc:
                error = exc
                decision = call.on_failure(clock.now(), exc)
            else:
                outcome = call.on_result(clock.now(), result)
                if outcome is None:
                    return result
                decision = outcome
            self._carry_out(call, decision, error, None if error is not None else result)

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate a synchronous function so every call goes through :meth:`call`."""
        invoke = self._invoke

        @functools.wraps(fn)
        def retried(*args: P.args, **kwargs: P.kwargs) -> R:
            return invoke(fn, args, kwargs)

        retried.retrying = self  # type: ignore[attr-defined]
        return retried

    def __iter__(self) -> Iterator[Attempt]:
        """Yield attempts of a block until one succeeds or the policy gives up (by raising)."""
        clock = self.clock
        call = self.policy.start(clock.now())
        while True:
            attempt = Attempt(call.attempt, call.attempt_deadline(clock.now()))
            yield attempt
            decision = attempt._decide(call, clock.now())
            if decision is None:
                return
            self._carry_out(call, decision, attempt._error, attempt.result)
