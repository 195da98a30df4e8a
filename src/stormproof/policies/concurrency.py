"""Adaptive concurrency limits: find how many calls a dependency can take at once, and keep to it.

A fixed bulkhead needs someone to know the right number in advance, and the right number moves
with deployments, instance sizes and the state of whatever sits behind the dependency. An adaptive
limit measures instead: every completed call reports its round-trip time, how many calls were in
flight when it started, and whether it was dropped (timed out, rejected, shed); the limit grows
while latency stays at its floor and shrinks when calls queue up or fail. Netflix's
concurrency-limits library (github.com/Netflix/concurrency-limits, and the post "Performance
Under Load", 2018) is the reference for behaviour; its three best-known algorithms are here:

* :class:`AIMDLimit` -- loss based: +1 per call while the limit is in use, times
  ``backoff_ratio`` on a drop. Simple and robust; blind to latency until calls time out.
* :class:`VegasLimit` -- delay based, after TCP Vegas: estimates the queue as
  ``limit * (1 - rtt_noload / rtt)`` and steers it between ``alpha`` and ``beta``.
* :class:`GradientLimit` -- Netflix's Gradient2: compares this call's RTT with a long-term
  average and scales the limit by the ratio, plus a little headroom for queueing.

:class:`LimitedBulkhead` puts any of them in front of work: it admits a call while fewer than
``limit.limit`` are in flight, and feeds each completion back as a sample.

Sans-IO like every policy: nothing here reads a clock or sleeps. ``now`` is accepted by every
method so that drivers and the simulator call all policies the same way; the three algorithms
count samples rather than seconds, so none of them reads it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from stormproof._validate import finite_above, finite_at_least, int_at_least, optional_positive
from stormproof.errors import ConfigError, StormproofError

__all__ = [
    "AIMDLimit",
    "ConcurrencyLimit",
    "GradientLimit",
    "LimitedBulkhead",
    "Permit",
    "VegasLimit",
]

_INF = math.inf


@runtime_checkable
class ConcurrencyLimit(Protocol):
    """An algorithm that turns completed calls into a concurrency limit."""

    @property
    def limit(self) -> int:
        """The current limit: how many calls may be in flight at once."""
        ...

    def on_sample(self, now: float, rtt: float, inflight: int, dropped: bool) -> int:
        """Record one completed call and return the new limit.

        Args:
            now: the current time (seconds).
            rtt: the call's round-trip time (seconds).
            inflight: calls in flight when it started, itself included.
            dropped: it timed out, was rejected or was shed -- a sign of overload whatever its
                ``rtt``.
        """
        ...


def _check_bounds(initial: int, min_limit: int, max_limit: int) -> None:
    int_at_least("min_limit", min_limit, 1)
    int_at_least("max_limit", max_limit, min_limit)
    int_at_least("initial", initial, min_limit)
    if initial > max_limit:
        raise ConfigError(
            "initial", f"must be within [min_limit, max_limit] ({max_limit})", initial
        )


def _check_fraction(name: str, value: float, *, closed: bool) -> None:
    """Require ``value`` within (0, 1], or (0, 1) when not ``closed``."""
    finite_above(name, value, 0.0)
    if value > 1.0 or (value == 1.0 and not closed):
        raise ConfigError(
            name, "must be within (0, 1]" if closed else "must be within (0, 1)", value
        )


def _bad_rtt(rtt: float) -> StormproofError:
    return StormproofError(
        f"rtt must be finite and > 0 for a call that was not dropped, got {rtt!r}"
    )


class AIMDLimit:
    """Additive increase, multiplicative decrease: the TCP Reno rule applied to concurrency.

    For each sample, with ``limit`` the current limit:

    * dropped, or ``rtt > timeout``: ``limit = max(min_limit, floor(limit * backoff_ratio))``;
    * otherwise, if ``inflight >= limit / 2``: ``limit = min(max_limit, limit + 1)``;
    * otherwise unchanged -- a limit that is not being used has not been shown to be safe, so it
      does not grow (without this, a quiet hour would grow the limit to ``max_limit`` and the
      next burst would find no protection at all).

    Defaults: ``backoff_ratio=0.9`` as in Netflix's AIMDLimit (which requires [0.5, 1); any
    ratio in (0, 1) is accepted here). Netflix also treats ``rtt > 5 s`` as a drop; here
    ``timeout`` is off by default because stormproof's deadline and retry policies already report
    a timed-out call as dropped -- pass ``timeout=5.0`` for Netflix's behaviour. ``initial=20``
    and ``max_limit=1000`` match Netflix's VegasLimit, so the three algorithms start alike.
    """

    __slots__ = ("_limit", "backoff_ratio", "max_limit", "min_limit", "timeout")

    def __init__(
        self,
        initial: int = 20,
        *,
        min_limit: int = 1,
        max_limit: int = 1000,
        backoff_ratio: float = 0.9,
        timeout: float | None = None,
    ) -> None:
        _check_bounds(initial, min_limit, max_limit)
        _check_fraction("backoff_ratio", backoff_ratio, closed=False)
        optional_positive("timeout", timeout)
        self.min_limit = min_limit
        self.max_limit = max_limit
        self.backoff_ratio = float(backoff_ratio)
        # None becomes +inf so the hot path compares without a None check.
        self.timeout = _INF if timeout is None else float(timeout)
        self._limit = initial

    @property
    def limit(self) -> int:
        """The current limit."""
        return self._limit

    def on_sample(self, now: float, rtt: float, inflight: int, dropped: bool) -> int:
        """Apply the rule of the class docstring to one completed call; returns the new limit."""
        limit = self._limit
        if dropped or rtt > self.timeout:
            # floor(limit * r) < limit for r < 1, so every drop above the floor lowers the limit.
            limit = max(self.min_limit, int(limit * self.backoff_ratio))
        elif inflight * 2 >= limit:
            limit = min(self.max_limit, limit + 1)
        self._limit = limit
        return limit

    def __repr__(self) -> str:
        return f"AIMDLimit(limit={self._limit})"


def _log10_step(limit: float) -> int:
    """``max(1, floor(log10(limit)))``: Netflix's step, which stays >= 1 for small limits."""
    return max(1, int(math.log10(limit))) if limit >= 10.0 else 1


class VegasLimit:
    """Delay-based limit after TCP Vegas (Brakmo and Peterson, 1994), as Netflix adapted it.

    The limiter keeps ``rtt_noload``, the smallest RTT seen: the time a call takes with no
    queue. If ``limit`` calls are in flight and each takes ``rtt``, the part of the limit that is
    only queueing is ``queue_size = ceil(limit * (1 - rtt_noload / rtt))``. Vegas keeps that
    queue between ``alpha`` and ``beta`` calls, so the dependency is kept busy without a line
    forming in front of it.

    Exact rule for each sample, with ``limit`` the (fractional) estimate and
    ``step = max(1, floor(log10(limit)))`` (1 below a limit of 100, 2 up to 1000):

    1. dropped: ``target = limit - step`` (the ``rtt`` of a dropped call is ignored, because a
       rejection answers fast and a timeout is cut short, so neither measures the queue);
    2. otherwise count the sample; every ``probe_interval`` counted samples, set
       ``rtt_noload = rtt`` and leave the limit alone (the probe lets the baseline rise when
       the dependency has really become slower, say after a deployment; without it a single
       fast outlier would pin the baseline for ever);
    3. otherwise ``rtt_noload = min(rtt_noload, rtt)``; if ``inflight < limit / 2``, no change
       (an idle limit does not grow, as in :class:`AIMDLimit`);
    4. otherwise, if ``queue_size < alpha * step``: ``target = limit + step``; if
       ``queue_size > beta * step``: ``target = limit - step``; else no change;
    5. ``limit += smoothing * (clamp(target, min_limit, max_limit) - limit)``, clamped again.

    ``limit`` (the property) is ``floor`` of the estimate.

    Defaults follow Netflix's VegasLimit: ``alpha=3`` and ``beta=6`` scaled by the log10 step
    (its ``3 * log10(limit)`` and ``6 * log10(limit)``; TCP Vegas uses 2-3 and 4-6), growth and
    decrease by one step, ``smoothing=1.0`` (no smoothing), ``initial=20``, ``max_limit=1000``.
    Two deliberate differences: Netflix re-probes ``rtt_noload`` every ``30 * limit`` samples
    times a random factor in [0.5, 1); a fixed ``probe_interval`` (default 1000, ``None`` to
    never probe) keeps runs deterministic. And Netflix jumps by ``beta`` when the queue is under
    one step; here growth is always one step per sample, which is slower from a low start but
    never overshoots by more than one step.
    """

    __slots__ = (
        "_estimate",
        "_samples",
        "alpha",
        "beta",
        "max_limit",
        "min_limit",
        "probe_interval",
        "rtt_noload",
        "smoothing",
    )

    def __init__(
        self,
        initial: int = 20,
        *,
        min_limit: int = 1,
        max_limit: int = 1000,
        smoothing: float = 1.0,
        alpha: float = 3,
        beta: float = 6,
        probe_interval: int | None = 1000,
    ) -> None:
        _check_bounds(initial, min_limit, max_limit)
        _check_fraction("smoothing", smoothing, closed=True)
        finite_above("alpha", alpha, 0.0)
        finite_at_least("beta", beta, alpha)
        if probe_interval is not None:
            int_at_least("probe_interval", probe_interval, 1)
        self.min_limit = min_limit
        self.max_limit = max_limit
        self.smoothing = float(smoothing)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.probe_interval = probe_interval
        #: The no-load RTT estimate; ``inf`` until the first call that was not dropped.
        self.rtt_noload = _INF
        self._estimate = float(initial)
        self._samples = 0

    @property
    def limit(self) -> int:
        """The current limit (the estimate rounded down)."""
        return int(self._estimate)

    @property
    def estimate(self) -> float:
        """The fractional estimate behind :attr:`limit`."""
        return self._estimate

    def on_sample(self, now: float, rtt: float, inflight: int, dropped: bool) -> int:
        """Apply the rule of the class docstring to one completed call; returns the new limit.

        Raises:
            StormproofError: ``rtt`` is not finite and > 0 on a call that was not dropped (the
                rule divides by it; a driver with a coarse clock should report a small positive
                time instead of zero).
        """
        estimate = self._estimate
        if dropped:
            target = estimate - _log10_step(estimate)
        else:
            if not 0.0 < rtt < _INF:
                raise _bad_rtt(rtt)
            self._samples += 1
            if self._samples == self.probe_interval:
                self._samples = 0
                self.rtt_noload = rtt
                return int(estimate)
            if rtt < self.rtt_noload:
                self.rtt_noload = rtt
            if inflight * 2 < estimate:
                return int(estimate)
            queue_size = math.ceil(estimate * (1.0 - self.rtt_noload / rtt))
            step = _log10_step(estimate)
            if queue_size < self.alpha * step:
                target = estimate + step
            elif queue_size > self.beta * step:
                target = estimate - step
            else:
                return int(estimate)
        low, high = self.min_limit, self.max_limit
        target = low if target < low else high if target > high else target
        estimate += self.smoothing * (target - estimate)
        # Clamp once more: the blend can land an ulp outside the bounds, and floor(min - ulp)
        # would be min - 1.
        estimate = low if estimate < low else high if estimate > high else estimate
        self._estimate = estimate
        return int(estimate)

    def __repr__(self) -> str:
        return f"VegasLimit(limit={self.limit}, rtt_noload={self.rtt_noload!r})"


#: Samples averaged plainly before the long-term RTT switches to an exponential average, as in
#: Netflix's ExpAvgMeasurement(longWindow, 10): one early outlier would otherwise dominate it.
_WARMUP = 10


class GradientLimit:
    """Netflix's Gradient2: scale the limit by how far this call's RTT is above the long-term RTT.

    Unlike :class:`VegasLimit`, the baseline is an average, not a minimum: Netflix found that
    with bursty RPCs the minimum biases towards an impractically low base RTT and sheds too much.
    Exact rule for each sample, with ``limit`` the (fractional) estimate:

    1. dropped: ``gradient = 0.5`` and no queue allowance, so ``target = limit * 0.5`` -- with
       the default smoothing each drop removes 10 % of the limit, like :class:`AIMDLimit`'s
       default ratio. The dropped call's ``rtt`` is not averaged (it is a rejection or a
       cut-off, not a latency). Go to 5.
    2. otherwise ``long_rtt`` takes the sample: the plain mean of the first 10 samples, then an
       exponential average with weight ``2 / (long_window + 1)`` (the usual N-sample EMA). If
       ``long_rtt > 2 * rtt``, ``long_rtt *= 0.9``: after a long overload the average is far
       above the recovered latency, and decaying it faster brings the limiter back to steady
       state sooner (Netflix does the same).
    3. if ``inflight < limit / 2``, no change (an idle limit does not grow).
    4. ``gradient = clamp(tolerance * long_rtt / rtt, 0.5, 1.0)`` and
       ``target = limit * gradient + sqrt(limit)``. The gradient is below 1 only once this call
       is more than ``tolerance`` times slower than usual; it never halves the limit at once,
       so one outlier cannot shed half the traffic. ``sqrt(limit)`` is the queue allowed to
       form: the growth per sample while latency is normal, and it is also why, without drops,
       the limit settles no lower than 4 (where ``0.5 * 4 + sqrt(4) = 4``).
    5. ``limit += smoothing * (target - limit)``, clamped to ``[min_limit, max_limit]``.

    ``limit`` (the property) is ``floor`` of the estimate.

    Defaults are Netflix's Gradient2Limit: ``smoothing=0.2``, ``long_window=600``,
    ``tolerance=1.5`` (the release with the tolerance), ``initial=20``; its queue size is a
    constant 4 (earlier releases used a square root, which scales with the limit and is kept
    here), its bounds are [20, 200] -- here [1, 1000] like the other two algorithms.
    """

    __slots__ = (
        "_estimate",
        "_factor",
        "_long_rtt",
        "_samples",
        "long_window",
        "max_limit",
        "min_limit",
        "smoothing",
        "tolerance",
    )

    def __init__(
        self,
        initial: int = 20,
        *,
        min_limit: int = 1,
        max_limit: int = 1000,
        smoothing: float = 0.2,
        long_window: int = 600,
        tolerance: float = 1.5,
    ) -> None:
        _check_bounds(initial, min_limit, max_limit)
        _check_fraction("smoothing", smoothing, closed=True)
        int_at_least("long_window", long_window, 1)
        # Below 1 the limit would shrink while latency is exactly at its average.
        finite_at_least("tolerance", tolerance, 1.0)
        self.min_limit = min_limit
        self.max_limit = max_limit
        self.smoothing = float(smoothing)
        self.long_window = long_window
        self.tolerance = float(tolerance)
        self._factor = 2.0 / (long_window + 1)
        self._estimate = float(initial)
        self._long_rtt = 0.0
        self._samples = 0

    @property
    def limit(self) -> int:
        """The current limit (the estimate rounded down)."""
        return int(self._estimate)

    @property
    def estimate(self) -> float:
        """The fractional estimate behind :attr:`limit`."""
        return self._estimate

    @property
    def long_rtt(self) -> float | None:
        """The long-term average RTT; ``None`` before the first call that was not dropped."""
        return self._long_rtt if self._samples else None

    def on_sample(self, now: float, rtt: float, inflight: int, dropped: bool) -> int:
        """Apply the rule of the class docstring to one completed call; returns the new limit.

        Raises:
            StormproofError: ``rtt`` is not finite and > 0 on a call that was not dropped.
        """
        estimate = self._estimate
        if dropped:
            target = estimate * 0.5
        else:
            if not 0.0 < rtt < _INF:
                raise _bad_rtt(rtt)
            samples = self._samples
            if samples < _WARMUP:
                samples += 1
                self._samples = samples
                long_rtt = self._long_rtt + (rtt - self._long_rtt) / samples
            else:
                long_rtt = self._long_rtt + self._factor * (rtt - self._long_rtt)
            if long_rtt > 2.0 * rtt:
                long_rtt *= 0.9
            self._long_rtt = long_rtt
            if inflight * 2 < estimate:
                return int(estimate)
            gradient = self.tolerance * long_rtt / rtt
            gradient = 0.5 if gradient < 0.5 else 1.0 if gradient > 1.0 else gradient
            target = estimate * gradient + math.sqrt(estimate)
        estimate += self.smoothing * (target - estimate)
        low, high = self.min_limit, self.max_limit
        estimate = low if estimate < low else high if estimate > high else estimate
        self._estimate = estimate
        return int(estimate)

    def __repr__(self) -> str:
        return f"GradientLimit(limit={self.limit}, long_rtt={self.long_rtt!r})"


@dataclass(slots=True, eq=False)
class Permit:
    """A call admitted by :class:`LimitedBulkhead`; hand it back to ``release``.

    ``started_at`` is the ``now`` of admission and ``inflight`` the calls in flight just after it
    (this one included, as Netflix's limiters count it): the two facts a sample needs that only
    admission time knows.
    """

    started_at: float
    inflight: int
    released: bool = field(default=False)


class LimitedBulkhead:
    """A bulkhead whose size is an adaptive :class:`ConcurrencyLimit`.

    ``try_acquire(now)`` returns a :class:`Permit` while fewer than ``limit.limit`` calls are in
    flight, and ``None`` otherwise (refused at once: a queue would turn overload into latency,
    which is exactly the signal the limit is trying to read). When the call ends, the driver
    passes the permit to ``release``, which frees the slot and reports the sample.

    The permit, rather than a bare count, is what makes the sample right: it carries the
    in-flight count at the start of *this* call and its start time, so ``release`` can default
    the RTT to ``now - started_at`` and can refuse a permit released twice. When the limit
    shrinks below the calls already in flight, none is cancelled; new calls are refused until
    enough finish.

    Refusals are not reported to the limit as drops: the limit caused them, and counting them
    would shrink it further under a burst it is already handling. Report a call as ``dropped``
    when the *dependency* rejected it or it timed out.
    """

    __slots__ = ("inflight", "limit", "rejected")

    def __init__(self, limit: ConcurrencyLimit) -> None:
        if not isinstance(limit, ConcurrencyLimit):
            raise ConfigError("limit", "must be a ConcurrencyLimit (limit, on_sample)", limit)
        self.limit = limit
        #: Calls admitted and not yet released.
        self.inflight = 0
        #: Calls refused so far.
        self.rejected = 0

    @property
    def available(self) -> int:
        """Calls that would be admitted right now (0 while over a limit that just shrank)."""
        free = self.limit.limit - self.inflight
        return free if free > 0 else 0

    def try_acquire(self, now: float) -> Permit | None:
        """Admit a call (a :class:`Permit`, which is truthy) or refuse it (``None``)."""
        inflight = self.inflight
        if inflight >= self.limit.limit:
            self.rejected += 1
            return None
        inflight += 1
        self.inflight = inflight
        return Permit(now, inflight)

    def release(
        self, permit: Permit, now: float, *, rtt: float | None = None, dropped: bool = False
    ) -> int:
        """Free ``permit``'s slot and report its call to the limit; returns the new limit.

        ``rtt`` defaults to ``now - permit.started_at``; pass it when the driver measured the
        call itself. Set ``dropped`` when the call timed out or the dependency rejected it.

        Raises:
            StormproofError: the permit was already released.
        """
        if permit.released:
            raise StormproofError("permit released twice")
        permit.released = True
        self.inflight -= 1
        if rtt is None:
            rtt = now - permit.started_at
        return self.limit.on_sample(now, rtt, permit.inflight, dropped)

    def __repr__(self) -> str:
        return f"LimitedBulkhead(inflight={self.inflight}, limit={self.limit!r})"
