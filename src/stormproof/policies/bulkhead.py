"""Bulkheads: a bound on concurrent calls, optionally per key, with a bounded wait queue.

The 2011 report describes the failure a bulkhead prevents: the EBS control plane had "a regional
pool of available threads", calls for one zone's degraded cluster held them for a long time-out,
"and when these threads were completely filled up ... the EBS control plane had no ability to
service API requests and began to fail API requests for other Availability Zones". A
:class:`KeyedBulkhead` keyed by availability zone gives each zone its own limit, so one zone's
slow calls cannot take the others' permits.

Sans-IO: ``acquire(now)`` returns :data:`ADMITTED`, a :class:`Queued` ticket or a
:class:`Full` refusal; ``release(now)`` returns the queued ticket that now holds the freed permit
(the driver wakes that waiter), and ``cancel(ticket)`` withdraws a waiter that gave up.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from stormproof._validate import int_at_least
from stormproof.errors import ConfigError, StormproofError

__all__ = ["ADMITTED", "Admitted", "Bulkhead", "BulkheadFull", "Full", "KeyedBulkhead", "Queued"]


@dataclass(frozen=True, slots=True)
class Admitted:
    """Decision: run now; call ``release`` when done."""


#: The one :class:`Admitted` instance.
ADMITTED = Admitted()


@dataclass(slots=True, eq=False)
class Queued:
    """Decision: wait in line; the ticket is returned by a later ``release`` when admitted.

    ``waiter`` is free for the driver to attach what wakes the caller (an asyncio future).
    """

    enqueued_at: float
    key: Hashable = None
    admitted: bool = field(default=False)
    waiter: Any = field(default=None, repr=False)


@dataclass(slots=True)
class Full:
    """Decision: refused, every permit and queue slot is taken (``reason`` says which limit)."""

    reason: str = "full"


class BulkheadFull(StormproofError):
    """Raised by drivers when a bulkhead refuses a call."""


class Bulkhead:
    """At most ``max_concurrent`` calls at once, and at most ``max_queue`` waiting (FIFO).

    ``max_queue=0`` (the default) refuses at once when full: waiting for a permit mostly turns an
    overload into latency, which callers then time out and retry.
    """

    __slots__ = ("_queue", "in_use", "max_concurrent", "max_queue", "rejected")

    def __init__(self, max_concurrent: int, *, max_queue: int = 0) -> None:
        int_at_least("max_concurrent", max_concurrent, 1)
        int_at_least("max_queue", max_queue, 0)
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self.in_use = 0
        self.rejected = 0
        self._queue: deque[Queued] = deque()

    @property
    def queued(self) -> int:
        """Waiters in line."""
        return len(self._queue)

    def acquire(self, now: float, key: Hashable = None) -> Admitted | Queued | Full:
        """Take a permit, join the queue, or be refused."""
        if self.in_use < self.max_concurrent:
            self.in_use += 1
            return ADMITTED
        if len(self._queue) < self.max_queue:
            ticket = Queued(now, key)
            self._queue.append(ticket)
            return ticket
        self.rejected += 1
        return Full("max_concurrent and max_queue reached" if self.max_queue else "max_concurrent")

    def release(self, now: float) -> Queued | None:
        """Return a permit; returns the waiter that now holds it, if any."""
        if self.in_use <= 0:
            raise StormproofError("bulkhead released more often than acquired")
        if self._queue:
            ticket = self._queue.popleft()
            ticket.admitted = True
            return ticket
        self.in_use -= 1
        return None

    def cancel(self, ticket: Queued) -> bool:
        """Withdraw a waiter (its wait timed out); ``False`` if it was already admitted."""
        if ticket.admitted:
            return False
        try:
            self._queue.remove(ticket)
        except ValueError:
            return False
        return True


class KeyedBulkhead:
    """A :class:`Bulkhead` per key (zone, tenant, dependency), created on demand.

    The number of keys is bounded by ``max_keys`` (default 1,000): a new key beyond it takes the
    place of the least recently used *idle* key (no call in flight or waiting); if every key is
    busy, the call is refused with ``Full("max_keys")`` rather than growing without bound.
    """

    __slots__ = ("_bulkheads", "max_concurrent", "max_keys", "max_queue")

    def __init__(self, max_concurrent: int, *, max_queue: int = 0, max_keys: int = 1_000) -> None:
        int_at_least("max_concurrent", max_concurrent, 1)
        int_at_least("max_queue", max_queue, 0)
        int_at_least("max_keys", max_keys, 1)
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self.max_keys = max_keys
        self._bulkheads: OrderedDict[Hashable, Bulkhead] = OrderedDict()

    def bulkhead(self, key: Hashable) -> Bulkhead | None:
        """The bulkhead of ``key``, created on demand; ``None`` if the key bound stops it."""
        bulkheads = self._bulkheads
        bulkhead = bulkheads.get(key)
        if bulkhead is not None:
            bulkheads.move_to_end(key)
            return bulkhead
        if len(bulkheads) >= self.max_keys:
            idle = next(
                (k for k, b in bulkheads.items() if b.in_use == 0 and not b.queued), _NO_KEY
            )
            if idle is _NO_KEY:
                return None
            del bulkheads[idle]
        bulkhead = bulkheads[key] = Bulkhead(self.max_concurrent, max_queue=self.max_queue)
        return bulkhead

    def acquire(self, key: Hashable, now: float) -> Admitted | Queued | Full:
        """Take a permit of ``key``'s bulkhead, queue, or be refused."""
        bulkhead = self.bulkhead(key)
        if bulkhead is None:
            return Full("max_keys")
        return bulkhead.acquire(now, key)

    def release(self, key: Hashable, now: float) -> Queued | None:
        """Return a permit of ``key``; returns the waiter now admitted, if any."""
        bulkhead = self._bulkheads.get(key)
        if bulkhead is None:
            raise ConfigError("key", "has no bulkhead: release without acquire", key)
        return bulkhead.release(now)

    def cancel(self, ticket: Queued) -> bool:
        """Withdraw a waiter of its key's queue."""
        bulkhead = self._bulkheads.get(ticket.key)
        return bulkhead.cancel(ticket) if bulkhead is not None else False

    def in_use(self, key: Hashable) -> int:
        """Permits of ``key`` in use (0 for an unknown key)."""
        bulkhead = self._bulkheads.get(key)
        return bulkhead.in_use if bulkhead is not None else 0

    def __len__(self) -> int:
        return len(self._bulkheads)


_NO_KEY: Hashable = object()
