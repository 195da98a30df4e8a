"""Run a pipeline of strategies (:mod:`stormproof.policies.pipeline`) on a clock, sync or async.

    pipeline = Pipeline(standard())
    result = pipeline.call(fetch, url)          # sync
    result = await pipeline.acall(fetch, url)   # asyncio

Every decision is reported to ``on_event`` as a :class:`PipelineEvent` (mechanism, outcome,
reason, attempt, delay, time), the hook for logs and metrics.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from stormproof.clock import SleepingClock, WallClock
from stormproof.errors import ConfigError, DeadlineExceeded, StormproofError
from stormproof.policies.breaker import BreakerOpen
from stormproof.policies.bulkhead import ADMITTED, BulkheadFull, Full, Queued
from stormproof.policies.deadline import Deadline, current_deadline, deadline_scope
from stormproof.policies.pipeline import (
    AttemptTimeout,
    Breaker,
    Concurrency,
    Fallback,
    Hedge,
    RateLimit,
    Retry,
    Strategy,
    TotalTimeout,
    validate,
)
from stormproof.policies.ratelimit import GRANTED, Rejected, Wait
from stormproof.run._common import INSTANT_SLEEPS, RetryEvent
from stormproof.run.aio import AsyncRetrying
from stormproof.run.sync import Retrying

__all__ = ["Pipeline", "PipelineEvent", "RateLimited"]

R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])


class RateLimited(StormproofError):
    """A rate limiter refused the call; ``retry_after`` says when a permit would be free."""

    def __init__(self, retry_after: float, reason: str = "rate") -> None:
        super().__init__(f"rate limited ({reason}); retry after {retry_after:.3g} s")
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class PipelineEvent:
    """One decision inside a pipeline, for telemetry."""

    mechanism: str
    outcome: str
    reason: str = ""
    attempt: int | None = None
    delay: float | None = None
    time: float = 0.0


class Pipeline:
    """Runs a validated list of strategies around calls. Share one per dependency.

    Args:
        strategies: outermost first (see :func:`stormproof.policies.pipeline.validate`).
        clock: time and sleeps; default the wall clock.
        on_event: receives a :class:`PipelineEvent` for every decision.
    """

    __slots__ = ("_async_retry", "_sync_retry", "clock", "on_event", "strategies")

    def __init__(
        self,
        strategies: Sequence[Strategy],
        *,
        clock: SleepingClock | None = None,
        on_event: Callable[[PipelineEvent], None] | None = None,
    ) -> None:
        validate(strategies)
        if on_event is not None and not callable(on_event):
            raise ConfigError("on_event", "must be callable(event)", on_event)
        self.strategies = tuple(strategies)
        self.clock = clock if clock is not None else WallClock()
        self.on_event = on_event
        hooks = self._retry_hook if on_event is not None else None
        self._sync_retry = {
            i: Retrying(s.policy, clock=self.clock, on_retry=hooks, on_give_up=hooks)
            for i, s in enumerate(self.strategies)
            if isinstance(s, Retry)
        }
        self._async_retry = {
            i: AsyncRetrying(s.policy, clock=self.clock, on_retry=hooks, on_give_up=hooks)
            for i, s in enumerate(self.strategies)
            if isinstance(s, Retry)
        }

    # -- telemetry --------------------------------------------------------------------------

    def _emit(self, mechanism: str, outcome: str, reason: str = "", **extra: Any) -> None:
        if self.on_event is not None:
            self.on_event(PipelineEvent(mechanism, outcome, reason, time=self.clock.now(), **extra))

    def _retry_hook(self, event: RetryEvent) -> None:
        self._emit("retry", event.kind, event.reason, attempt=event.attempt, delay=event.delay)

    def _deadline(self, seconds: float) -> Deadline:
        now = self.clock.now()
        deadline = Deadline(now + seconds).earliest(current_deadline())
        deadline.check(now, "pipeline")
        return deadline

    def _limit(self, strategy: RateLimit) -> float:
        """Ask the limiter; returns the wait, raises RateLimited when refused."""
        decision = strategy.limiter.acquire(self.clock.now(), strategy.cost)
        if decision is GRANTED:
            self._emit("rate_limit", "granted")
            return 0.0
        if isinstance(decision, Wait):
            self._emit("rate_limit", "wait", delay=decision.delay)
            return decision.delay
        assert isinstance(decision, Rejected)
        self._emit("rate_limit", "rejected", decision.reason, delay=decision.retry_after)
        raise RateLimited(decision.retry_after, decision.reason)

    def _breaker_check(self, strategy: Breaker) -> None:
        try:
            strategy.breaker.check(self.clock.now())
        except BreakerOpen as refused:
            self._emit("breaker", "rejected", refused.state.value, delay=refused.retry_after)
            raise

    def _breaker_failed(self, strategy: Breaker, started: float, error: BaseException) -> None:
        now = self.clock.now()
        if not isinstance(error, Exception):
            # Cancelled or interrupted: the outcome is unknown, so nothing is recorded; a
            # half-open probe permit is handed back so the breaker is not left waiting for it.
            strategy.breaker.release(now)
            self._emit("breaker", "released", type(error).__name__)
            return
        failed = strategy.failure_on(error)
        strategy.breaker.record(now, success=not failed, duration=now - started)
        self._emit("breaker", "failure" if failed else "success", type(error).__name__)

    # -- sync -------------------------------------------------------------------------------

    def call(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> R:
        """Call ``fn(*args, **kwargs)`` through the pipeline (sync)."""
        return self._run(0, fn, args, kwargs)

    def _sleep(self, delay: float) -> None:
        if delay <= 0:
            return  # a granted permit: no wait to make or record
        recorded = INSTANT_SLEEPS.get()
        if recorded is not None:
            recorded.append(delay)
        else:
            self.clock.sleep(delay)

    def _run(self, index: int, fn: Callable[..., R], args: Any, kwargs: Any) -> R:
        if index == len(self.strategies):
            return fn(*args, **kwargs)
        strategy = self.strategies[index]

        def inner() -> R:
            return self._run(index + 1, fn, args, kwargs)

        if isinstance(strategy, RateLimit):
            self._sleep(self._limit(strategy))
            return inner()
        if isinstance(strategy, Concurrency):
            decision = strategy.bulkhead.acquire(self.clock.now())
            if decision is not ADMITTED:
                if isinstance(decision, Queued):
                    strategy.bulkhead.cancel(decision)
                reason = decision.reason if isinstance(decision, Full) else "queue (sync)"
                self._emit("concurrency", "rejected", reason)
                raise BulkheadFull(f"bulkhead full: {reason}")
            self._emit("concurrency", "admitted")
            try:
                return inner()
            finally:
                strategy.bulkhead.release(self.clock.now())
        if isinstance(strategy, TotalTimeout | AttemptTimeout):
            with deadline_scope(self._deadline(strategy.seconds)):
                return inner()
        if isinstance(strategy, Retry):
            return self._sync_retry[index].call(inner)
        if isinstance(strategy, Breaker):
            self._breaker_check(strategy)
            started = self.clock.now()
            try:
                result = inner()
            except BaseException as error:
                self._breaker_failed(strategy, started, error)
                raise
            now = self.clock.now()
            strategy.breaker.record(now, success=True, duration=now - started)
            return result
        if isinstance(strategy, Fallback):
            try:
                return inner()
            except Exception as error:
                if not strategy.matches(error):
                    raise
                self._emit("fallback", "used", type(error).__name__)
                return cast(R, strategy.produce(error))
        raise ConfigError("Hedge", "needs the async pipeline (acall): sync calls cannot race")

    # -- async ------------------------------------------------------------------------------

    async def acall(self, fn: Callable[..., Awaitable[R]], /, *args: Any, **kwargs: Any) -> R:
        """Await ``fn(*args, **kwargs)`` through the pipeline (asyncio)."""
        return await self._arun(0, fn, args, kwargs)

    async def _asleep(self, delay: float) -> None:
        if delay <= 0:
            return  # a granted permit: no wait to make or record
        recorded = INSTANT_SLEEPS.get()
        if recorded is not None:
            recorded.append(delay)
        else:
            await self.clock.async_sleep(delay)

    async def _within(self, seconds: float, inner: Callable[[], Awaitable[R]], what: str) -> R:
        deadline = self._deadline(seconds)
        with deadline_scope(deadline):
            try:
                async with self.clock.timeout(deadline.remaining(self.clock.now())) as block:
                    return await inner()
            except TimeoutError as exc:
                if not block.expired():
                    raise
                self._emit(what, "expired")
                raise DeadlineExceeded(
                    f"{what} of {seconds:g} s expired", deadline=deadline.at, now=self.clock.now()
                ) from exc

    async def _arun(self, index: int, fn: Callable[..., Awaitable[R]], args: Any, kwargs: Any) -> R:
        if index == len(self.strategies):
            return await fn(*args, **kwargs)
        strategy = self.strategies[index]

        def inner() -> Awaitable[R]:
            return self._arun(index + 1, fn, args, kwargs)

        if isinstance(strategy, RateLimit):
            await self._asleep(self._limit(strategy))
            return await inner()
        if isinstance(strategy, Concurrency):
            return await self._concurrency(strategy, inner)
        if isinstance(strategy, TotalTimeout):
            return await self._within(strategy.seconds, inner, "total_timeout")
        if isinstance(strategy, AttemptTimeout):
            return await self._within(strategy.seconds, inner, "attempt_timeout")
        if isinstance(strategy, Retry):
            return await self._async_retry[index].call(inner)
        if isinstance(strategy, Breaker):
            self._breaker_check(strategy)
            started = self.clock.now()
            try:
                result = await inner()
            except BaseException as error:
                self._breaker_failed(strategy, started, error)
                raise
            now = self.clock.now()
            strategy.breaker.record(now, success=True, duration=now - started)
            return result
        if isinstance(strategy, Fallback):
            try:
                return await inner()
            except Exception as error:
                if not strategy.matches(error):
                    raise
                self._emit("fallback", "used", type(error).__name__)
                return cast(R, strategy.produce(error))
        return await self._hedge(strategy, inner)

    async def _concurrency(self, strategy: Concurrency, inner: Callable[[], Awaitable[R]]) -> R:
        bulkhead = strategy.bulkhead
        decision = bulkhead.acquire(self.clock.now())
        if isinstance(decision, Full):
            self._emit("concurrency", "rejected", decision.reason)
            raise BulkheadFull(f"bulkhead full: {decision.reason}")
        if isinstance(decision, Queued):
            self._emit("concurrency", "queued")
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            decision.waiter = waiter
            try:
                await waiter
            except BaseException:
                if not bulkhead.cancel(decision):
                    self._hand_over(bulkhead)  # admitted as we gave up: pass the permit on
                raise
        self._emit("concurrency", "admitted")
        try:
            return await inner()
        finally:
            self._hand_over(bulkhead)

    def _hand_over(self, bulkhead: Any) -> None:
        ticket = bulkhead.release(self.clock.now())
        if ticket is not None:
            waiter = ticket.waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            # Otherwise the waiter was cancelled in this same step: its task still runs its
            # handler, sees the ticket admitted and passes the permit on itself. Releasing here
            # too would free the permit twice.

    async def _hedge(self, strategy: Hedge, inner: Callable[[], Awaitable[R]]) -> R:
        loop = asyncio.get_running_loop()
        attempts: list[asyncio.Task[R]] = [loop.create_task(_await(inner))]
        number = {attempts[0]: 1}  # which call (1 = the original) each task is
        started = 1
        last_error: BaseException | None = None
        timer: asyncio.Task[None] | None = None
        try:
            while True:
                if timer is None and started <= strategy.max_hedges:
                    timer = loop.create_task(self.clock.async_sleep(strategy.delay))
                waiting: set[asyncio.Future[Any]] = set(attempts)
                if timer is not None:
                    waiting.add(timer)
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                for task in [t for t in attempts if t in done]:
                    attempts.remove(task)
                    if task.exception() is None:
                        self._emit("hedge", "won", attempt=number[task])
                        return task.result()
                    last_error = task.exception()
                hedge_now = timer is not None and timer in done
                if hedge_now:
                    timer = None
                if (hedge_now or not attempts) and started <= strategy.max_hedges:
                    started += 1
                    self._emit("hedge", "started", attempt=started)
                    attempts.append(loop.create_task(_await(inner)))
                    number[attempts[-1]] = started
                    if timer is not None:
                        timer.cancel()
                        timer = None
                elif not attempts:
                    assert last_error is not None
                    raise last_error
        finally:
            for task in attempts:
                task.cancel()
            if timer is not None:
                timer.cancel()

    # -- decorator --------------------------------------------------------------------------

    def __call__(self, fn: F) -> F:
        """Decorate a function (sync or ``async def``) so its calls go through the pipeline."""
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def guarded_async(*args: Any, **kwargs: Any) -> Any:
                return await self.acall(fn, *args, **kwargs)

            return cast(F, guarded_async)

        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            return self.call(fn, *args, **kwargs)

        return cast(F, guarded)


async def _await(inner: Callable[[], Awaitable[R]]) -> R:
    return await inner()
