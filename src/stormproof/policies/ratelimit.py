"""Rate limiting: token bucket and GCRA, plus a keyed limiter with a bound on the number of keys.

``acquire(now, cost)`` answers with one of three decisions:

* :data:`GRANTED` -- go ahead now;
* :class:`Wait` -- go ahead after ``delay`` seconds; the permit is already reserved, so the
  caller must not ask again, only wait;
* :class:`Rejected` -- not within ``max_wait``; ``retry_after`` says when it would have been.

Limiting the rate at which work is *accepted* is what the 2025 report's DWFM fix did ("throttling
incoming work") and what the REL 2 guidance asks of any entry point; a limiter that answers with a
delay lets a caller smooth bursts instead of dropping them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar, runtime_checkable

from stormproof._validate import finite_above, finite_at_least, int_at_least
from stormproof.errors import ConfigError

__all__ = [
    "GCRA",
    "GRANTED",
    "Granted",
    "KeyedLimiter",
    "RateLimiter",
    "Rejected",
    "TokenBucket",
    "Wait",
]


@dataclass(frozen=True, slots=True)
class Granted:
    """Decision: proceed now."""


#: The one :class:`Granted` instance (decisions compare by identity on the hot path).
GRANTED = Granted()


@dataclass(slots=True)
class Wait:
    """Decision: proceed after ``delay`` seconds (the permit is reserved)."""

    delay: float


@dataclass(slots=True)
class Rejected:
    """Decision: refused; the request would have had to wait ``retry_after`` seconds."""

    retry_after: float
    reason: str = "rate"


Decision = Granted | Wait | Rejected


@runtime_checkable
class RateLimiter(Protocol):
    """What every limiter answers."""

    def acquire(self, now: float, cost: float = 1.0) -> Granted | Wait | Rejected:
        """Ask for ``cost`` permits at ``now``."""
        ...


class TokenBucket:
    """A bucket of ``burst`` tokens refilled at ``rate`` tokens per second.

    A request of ``cost`` tokens is granted if the bucket holds them; otherwise, if the missing
    tokens arrive within ``max_wait`` seconds, it is told to wait that long and the tokens are
    borrowed now (the bucket goes negative, so later requests queue behind it); otherwise it is
    rejected. Over any interval of length t, grants never exceed ``burst + rate * t`` tokens
    plus what was waited for.
    """

    __slots__ = ("_tokens", "_updated", "burst", "max_wait", "rate")

    def __init__(self, rate: float, burst: float, *, max_wait: float = 0.0) -> None:
        finite_above("rate", rate, 0.0)
        finite_above("burst", burst, 0.0)
        finite_at_least("max_wait", max_wait, 0.0)
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_wait = float(max_wait)
        self._tokens = self.burst
        self._updated: float | None = None

    def available(self, now: float) -> float:
        """Tokens in the bucket at ``now`` (negative while waiters are owed tokens)."""
        return self._refill(now)

    def _refill(self, now: float) -> float:
        """Add the tokens earned since the last update; returns the balance."""
        updated = self._updated
        tokens = self._tokens
        if updated is None:
            self._updated = now
        elif now > updated:
            # A conditional, not min(): this runs on every decision.
            tokens += (now - updated) * self.rate
            if tokens > self.burst:
                tokens = self.burst
            self._tokens = tokens
            self._updated = now
        return tokens

    def acquire(self, now: float, cost: float = 1.0) -> Granted | Wait | Rejected:
        """Take ``cost`` tokens now, wait for them, or be rejected (see the class docstring)."""
        if not 0.0 < cost <= self.burst:
            return _bad_cost(cost, self.burst)
        tokens = self._refill(now)
        if tokens >= cost:
            self._tokens = tokens - cost
            return GRANTED
        delay = (cost - tokens) / self.rate
        if delay <= self.max_wait:
            self._tokens = tokens - cost
            return Wait(delay)
        return Rejected(delay)


class GCRA:
    """The generic cell rate algorithm: a token bucket kept as one timestamp.

    The limiter remembers the theoretical arrival time (TAT) of the next request. Each request of
    ``cost`` pushes it ``cost / rate`` seconds further; a request is on time while the TAT it
    would set is no more than ``burst / rate`` seconds ahead of now. Same guarantees as
    :class:`TokenBucket` with one float of state, which is why it is popular for keyed limits
    kept in a shared store (Redis-cell, Envoy's local rate limit use the same idea).
    """

    __slots__ = ("_tat", "burst", "max_wait", "rate")

    def __init__(self, rate: float, burst: float, *, max_wait: float = 0.0) -> None:
        finite_above("rate", rate, 0.0)
        finite_above("burst", burst, 0.0)
        finite_at_least("max_wait", max_wait, 0.0)
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_wait = float(max_wait)
        self._tat = float("-inf")

    def acquire(self, now: float, cost: float = 1.0) -> Granted | Wait | Rejected:
        """Take ``cost`` permits now, wait for them, or be rejected."""
        if not 0.0 < cost <= self.burst:
            return _bad_cost(cost, self.burst)
        tat = self._tat if self._tat > now else now
        # How long until the request conforms: zero or less is now. Written as one difference
        # from the TAT (not as "new TAT - burst interval <= now") so that a fresh limiter's
        # first requests compare exactly, without float residue.
        delay = (tat - now) - (self.burst - cost) / self.rate
        if delay <= 0.0:
            self._tat = tat + cost / self.rate
            return GRANTED
        if delay <= self.max_wait:
            self._tat = tat + cost / self.rate
            return Wait(delay)
        return Rejected(delay)


def _bad_cost(cost: float, burst: float) -> Rejected:
    """A cost above the burst can never be granted; a cost that is not positive is an error."""
    if cost > burst:
        return Rejected(float("inf"), f"cost {cost:g} exceeds burst {burst:g}")
    raise ConfigError("cost", "must be a number > 0", cost)


L = TypeVar("L", bound=RateLimiter)


class KeyedLimiter(Generic[L]):
    """One limiter per key (tenant, client, availability zone), created on first use.

    Keys are bounded: beyond ``max_keys`` the least recently used key is forgotten, and comes
    back with a fresh (full) limiter if seen again. That errs on the side of letting traffic
    through rather than growing without bound; size ``max_keys`` above the number of keys that
    are active within one refill period. The default of 10,000 suits tenants or clients.
    """

    __slots__ = ("_limiters", "evictions", "factory", "max_keys")

    def __init__(self, factory: Callable[[], L], *, max_keys: int = 10_000) -> None:
        if not callable(factory):
            raise ConfigError("factory", "must be callable() -> limiter", factory)
        int_at_least("max_keys", max_keys, 1)
        self.factory = factory
        self.max_keys = max_keys
        self._limiters: OrderedDict[Hashable, L] = OrderedDict()
        self.evictions = 0

    def limiter(self, key: Hashable) -> L:
        """The limiter of ``key`` (created, or re-created after eviction, on demand)."""
        limiters = self._limiters
        limiter = limiters.get(key)
        if limiter is None:
            if len(limiters) >= self.max_keys:
                limiters.popitem(last=False)
                self.evictions += 1
            limiter = limiters[key] = self.factory()
        else:
            limiters.move_to_end(key)
        return limiter

    def acquire(self, key: Hashable, now: float, cost: float = 1.0) -> Granted | Wait | Rejected:
        """Ask the limiter of ``key`` for ``cost`` permits."""
        return self.limiter(key).acquire(now, cost)

    def __len__(self) -> int:
        return len(self._limiters)
