"""Network links: latency from a distribution, random loss, and partitions on a schedule.

A partition is the trigger of both 2011 and 2025 incidents in their simplest form: for a window
of time, messages between two groups do not arrive. A :class:`Link` drops everything sent while a
partition is active, and a loss rate drops a random fraction the rest of the time. A dropped
message simply never arrives: the sender finds out only through its own timeout, as in reality.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable
from typing import Any

from stormproof._validate import finite_at_least
from stormproof.errors import ConfigError
from stormproof.sim.kernel import Simulation

__all__ = ["Link"]

Latency = Callable[[random.Random], float]


class Link:
    """A one-way link that delivers ``callback(*args)`` after a latency, unless it drops it.

    Args:
        sim: the simulation.
        latency: draws a one-way latency (seconds) from the link's random stream.
        loss: probability that a message is lost, in ``[0, 1)``.
        name: names the link's random streams (``<name>.latency``, ``<name>.loss``).

    Counters: ``sent``, ``delivered`` (scheduled for delivery), ``lost``, ``partitioned``.
    """

    __slots__ = (
        "_ends",
        "_latency_rng",
        "_loss_rng",
        "_starts",
        "delivered",
        "latency",
        "loss",
        "lost",
        "name",
        "partitioned",
        "sent",
        "sim",
    )

    def __init__(
        self, sim: Simulation, latency: Latency, *, loss: float = 0.0, name: str = "link"
    ) -> None:
        if not callable(latency):
            raise ConfigError("latency", "must be callable(rng) -> seconds", latency)
        finite_at_least("loss", loss, 0.0)
        if loss >= 1.0:
            raise ConfigError("loss", "must be < 1 (a link that loses everything is a partition)")
        self.sim = sim
        self.latency = latency
        self.loss = float(loss)
        self.name = name
        self._latency_rng = sim.rng(f"{name}.latency")
        self._loss_rng = sim.rng(f"{name}.loss")
        self._starts: list[float] = []
        self._ends: list[float] = []
        self.sent = self.delivered = self.lost = self.partitioned = 0

    def partition(self, start: float, end: float) -> None:
        """Drop every message sent in ``[start, end)``; windows must not overlap."""
        finite_at_least("start", start, 0.0)
        if not end > start:
            raise ConfigError("end", f"must be > start ({start:g})", end)
        index = bisect.bisect_left(self._starts, start)
        if (index > 0 and self._ends[index - 1] > start) or (
            index < len(self._starts) and self._starts[index] < end
        ):
            raise ConfigError("start", "partition windows must not overlap", (start, end))
        self._starts.insert(index, start)
        self._ends.insert(index, end)

    def is_partitioned(self, time: float) -> bool:
        """Whether a partition is active at ``time``."""
        index = bisect.bisect_right(self._starts, time) - 1
        return index >= 0 and time < self._ends[index]

    def send(self, callback: Callable[..., Any], *args: Any) -> bool:
        """Send a message; ``True`` if it will be delivered (after the drawn latency)."""
        self.sent += 1
        if self._starts and self.is_partitioned(self.sim.now()):
            self.partitioned += 1
            return False
        if self.loss and self._loss_rng.random() < self.loss:
            self.lost += 1
            return False
        self.delivered += 1
        self.sim.schedule(self.latency(self._latency_rng), callback, *args)
        return True
