"""Tests of stormproof.testing.instant_sleeps: instant retries on the wall clock, scoped."""

import asyncio
import random
import threading
import time

import pytest

import stormproof
from stormproof import AsyncRetrying, ManualClock, RetryError, Retrying, RetryPolicy, WallClock
from stormproof.policies import Constant, Exponential, Jitter, NoBackoff
from stormproof.run._common import INSTANT_SLEEPS
from stormproof.testing import instant_sleeps

# A real sleep of this length would blow the test suite's time limit.
LONG = 100.0


def slow_policy(**options: object) -> RetryPolicy:
    return RetryPolicy(max_attempts=3, backoff=Constant(LONG), **options)  # type: ignore[arg-type]


class Flaky:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(self.calls)
        return "ok"


def test_wall_clock_retries_return_at_once_and_record_delays() -> None:
    retrying = Retrying(slow_policy(), clock=WallClock())
    fn = Flaky(2)
    started = time.monotonic()
    with instant_sleeps() as sleeps:
        assert retrying.call(fn) == "ok"
    assert time.monotonic() - started < 5.0
    assert sleeps == [LONG, LONG]
    assert fn.calls == 3


def test_decorated_function_and_block_form_record_delays() -> None:
    decorated = stormproof.retry(backoff=Constant(LONG), budget=None)(Flaky(1))
    retrying = Retrying(slow_policy())
    fn = Flaky(2)
    with instant_sleeps() as sleeps:
        assert decorated() == "ok"
        for attempt in retrying:
            with attempt:
                fn()
    assert sleeps == [LONG, LONG, LONG]


def test_exhaustion_still_raises_and_decisions_are_unchanged() -> None:
    policy = RetryPolicy(
        max_attempts=4,
        backoff=Exponential(base=50.0, factor=2.0, cap=500.0, jitter=Jitter.FULL),
        rng=random.Random(5),
    )
    with instant_sleeps() as sleeps, pytest.raises(RetryError) as excinfo:
        Retrying(policy).call(Flaky(10))
    assert excinfo.value.attempts == 4
    rng = random.Random(5)
    assert sleeps == pytest.approx([rng.random() * 50.0 * 2.0 ** (n - 1) for n in (1, 2, 3)])


def test_zero_delays_are_recorded_too() -> None:
    with instant_sleeps() as sleeps:
        Retrying(RetryPolicy(backoff=NoBackoff())).call(Flaky(2))
    assert sleeps == [0.0, 0.0]


def test_manual_clock_is_not_advanced_inside_the_block() -> None:
    clock = ManualClock()
    with instant_sleeps() as sleeps:
        Retrying(slow_policy(), clock=clock).call(Flaky(1))
    assert sleeps == [LONG]
    assert clock.sleeps == []
    assert clock.now() == 0.0


def test_switch_is_reset_after_the_block() -> None:
    assert INSTANT_SLEEPS.get() is None
    with instant_sleeps() as sleeps:
        assert INSTANT_SLEEPS.get() is sleeps
    assert INSTANT_SLEEPS.get() is None

    # Outside the block the driver sleeps on its clock again and the old list stays as it was.
    clock = ManualClock()
    Retrying(slow_policy(), clock=clock).call(Flaky(1))
    assert clock.sleeps == [LONG]
    assert sleeps == []


def test_switch_is_reset_when_the_block_raises() -> None:
    with pytest.raises(RetryError), instant_sleeps() as sleeps:
        Retrying(slow_policy()).call(Flaky(10))
    assert sleeps == [LONG, LONG]
    assert INSTANT_SLEEPS.get() is None


def test_nested_blocks_record_separately_and_restore_the_outer_one() -> None:
    with instant_sleeps() as outer:
        Retrying(slow_policy()).call(Flaky(1))
        with instant_sleeps() as inner:
            Retrying(slow_policy()).call(Flaky(2))
        assert INSTANT_SLEEPS.get() is outer
        Retrying(slow_policy()).call(Flaky(1))
    assert outer == [LONG, LONG]
    assert inner == [LONG, LONG]
    assert INSTANT_SLEEPS.get() is None


def test_other_threads_are_not_affected() -> None:
    clock = ManualClock()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            Retrying(slow_policy(), clock=clock).call(Flaky(2))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    with instant_sleeps() as sleeps:
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert errors == []
    assert sleeps == []
    assert clock.sleeps == [LONG, LONG]  # the thread slept on its own clock


@pytest.mark.asyncio
async def test_async_wall_clock_retries_return_at_once() -> None:
    calls = 0

    async def fetch() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        if calls < 3:
            raise ConnectionError
        return "ok"

    retrying = AsyncRetrying(slow_policy(), clock=WallClock())
    started = time.monotonic()
    with instant_sleeps() as sleeps:
        assert await retrying.call(fetch) == "ok"
        async for attempt in retrying:
            with attempt:
                if attempt.number == 1:
                    raise ConnectionError
    assert time.monotonic() - started < 5.0
    assert sleeps == [LONG, LONG, LONG]
    assert INSTANT_SLEEPS.get() is None


@pytest.mark.asyncio
async def test_async_tasks_started_inside_the_block_inherit_it_others_do_not() -> None:
    outside_clock = ManualClock()
    gate = asyncio.Event()

    async def flaky_after_gate(clock: ManualClock | None, failures: int) -> str:
        calls = 0

        async def fetch() -> str:
            nonlocal calls
            calls += 1
            await gate.wait()
            if calls <= failures:
                raise ConnectionError
            return "ok"

        return await AsyncRetrying(slow_policy(), clock=clock).call(fetch)

    # Created before the block: its context has no switch, so it sleeps on its manual clock.
    before = asyncio.create_task(flaky_after_gate(outside_clock, 1))
    with instant_sleeps() as sleeps:
        # Created inside the block (on the wall clock): its sleeps must be instant.
        inside = asyncio.create_task(flaky_after_gate(None, 2))
    gate.set()
    assert await asyncio.wait_for(inside, timeout=5.0) == "ok"
    assert await asyncio.wait_for(before, timeout=5.0) == "ok"
    assert sleeps == [LONG, LONG]
    assert outside_clock.sleeps == [LONG]
