"""Tests of the asyncio driver, stormproof.run.aio.AsyncRetrying, on a ManualClock."""

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from stormproof import (
    AsyncRetrying,
    ConfigError,
    Deadline,
    DeadlineExceeded,
    ManualClock,
    RetryError,
    RetryEvent,
    RetryPolicy,
    current_deadline,
    deadline_scope,
)
from stormproof.policies import AwsRetryQuota, Constant, Exponential, Jitter, NoBackoff, RatioBudget

FORMS = ("call", "decorator", "block")


class AsyncFlaky:
    """Awaits once, then raises the queued errors one per call, then returns ``result``."""

    def __init__(self, *errors: BaseException, result: Any = "ok") -> None:
        self.errors = list(errors)
        self.result = result
        self.calls = 0

    async def __call__(self) -> Any:
        self.calls += 1
        await asyncio.sleep(0)
        if self.errors:
            raise self.errors.pop(0)
        return self.result


async def run(form: str, retrying: AsyncRetrying, fn: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``fn`` through one of the three ways of using an AsyncRetrying."""
    if form == "call":
        return await retrying.call(fn)
    if form == "decorator":

        async def target() -> Any:
            return await fn()

        return await retrying(target)()
    result = None
    async for attempt in retrying:
        with attempt:
            result = await fn()
            attempt.set_result(result)
    return result


def make_policy(**options: Any) -> RetryPolicy:
    options.setdefault("max_attempts", 3)
    options.setdefault("backoff", Constant(2.0))
    options.setdefault("rng", random.Random(0))
    return RetryPolicy(**options)


@pytest.fixture(params=FORMS)
def form(request: pytest.FixtureRequest) -> str:
    return request.param


# --- the basic outcomes, for every form ------------------------------------------------------


@pytest.mark.asyncio
async def test_success_first_time_does_not_sleep_or_call_hooks(form: str) -> None:
    clock = ManualClock()
    retries: list[RetryEvent] = []
    give_ups: list[RetryEvent] = []
    retrying = AsyncRetrying(
        make_policy(), clock=clock, on_retry=retries.append, on_give_up=give_ups.append
    )
    fn = AsyncFlaky(result=42)

    assert await run(form, retrying, fn) == 42

    assert fn.calls == 1
    assert clock.sleeps == []
    assert retries == []
    assert give_ups == []


@pytest.mark.asyncio
async def test_call_passes_arguments_through() -> None:
    async def combine(a: int, b: int = 0) -> int:
        return a * 10 + b

    retrying = AsyncRetrying(make_policy(), clock=ManualClock())
    assert await retrying.call(combine, 4, b=2) == 42


@pytest.mark.asyncio
async def test_fail_then_succeed_sleeps_the_exact_schedule(form: str) -> None:
    clock = ManualClock()
    retrying = AsyncRetrying(make_policy(backoff=Constant(2.5)), clock=clock)
    fn = AsyncFlaky(ConnectionError("a"), ConnectionError("b"), result="done")

    assert await run(form, retrying, fn) == "done"

    assert fn.calls == 3
    assert clock.sleeps == [2.5, 2.5]
    assert clock.now() == 5.0


@pytest.mark.asyncio
async def test_exhaustion_raises_retry_error(form: str) -> None:
    clock = ManualClock()
    errors = [ConnectionError(f"attempt {i}") for i in (1, 2, 3)]
    fn = AsyncFlaky(*errors)

    with pytest.raises(RetryError) as excinfo:
        await run(form, AsyncRetrying(make_policy(), clock=clock), fn)

    error = excinfo.value
    assert error.attempts == 3
    assert error.reason == "attempts_exhausted"
    assert error.last_error is errors[2]
    assert error.__cause__ is errors[2]
    assert fn.calls == 3
    assert clock.sleeps == [2.0, 2.0]


@pytest.mark.asyncio
async def test_reraise_raises_the_last_original_error(form: str) -> None:
    errors = [ConnectionError(f"attempt {i}") for i in (1, 2, 3)]
    fn = AsyncFlaky(*errors)

    with pytest.raises(ConnectionError) as excinfo:
        await run(form, AsyncRetrying(make_policy(), clock=ManualClock(), reraise=True), fn)

    assert excinfo.value is errors[2]
    assert fn.calls == 3


@pytest.mark.asyncio
async def test_non_retryable_error_propagates_unchanged_after_one_attempt(form: str) -> None:
    clock = ManualClock()
    boom = ValueError("not transient")
    fn = AsyncFlaky(boom)

    with pytest.raises(ValueError) as excinfo:
        await run(form, AsyncRetrying(make_policy(retry_on=ConnectionError), clock=clock), fn)

    assert excinfo.value is boom
    assert fn.calls == 1
    assert clock.sleeps == []


@pytest.mark.asyncio
@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, asyncio.CancelledError])
async def test_interrupts_and_cancellation_are_never_retried(
    form: str, interrupt: type[BaseException]
) -> None:
    clock = ManualClock()
    fn = AsyncFlaky(interrupt())

    with pytest.raises(interrupt):
        await run(form, AsyncRetrying(make_policy(max_attempts=5), clock=clock), fn)

    assert fn.calls == 1
    assert clock.sleeps == []


@pytest.mark.asyncio
async def test_nested_retry_error_is_not_retried(form: str) -> None:
    clock = ManualClock()
    inner = RetryError(attempts=2, reason="deadline", last_error=OSError())
    fn = AsyncFlaky(inner)

    with pytest.raises(RetryError) as excinfo:
        await run(form, AsyncRetrying(make_policy(max_attempts=5), clock=clock), fn)

    assert excinfo.value is inner
    assert fn.calls == 1


@pytest.mark.asyncio
async def test_retry_on_result(form: str) -> None:
    clock = ManualClock()
    values = iter(["busy", "busy", "fine"])

    async def fn() -> str:
        return next(values)

    policy = make_policy(retry_on_result=lambda r: r == "busy")
    assert await run(form, AsyncRetrying(policy, clock=clock), fn) == "fine"
    assert clock.sleeps == [2.0, 2.0]


@pytest.mark.asyncio
async def test_retry_on_result_exhaustion(form: str) -> None:
    async def fn() -> int:
        return 503

    policy = make_policy(retry_on_result=lambda r: r >= 500)
    with pytest.raises(RetryError) as excinfo:
        await run(form, AsyncRetrying(policy, clock=ManualClock()), fn)
    assert (excinfo.value.reason, excinfo.value.attempts) == ("attempts_exhausted", 3)
    assert excinfo.value.last_error is None
    assert excinfo.value.last_result == 503


# --- fast path vs full path ------------------------------------------------------------------

SEED = 4321
VARIANTS = {
    "plain": {},
    "aws_budget": {"budget": AwsRetryQuota()},
    "ratio_budget": {"budget": RatioBudget()},
    "total_timeout": {"total_timeout": 1e6},
    "attempt_timeout": {"attempt_timeout": 1e5},
    "budget_and_timeout": {"budget": AwsRetryQuota(), "total_timeout": 1e6},
}


def _expected(retries: int) -> list[float]:
    rng = random.Random(SEED)
    return [rng.random() * min(5.0, 1.0 * 2.0 ** (n - 1)) for n in range(1, retries + 1)]


def _seeded(variant: str, **options: Any) -> RetryPolicy:
    extra = dict(VARIANTS[variant])
    if "budget" in extra:  # a fresh budget per test
        extra["budget"] = type(extra["budget"])()
    return RetryPolicy(
        max_attempts=5,
        backoff=Exponential(base=1.0, factor=2.0, cap=5.0, jitter=Jitter.FULL),
        rng=random.Random(SEED),
        **extra,
        **options,
    )


@pytest.mark.asyncio
@pytest.mark.parametrize("variant", list(VARIANTS))
async def test_fast_and_full_paths_sleep_the_same_schedule(form: str, variant: str) -> None:
    clock = ManualClock()
    fn = AsyncFlaky(*[ConnectionError() for _ in range(3)])
    assert await run(form, AsyncRetrying(_seeded(variant), clock=clock), fn) == "ok"
    assert clock.sleeps == pytest.approx(_expected(3))


@pytest.mark.asyncio
@pytest.mark.parametrize("variant", list(VARIANTS))
async def test_fast_and_full_paths_give_up_the_same_way(variant: str) -> None:
    clock = ManualClock()
    with pytest.raises(RetryError) as excinfo:
        await AsyncRetrying(_seeded(variant), clock=clock).call(
            AsyncFlaky(*[OSError() for _ in range(9)])
        )
    assert (excinfo.value.reason, excinfo.value.attempts) == ("attempts_exhausted", 5)
    assert clock.sleeps == pytest.approx(_expected(4))


@pytest.mark.asyncio
@pytest.mark.parametrize("variant", list(VARIANTS))
async def test_fast_and_full_paths_agree_on_results(variant: str) -> None:
    clock = ManualClock()
    values = iter([503, 503, 200])

    async def fn() -> int:
        return next(values)

    policy = _seeded(variant, retry_on_result=lambda status: status >= 500)
    assert await AsyncRetrying(policy, clock=clock).call(fn) == 200
    assert clock.sleeps == pytest.approx(_expected(2))


# --- budgets ---------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("timeouts", [{}, {"total_timeout": 1000.0}])
async def test_shared_aws_quota_stops_retries_of_the_third_failing_call(
    form: str, timeouts: dict[str, float]
) -> None:
    clock = ManualClock()
    quota = AwsRetryQuota(capacity=10, retry_cost=5)
    retrying = AsyncRetrying(
        make_policy(max_attempts=2, backoff=Constant(1.0), budget=quota, **timeouts), clock=clock
    )
    outcomes = []
    for _ in range(3):
        fn = AsyncFlaky(*[ConnectionError() for _ in range(5)])
        with pytest.raises(RetryError) as excinfo:
            await run(form, retrying, fn)
        outcomes.append((excinfo.value.reason, excinfo.value.attempts, fn.calls))

    assert outcomes == [
        ("attempts_exhausted", 2, 2),
        ("attempts_exhausted", 2, 2),
        ("budget_exhausted", 1, 1),
    ]
    assert quota.available(clock.now()) == 0.0


@pytest.mark.asyncio
@pytest.mark.parametrize("timeouts", [{}, {"total_timeout": 1000.0}])
async def test_ratio_budget_is_told_of_each_call_once(
    form: str, timeouts: dict[str, float]
) -> None:
    clock = ManualClock()
    budget = RatioBudget(ratio=0.5, min_retries_per_second=1.0, ttl=10.0)
    retrying = AsyncRetrying(
        make_policy(backoff=NoBackoff(), budget=budget, **timeouts), clock=clock
    )

    assert await run(form, retrying, AsyncFlaky(OSError(), OSError())) == "ok"
    assert budget.available(clock.now()) == pytest.approx(10.0 + 0.5 - 2.0)

    assert await run(form, retrying, AsyncFlaky()) == "ok"
    assert budget.available(clock.now()) == pytest.approx(10.0 + 1.0 - 2.0)


# --- attempt timeouts ------------------------------------------------------------------------


class SlowThenOk:
    """The first ``slow`` calls sleep ``seconds`` on the manual clock; later calls return."""

    def __init__(self, clock: ManualClock, seconds: float, slow: int = 1) -> None:
        self.clock = clock
        self.seconds = seconds
        self.slow = slow
        self.calls = 0
        self.finished = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.slow:
            await self.clock.async_sleep(self.seconds)
            self.finished += 1  # only reached if the attempt was not cancelled
            return "late"
        return "ok"


@pytest.mark.asyncio
@pytest.mark.parametrize("form", ["call", "decorator"])
async def test_attempt_past_its_timeout_is_cancelled_and_retried(form: str) -> None:
    clock = ManualClock()
    events: list[RetryEvent] = []
    # retry_on excludes timeouts: a timed-out attempt is retried whatever retry_on says.
    policy = make_policy(attempt_timeout=5.0, backoff=Constant(1.0), retry_on=ValueError)
    fn = SlowThenOk(clock, 10.0)

    result = await run(form, AsyncRetrying(policy, clock=clock, on_retry=events.append), fn)

    assert result == "ok"
    assert fn.calls == 2
    assert fn.finished == 0
    assert clock.sleeps == [10.0, 1.0]  # the attempt's own sleep, then the backoff
    [event] = events
    assert (event.attempt, event.delay, event.reason) == (1, 1.0, "backoff")
    assert isinstance(event.error, DeadlineExceeded)
    assert type(event.error.__cause__) is TimeoutError
    assert event.error.deadline == 5.0
    assert event.error.now == 10.0


@pytest.mark.asyncio
async def test_every_attempt_timing_out_exhausts_with_deadline_exceeded() -> None:
    clock = ManualClock()
    policy = make_policy(attempt_timeout=5.0, backoff=Constant(1.0))
    fn = SlowThenOk(clock, 6.0, slow=10)

    with pytest.raises(RetryError) as excinfo:
        await AsyncRetrying(policy, clock=clock).call(fn)

    assert excinfo.value.reason == "attempts_exhausted"
    assert excinfo.value.attempts == 3
    assert isinstance(excinfo.value.last_error, DeadlineExceeded)
    assert type(excinfo.value.last_error.__cause__) is TimeoutError
    assert fn.finished == 0
    assert clock.sleeps == [6.0, 1.0, 6.0, 1.0, 6.0]


@pytest.mark.asyncio
async def test_attempt_within_its_timeout_is_not_cancelled() -> None:
    clock = ManualClock()
    fn = SlowThenOk(clock, 4.5)
    result = await AsyncRetrying(make_policy(attempt_timeout=5.0), clock=clock).call(fn)
    assert result == "late"
    assert fn.calls == 1
    assert fn.finished == 1


@pytest.mark.asyncio
async def test_timed_out_attempt_is_priced_as_a_timeout_by_the_budget() -> None:
    clock = ManualClock()
    quota = AwsRetryQuota(capacity=100, retry_cost=5, timeout_cost=10)
    policy = make_policy(attempt_timeout=5.0, backoff=Constant(1.0), max_attempts=2, budget=quota)
    with pytest.raises(RetryError):
        await AsyncRetrying(policy, clock=clock).call(SlowThenOk(clock, 6.0, slow=5))
    assert quota.available(clock.now()) == 90.0


@pytest.mark.asyncio
async def test_own_timeout_error_is_an_ordinary_error() -> None:
    clock = ManualClock()
    mine = TimeoutError("raised by the function")
    fn = AsyncFlaky(mine)
    policy = make_policy(attempt_timeout=5.0, retry_on=ValueError)

    with pytest.raises(TimeoutError) as excinfo:
        await AsyncRetrying(policy, clock=clock).call(fn)

    assert excinfo.value is mine
    assert not isinstance(excinfo.value, DeadlineExceeded)
    assert fn.calls == 1


@pytest.mark.asyncio
async def test_own_timeout_error_is_retried_as_itself_when_retryable() -> None:
    clock = ManualClock()
    events: list[RetryEvent] = []
    mine = TimeoutError("raised by the function")
    policy = make_policy(attempt_timeout=5.0, backoff=Constant(1.0))

    result = await AsyncRetrying(policy, clock=clock, on_retry=events.append).call(AsyncFlaky(mine))

    assert result == "ok"
    assert [e.error for e in events] == [mine]
    assert clock.sleeps == [1.0]


@pytest.mark.asyncio
@pytest.mark.parametrize("form", ["call", "decorator"])
async def test_total_timeout_expiry_gives_up_with_deadline(form: str) -> None:
    clock = ManualClock()
    give_ups: list[RetryEvent] = []
    policy = make_policy(total_timeout=10.0, max_attempts=None)
    fn = SlowThenOk(clock, 30.0, slow=5)

    with pytest.raises(RetryError) as excinfo:
        await run(form, AsyncRetrying(policy, clock=clock, on_give_up=give_ups.append), fn)

    assert excinfo.value.reason == "deadline"
    assert excinfo.value.attempts == 1
    assert isinstance(excinfo.value.last_error, DeadlineExceeded)
    assert excinfo.value.last_error.deadline == 10.0
    assert fn.finished == 0
    assert [(e.kind, e.reason) for e in give_ups] == [("give_up", "deadline")]


@pytest.mark.asyncio
async def test_total_timeout_cuts_the_last_attempt_and_never_sleeps_past_it() -> None:
    clock = ManualClock()
    policy = make_policy(
        attempt_timeout=4.0, total_timeout=10.0, max_attempts=None, backoff=Constant(1.0)
    )
    fn = SlowThenOk(clock, 4.5, slow=10)

    with pytest.raises(RetryError) as excinfo:
        await AsyncRetrying(policy, clock=clock).call(fn)

    # attempt 1: 0..4.5 (timed out at 4), sleep 1; attempt 2 starts at 5.5 with deadline
    # min(9.5, 10) and runs to 10; 10 + 1 >= 10, so it gives up.
    assert excinfo.value.reason == "deadline"
    assert excinfo.value.attempts == 2
    assert excinfo.value.last_error.deadline == 9.5  # type: ignore[union-attr]
    assert clock.sleeps == [4.5, 1.0, 4.5]
    assert fn.finished == 0


@pytest.mark.asyncio
async def test_block_form_publishes_the_deadline_but_does_not_cancel() -> None:
    clock = ManualClock()
    seen: list[Deadline | None] = []
    async for attempt in AsyncRetrying(make_policy(attempt_timeout=5.0), clock=clock):
        with attempt:
            seen.append(current_deadline())
            await clock.async_sleep(10.0)
    assert seen == [Deadline(5.0)]
    assert attempt.number == 1
    assert clock.now() == 10.0


# --- deadlines -------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("outer_at", [50.0, 100.0])
async def test_passed_outer_deadline_raises_without_calling(form: str, outer_at: float) -> None:
    clock = ManualClock(start=100.0)
    fn = AsyncFlaky()
    with deadline_scope(Deadline(outer_at)), pytest.raises(DeadlineExceeded) as excinfo:
        await run(form, AsyncRetrying(make_policy(), clock=clock), fn)
    assert fn.calls == 0
    assert excinfo.value.deadline == outer_at


@pytest.mark.asyncio
async def test_current_deadline_in_attempt_is_the_tighter_of_attempt_and_total(
    form: str,
) -> None:
    clock = ManualClock(start=100.0)
    policy = make_policy(backoff=Constant(4.0), attempt_timeout=5.0, total_timeout=12.0)
    seen: list[Deadline | None] = []

    async def fn() -> str:
        seen.append(current_deadline())
        if len(seen) < 3:
            raise ConnectionError
        return "ok"

    assert await run(form, AsyncRetrying(policy, clock=clock), fn) == "ok"
    assert seen == [Deadline(105.0), Deadline(109.0), Deadline(112.0)]
    assert current_deadline() is None


@pytest.mark.asyncio
async def test_outer_deadline_bounds_the_attempt_timeout() -> None:
    clock = ManualClock()
    fn = SlowThenOk(clock, 8.0, slow=5)
    policy = make_policy(attempt_timeout=20.0, backoff=Constant(1.0))
    with deadline_scope(Deadline(6.0)), pytest.raises(RetryError) as excinfo:
        await AsyncRetrying(policy, clock=clock).call(fn)
    assert excinfo.value.reason == "deadline"
    assert excinfo.value.last_error.deadline == 6.0  # type: ignore[union-attr]
    assert fn.finished == 0


# --- hooks -----------------------------------------------------------------------------------


class Throttled(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"retry after {retry_after}")
        self.retry_after = retry_after


@pytest.mark.asyncio
async def test_on_retry_events_before_each_sleep(form: str) -> None:
    clock = ManualClock()
    events: list[RetryEvent] = []
    sleeps_at_hook: list[int] = []

    def hook(event: RetryEvent) -> None:
        events.append(event)
        sleeps_at_hook.append(len(clock.sleeps))

    errors = [Throttled(3.0), ConnectionError()]
    retrying = AsyncRetrying(make_policy(backoff=Constant(2.0)), clock=clock, on_retry=[hook])
    assert await run(form, retrying, AsyncFlaky(*errors)) == "ok"

    assert events == [
        RetryEvent("retry", 1, 3.0, "server_delay", errors[0], None, 0.0),
        RetryEvent("retry", 2, 2.0, "backoff", errors[1], None, 3.0),
    ]
    assert sleeps_at_hook == [0, 1]
    assert clock.sleeps == [3.0, 2.0]


@pytest.mark.asyncio
async def test_on_give_up_hooks(form: str) -> None:
    first: list[RetryEvent] = []
    second: list[RetryEvent] = []
    retrying = AsyncRetrying(
        make_policy(max_attempts=2),
        clock=ManualClock(),
        on_give_up=[first.append, second.append],
    )
    errors = [OSError(1), OSError(2)]
    with pytest.raises(RetryError):
        await run(form, retrying, AsyncFlaky(*errors))
    assert first == second
    [event] = first
    assert (event.kind, event.attempt, event.delay, event.reason, event.error) == (
        "give_up",
        2,
        None,
        "attempts_exhausted",
        errors[1],
    )


def test_non_callable_hook_raises_config_error() -> None:
    with pytest.raises(ConfigError) as excinfo:
        AsyncRetrying(make_policy(), on_give_up=[len, "nope"])
    assert excinfo.value.field == "on_give_up"


@pytest.mark.asyncio
async def test_elapsed_counts_the_first_attempt_without_a_budget() -> None:
    clock = ManualClock()
    events: list[RetryEvent] = []

    async def slow_then_ok() -> str:
        await clock.async_sleep(3.0)
        if not events:
            raise ConnectionError
        return "ok"

    policy = make_policy(backoff=Constant(1.0))
    await AsyncRetrying(policy, clock=clock, on_retry=events.append).call(slow_then_ok)
    assert [e.elapsed for e in events] == [3.0]


@pytest.mark.asyncio
async def test_decorator_keeps_metadata_and_exposes_the_driver() -> None:
    retrying = AsyncRetrying(make_policy(), clock=ManualClock())

    @retrying
    async def fetch(url: str) -> str:
        """Fetch it."""
        return url.upper()

    assert fetch.__name__ == "fetch"
    assert fetch.__doc__ == "Fetch it."
    assert fetch.retrying is retrying  # type: ignore[attr-defined]
    assert await fetch("x") == "X"


@pytest.mark.asyncio
@pytest.mark.parametrize("timeouts", [{}, {"attempt_timeout": 5.0}, {"total_timeout": 50.0}])
async def test_external_cancellation_is_not_retried(timeouts: dict[str, float]) -> None:
    clock = ManualClock()
    started = asyncio.Event()
    calls = 0

    async def wait_forever() -> None:
        nonlocal calls
        calls += 1
        started.set()
        await asyncio.Event().wait()

    retrying = AsyncRetrying(make_policy(max_attempts=5, **timeouts), clock=clock)
    task = asyncio.create_task(retrying.call(wait_forever))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls == 1
    assert clock.sleeps == []
