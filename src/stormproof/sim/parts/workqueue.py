"""A work queue kept as batches: a hundred thousand queued items in a few hundred objects.

Control-plane backlogs (the 2025 DWFM lease queue, the Network Manager propagation backlog) hold
far more items than a per-item event model can afford, yet what matters about an item is only
when it arrived, what kind of work it is and whether its caller is still waiting. So the queue
holds :class:`WorkBatch` entries -- the items of one kind that arrived in one step -- and serves
them with a budget of *work units* per step, whole items at a time. :meth:`BatchQueue.serve`
returns what it did not spend; an owner carries that to its next step only while the queue still
holds items (the share of an item the step could not finish). Once the queue is empty the rest is
idle capacity, gone: banking it would let a host under light load serve a later surge faster
than its rate.

Deadlines are real :class:`~stormproof.policies.deadline.Deadline` objects. When a batch's
deadline passes, :meth:`BatchQueue.expire` marks its unserved items **stale**: their caller has
timed out (and, for retried work, queued the work again), but the queue does not know, so a
stale item still costs its full work when served -- the wasted work of congestive collapse.
Two of the policies that answer it are driven here:

* ``drop_expired=True`` -- deadline-aware serving: a batch whose deadline has passed is skipped
  at no cost (its caller has given up; gRPC and "Fail at Scale" propagate deadlines for this);
* ``lifo=AdaptiveLifo(...)`` -- Facebook's adaptive LIFO from :mod:`stormproof.policies.admission`:
  the CoDel it wraps is asked once per dequeued batch about the *oldest* batch (a batch counts as
  one CoDel item; a drop discards the whole batch), and the newest batch is served first while
  the queue stands.

A dropped or cleared batch (CoDel drop, host restart) leaves the queue silently: its live items'
callers learn only at their deadline, when :meth:`BatchQueue.expire` hands the batch back.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from stormproof._validate import finite_at_least
from stormproof.errors import ConfigError
from stormproof.policies.admission import AdaptiveLifo
from stormproof.policies.deadline import Deadline

__all__ = ["DONE", "DROPPED", "WASTED", "BatchQueue", "WorkBatch", "stochastic_round"]

#: Outcomes passed to a :meth:`BatchQueue.serve` callback.
DONE = 0  #: served before its deadline: useful work
WASTED = 1  #: served after its deadline: the work was done for a caller that had given up
DROPPED = 2  #: removed without being served (deadline-aware skip or CoDel drop): no work spent


def stochastic_round(value: float, rng: random.Random) -> int:
    """``floor(value)`` plus one with probability ``value - floor(value)``: unbiased, one draw."""
    whole = math.floor(value)
    return whole + (1 if rng.random() < value - whole else 0)


class WorkBatch:
    """Items of one ``kind`` that entered a queue at ``enqueued_at``.

    Attributes:
        count: items not yet served (live or stale).
        origin: when the work was first wanted (for latency that includes waiting upstream).
        deadline: when the callers give up, or ``None`` for work nobody times out.
        attempt: the retry attempt these items are (1 for first attempts).
        calls: per-item retry state the owner attaches (``RetryCall`` objects), or ``None``.
        stale: the deadline has passed (set by :meth:`BatchQueue.expire`).
        in_queue: still in the queue (false once served out, dropped or cleared).
    """

    __slots__ = (
        "attempt",
        "calls",
        "count",
        "deadline",
        "enqueued_at",
        "in_queue",
        "kind",
        "origin",
        "stale",
    )

    def __init__(
        self,
        enqueued_at: float,
        count: int,
        kind: int,
        *,
        origin: float | None = None,
        deadline: Deadline | None = None,
        attempt: int = 1,
        calls: list[Any] | None = None,
    ) -> None:
        self.enqueued_at = enqueued_at
        self.count = count
        self.kind = kind
        self.origin = enqueued_at if origin is None else origin
        self.deadline = deadline
        self.attempt = attempt
        self.calls = calls
        self.stale = False
        self.in_queue = False


class BatchQueue:
    """A queue of :class:`WorkBatch` entries served by work units; see the module docstring.

    Args:
        costs: work units one item of each kind costs, indexed by ``kind``.

    Attributes:
        length: items in the queue, stale ones included (what an admission policy sees).
        stale_items: items in the queue whose deadline has passed.
        units: work units the queued items would cost.
    """

    __slots__ = ("_deadlines", "_items", "costs", "length", "stale_items", "units")

    def __init__(self, costs: Sequence[float]) -> None:
        if not costs:
            raise ConfigError("costs", "needs the cost of at least one kind")
        for index, cost in enumerate(costs):
            finite_at_least(f"costs[{index}]", cost, 0.0)
        self.costs = tuple(float(cost) for cost in costs)
        self._items: deque[WorkBatch] = deque()
        self._deadlines: deque[WorkBatch] = deque()
        self.length = 0
        self.stale_items = 0
        self.units = 0.0

    def __len__(self) -> int:
        return len(self._items)

    def push(self, batch: WorkBatch) -> None:
        """Append ``batch`` (at the newest end); deadlines must not decrease between pushes."""
        if batch.count <= 0:
            return
        batch.in_queue = True
        self._items.append(batch)
        self.length += batch.count
        self.units += batch.count * self.costs[batch.kind]
        if batch.deadline is not None:
            self._deadlines.append(batch)

    def oldest(self) -> WorkBatch | None:
        """The batch at the oldest end, or ``None`` when empty."""
        return self._items[0] if self._items else None

    def expire(self, now: float) -> list[WorkBatch]:
        """Batches whose deadline has passed at ``now`` with items unserved, marked stale.

        Each batch is returned once. It may be in the queue (its items now stale) or out of it
        (dropped or cleared); either way ``count`` items' callers have just given up.
        """
        expired: list[WorkBatch] = []
        deadlines = self._deadlines
        while deadlines:
            batch = deadlines[0]
            deadline = batch.deadline
            assert deadline is not None
            if not deadline.expired(now):
                break
            deadlines.popleft()
            if batch.count > 0 and not batch.stale:
                batch.stale = True
                if batch.in_queue:
                    self.stale_items += batch.count
                expired.append(batch)
        return expired

    def _take(self, batch: WorkBatch, n: int) -> None:
        batch.count -= n
        self.length -= n
        self.units -= n * self.costs[batch.kind]
        if batch.stale:
            self.stale_items -= n
        if self.length == 0:
            self.units = 0.0  # no float residue on an empty queue

    def serve(
        self,
        now: float,
        budget: float,
        done: Callable[[WorkBatch, int, int], None],
        *,
        drop_expired: bool = False,
        lifo: AdaptiveLifo | None = None,
    ) -> float:
        """Spend up to ``budget`` work units at ``now``; returns the units left unspent.

        ``done(batch, n, outcome)`` is called for each served or dropped run of items, with
        ``outcome`` one of :data:`DONE`, :data:`WASTED` and :data:`DROPPED` (for a CoDel drop
        of a batch with live items, ``n`` is 0: those items are settled at their deadline).
        Serving stops when the next item costs more than what is left.
        """
        items = self._items
        costs = self.costs
        while items:
            if lifo is not None:
                head = items[0]
                if lifo.codel.on_dequeue(now, head.enqueued_at, len(items) == 1):
                    items.popleft()
                    head.in_queue = False
                    stale = head.count if head.stale else 0
                    if head.stale:
                        self._take(head, stale)
                    else:
                        self._leave(head)
                    done(head, stale, DROPPED)
                    continue
                newest = lifo.lifo(now)
                batch = items[-1] if newest else items[0]
            else:
                newest = False
                batch = items[0]
            if drop_expired and batch.deadline is not None and batch.deadline.expired(now):
                if newest:
                    items.pop()
                else:
                    items.popleft()
                batch.in_queue = False
                n = batch.count
                if batch.stale:
                    self._take(batch, n)
                    done(batch, n, DROPPED)
                else:  # expires at this instant, before expire() saw it: settled there
                    self._leave(batch)
                continue
            cost = costs[batch.kind]
            n = batch.count if cost == 0.0 else min(batch.count, int(budget / cost + 1e-9))
            if n <= 0:
                break
            budget -= n * cost
            outcome = WASTED if batch.stale else DONE
            self._take(batch, n)
            if batch.count == 0:
                if newest:
                    items.pop()
                else:
                    items.popleft()
                batch.in_queue = False
            done(batch, n, outcome)
        return max(budget, 0.0)

    def _leave(self, batch: WorkBatch) -> None:
        """Account for a live batch leaving the queue unserved (its items keep their count)."""
        self.length -= batch.count
        self.units -= batch.count * self.costs[batch.kind]
        if self.length == 0:
            self.units = 0.0

    def clear(self) -> list[WorkBatch]:
        """Empty the queue (a restart); returns the batches that were in it.

        Live items keep their count and deadline: their callers give up at the deadline, when
        :meth:`expire` returns the batch.
        """
        cleared = list(self._items)
        for batch in cleared:
            batch.in_queue = False
        self._items.clear()
        self.length = 0
        self.stale_items = 0
        self.units = 0.0
        return cleared
