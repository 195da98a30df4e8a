"""Deadlines: absolute points in time, propagated to nested calls through ``contextvars``.

A timeout says "this may take 5 s"; a deadline says "this must be done by t = 105 s". Deadlines
compose: a call made inside a scope with 2 s left must not wait 5 s, whatever its own timeout
says. stormproof keeps the tightest deadline of the current context in a ``ContextVar``, so it
follows asyncio tasks (which copy the context when created) and nested function calls, and does
not leak between threads. (gRPC propagates deadlines the same way across process boundaries.)

All times are seconds on one monotonic clock (see :mod:`stormproof.clock`); a deadline from one
clock means nothing on another.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from stormproof._validate import finite_at_least, optional_positive
from stormproof.errors import ConfigError, DeadlineExceeded

__all__ = ["Deadline", "Timeouts", "current_deadline", "deadline_scope"]


@dataclass(frozen=True, slots=True, order=True)
class Deadline:
    """An absolute time ``at`` (seconds on the clock in use) by which work must be finished."""

    at: float

    @classmethod
    def after(cls, now: float, seconds: float) -> Deadline:
        """The deadline ``seconds`` after ``now``."""
        finite_at_least("seconds", seconds, 0.0)
        return cls(now + seconds)

    def remaining(self, now: float) -> float:
        """Seconds left at ``now``; 0 once passed, never negative."""
        left = self.at - now
        return left if left > 0.0 else 0.0

    def expired(self, now: float) -> bool:
        """Whether the deadline has been reached at ``now``."""
        return now >= self.at

    def check(self, now: float, what: str = "operation") -> None:
        """Raise :class:`DeadlineExceeded` if the deadline has been reached at ``now``."""
        if now >= self.at:
            raise DeadlineExceeded(
                f"{what}: deadline {self.at:.6g} passed at {now:.6g}", deadline=self.at, now=now
            )

    def earliest(self, other: Deadline | None) -> Deadline:
        """The tighter of this deadline and ``other`` (``None`` means no deadline)."""
        if other is None or self.at <= other.at:
            return self
        return other


_CURRENT: ContextVar[Deadline | None] = ContextVar("stormproof.deadline", default=None)


def current_deadline() -> Deadline | None:
    """The tightest deadline of the current context, or ``None`` if there is none."""
    return _CURRENT.get()


@contextmanager
def deadline_scope(deadline: Deadline | None) -> Iterator[Deadline | None]:
    """Run a block under ``deadline``, or under the enclosing deadline if that is tighter.

    Yields the deadline in force inside the block. A scope can only tighten: code inside it that
    asks for a later deadline still sees the earlier, enclosing one. ``None`` leaves the
    enclosing deadline unchanged.

    >>> from stormproof.policies.deadline import Deadline, deadline_scope, current_deadline
    >>> with deadline_scope(Deadline(10.0)):
    ...     with deadline_scope(Deadline(30.0)):
    ...         current_deadline()
    Deadline(at=10.0)
    """
    outer = _CURRENT.get()
    tightest = outer if deadline is None else deadline.earliest(outer)
    token = _CURRENT.set(tightest)
    try:
        yield tightest
    finally:
        _CURRENT.reset(token)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """A per-attempt timeout and a total timeout, both optional, in seconds.

    ``total`` bounds the whole call including retries and sleeps; ``attempt`` bounds one attempt.
    A total shorter than one attempt would make the attempt timeout meaningless, so it is
    rejected.
    """

    attempt: float | None = None
    total: float | None = None

    def __post_init__(self) -> None:
        optional_positive("attempt_timeout", self.attempt)
        optional_positive("total_timeout", self.total)
        if self.attempt is not None and self.total is not None and self.total < self.attempt:
            raise ConfigError(
                "total_timeout",
                f"must be >= attempt_timeout ({self.attempt:g} s): the total bounds every attempt",
                self.total,
            )

    def call_deadline(self, now: float, outer: Deadline | None) -> Deadline | None:
        """The deadline of a whole call starting at ``now`` inside a context deadline ``outer``."""
        if self.total is None:
            return outer
        return Deadline(now + self.total).earliest(outer)

    def attempt_deadline(self, now: float, call: Deadline | None) -> Deadline | None:
        """The deadline of one attempt starting at ``now`` within the call deadline ``call``."""
        if self.attempt is None:
            return call
        return Deadline(now + self.attempt).earliest(call)
