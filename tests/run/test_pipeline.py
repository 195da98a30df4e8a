from __future__ import annotations

import asyncio
import warnings
from typing import Any

import pytest

from stormproof import ManualClock, RetryPolicy
from stormproof.errors import ConfigError, DeadlineExceeded, RetryError
from stormproof.policies.backoff import Constant, NoBackoff
from stormproof.policies.breaker import BreakerConfig, BreakerOpen, BreakerState, CircuitBreaker
from stormproof.policies.bulkhead import Bulkhead, BulkheadFull
from stormproof.policies.pipeline import (
    AttemptTimeout,
    Breaker,
    Concurrency,
    Fallback,
    Hedge,
    PipelineWarning,
    RateLimit,
    Retry,
    TotalTimeout,
    aws_client,
    standard,
    validate,
)
from stormproof.policies.ratelimit import TokenBucket
from stormproof.run.pipeline import Pipeline, PipelineEvent, RateLimited


def small_breaker() -> CircuitBreaker:
    return CircuitBreaker(
        BreakerConfig(window_size=4, minimum_calls=4, failure_rate_threshold=0.5, open_duration=10)
    )


def test_presets_validate_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate(standard())
        validate(aws_client())
        validate(aws_client("2026"))
    with pytest.raises(ConfigError):
        aws_client("1.0")


def test_contradictory_timeouts_are_rejected() -> None:
    with pytest.raises(ConfigError) as excinfo:
        validate([TotalTimeout(5), Retry(RetryPolicy()), AttemptTimeout(10)])
    assert excinfo.value.field == "TotalTimeout.seconds"
    with pytest.raises(ConfigError):
        validate([Retry(RetryPolicy()), TotalTimeout(5)])
    with pytest.raises(ConfigError):
        validate([Retry(RetryPolicy()), Retry(RetryPolicy())])
    with pytest.raises(ConfigError):
        validate([Retry(RetryPolicy(attempt_timeout=1)), AttemptTimeout(1)])
    with pytest.raises(ConfigError):
        validate(["not a strategy"])  # type: ignore[list-item]


def test_retry_inside_breaker_warns() -> None:
    with pytest.warns(PipelineWarning, match="breaker sees only the final outcome"):
        validate([Breaker(small_breaker()), Retry(RetryPolicy())])
    with pytest.warns(PipelineWarning, match="total timeout"):
        validate([AttemptTimeout(1), Retry(RetryPolicy())])


def test_strategy_configuration_errors_name_the_field() -> None:
    with pytest.raises(ConfigError) as excinfo:
        TotalTimeout(0)
    assert excinfo.value.field == "seconds"
    with pytest.raises(ConfigError) as excinfo:
        Fallback()
    assert excinfo.value.field == "value"
    with pytest.raises(ConfigError) as excinfo:
        Hedge(delay=1, max_hedges=0)
    assert excinfo.value.field == "max_hedges"


def test_rate_limit_waits_on_the_clock_or_rejects() -> None:
    clock = ManualClock()
    pipeline = Pipeline([RateLimit(TokenBucket(rate=1, burst=1, max_wait=1.0))], clock=clock)
    assert pipeline.call(lambda: "a") == "a"
    assert pipeline.call(lambda: "b") == "b"
    assert clock.sleeps == [1.0]
    strict = Pipeline([RateLimit(TokenBucket(rate=1, burst=1))], clock=clock)
    strict.call(lambda: None)
    with pytest.raises(RateLimited) as excinfo:
        strict.call(lambda: None)
    assert excinfo.value.retry_after == pytest.approx(1.0)


def test_concurrency_limit_rejects_when_full() -> None:
    bulkhead = Bulkhead(1)
    pipeline = Pipeline([Concurrency(bulkhead)], clock=ManualClock())

    def reenter() -> None:
        pipeline.call(lambda: None)

    with pytest.raises(BulkheadFull):
        pipeline.call(reenter)
    assert bulkhead.in_use == 0


def test_breaker_counts_every_attempt_and_then_fails_fast() -> None:
    clock = ManualClock()
    breaker = small_breaker()
    events: list[PipelineEvent] = []
    pipeline = Pipeline(
        [
            Retry(RetryPolicy(max_attempts=2, backoff=Constant(1.0), retry_on=ConnectionError)),
            Breaker(breaker),
        ],
        clock=clock,
        on_event=events.append,
    )
    calls = 0

    def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    for _ in range(2):
        with pytest.raises(RetryError):
            pipeline.call(down)
    assert calls == 4 and breaker.state(clock.now()) is BreakerState.OPEN
    with pytest.raises(BreakerOpen):
        pipeline.call(down)
    assert calls == 4
    kinds = [(e.mechanism, e.outcome) for e in events]
    assert kinds.count(("breaker", "failure")) == 4
    assert kinds[-2:] == [("breaker", "rejected"), ("retry", "give_up")]
    assert ("retry", "retry") in kinds and ("retry", "give_up") in kinds


def test_fallback_replaces_matching_errors_only() -> None:
    pipeline = Pipeline([Fallback(value="cached", on=ConnectionError)], clock=ManualClock())

    def down() -> str:
        raise ConnectionError

    def broken() -> str:
        raise ValueError("bug")

    assert pipeline.call(down) == "cached"
    with pytest.raises(ValueError):
        pipeline.call(broken)
    made = Pipeline([Fallback(factory=lambda e: type(e).__name__)], clock=ManualClock())
    assert made.call(broken) == "ValueError"


def test_hedge_is_async_only() -> None:
    with pytest.raises(ConfigError):
        Pipeline([Hedge(delay=1.0)], clock=ManualClock()).call(lambda: None)


def test_sync_timeouts_publish_the_deadline() -> None:
    clock = ManualClock(100.0)
    seen: list[float] = []

    def work() -> None:
        from stormproof import current_deadline

        deadline = current_deadline()
        assert deadline is not None
        seen.append(deadline.at)

    Pipeline([TotalTimeout(30), Retry(RetryPolicy()), AttemptTimeout(5)], clock=clock).call(work)
    assert seen == [105.0]


def test_decorator_works_for_sync_and_async() -> None:
    pipeline = Pipeline([Fallback(value=0)], clock=ManualClock())

    @pipeline
    def sync_fn() -> int:
        raise ConnectionError

    @pipeline
    async def async_fn() -> int:
        raise ConnectionError

    assert sync_fn() == 0
    assert asyncio.run(async_fn()) == 0


@pytest.mark.asyncio
async def test_async_attempt_timeout_cuts_a_hung_attempt_and_retry_succeeds() -> None:
    clock = ManualClock()
    breaker = small_breaker()
    pipeline = Pipeline(
        [
            TotalTimeout(30),
            Retry(RetryPolicy(max_attempts=3, backoff=NoBackoff())),
            Breaker(breaker),
            AttemptTimeout(5),
        ],
        clock=clock,
    )
    calls = 0

    async def slow_then_fast() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await clock.async_sleep(20)  # past the 5 s attempt timeout, within the 30 s total
        return "ok"

    assert await pipeline.acall(slow_then_fast) == "ok"
    assert calls == 2
    assert breaker.failure_rate(clock.now()) == 0.5  # the timed-out attempt counted


@pytest.mark.asyncio
async def test_async_total_timeout_gives_up() -> None:
    clock = ManualClock()
    pipeline = Pipeline([TotalTimeout(10), Retry(RetryPolicy(max_attempts=5))], clock=clock)

    attempts = 0

    async def hang() -> None:
        nonlocal attempts
        attempts += 1
        await clock.async_sleep(100)

    with pytest.raises(DeadlineExceeded, match="total_timeout of 10 s"):
        await pipeline.acall(hang)
    assert attempts == 1  # the cancelled attempt is not retried past the total timeout


@pytest.mark.asyncio
async def test_async_bulkhead_queue_serves_waiters_in_order() -> None:
    clock = ManualClock()
    bulkhead = Bulkhead(1, max_queue=2)
    pipeline = Pipeline([Concurrency(bulkhead)], clock=clock)
    gates = [asyncio.Event() for _ in range(3)]
    order: list[int] = []
    running = 0
    peak = 0

    async def job(i: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        order.append(i)
        await gates[i].wait()
        running -= 1
        return i

    tasks = [asyncio.create_task(pipeline.acall(job, i)) for i in range(3)]
    await asyncio.sleep(0)
    with pytest.raises(BulkheadFull):
        await pipeline.acall(job, 0)  # one running, two queued: full
    for gate in gates:
        gate.set()
        await asyncio.sleep(0)
    assert await asyncio.gather(*tasks) == [0, 1, 2]
    assert order == [0, 1, 2] and peak == 1 and bulkhead.in_use == 0


@pytest.mark.asyncio
async def test_cancelled_waiter_gives_its_turn_away() -> None:
    clock = ManualClock()
    bulkhead = Bulkhead(1, max_queue=2)
    pipeline = Pipeline([Concurrency(bulkhead)], clock=clock)
    release = asyncio.Event()

    async def hold() -> str:
        await release.wait()
        return "held"

    async def quick() -> str:
        return "quick"

    holder = asyncio.create_task(pipeline.acall(hold))
    await asyncio.sleep(0)
    waiter = asyncio.create_task(pipeline.acall(quick))
    second = asyncio.create_task(pipeline.acall(quick))
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.sleep(0)
    release.set()
    assert await holder == "held"
    assert await second == "quick"
    assert bulkhead.in_use == 0 and bulkhead.queued == 0


@pytest.mark.asyncio
async def test_hedge_returns_the_first_success_and_cancels_the_rest() -> None:
    clock = ManualClock()
    events: list[PipelineEvent] = []
    pipeline = Pipeline([Hedge(delay=0.5, max_hedges=2)], clock=clock, on_event=events.append)
    calls = 0
    cancelled: list[int] = []

    async def first_hangs() -> str:
        nonlocal calls
        calls += 1
        me = calls
        if me == 1:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.append(me)
                raise
        return f"answer-{me}"

    assert await pipeline.acall(first_hangs) == "answer-2"
    await asyncio.sleep(0)
    assert cancelled == [1]
    assert [e.outcome for e in events if e.mechanism == "hedge"] == ["started", "won"]


@pytest.mark.asyncio
async def test_hedge_raises_the_last_error_when_all_fail() -> None:
    pipeline = Pipeline([Hedge(delay=0.5, max_hedges=1)], clock=ManualClock())
    calls = 0

    async def fails() -> Any:
        nonlocal calls
        calls += 1
        raise ConnectionError(f"down-{calls}")

    with pytest.raises(ConnectionError, match="down-2"):
        await pipeline.acall(fails)
    assert calls == 2


@pytest.mark.asyncio
async def test_a_waiter_cancelled_as_its_permit_arrives_passes_it_on_once() -> None:
    bulkhead = Bulkhead(1, max_queue=2)
    pipeline = Pipeline([Concurrency(bulkhead)], clock=ManualClock())
    release = asyncio.Event()
    tasks: dict[str, asyncio.Task[str]] = {}
    peak = 0

    async def hold() -> str:
        await release.wait()
        # Cancel the first waiter in the very step that hands it this permit: its future is
        # cancelled, its handler has not run yet.
        tasks["doomed"].cancel()
        return "held"

    async def quick() -> str:
        nonlocal peak
        peak = max(peak, bulkhead.in_use)
        return "quick"

    tasks["holder"] = asyncio.create_task(pipeline.acall(hold))
    await asyncio.sleep(0)
    tasks["doomed"] = asyncio.create_task(pipeline.acall(quick))
    tasks["second"] = asyncio.create_task(pipeline.acall(quick))
    await asyncio.sleep(0)
    release.set()
    assert await tasks["holder"] == "held"
    assert await tasks["second"] == "quick"
    with pytest.raises(asyncio.CancelledError):
        await tasks["doomed"]
    assert bulkhead.in_use == 0 and bulkhead.queued == 0 and peak == 1


@pytest.mark.asyncio
async def test_a_cancelled_probe_does_not_wedge_a_half_open_breaker() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(
        BreakerConfig(window_size=2, minimum_calls=2, open_duration=1.0, half_open_probes=1)
    )
    pipeline = Pipeline([Breaker(breaker)], clock=clock)
    breaker.force_open(0.0)
    clock.advance(1.0)

    async def hang() -> None:
        await asyncio.Event().wait()

    probe = asyncio.create_task(pipeline.acall(hang))
    await asyncio.sleep(0)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe

    # The cancellation counted neither way: the breaker is still half-open, its probe permit
    # came back, and the next call is the probe that decides.
    assert breaker.state(clock.now()) is BreakerState.HALF_OPEN

    async def down() -> str:
        raise ConnectionError

    with pytest.raises(ConnectionError):
        await pipeline.acall(down)
    assert breaker.state(clock.now()) is BreakerState.OPEN


@pytest.mark.asyncio
async def test_async_rate_limit_reserves_spaced_permits_for_concurrent_tasks() -> None:
    from stormproof.testing import instant_sleeps

    clock = ManualClock()
    pipeline = Pipeline([RateLimit(TokenBucket(rate=2.0, burst=1.0, max_wait=5.0))], clock=clock)
    done: list[int] = []

    async def job(i: int) -> None:
        done.append(i)

    # Four tasks arrive together at t = 0: one token now, then one every 0.5 s, so the three
    # others are told to wait 0.5, 1.0 and 1.5 s (their permits are reserved, not re-asked).
    with instant_sleeps() as waits:
        await asyncio.gather(*(pipeline.acall(job, i) for i in range(4)))
    assert sorted(waits) == [0.5, 1.0, 1.5]
    assert sorted(done) == [0, 1, 2, 3]
    with instant_sleeps():
        tight = Pipeline([RateLimit(TokenBucket(rate=2.0, burst=1.0, max_wait=1.0))], clock=clock)
        results = await asyncio.gather(
            *(tight.acall(job, i) for i in range(4)), return_exceptions=True
        )
    assert sum(isinstance(r, RateLimited) for r in results) == 1  # the 1.5 s wait is too long
