"""Backoff schedules: how long to wait before retry number ``n``.

A schedule is a pure function of ``(retry, previous, rng)``: ``retry`` is 1 for the first retry
(the second attempt), ``previous`` is the delay chosen before it (``None`` for the first retry),
and ``rng`` is the caller's seeded ``random.Random``. The same seed therefore gives the same
schedule, in the simulator and in production.

Formulas follow M. Brooker, "Exponential Backoff and Jitter" (AWS Architecture Blog, 2015), with
``raw(n) = min(cap, base * factor ** (n - 1))``:

* ``Jitter.NONE``  -- ``raw(n)``
* ``Jitter.FULL``  -- ``U(0, raw(n))``
* ``Jitter.EQUAL`` -- ``raw(n) / 2 + U(0, raw(n) / 2)``
* :class:`Decorrelated` -- ``min(cap, U(base, 3 * previous))`` with ``previous`` starting at
  ``base``; it needs the previous delay, which is why schedules receive it.

Brooker writes ``base * 2 ** n`` with ``n`` starting at 1; stormproof counts so that the first
retry waits ``base`` (as the AWS SDKs, the Amazon States Language and Polly do), so Brooker's
``base`` is our ``base / 2`` for the exponential kinds.
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from stormproof._validate import finite_above, finite_at_least
from stormproof.errors import ConfigError

__all__ = [
    "Backoff",
    "Constant",
    "Decorrelated",
    "Exponential",
    "Jitter",
    "Linear",
    "NoBackoff",
]


class Jitter(enum.Enum):
    """How randomness is applied to a deterministic schedule."""

    NONE = "none"
    FULL = "full"
    EQUAL = "equal"


@runtime_checkable
class Backoff(Protocol):
    """A backoff schedule."""

    def delay(self, retry: int, previous: float | None, rng: random.Random) -> float:
        """Return the delay in seconds before retry number ``retry`` (1-based)."""
        ...


# Enum attribute lookups cost more than module globals on the decision path.
_FULL = Jitter.FULL
_EQUAL = Jitter.EQUAL

#: Retries whose exponential delays are precomputed (beyond it, the formula is used).
_TABLE_SIZE = 64


def _jittered(raw: float, jitter: Jitter, rng: random.Random) -> float:
    if jitter is _FULL:
        return rng.random() * raw
    if jitter is _EQUAL:
        half = raw * 0.5
        return half + rng.random() * half
    return raw


def _check_jitter(jitter: object) -> None:
    if not isinstance(jitter, Jitter):
        raise ConfigError("jitter", "must be a stormproof.policies.backoff.Jitter member", jitter)


@dataclass(frozen=True, slots=True)
class NoBackoff:
    """Retry immediately. Useful in tests and as the 'no backoff' arm of an A/B experiment."""

    def delay(self, retry: int, previous: float | None, rng: random.Random) -> float:
        """Always 0."""
        return 0.0


@dataclass(frozen=True, slots=True)
class Constant:
    """Wait the same ``seconds`` before every retry, optionally jittered."""

    seconds: float = 1.0
    jitter: Jitter = Jitter.NONE

    def __post_init__(self) -> None:
        finite_at_least("seconds", self.seconds, 0.0)
        _check_jitter(self.jitter)

    def delay(self, retry: int, previous: float | None, rng: random.Random) -> float:
        """Return ``seconds``, jittered."""
        return _jittered(self.seconds, self.jitter, rng)


@dataclass(frozen=True, slots=True)
class Linear:
    """Wait ``base + step * (n - 1)`` before retry ``n``, capped at ``cap``, optionally jittered."""

    base: float = 1.0
    step: float = 1.0
    cap: float = 60.0
    jitter: Jitter = Jitter.NONE

    def __post_init__(self) -> None:
        finite_at_least("base", self.base, 0.0)
        finite_at_least("step", self.step, 0.0)
        finite_at_least("cap", self.cap, 0.0)
        if self.cap < self.base:
            raise ConfigError("cap", f"must be >= base ({self.base:g})", self.cap)
        _check_jitter(self.jitter)

    def delay(self, retry: int, previous: float | None, rng: random.Random) -> float:
        """Return the linear delay for retry ``retry``, capped and jittered."""
        raw = min(self.cap, self.base + self.step * (retry - 1))
        return _jittered(raw, self.jitter, rng)


@dataclass(frozen=True, slots=True)
class Exponential:
    """Wait ``min(cap, base * factor ** (n - 1))`` before retry ``n``, jittered (full by default).

    Full jitter is the default because it spreads a synchronised crowd of clients best for the
    least added latency (Brooker 2015; the AWS SDKs' standard mode uses it).
    """

    base: float = 0.1
    factor: float = 2.0
    cap: float = 20.0
    jitter: Jitter = Jitter.FULL
    _cap_exponent: float = field(init=False, repr=False, compare=False, default=math.inf)
    _table: tuple[float, ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        finite_at_least("base", self.base, 0.0)
        finite_at_least("factor", self.factor, 1.0)
        finite_at_least("cap", self.cap, 0.0)
        if self.cap < self.base:
            raise ConfigError("cap", f"must be >= base ({self.base:g})", self.cap)
        _check_jitter(self.jitter)
        # The exponent from which the cap applies, so that long retry loops never compute a
        # float power that overflows.
        if self.base == 0.0 or self.factor == 1.0:
            cap_exponent = math.inf
        else:
            # Logs of each, not of the ratio, which can overflow for a tiny base.
            cap_exponent = (math.log(self.cap) - math.log(self.base)) / math.log(self.factor)
        object.__setattr__(self, "_cap_exponent", cap_exponent)
        # The raw delays of the first retries, looked up instead of computed per decision.
        table = tuple(self._raw(retry) for retry in range(1, _TABLE_SIZE + 1))
        object.__setattr__(self, "_table", table)

    def _raw(self, retry: int) -> float:
        if self.base == 0.0:
            return 0.0
        exponent = retry - 1 if retry > 1 else 0
        if exponent >= self._cap_exponent:
            return self.cap
        try:
            raw = self.base * self.factor**exponent
        except OverflowError:  # factor ** exponent alone overflows when base is tiny
            raw = math.exp(math.log(self.base) + exponent * math.log(self.factor))
        return min(self.cap, raw)

    def delay(self, retry: int, previous: float | None, rng: random.Random) -> float:
        """Return the capped exponential delay for retry ``retry``, jittered."""
        raw = self._table[retry - 1] if 0 < retry <= _TABLE_SIZE else self._raw(retry)
        jitter = self.jitter
        if jitter is _FULL:
            return rng.random() * raw
        if jitter is _EQUAL:
            half = raw * 0.5
            return half + rng.random() * half
        return raw


@dataclass(frozen=True, slots=True)
class Decorrelated:
    """Brooker's decorrelated jitter: ``min(cap, U(base, multiplier * previous))``.

    The first retry uses ``previous = base``. Each delay depends on the one before, which keeps
    clients that failed together from retrying together even without a shared attempt count.
    """

    base: float = 0.1
    cap: float = 20.0
    multiplier: float = 3.0

    def __post_init__(self) -> None:
        finite_above("base", self.base, 0.0)
        finite_at_least("cap", self.cap, 0.0)
        if self.cap < self.base:
            raise ConfigError("cap", f"must be >= base ({self.base:g})", self.cap)
        finite_at_least("multiplier", self.multiplier, 1.0)

    def delay(self, retry: int, previous: float | None, rng: random.Random) -> float:
        """Return the next decorrelated delay from ``previous``."""
        last = self.base if previous is None or previous < self.base else previous
        return min(self.cap, rng.uniform(self.base, self.multiplier * last))
