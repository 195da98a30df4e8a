"""Counts over a sliding time window, kept as a ring of equal time slices.

:class:`~stormproof.policies.budget.RatioBudget` (requests and retries) and
:class:`~stormproof.policies.admission.AdaptiveThrottle` (requests and accepts) both need "how
many of each over the last ``span`` seconds", on every call of a hot path. A count is booked
into the slice its time falls in and forgotten when that slice leaves the window, so a count is
forgotten between ``span - span / slices`` and ``span`` seconds after it was made; running
totals make reading them free.

Owners validate their own parameters (so that errors name their fields) and hold any lock.
"""

from __future__ import annotations

import math

__all__ = ["SlicedCounts"]


class SlicedCounts:
    """``counters`` running counts over the last ``slices`` slices of ``span / slices`` seconds.

    Slice ``g`` covers ``[g * width, (g + 1) * width)``. :meth:`advance` moves the window to a
    time, zeroing the slices that left it, and returns the ring index of the current slice. The
    owner then books a count of counter ``c`` at that index into both ``rings[c]`` and
    ``totals[c]``, so ``totals[c]`` is always the sum of ``rings[c]``: the count over the window
    as of the latest time seen. Owners on hot paths keep references to these lists (they are
    never replaced) and do the two increments inline, which costs no call.

    A time earlier than the newest seen (clocks handed to a sans-IO policy may step back a
    little, and threads sharing a clock can interleave) is booked into the newest slice rather
    than rewriting history.
    """

    __slots__ = ("_boundary", "_head", "_index", "rings", "slices", "totals", "width")

    def __init__(self, span: float, slices: int, counters: int) -> None:
        self.slices = slices
        self.width = span / slices
        #: Per counter, its counts per slice, indexed by :meth:`advance`'s result.
        self.rings = tuple([0] * slices for _ in range(counters))
        #: Per counter, the sum of its ring.
        self.totals = [0] * counters
        self._head: int | None = None  # number of the newest slice seen
        self._boundary = -math.inf  # where the newest slice ends
        self._index = 0  # ring index of the newest slice

    def advance(self, now: float) -> int:
        """Move the window to ``now``, forgetting the slices that left it; return the index."""
        if now < self._boundary:
            # Still inside the newest slice -- the common case, with no division -- or earlier.
            return self._index
        number = int(now // self.width)
        head = self._head
        slices = self.slices
        if head is not None:
            if number <= head:
                # Rounding can put ``now`` at the boundary yet still in the newest slice.
                return self._index
            totals = self.totals
            if number - head >= slices:
                for counter, ring in enumerate(self.rings):
                    ring[:] = [0] * slices
                    totals[counter] = 0
            else:
                for counter, ring in enumerate(self.rings):
                    for step in range(head + 1, number + 1):
                        index = step % slices
                        totals[counter] -= ring[index]
                        ring[index] = 0
        self._head = number
        self._boundary = (number + 1) * self.width
        self._index = index = number % slices
        return index
