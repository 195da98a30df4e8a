"""Retriers and Catchers (spec, "Retrying after error" and "Fallback states").

The delay maths is not written again here: each Retrier holds the
:func:`stormproof.policies.presets.step_functions` policy built from its fields, and asks that
policy's backoff for the delay of retry ``n``: ``min(IntervalSeconds * BackoffRate ** (n - 1),
MaxDelaySeconds)``, drawn from ``U(0, that)`` with ``JitterStrategy: FULL``.

Matching, in order of the checks:

* ``States.Runtime`` is terminal: nothing matches it, not even ``States.ALL`` (Step Functions
  developer guide, "States.Runtime ... is not retriable").
* ``States.ALL`` matches every other error.
* An error name matches itself.
* ``States.Timeout`` also matches ``States.HeartbeatTimeout`` (spec, Appendix A: a heartbeat
  expiry is a kind of ``States.Timeout``); ``States.HeartbeatTimeout`` matches only it.
* ``States.TaskFailed`` matches any error a *task* reported, except the timeouts.
* ``States.BranchFailed`` matches any error that made a Parallel branch or a Map iteration fail.

Retriers are scanned in order and the first one whose ``ErrorEquals`` matches decides: if its
``MaxAttempts`` are used up, the error goes to the Catchers, it does not fall through to a later
retrier (spec, "Complex retry scenarios").
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from stormproof.policies.presets import step_functions
from stormproof.policies.retry import RetryPolicy
from stormproof.workflows.asl.errors import (
    ALL,
    BRANCH_FAILED,
    HEARTBEAT_TIMEOUT,
    RUNTIME,
    TASK_FAILED,
    TIMEOUT,
)
from stormproof.workflows.asl.jsonpath import JsonPath

__all__ = ["Catcher", "ErrorOrigin", "Retrier", "error_matches", "find_catcher", "next_retry"]


@dataclass(frozen=True, slots=True)
class ErrorOrigin:
    """Where an error came from: a task (``task``) or a failed branch/iteration (``branch``)."""

    task: bool = False
    branch: bool = False


def error_matches(names: Sequence[str], error: str, origin: ErrorOrigin) -> bool:
    """Whether an ``ErrorEquals`` list matches ``error`` reported from ``origin``."""
    if error == RUNTIME:
        return False
    for name in names:
        if name in (ALL, error):
            return True
        if name == TIMEOUT and error == HEARTBEAT_TIMEOUT:
            return True
        if name == TASK_FAILED and origin.task and error not in (TIMEOUT, HEARTBEAT_TIMEOUT):
            return True
        if name == BRANCH_FAILED and origin.branch:
            return True
    return False


@dataclass(frozen=True, slots=True)
class Retrier:
    """One element of a state's ``Retry`` array, with the States Language defaults."""

    error_equals: tuple[str, ...]
    interval_seconds: int = 1
    max_attempts: int = 3
    backoff_rate: float = 2.0
    max_delay_seconds: int | None = None
    jitter_strategy: str = "NONE"
    policy: RetryPolicy = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        policy = step_functions(
            interval=self.interval_seconds,
            max_attempts=self.max_attempts,
            backoff_rate=self.backoff_rate,
            max_delay=self.max_delay_seconds,
            jitter="FULL" if self.jitter_strategy == "FULL" else "NONE",
            rng=0,  # never drawn from: delays use the rng the driver passes in
        )
        object.__setattr__(self, "policy", policy)

    def delay(self, retry: int, rng: random.Random) -> float:
        """The delay before retry number ``retry`` (1 for the first retry)."""
        return self.policy.backoff.delay(retry, None, rng)


@dataclass(frozen=True, slots=True)
class Catcher:
    """One element of a state's ``Catch`` array.

    ``result_path`` is where the Error Output goes in the state's raw input; ``None`` means
    ``"ResultPath": null`` (the raw input passes through unchanged).
    """

    error_equals: tuple[str, ...]
    next: str
    result_path: JsonPath | None


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """Retry after ``delay`` seconds; ``retry_state`` counts the retry just granted."""

    retrier: int
    delay: float
    retry_state: tuple[int, ...]


def next_retry(
    retriers: Sequence[Retrier],
    error: str,
    origin: ErrorOrigin,
    retry_state: Sequence[int],
    rng: random.Random,
) -> RetryDecision | None:
    """Ask the first matching retrier; ``None`` when none matches or it is exhausted."""
    for index, retrier in enumerate(retriers):
        if not error_matches(retrier.error_equals, error, origin):
            continue
        used = retry_state[index] if index < len(retry_state) else 0
        if used >= retrier.max_attempts:
            return None
        counts = list(retry_state) + [0] * (len(retriers) - len(retry_state))
        counts[index] = used + 1
        return RetryDecision(index, retrier.delay(used + 1, rng), tuple(counts))
    return None


def find_catcher(catchers: Sequence[Catcher], error: str, origin: ErrorOrigin) -> Catcher | None:
    """The first catcher whose ``ErrorEquals`` matches, or ``None``."""
    for catcher in catchers:
        if error_matches(catcher.error_equals, error, origin):
            return catcher
    return None
