"""Tests of stormproof.clock: ManualClock and WallClock (never sleeping for real)."""

import asyncio
import time

import pytest

from stormproof import ConfigError, ManualClock, WallClock
from stormproof.clock import Clock, SleepingClock

# --- ManualClock: time ---------------------------------------------------------------------


def test_manual_clock_starts_where_told_and_only_moves_when_advanced() -> None:
    assert ManualClock().now() == 0.0
    clock = ManualClock(start=12.5)
    assert clock.now() == 12.5
    assert clock.now() == 12.5
    assert clock.advance(2.5) == 15.0
    assert clock.now() == 15.0
    assert clock.advance(0) == 15.0
    assert clock.sleeps == []
    assert repr(clock) == "ManualClock(now=15.0)"


@pytest.mark.parametrize("seconds", [-1.0, -1e-9])
def test_advance_rejects_negative_values(seconds: float) -> None:
    clock = ManualClock(start=3.0)
    with pytest.raises(ConfigError) as excinfo:
        clock.advance(seconds)
    assert excinfo.value.field == "seconds"
    assert excinfo.value.value == seconds
    assert isinstance(excinfo.value, ValueError)
    assert clock.now() == 3.0


def test_sleep_records_and_advances_instantly() -> None:
    clock = ManualClock()
    started = time.monotonic()
    clock.sleep(1000.0)
    clock.sleep(0.25)
    assert time.monotonic() - started < 1.0
    assert clock.sleeps == [1000.0, 0.25]
    assert clock.now() == 1000.25


@pytest.mark.asyncio
async def test_async_sleep_records_advances_and_yields_to_the_loop() -> None:
    clock = ManualClock(start=1.0)
    ran: list[float] = []

    async def other() -> None:
        ran.append(clock.now())

    task = asyncio.create_task(other())
    await clock.async_sleep(3600.0)
    assert ran == [3601.0]  # the other task ran during the yield, after the advance
    assert clock.sleeps == [3600.0]
    assert clock.now() == 3601.0
    await task


def test_clocks_satisfy_the_protocols() -> None:
    for clock in (ManualClock(), WallClock()):
        assert isinstance(clock, Clock)
        assert isinstance(clock, SleepingClock)
    assert not isinstance(object(), SleepingClock)


# --- ManualClock: timeouts -----------------------------------------------------------------


async def _yield(times: int = 5) -> None:
    for _ in range(times):
        await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_timeout_expires_exactly_when_time_reaches_it_not_before() -> None:
    clock = ManualClock(start=10.0)
    reached: list[str] = []
    with pytest.raises(TimeoutError):
        async with clock.timeout(5.0) as block:
            clock.advance(4.5)
            await _yield()
            reached.append("before")
            assert not block.expired()
            clock.advance(0.5)  # now == 15.0, the timeout's time
            await _yield()
            reached.append("after")
    assert reached == ["before"]
    assert block.expired()
    assert clock.now() == 15.0


@pytest.mark.asyncio
async def test_timeout_expires_when_advanced_past_it_in_one_step() -> None:
    clock = ManualClock()
    with pytest.raises(TimeoutError):
        async with clock.timeout(1.0) as block:
            await clock.async_sleep(100.0)
            pytest.fail("the block should have been cancelled")
    assert block.expired()


@pytest.mark.asyncio
async def test_timeout_ignores_real_time_and_ends_normally() -> None:
    clock = ManualClock()
    async with clock.timeout(1e-9) as block:
        await _yield(20)
        clock.advance(1e-10)
        await _yield()
    assert not block.expired()
    # Advancing after the block ended does not touch it any more.
    clock.advance(100.0)
    await _yield()
    assert not block.expired()


@pytest.mark.parametrize("seconds", [0.0, -1.0])
@pytest.mark.asyncio
async def test_timeout_of_zero_or_less_expires_at_the_first_await(seconds: float) -> None:
    clock = ManualClock()
    steps: list[int] = []
    with pytest.raises(TimeoutError):
        async with clock.timeout(seconds) as block:
            steps.append(1)
            await asyncio.sleep(0)
            steps.append(2)
    assert steps == [1]
    assert block.expired()


@pytest.mark.asyncio
async def test_nested_timeouts_expire_independently() -> None:
    clock = ManualClock()
    async with clock.timeout(10.0) as outer:
        with pytest.raises(TimeoutError):
            async with clock.timeout(2.0) as inner:
                await clock.async_sleep(3.0)
        assert inner.expired()
        assert not outer.expired()
        await clock.async_sleep(6.0)  # now 9 < 10
        await _yield()
    assert not outer.expired()


@pytest.mark.asyncio
async def test_timeout_error_from_the_body_is_not_an_expiry() -> None:
    clock = ManualClock()
    with pytest.raises(TimeoutError, match="mine"):
        async with clock.timeout(5.0) as block:
            raise TimeoutError("mine")
    assert not block.expired()


@pytest.mark.asyncio
async def test_timeouts_in_two_tasks_expire_in_order() -> None:
    clock = ManualClock()
    finished: list[str] = []

    async def guarded(name: str, seconds: float) -> None:
        try:
            async with clock.timeout(seconds):
                await asyncio.Event().wait()
        except TimeoutError:
            finished.append(f"{name}@{clock.now():g}")

    tasks = [asyncio.create_task(guarded("a", 3.0)), asyncio.create_task(guarded("b", 6.0))]
    await _yield()
    clock.advance(3.0)
    await _yield()
    assert finished == ["a@3"]
    clock.advance(2.0)
    await _yield()
    assert finished == ["a@3"]
    clock.advance(1.0)
    await asyncio.gather(*tasks)
    assert finished == ["a@3", "b@6"]


# --- WallClock -----------------------------------------------------------------------------


def test_wall_clock_is_monotonic_and_tracks_time_monotonic() -> None:
    clock = WallClock()
    before = time.monotonic()
    readings = [clock.now() for _ in range(1000)]
    after = time.monotonic()
    assert readings == sorted(readings)
    assert before <= readings[0]
    assert readings[-1] <= after
    assert repr(clock) == "WallClock()"


def test_wall_clock_zero_sleep_returns() -> None:
    clock = WallClock()
    started = clock.now()
    clock.sleep(0)
    assert clock.now() - started < 1.0


@pytest.mark.asyncio
async def test_wall_clock_async_sleep_zero_and_timeout() -> None:
    clock = WallClock()
    await clock.async_sleep(0)
    async with clock.timeout(3600.0) as block:
        await asyncio.sleep(0)
    assert not block.expired()
    with pytest.raises(TimeoutError):
        async with clock.timeout(0) as expired_block:
            await asyncio.sleep(0)
    assert expired_block.expired()
