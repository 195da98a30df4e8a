"""Bounded random distributions for the parameters of a burst shape (lengths, gaps, rates).

A burst shape draws each burst's length and rate and each idle gap from one of these. Every
distribution has finite ``low`` and ``high`` bounds that every draw respects, so a schedule can
be reasoned about ("no idle gap is longer than 20 s") and property-tested.

Text forms, for the command line (:func:`parse_distribution`):

==================  ==========================================================
``3``               always 3 (:class:`Fixed`)
``1..4``            uniform between 1 and 4 (:class:`Uniform`)
``exp:5``           exponential with mean 5, cut at 20 x the mean (:class:`Exponential`)
``exp:5:2..30``     exponential with mean 5, truncated to [2, 30]
==================  ==========================================================
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from stormproof._validate import finite_above, finite_at_least
from stormproof.errors import ConfigError

__all__ = ["Distribution", "Exponential", "Fixed", "Uniform", "parse_distribution"]

#: An exponential without an upper bound is cut at this multiple of its mean (the tail beyond
#: it has probability e^-20, about 2e-9), so every distribution has finite bounds.
DEFAULT_EXPONENTIAL_CAP = 20.0


@dataclass(frozen=True, slots=True)
class Fixed:
    """Always ``value`` (>= 0)."""

    value: float

    def __post_init__(self) -> None:
        finite_at_least("value", self.value, 0.0)

    @property
    def low(self) -> float:
        """The smallest possible draw."""
        return float(self.value)

    @property
    def high(self) -> float:
        """The largest possible draw."""
        return float(self.value)

    def sample(self, rng: random.Random) -> float:
        """Return ``value`` (draws nothing from ``rng``)."""
        return float(self.value)

    def __str__(self) -> str:
        return f"{self.value:g}"


@dataclass(frozen=True, slots=True)
class Uniform:
    """Uniform on ``[low, high]`` (0 <= low <= high)."""

    low: float
    high: float

    def __post_init__(self) -> None:
        finite_at_least("low", self.low, 0.0)
        finite_at_least("high", self.high, self.low)

    def sample(self, rng: random.Random) -> float:
        """One draw, from exactly one ``rng.random()``."""
        return self.low + (self.high - self.low) * rng.random()

    def __str__(self) -> str:
        return f"{self.low:g}..{self.high:g}"


@dataclass(frozen=True, slots=True)
class Exponential:
    """Exponential with ``mean``, truncated to ``[low, high]``.

    ``high`` defaults to ``low + 20 * mean``. Sampling inverts the truncated CDF, one
    ``rng.random()`` per draw, so a draw can never fall outside the bounds (no rejection loop).
    """

    mean: float
    low: float = 0.0
    high: float | None = None

    def __post_init__(self) -> None:
        finite_above("mean", self.mean, 0.0)
        finite_at_least("low", self.low, 0.0)
        if self.high is None:
            object.__setattr__(self, "high", self.low + DEFAULT_EXPONENTIAL_CAP * self.mean)
        else:
            finite_above("high", self.high, self.low)

    def sample(self, rng: random.Random) -> float:
        """One draw, from exactly one ``rng.random()``."""
        assert self.high is not None
        span = self.high - self.low
        # The CDF of the truncated law is (1 - e^(-x/mean)) / (1 - e^(-span/mean)) on [0, span].
        mass = -math.expm1(-span / self.mean)
        x = -self.mean * math.log1p(-rng.random() * mass)
        return self.low + min(max(x, 0.0), span)

    def __str__(self) -> str:
        return f"exp:{self.mean:g}:{self.low:g}..{self.high:g}"


Distribution = Fixed | Uniform | Exponential


def _number(field: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(
            field, "must be a number, LOW..HIGH or exp:MEAN[:LOW..HIGH]", text
        ) from None
    return value


def parse_distribution(field: str, text: str) -> Distribution:
    """Parse ``3``, ``1..4``, ``exp:5`` or ``exp:5:2..30``; ``ConfigError`` names ``field``."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(field, "must be a number, LOW..HIGH or exp:MEAN[:LOW..HIGH]", text)
    text = text.strip()
    try:
        if text.startswith("exp:"):
            mean_text, _, bounds = text[4:].partition(":")
            mean = _number(field, mean_text)
            if not bounds:
                return Exponential(mean)
            low_text, sep, high_text = bounds.partition("..")
            if not sep:
                raise ConfigError(field, "exponential bounds must be LOW..HIGH", text)
            return Exponential(mean, _number(field, low_text), _number(field, high_text))
        low_text, sep, high_text = text.partition("..")
        if sep:
            return Uniform(_number(field, low_text), _number(field, high_text))
        return Fixed(_number(field, text))
    except ConfigError as error:
        if error.field == field:
            raise
        # Re-raise under the caller's field name, keeping the inner rule.
        raise ConfigError(f"{field}.{error.field}", error.rule, text) from None
