"""The asyncio retry driver: the same policies as :mod:`stormproof.run.sync`, for coroutines.

    retrying = AsyncRetrying(policy)

    await retrying.call(fetch, url)

    @retrying
    async def fetch(url): ...

    async for attempt in retrying:
        with attempt:
            response = await client.get(url)

Unlike sync code, a coroutine can be cancelled, so ``attempt_timeout`` and ``total_timeout`` are
enforced: an attempt that runs past its deadline is cancelled and counts as a timed-out attempt
(retryable, and priced as a timeout by budgets), reported as
:class:`~stormproof.errors.DeadlineExceeded` chained to asyncio's ``TimeoutError``. The block
form (``async for``) publishes the attempt's deadline but does not cancel the block.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from stormproof.errors import DeadlineExceeded
from stormproof.policies.deadline import _CURRENT as _CURRENT_DEADLINE
from stormproof.policies.deadline import deadline_scope
from stormproof.policies.retry import GiveUp, RetryAfter, RetryCall
from stormproof.run._common import INSTANT_SLEEPS, RetryingBase
from stormproof.run.sync import Attempt

__all__ = ["AsyncRetrying"]

P = ParamSpec("P")
R = TypeVar("R")


class AsyncRetrying(RetryingBase):
    """Retries coroutine functions and ``async for`` blocks under one policy.

    See :class:`stormproof.run._common.RetryingBase` for the arguments.
    """

    __slots__ = ()

    async def _sleep(self, delay: float) -> None:
        recorded = INSTANT_SLEEPS.get()
        if recorded is not None:
            recorded.append(delay)
        elif delay > 0.0:
            await self.clock.async_sleep(delay)

    async def _carry_out(
        self, call: RetryCall, decision: RetryAfter | GiveUp, error: Any, result: Any
    ) -> None:
        """Raise for a give-up; otherwise tell the hooks and sleep the delay."""
        if isinstance(decision, GiveUp):
            self._give_up(call, decision, error, result)
        self._retry_event(call, decision, error, result)
        await self._sleep(decision.delay)

    async def call(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Await ``fn(*args, **kwargs)`` under the policy and return its result."""
        return await self._invoke(fn, args, kwargs)

    async def _invoke(self, fn: Callable[..., Awaitable[R]], args: Any, kwargs: Any) -> R:
        policy = self.policy
        if not self._fast or _CURRENT_DEADLINE.get() is not None:
            return await self._loop(policy.start(self.clock.now()), fn, args, kwargs)
        # The first attempt needs no call state: it is created only if the attempt fails.
        budget = policy.budget
        started = None
        if budget is not None:
            started = self.clock.now()
            budget.on_request(started)
        try:
            result = await fn(*args, **kwargs)
        except BaseException as error:
            call = RetryCall(policy, self._started(started), None, policy.rng)
            decision = call.on_failure(self.clock.now(), error)
            await self._carry_out(call, decision, error, None)
            return await self._loop(call, fn, args, kwargs)
        predicate = policy.retry_on_result
        if predicate is None or not predicate(result):
            if budget is not None:
                budget.on_success(self.clock.now(), retry_cost=None)
            return result
        call = RetryCall(policy, self._started(started), None, policy.rng)
        outcome = call.on_rejected_result(self.clock.now())
        await self._carry_out(call, outcome, None, result)
        return await self._loop(call, fn, args, kwargs)

    def _started(self, started: float | None) -> float:
        return self.clock.now() if started is None else started

    async def _loop(
        self, call: RetryCall, fn: Callable[..., Awaitable[R]], args: Any, kwargs: Any
    ) -> R:
        clock = self.clock
        while True:
            deadline = call.attempt_deadline(clock.now())
            error: BaseException | None = None
            result: Any = None
            timed_out = False
            try:
                if deadline is None:
                    result = await fn(*args, **kwargs)
                else:
                    with deadline_scope(deadline):
                        try:
                            async with clock.timeout(deadline.remaining(clock.now())) as block:
                                result = await fn(*args, **kwargs)
                        except TimeoutError as exc:
                            if not block.expired():
                                raise
                            timed_out = True
                            raise DeadlineExceeded(
                                f"attempt {call.attempt} timed out at its deadline "
                                f"{deadline.at:.6g}",
                                deadline=deadline.at,
                                now=clock.now(),
                            ) from exc
            except BaseException as exc:
                error = exc
                decision = call.on_failure(clock.now(), exc, timed_out=timed_out)
            else:
                outcome = call.on_result(clock.now(), result)
                if outcome is None:
                    return result  # type: ignore[no-any-return]
                decision = outcome
            await self._carry_out(call, decision, error, None if error is not None else result)

    def __call__(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        """Decorate a coroutine function so every call goes through :meth:`call`."""
        invoke = self._invoke

        @functools.wraps(fn)
        async def retried(*args: P.args, **kwargs: P.kwargs) -> R:
            return await invoke(fn, args, kwargs)

        retried.retrying = self  # type: ignore[attr-defined]
        return retried

    async def __aiter__(self) -> AsyncIterator[Attempt]:
        """Yield attempts of a block until one succeeds or the policy gives up (by raising)."""
        clock = self.clock
        call = self.policy.start(clock.now())
        while True:
            attempt = Attempt(call.attempt, call.attempt_deadline(clock.now()))
            yield attempt
            decision = attempt._decide(call, clock.now())
            if decision is None:
                return
            await self._carry_out(call, decision, attempt._error, attempt.result)
