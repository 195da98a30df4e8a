"""Velocity control: bounds on how fast automation may remove capacity, and a panic threshold.

In October 2025 NLB health checks flapped because new instances were put in service before
their network state had propagated; the checks, not the targets, were failing, yet automation
removed nodes from DNS and failed whole zones over, so "capacity was removed" until the remaining
healthy capacity could not carry the load (seed report, NLB section). The report's fix is a
"velocity control mechanism to limit the capacity a single NLB can remove when health check
failures cause AZ failover". Two mechanisms express it:

* :class:`VelocityLimiter` -- at most ``max_removed`` units, and at most ``max_fraction`` of the
  total, removed within any ``window`` seconds; requests beyond that are refused (the automation
  should alarm and wait, or a human decides);
* :class:`PanicThreshold` -- Envoy's rule: when fewer than ``threshold`` of the targets look
  healthy, the checks are more likely wrong than the targets, so treat every target as healthy.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

from stormproof._validate import finite_above, int_at_least
from stormproof.errors import ConfigError

__all__ = ["PanicThreshold", "VelocityLimiter"]


class VelocityLimiter:
    """Allow at most ``max_removed`` and ``max_fraction`` of capacity removed per ``window``.

    Give either bound or both (the tighter applies). ``request(now, count, total)`` returns how
    many of ``count`` removals may happen now, given ``total`` units of capacity, and books them;
    ``removed(now)`` tells how much is booked within the window.
    """

    __slots__ = ("_booked", "_events", "max_fraction", "max_removed", "refused", "window")

    def __init__(
        self,
        window: float,
        *,
        max_removed: int | None = None,
        max_fraction: float | None = None,
    ) -> None:
        finite_above("window", window, 0.0)
        if max_removed is None and max_fraction is None:
            raise ConfigError("max_removed", "give max_removed, max_fraction or both")
        if max_removed is not None:
            int_at_least("max_removed", max_removed, 0)
        if max_fraction is not None:
            finite_above("max_fraction", max_fraction, 0.0)
            if max_fraction > 1.0:
                raise ConfigError("max_fraction", "must be within (0, 1]", max_fraction)
        self.window = float(window)
        self.max_removed = max_removed
        self.max_fraction = max_fraction
        self._events: deque[tuple[float, int]] = deque()
        self._booked = 0
        self.refused = 0

    def _expire(self, now: float) -> None:
        events = self._events
        horizon = now - self.window
        while events and events[0][0] <= horizon:
            self._booked -= events.popleft()[1]

    def removed(self, now: float) -> int:
        """Units removed within the last ``window`` seconds."""
        self._expire(now)
        return self._booked

    def allowance(self, now: float, total: int) -> int:
        """How many more units may be removed now out of ``total``."""
        self._expire(now)
        limit = math.inf
        if self.max_removed is not None:
            limit = self.max_removed
        if self.max_fraction is not None:
            limit = min(limit, math.floor(self.max_fraction * total))
        return max(0, int(min(limit, total)) - self._booked)

    def request(self, now: float, count: int, total: int) -> int:
        """Book up to ``count`` removals out of ``total``; returns how many are allowed."""
        int_at_least("count", count, 0)
        int_at_least("total", total, 0)
        allowed = min(count, self.allowance(now, total))
        if allowed:
            self._events.append((now, allowed))
            self._booked += allowed
        self.refused += count - allowed
        return allowed


class PanicThreshold:
    """Treat every target as healthy when fewer than ``threshold`` of them pass their checks.

    Envoy's default panic threshold is 50 %: below it, routing only to the few "healthy" hosts
    would overload them, and a mass failure of checks more often means the checks are wrong.
    """

    __slots__ = ("panics", "threshold")

    def __init__(self, threshold: float = 0.5) -> None:
        finite_above("threshold", threshold, 0.0)
        if threshold > 1.0:
            raise ConfigError("threshold", "must be within (0, 1]", threshold)
        self.threshold = float(threshold)
        self.panics = 0

    def in_panic(self, healthy: int, total: int) -> bool:
        """Whether ``healthy`` out of ``total`` is below the threshold."""
        return total > 0 and healthy < self.threshold * total

    def effective(self, health: Sequence[bool]) -> list[bool]:
        """The health to route by: as checked, or all healthy when in panic."""
        if self.in_panic(sum(health), len(health)):
            self.panics += 1
            return [True] * len(health)
        return list(health)
