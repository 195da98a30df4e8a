"""Clocks: where policies and drivers get the time, and how drivers wait.

Policies never read a clock themselves; they are handed ``now``. Drivers read ``now()`` from a
clock and wait with its ``sleep``/``async_sleep``. Two clocks ship:

* :class:`WallClock` -- ``time.monotonic`` and real sleeps, for production.
* :class:`ManualClock` -- time moves only when a test (or a driver's sleep) advances it, so retry
  schedules can be asserted exactly and tests never wait.

The simulator provides a third, virtual clock with the same ``now()``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from stormproof.errors import ConfigError

if TYPE_CHECKING:
    import asyncio

# asyncio is imported inside the async methods: it costs ~50 ms to import, and sync users of
# stormproof should not pay for it.

__all__ = ["Clock", "ManualClock", "SleepingClock", "WallClock"]


@runtime_checkable
class Clock(Protocol):
    """Anything that tells monotonic time in seconds."""

    def now(self) -> float:
        """Return the current time in seconds; never decreases."""
        ...


@runtime_checkable
class SleepingClock(Clock, Protocol):
    """A clock the drivers can also wait on."""

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for ``seconds``."""
        ...

    async def async_sleep(self, seconds: float) -> None:
        """Suspend the calling task for ``seconds``."""
        ...

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[asyncio.Timeout]:
        """An ``async with`` block that is cancelled with ``TimeoutError`` after ``seconds``.

        It yields the ``asyncio.Timeout`` whose ``expired()`` tells a timeout of this block
        apart from a ``TimeoutError`` raised inside it.
        """
        ...


class WallClock:
    """The real monotonic clock (``time.monotonic``) with real sleeps."""

    __slots__ = ()

    def now(self) -> float:
        """Return ``time.monotonic()``."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """Sleep with ``time.sleep``."""
        time.sleep(seconds)

    async def async_sleep(self, seconds: float) -> None:
        """Sleep with ``asyncio.sleep``."""
        import asyncio

        await asyncio.sleep(seconds)

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[asyncio.Timeout]:
        """``asyncio.timeout(seconds)`` (the loop clock is monotonic, like this one)."""
        import asyncio

        return asyncio.timeout(seconds)

    def __repr__(self) -> str:
        return "WallClock()"


class ManualClock:
    """A clock that only moves when told to; sleeping on it advances it instantly.

    A driver that sleeps on a ``ManualClock`` returns at once with the clock moved forward by the
    requested amount, so a test sees the exact retry schedule in ``clock.now()`` and in
    :attr:`sleeps`, without waiting.

    Sleeps are sequential time: two asyncio tasks that sleep 1 s each at the same moment move the
    clock by 2 s, not 1 s. For concurrent tasks, assert on the requested delays with
    :func:`stormproof.testing.instant_sleeps` (which does not move time) or model them in the
    simulator, whose virtual time handles concurrency.

    :meth:`timeout` blocks expire when the manual time reaches them, which happens inside
    :meth:`advance`; advancing past an active timeout must then happen on the event loop that
    runs the block (from a test coroutine, or through :meth:`async_sleep`).
    """

    __slots__ = ("_now", "_timers", "sleeps")

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._timers: list[tuple[float, asyncio.Timeout]] = []
        #: Every sleep requested through this clock, in order (seconds).
        self.sleeps: list[float] = []

    def now(self) -> float:
        """Return the current manual time."""
        return self._now

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` (must be >= 0) and return the new time."""
        if seconds < 0:
            raise ConfigError("seconds", "must be >= 0: a monotonic clock cannot go back", seconds)
        self._now += seconds
        if self._timers:
            self._fire_timers()
        return self._now

    def _fire_timers(self) -> None:
        due = [entry for entry in self._timers if entry[0] <= self._now]
        if due:
            self._timers = [entry for entry in self._timers if entry[0] > self._now]
            for _, block in due:
                # Rescheduling to the past makes asyncio cancel the block on its next iteration,
                # with the same TimeoutError semantics as a real timeout.
                block.reschedule(-1.0)

    @asynccontextmanager
    async def _timeout(self, seconds: float) -> AsyncIterator[asyncio.Timeout]:
        import asyncio

        async with asyncio.timeout(None) as block:
            entry = (self._now + seconds, block)
            if seconds <= 0:
                block.reschedule(-1.0)
            else:
                self._timers.append(entry)
            try:
                yield block
            finally:
                if entry in self._timers:
                    self._timers.remove(entry)

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[asyncio.Timeout]:
        """An ``async with`` block cancelled with ``TimeoutError`` once manual time passes it."""
        return self._timeout(seconds)

    def sleep(self, seconds: float) -> None:
        """Record the sleep and advance time by it, returning immediately."""
        self.sleeps.append(seconds)
        self.advance(seconds)

    async def async_sleep(self, seconds: float) -> None:
        """Record the sleep, advance time and yield once to the event loop."""
        import asyncio

        self.sleeps.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"ManualClock(now={self._now!r})"
