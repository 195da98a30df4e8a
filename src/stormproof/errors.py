"""The exception hierarchy; everything stormproof raises on purpose derives from StormproofError."""

from __future__ import annotations

from typing import Any

__all__ = ["ConfigError", "DeadlineExceeded", "RetryError", "StormproofError"]

_MISSING: Any = object()


class StormproofError(Exception):
    """Root of every error stormproof raises deliberately."""


class ConfigError(StormproofError, ValueError):
    """Invalid configuration, raised when the object is constructed.

    The message names the field and the rule it broke, and the offending value when one was given:
    ``max_attempts: must be >= 1 (got 0)``.
    """

    def __init__(self, field: str, rule: str, value: Any = _MISSING) -> None:
        self.field = field
        self.rule = rule
        self.value = None if value is _MISSING else value
        message = f"{field}: {rule}"
        if value is not _MISSING:
            message += f" (got {value!r})"
        super().__init__(message)


class DeadlineExceeded(StormproofError, TimeoutError):
    """The deadline (total timeout, or one propagated from a caller) has passed.

    ``deadline`` is the absolute time on the clock in use, ``now`` when it was detected.
    """

    def __init__(self, message: str, *, deadline: float | None = None, now: float | None = None):
        super().__init__(message)
        self.deadline = deadline
        self.now = now


class RetryError(StormproofError):
    """A retried call gave up.

    Attributes:
        attempts: how many attempts were made in total (the first call counts as one).
        reason: why it stopped -- a :class:`stormproof.policies.retry.GiveUpReason` value.
        last_error: the exception of the last attempt, or ``None`` when the last attempt returned
            a result that the policy classified as retryable (see ``last_result``).
        last_result: that result, when there was one.

    The last exception is also chained as ``__cause__``, so tracebacks show it.
    """

    def __init__(
        self,
        *,
        attempts: int,
        reason: str,
        last_error: BaseException | None = None,
        last_result: Any = None,
        detail: str = "",
    ) -> None:
        self.attempts = attempts
        self.reason = reason
        self.last_error = last_error
        self.last_result = last_result
        self.detail = detail
        what = repr(last_error) if last_error is not None else f"result {last_result!r}"
        text = f"gave up after {attempts} attempt(s): {reason}"
        if detail:
            text += f" ({detail})"
        super().__init__(f"{text}; last outcome: {what}")
