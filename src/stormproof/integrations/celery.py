"""Celery tasks with stormproof backoff (full jitter, budgets) instead of Celery's own.

    from stormproof.integrations.celery import retry_task

    @app.task(bind=True)
    @retry_task(policy)                 # a stormproof RetryPolicy, shared by the worker
    def charge(self, order_id):
        ...

:func:`retry_task` wraps a *bound* task's body: an exception the policy classifies as retryable
becomes ``self.retry(countdown=<the policy's delay>)``; a give-up (not retryable, attempts
exhausted, past ``total_timeout``, budget refused) re-raises the original exception, so Celery
marks the task failed as usual. Inside your own ``except`` block, :func:`celery_retry` does the
same for one exception, and :func:`celery_countdown` only computes the delay.

Celery's ``max_retries`` is bypassed: each retry is sent with ``max_retries`` set to allow
exactly that retry, so the policy's ``max_attempts`` is the limit. Celery's ``Retry``,
``Ignore`` and ``Reject`` pass through untouched. ``total_timeout`` is measured from the first
execution when the task was retried by :func:`retry_task`/:func:`celery_retry` (the start time
travels in the ``stormproof_started_at`` header); ``request.retries`` gives the attempt number.
A success tells the budget with no retry cost (the cost of a retry made by another execution is
not known here), so :class:`~stormproof.policies.budget.AwsRetryQuota` earns its no-retry
increment rather than a refund.
"""

from __future__ import annotations

import functools
import importlib
import time
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar, cast

from stormproof.errors import ConfigError
from stormproof.integrations.tasks import task_retry_decision
from stormproof.policies.retry import GiveUp, RetryPolicy

__all__ = ["celery_countdown", "celery_retry", "retry_task"]

F = TypeVar("F", bound=Callable[..., Any])

#: The header that carries the first execution's start time (epoch seconds) across retries.
STARTED_HEADER = "stormproof_started_at"


def _celery_exceptions() -> Any:
    try:
        return importlib.import_module("celery.exceptions")
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"stormproof.integrations.celery needs celery: pip install 'stormproof[celery]' "
            f"({error})"
        ) from error


def _started_at(task: Any) -> float | None:
    headers = getattr(task.request, "headers", None) or {}
    value = headers.get(STARTED_HEADER)
    if value is None:
        value = getattr(task.request, STARTED_HEADER, None)
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def celery_countdown(
    task: Any,
    error: BaseException,
    policy: RetryPolicy,
    *,
    clock: Callable[[], float] = time.time,
) -> float | None:
    """The countdown (seconds) the policy gives this failure, or ``None`` to give up."""
    decision = task_retry_decision(
        policy,
        error,
        retries=int(task.request.retries or 0),
        now=clock(),
        started_at=_started_at(task),
    )
    return None if isinstance(decision, GiveUp) else decision.delay


def celery_retry(
    task: Any,
    error: BaseException,
    policy: RetryPolicy,
    *,
    clock: Callable[[], float] = time.time,
) -> NoReturn:
    """Retry ``task`` after the policy's delay, or re-raise ``error`` when it gives up.

    Call it in an ``except`` block of a bound task: ``celery_retry(self, exc, policy)``.
    """
    if not isinstance(policy, RetryPolicy):
        raise ConfigError("policy", "must be a stormproof RetryPolicy", policy)
    retries = int(task.request.retries or 0)
    now = clock()
    started = _started_at(task)
    decision = task_retry_decision(policy, error, retries=retries, now=now, started_at=started)
    if isinstance(decision, GiveUp):
        raise error
    headers = {STARTED_HEADER: now if started is None else started}
    raise task.retry(
        exc=error,
        countdown=decision.delay,
        max_retries=retries + 1,
        headers=headers,
    )


def retry_task(policy: RetryPolicy, *, clock: Callable[[], float] = time.time) -> Callable[[F], F]:
    """Decorate a bound Celery task's body so that failures retry under ``policy``.

    Put it *under* ``@app.task(bind=True)``. See the module docstring.
    """
    if not isinstance(policy, RetryPolicy):
        raise ConfigError("policy", "must be a stormproof RetryPolicy", policy)
    exceptions = _celery_exceptions()
    passthrough = (exceptions.Retry, exceptions.Ignore, exceptions.Reject)

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def run(task: Any, *args: Any, **kwargs: Any) -> Any:
            budget = policy.budget
            if budget is not None and not task.request.retries:
                budget.on_request(clock())
            try:
                result = fn(task, *args, **kwargs)
            except passthrough:
                raise
            except Exception as error:
                celery_retry(task, error, policy, clock=clock)
            if budget is not None:
                budget.on_success(clock(), retry_cost=None)
            return result

        return cast(F, run)

    return decorate
