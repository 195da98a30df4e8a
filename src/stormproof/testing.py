"""Helpers for users' tests: make retry sleeps instant without changing any decision.

    from stormproof.testing import instant_sleeps

    def test_my_client_retries():
        with instant_sleeps() as sleeps:
            my_client.get("/flaky")        # decorated with @stormproof.retry(...)
        assert len(sleeps) == 2            # it retried twice; the test did not wait

The switch lives in a ``contextvars.ContextVar``: it covers the current thread and the asyncio
tasks started inside the block, and nothing else, so parallel tests do not affect each other.
Policies still compute the same delays from the same random source; only the waiting is skipped.
For exact control of time (deadlines, budgets that refill) drive the code with a
:class:`stormproof.clock.ManualClock` instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from stormproof.run._common import INSTANT_SLEEPS

__all__ = ["instant_sleeps"]


@contextmanager
def instant_sleeps() -> Iterator[list[float]]:
    """Within the block, retry drivers record each delay in the yielded list instead of sleeping."""
    recorded: list[float] = []
    token = INSTANT_SLEEPS.set(recorded)
    try:
        yield recorded
    finally:
        INSTANT_SLEEPS.reset(token)
