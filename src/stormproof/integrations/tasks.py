"""What the task-queue adapters share: a retry decision for a task that failed on a worker.

A queued task's retries are separate executions, often on other workers, so the per-call
:class:`~stormproof.policies.retry.RetryCall` of an in-process retry cannot live between them.
Instead it is rebuilt for each failure from what the queue keeps with the message: how many
retries came before, when the first attempt started and the previous delay. The policy then
decides exactly as it does in process -- classification (``retry_on``), ``max_attempts``, the
total deadline, the backoff with its seeded jitter, and the shared budget -- and the adapter
hands the delay to the queue (Celery's ``countdown``, Dramatiq's ``delay``) instead of
sleeping. The Celery helpers are in :mod:`stormproof.integrations.celery`, the Dramatiq
middleware in :mod:`stormproof.integrations.dramatiq`.

Times are wall-clock epoch seconds (``time.time``): a task's attempts run in different
processes, so a monotonic clock would not do. Budgets are per worker process: each process
keeps its own, like each SDK client keeps its own retry quota.
"""

from __future__ import annotations

from stormproof._validate import int_at_least
from stormproof.policies.deadline import Deadline
from stormproof.policies.retry import GiveUp, RetryAfter, RetryCall, RetryPolicy

__all__ = ["task_retry_decision"]


def task_retry_decision(
    policy: RetryPolicy,
    error: BaseException,
    *,
    retries: int,
    now: float,
    started_at: float | None = None,
    last_delay: float | None = None,
    retry_after: float | None = None,
) -> RetryAfter | GiveUp:
    """Decide what follows a task execution that raised ``error``.

    Args:
        policy: the task's retry policy.
        error: what the execution raised.
        retries: retries made before this execution (0 for the first execution).
        now: the time of the failure (epoch seconds).
        started_at: when the first execution started; with ``policy.total_timeout`` it sets
            the deadline across retries (``None``: no deadline).
        last_delay: the delay chosen before this execution (for decorrelated backoff).
        retry_after: a delay asked for by the task itself (seconds), replacing the backoff.

    Returns the policy's :class:`RetryAfter` (the delay to hand to the queue) or
    :class:`GiveUp`. The context deadline of the worker is ignored: it belongs to the worker,
    not to the task.
    """
    int_at_least("retries", retries, 0)
    total = policy.total_timeout
    deadline = None if total is None or started_at is None else Deadline(started_at + total)
    call = RetryCall(policy, now if started_at is None else started_at, deadline, policy.rng)
    call.attempt = retries + 1
    call.last_delay = last_delay
    return call.on_failure(now, error, retry_after=retry_after)
