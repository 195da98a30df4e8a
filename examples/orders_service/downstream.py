"""A flaky in-process downstream (an inventory service) with seeded failures and latency."""

from __future__ import annotations

import asyncio
import random
from typing import Any


class DownstreamError(Exception):
    """The downstream refused or failed the call."""


class FlakyDownstream:
    """Reserves stock for an order; fails ``failure_rate`` of calls and slows down under load.

    Each call waits an exponential latency with mean ``latency * (1 + in_flight / capacity)``
    and then fails with probability ``failure_rate``. The draws come from one
    ``random.Random(seed)``: the sequence of outcomes is fixed by the seed; which order gets
    which draw depends on the order the calls arrive in.
    """

    def __init__(self, *, failure_rate: float, latency: float, capacity: int, seed: int) -> None:
        self.failure_rate = failure_rate
        self.latency = latency
        self.capacity = capacity
        self._rng = random.Random(seed)
        self.in_flight = 0
        self.calls = 0
        self.failures = 0

    async def reserve(self, event: dict[str, Any]) -> dict[str, Any]:
        """Reserve the order's items; returns a reservation id or raises DownstreamError."""
        self.calls += 1
        self.in_flight += 1
        try:
            mean = self.latency * (1.0 + self.in_flight / self.capacity)
            delay = self._rng.expovariate(1.0 / mean)
            fails = self._rng.random() < self.failure_rate
            await asyncio.sleep(delay)
            if fails:
                self.failures += 1
                raise DownstreamError("inventory: temporarily unavailable")
            return {"reservation": f"r-{event['order_id']}-{self.calls}"}
        finally:
            self.in_flight -= 1
