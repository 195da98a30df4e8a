"""Validators for configuration dataclasses; each raises ConfigError naming the field."""

from __future__ import annotations

import math

from stormproof.errors import ConfigError


def finite_at_least(field: str, value: float, minimum: float) -> None:
    """Require a finite number >= ``minimum``."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ConfigError(field, "must be a number", value)
    if math.isnan(value) or math.isinf(value):
        raise ConfigError(field, "must be finite", value)
    if value < minimum:
        raise ConfigError(field, f"must be >= {minimum:g}", value)


def finite_above(field: str, value: float, bound: float) -> None:
    """Require a finite number strictly greater than ``bound``."""
    finite_at_least(field, value, -math.inf)
    if value <= bound:
        raise ConfigError(field, f"must be > {bound:g}", value)


def optional_positive(field: str, value: float | None) -> None:
    """Require ``None`` or a finite number > 0."""
    if value is not None:
        finite_above(field, value, 0.0)


def int_at_least(field: str, value: int, minimum: int) -> None:
    """Require an int >= ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(field, "must be an integer", value)
    if value < minimum:
        raise ConfigError(field, f"must be >= {minimum}", value)
