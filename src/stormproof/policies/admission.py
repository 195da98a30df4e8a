"""Admission control: shed load before it turns into a queue that can never drain.

The 2025 us-east-1 report shows the failure this module exists for. After DynamoDB recovered,
EC2's DropletWorkflow Manager had so much lease work queued that "the work could not be completed
before they timed out. Additional work was queued to reattempt establishing the droplet lease. At
this point, DWFM had entered a state of congestive collapse". Recovery began when "engineers
throttled incoming work", and the stated fix is to "rate limit incoming work based on the size of
the waiting queue" (:class:`QueueLimit`, :class:`QueueRate`). Lambda, short of capacity, "throttled
Lambda Event Source Mappings and asynchronous invocations to prioritize latency-sensitive
synchronous invocations" (:class:`PriorityShedder`).

The other mechanisms are the published ones for the same problem:

* :class:`CoDel` -- Controlled Delay (Nichols & Jacobson, "Controlling Queue Delay", ACM Queue,
  2012; RFC 8289): drop from a queue whose *minimum* waiting time has stayed above a target for a
  whole interval, more often the longer it stays there.
* :class:`AdaptiveLifo` -- Facebook's adaptive LIFO ("Fail at Scale", Maurer, ACM Queue, 2015):
  serve the newest request first while a standing queue exists, since the oldest ones are the
  likeliest to belong to callers that have given up.
* :class:`AdaptiveThrottle` -- the client-side adaptive throttle of the Google SRE book (Beyer et
  al., 2016, ch. 21 "Handling Overload"): clients stop sending what the backend would reject
  anyway.

Decisions are plain booleans, like :meth:`CircuitBreaker.allow
<stormproof.policies.breaker.CircuitBreaker.allow>`: every ``admit``/``allow`` answers ``True`` to
let the work in and ``False`` to shed it. A shed carries no payload the caller needs (the reason
is the policy that answered), and a boolean keeps the hot path free of allocations. The one
question asked the other way round is :meth:`CoDel.on_dequeue`, which answers ``True`` when the
item should be *dropped*, as RFC 8289's ``ok_to_drop`` does.

All of it is sans-IO: no clock reads, no sleeps, no threads. Times are seconds on whatever clock
the driver uses; randomness comes from the ``random.Random`` the caller passes in.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol, runtime_checkable

from stormproof._validate import finite_above, finite_at_least, int_at_least
from stormproof.errors import ConfigError
from stormproof.policies._window import SlicedCounts
from stormproof.policies.ratelimit import GRANTED, TokenBucket

__all__ = [
    "AdaptiveLifo",
    "AdaptiveThrottle",
    "CoDel",
    "PriorityShedder",
    "QueueAdmission",
    "QueueLimit",
    "QueueRate",
]


# -- queue-length admission ---------------------------------------------------------------------


@runtime_checkable
class QueueAdmission(Protocol):
    """What a queue asks before it accepts an item: ``True`` to enqueue it, ``False`` to shed."""

    def admit(self, now: float, queue_length: int) -> bool:
        """Whether to accept one more item while ``queue_length`` items wait."""
        ...


@dataclass(frozen=True, slots=True)
class QueueLimit:
    """Accept work only while fewer than ``max_queue`` items wait: the DWFM fix in one line.

    ``admit(now, queue_length)`` is ``queue_length < max_queue``, where ``queue_length`` counts
    the items already waiting (not the one being offered), so an admitted item never makes the
    queue longer than ``max_queue``. A bounded queue is what keeps an overload from becoming
    congestive collapse: past the bound, new work fails fast and callers learn it at once,
    instead of waiting until their work times out in the queue and is queued again.

    Stateless and immutable; ``now`` is taken only so that every admission policy is asked the
    same way (:class:`QueueAdmission`).
    """

    max_queue: int

    def __post_init__(self) -> None:
        int_at_least("max_queue", self.max_queue, 1)

    def admit(self, now: float, queue_length: int) -> bool:
        """``True`` while ``queue_length < max_queue``."""
        return queue_length < self.max_queue


class QueueRate:
    """A queue bound plus a rate limit that applies only once a queue has formed.

    * ``queue_length < soft_queue`` -- admitted, no token taken: a short queue is healthy and
      throttling it would only cost throughput;
    * ``soft_queue <= queue_length < max_queue`` -- admitted only if a token bucket of ``rate``
      tokens per second and ``burst`` tokens (one per item) has one, so the queue grows at most
      ``burst + rate * t`` items over any ``t`` seconds spent in this zone;
    * ``queue_length >= max_queue`` -- shed.

    This is "rate limit incoming work based on the size of the waiting queue" from the 2025
    report: full speed while the queue is short, a trickle while it is long, nothing when full.
    Pick ``rate`` at or below the service's drain rate so that a long queue shrinks.

    Args:
        max_queue: hard bound on waiting items (>= 1).
        rate: items per second admitted in the throttled zone (> 0).
        soft_queue: where the throttled zone starts, ``0 <= soft_queue <= max_queue``; default
            ``max_queue // 2`` (assumed: half the queue leaves room for a burst above it).
            ``soft_queue == max_queue`` turns the rate limit off; ``0`` applies it always.
        burst: bucket size in items (>= 1); default 1, so the throttled zone never admits two
            items closer together than ``1 / rate`` seconds.

    The bucket refills whether or not the queue is long, so the first items after a queue forms
    meet a full bucket.
    """

    __slots__ = ("_bucket", "burst", "max_queue", "rate", "soft_queue")

    def __init__(
        self,
        max_queue: int,
        rate: float,
        *,
        soft_queue: int | None = None,
        burst: float = 1.0,
    ) -> None:
        int_at_least("max_queue", max_queue, 1)
        if soft_queue is None:
            soft_queue = max_queue // 2
        int_at_least("soft_queue", soft_queue, 0)
        if soft_queue > max_queue:
            raise ConfigError("soft_queue", f"must be <= max_queue ({max_queue})", soft_queue)
        finite_above("rate", rate, 0.0)
        # Each admission costs one token; a bucket smaller than one would refuse everything.
        finite_at_least("burst", burst, 1.0)
        self.max_queue = max_queue
        self.soft_queue = soft_queue
        self.rate = float(rate)
        self.burst = float(burst)
        self._bucket = TokenBucket(self.rate, self.burst)

    def admit(self, now: float, queue_length: int) -> bool:
        """Apply the three zones of the class docstring; a token is taken only when admitted."""
        if queue_length >= self.max_queue:
            return False
        if queue_length < self.soft_queue:
            return True
        return self._bucket.acquire(now) is GRANTED

    def __repr__(self) -> str:
        return (
            f"QueueRate(max_queue={self.max_queue}, rate={self.rate:g}, "
            f"soft_queue={self.soft_queue}, burst={self.burst:g})"
        )


# -- CoDel and adaptive LIFO --------------------------------------------------------------------


class CoDel:
    """Controlled Delay (RFC 8289), as a sans-IO decision asked once per dequeued item.

    Call :meth:`on_dequeue` each time an item leaves the queue. When it returns ``True``, drop
    that item (fail it with an overload error) and dequeue the next one, asking again at the
    same ``now``: during heavy overload several items may be dropped at one instant, as in the
    RFC's ``while`` loop.

    The rules, RFC 8289 section 5 restated for items instead of packets:

    * the sojourn time is ``now - enqueued_at``. An item below ``target``, or one that leaves the
      queue empty, shows there is no standing queue: ``first_above_time`` is cleared. (The RFC's
      "backlog no more than one MTU" test; a queue that empties is not a standing queue, and
      CoDel never drops the last item, which would idle the server.)
    * the first item at or above ``target`` sets ``first_above_time = now + interval``. Once an
      item at or above target leaves at or after that time, the sojourn has stayed above target
      for a whole interval: that item is dropped and the **dropping state** begins.
    * in the dropping state the next drop is due at ``drop_next``; each drop increments
      ``count`` and moves ``drop_next`` forward by ``interval / sqrt(count)`` (the control law),
      so drops come faster the longer the queue stands, until the item rate falls to what the
      server drains. Any item below target (or emptying the queue) ends the dropping state.
    * on entering again, if the previous dropping state ended recently (``now - drop_next <
      16 * interval``) and dropped more than once, ``count`` restarts at the number of drops it
      made (``count - lastcount``) instead of 1: the rate that controlled the queue last time is
      a good first guess now. This is the Linux variant the RFC prints.

    Defaults are the RFC's, 5 ms target and 100 ms interval; "Fail at Scale" reports the same
    pair (M = 5 ms, N = 100 ms) working well for RPC queues at Facebook.
    """

    __slots__ = (
        "_count",
        "_drop_next",
        "_dropping",
        "_first_above",
        "_lastcount",
        "_reschedule",
        "drops",
        "interval",
        "target",
    )

    def __init__(self, target: float = 0.005, interval: float = 0.1) -> None:
        finite_above("target", target, 0.0)
        finite_above("interval", interval, 0.0)
        if target >= interval:
            # RFC 8289 advises a target of 5-10 % of the interval; a target as long as the
            # interval could never be exceeded "for a whole interval" in any useful sense.
            raise ConfigError("target", f"must be < interval ({interval:g})", target)
        self.target = float(target)
        self.interval = float(interval)
        self._first_above: float | None = None
        self._dropping = False
        self._drop_next = 0.0
        self._count = 0
        self._lastcount = 0
        self._reschedule = False
        self.drops = 0  # telemetry: items this CoDel told the queue to drop

    @property
    def dropping(self) -> bool:
        """Whether CoDel is in its dropping state."""
        return self._dropping

    @property
    def count(self) -> int:
        """Drops in the current (or last) dropping state, as seeded by the re-entry rule."""
        return self._count

    @property
    def drop_next(self) -> float:
        """When the next drop is due while dropping (meaningless otherwise)."""
        return self._drop_next

    @property
    def first_above_time(self) -> float | None:
        """When a sojourn above target will have lasted an interval; ``None`` when below."""
        return self._first_above

    def standing(self, now: float) -> bool:
        """Whether the queue has stood above target for an interval, or CoDel is dropping.

        This is the signal :class:`AdaptiveLifo` switches on; it is true from the moment a
        drop would be allowed, even before the next dequeue acts on it.
        """
        first_above = self._first_above
        return self._dropping or (first_above is not None and now >= first_above)

    def _ok_to_drop(self, now: float, sojourn: float, queue_empty_after: bool) -> bool:
        # RFC 8289's dodequeue(): only tracks whether the sojourn has been above target for a
        # whole interval; the caller decides what to do about it.
        if sojourn < self.target or queue_empty_after:
            self._first_above = None
            return False
        first_above = self._first_above
        if first_above is None:
            self._first_above = now + self.interval
            return False
        return now >= first_above

    def on_dequeue(self, now: float, enqueued_at: float, queue_empty_after: bool) -> bool:
        """Whether to drop the item that is leaving the queue at ``now``.

        Args:
            now: the time of the dequeue.
            enqueued_at: when this item entered the queue.
            queue_empty_after: whether the queue is empty once this item has left it.

        Returns ``True`` to drop the item; the caller then dequeues the next one and asks again.
        """
        ok = self._ok_to_drop(now, now - enqueued_at, queue_empty_after)
        if self._dropping:
            if not ok:
                self._dropping = False
                self._reschedule = False
                return False
            if self._reschedule:
                # The RFC schedules the next drop only after seeing that the item behind a
                # dropped one is still above target; here that item is this call's.
                self._drop_next += self.interval / math.sqrt(self._count)
                self._reschedule = False
            if now >= self._drop_next:
                self._count += 1
                self._reschedule = True
                self.drops += 1
                return True
            return False
        if not ok:
            return False
        # Enter the dropping state and drop this item.
        self._dropping = True
        delta = self._count - self._lastcount
        count = 1
        if delta > 1 and now - self._drop_next < 16 * self.interval:
            count = delta
        self._count = count
        self._lastcount = count
        self._drop_next = now + self.interval / math.sqrt(count)
        self._reschedule = False
        self.drops += 1
        return True

    def __repr__(self) -> str:
        return (
            f"CoDel(target={self.target:g}, interval={self.interval:g}, "
            f"dropping={self._dropping}, count={self._count})"
        )


class AdaptiveLifo:
    """Tells a queue when to serve newest-first: Facebook's adaptive LIFO on top of :class:`CoDel`.

    ``lifo(now)`` is ``True`` while the CoDel is in its dropping state or the queue has stood
    above target for an interval (:meth:`CoDel.standing`), and ``False`` otherwise. In normal
    operation FIFO is fair; once a standing queue exists, the oldest requests are the ones most
    likely to have been abandoned by their callers, so serving the newest first turns the same
    capacity into requests that still matter ("Fail at Scale", 2015).

    Recommended driver, which keeps CoDel measuring the standing queue even in LIFO mode (the
    newest item's sojourn says nothing about the queue, so it must not be what CoDel sees)::

        while queue:
            oldest = queue[0]
            if lifo.codel.on_dequeue(now, oldest.enqueued_at, len(queue) == 1):
                queue.popleft()             # drop the oldest: it has waited too long
                reject(oldest)
                continue
            item = queue.pop() if lifo.lifo(now) else queue.popleft()
            serve(item)

    In FIFO mode that is plain CoDel; in LIFO mode the oldest items are dropped from the back,
    as CoDel's short timeouts do in Facebook's design, while the newest are served.
    """

    __slots__ = ("codel",)

    def __init__(self, codel: CoDel | None = None) -> None:
        if codel is None:
            codel = CoDel()
        if not isinstance(codel, CoDel):
            raise ConfigError("codel", "must be a CoDel", codel)
        self.codel = codel

    def lifo(self, now: float) -> bool:
        """``True`` to serve the newest item next, ``False`` to serve the oldest."""
        return self.codel.standing(now)

    def __repr__(self) -> str:
        return f"AdaptiveLifo({self.codel!r})"


# -- priorities ---------------------------------------------------------------------------------


class PriorityShedder:
    """Shed lower-priority work first as load rises.

    ``levels`` maps each priority class to a load threshold in (0, 1]; ``admit(now, priority,
    load)`` is ``load < levels[priority]``. ``load`` is the caller's measure of utilisation, 0
    idle and 1 saturated (in-flight / capacity, CPU, a queue's fill ratio); it may exceed 1. So
    as load rises, classes are shed in order of increasing threshold, and a class is never
    admitted at a load where a class with a higher threshold is shed. A NaN load sheds
    everything (no comparison with NaN is true), which errs on the safe side.

    An unknown priority raises :class:`~stormproof.errors.ConfigError` (field ``priority``)
    listing the valid classes: a typo in a class name is a configuration bug, and silently
    admitting or shedding it would hide it.
    """

    __slots__ = ("_thresholds", "classes", "levels")

    def __init__(self, levels: Mapping[str, float]) -> None:
        if not isinstance(levels, Mapping):
            raise ConfigError("levels", "must be a mapping of class name -> threshold", levels)
        if not levels:
            raise ConfigError("levels", "must name at least one priority class", levels)
        thresholds: dict[str, float] = {}
        for name, threshold in levels.items():
            if not isinstance(name, str) or not name:
                raise ConfigError("levels", "class names must be non-empty strings", name)
            field = f"levels[{name!r}]"
            finite_above(field, threshold, 0.0)
            if threshold > 1.0:
                raise ConfigError(field, "must be within (0, 1]", threshold)
            thresholds[name] = float(threshold)
        self._thresholds = thresholds
        #: The classes and their thresholds (read-only).
        self.levels: Mapping[str, float] = MappingProxyType(thresholds)
        #: Class names from most to least protected (threshold descending, then by name).
        self.classes: tuple[str, ...] = tuple(
            sorted(thresholds, key=lambda name: (-thresholds[name], name))
        )

    @classmethod
    def sync_first(cls) -> PriorityShedder:
        """Lambda's 2025 ordering: ``sync`` 1.0, ``async`` 0.8, ``background`` 0.6.

        The order is from the report: Lambda "throttled Lambda Event Source Mappings and
        asynchronous invocations to prioritize latency-sensitive synchronous invocations".
        ``sync`` is a caller waiting on the answer; ``async`` is queued invocations that can be
        retried later; ``background`` is polling work such as event source mappings, whose
        source (SQS, Kinesis) keeps the backlog durably. The thresholds are assumed (not in
        the report): each step leaves a fifth of capacity to the classes above it.
        """
        return cls({"sync": 1.0, "async": 0.8, "background": 0.6})

    def admit(self, now: float, priority: str, load: float) -> bool:
        """``True`` while ``load < levels[priority]``; unknown ``priority`` raises ConfigError."""
        threshold = self._thresholds.get(priority)
        if threshold is None:
            valid = ", ".join(repr(name) for name in self.classes)
            raise ConfigError("priority", f"must be one of {valid}", priority)
        return load < threshold

    def __repr__(self) -> str:
        inner = ", ".join(f"{name!r}: {self._thresholds[name]:g}" for name in self.classes)
        return f"PriorityShedder({{{inner}}})"


# -- client-side adaptive throttling ------------------------------------------------------------

# The counters of AdaptiveThrottle's window.
_REQUESTS = 0
_ACCEPTS = 1


class AdaptiveThrottle:
    """Client-side adaptive throttling from the Google SRE book, ch. 21 "Handling Overload".

    Over the last ``window`` seconds the client counts ``requests`` (every request the
    application tried to send, including the ones this throttle rejected locally) and
    ``accepts`` (the ones the backend accepted). It then rejects a new request locally with
    probability ``max(0, (requests - k * accepts) / (requests + 1))``. While the backend accepts
    at least one request in ``k``, nothing is rejected; when it rejects everything, the
    probability approaches 1 and the rejected requests cost the backend nothing. Because local
    rejections still count as requests, the probability keeps rising while the backend is
    down, and a few requests still get through to notice when it is back.

    How to drive it:

    1. Before each request call :meth:`allow`. ``False``: fail the request locally (it has been
       counted already; do **not** call :meth:`record` for it).
    2. ``True``: send it, and when the outcome is known call :meth:`record` once, with
       ``accepted=True`` unless the backend refused it for overload (a throttling error, "503",
       "RESOURCE_EXHAUSTED", a timeout). An application error such as "not found" was accepted:
       the backend did the work.

    Defaults are the book's: ``k = 2`` (the multiplier it prefers; lower is more aggressive)
    and two minutes of history per client. The window is kept as ``buckets`` equal time
    slices, so a count is forgotten between ``window - window / buckets`` and ``window`` seconds
    after it was made.
    ``k`` must be at least 1: below that the throttle would reject requests to a backend that
    accepts every one of them.
    """

    __slots__ = (
        "_bucket_accepts",
        "_bucket_requests",
        "_counts",
        "_totals",
        "buckets",
        "k",
        "window",
    )

    def __init__(self, k: float = 2.0, window: float = 120.0, buckets: int = 120) -> None:
        finite_at_least("k", k, 1.0)
        finite_above("window", window, 0.0)
        int_at_least("buckets", buckets, 1)
        self.k = float(k)
        self.window = float(window)
        self.buckets = buckets
        self._counts = counts = SlicedCounts(self.window, buckets, 2)
        self._bucket_requests, self._bucket_accepts = counts.rings
        self._totals = counts.totals  # [_REQUESTS, _ACCEPTS]

    def counts(self, now: float) -> tuple[int, int]:
        """``(requests, accepts)`` within the window at ``now``."""
        self._counts.advance(now)
        totals = self._totals
        return totals[_REQUESTS], totals[_ACCEPTS]

    def reject_probability(self, now: float) -> float:
        """``max(0, (requests - k * accepts) / (requests + 1))`` over the window at ``now``."""
        self._counts.advance(now)
        totals = self._totals
        requests = totals[_REQUESTS]
        return max(0.0, (requests - self.k * totals[_ACCEPTS]) / (requests + 1))

    def allow(self, now: float, rng: random.Random) -> bool:
        """Whether to send a request now; a local rejection is counted as a request.

        Draws exactly one number from ``rng`` on every call, even when the probability is 0,
        so that how much of a random stream is used does not depend on the backend's health.
        """
        slot = self._counts.advance(now)
        totals = self._totals
        requests = totals[_REQUESTS]
        probability = (requests - self.k * totals[_ACCEPTS]) / (requests + 1)
        if rng.random() < probability:  # a negative probability never rejects: the max(0, ...)
            self._bucket_requests[slot] += 1
            totals[_REQUESTS] += 1
            return False
        return True

    def record(self, now: float, accepted: bool) -> None:
        """Count a request that was sent, and whether the backend accepted it."""
        slot = self._counts.advance(now)
        totals = self._totals
        self._bucket_requests[slot] += 1
        totals[_REQUESTS] += 1
        if accepted:
            self._bucket_accepts[slot] += 1
            totals[_ACCEPTS] += 1

    def __repr__(self) -> str:
        return (
            f"AdaptiveThrottle(k={self.k:g}, window={self.window:g}, buckets={self.buckets}, "
            f"requests={self._totals[_REQUESTS]}, accepts={self._totals[_ACCEPTS]})"
        )
