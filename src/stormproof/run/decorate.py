"""``@stormproof.retry``: the one-line way to retry a sync or async function."""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable
from typing import Any, TypeVar, cast, overload

from stormproof.clock import SleepingClock
from stormproof.errors import ConfigError
from stormproof.policies import presets
from stormproof.policies.backoff import Backoff
from stormproof.policies.budget import RetryBudget
from stormproof.policies.retry import ErrorClassifier, RetryPolicy
from stormproof.run._common import Hooks
from stormproof.run.aio import AsyncRetrying
from stormproof.run.sync import Retrying

__all__ = ["retry"]

F = TypeVar("F", bound=Callable[..., Any])

_UNSET: Any = object()


@overload
def retry(policy: F, /) -> F: ...


@overload
def retry(
    policy: RetryPolicy | None = None,
    /,
    *,
    on: ErrorClassifier | None = None,
    attempts: int | None = None,
    retries: int | None = None,
    backoff: Backoff | None = None,
    attempt_timeout: float | None = None,
    total_timeout: float | None = None,
    budget: RetryBudget | None = _UNSET,
    rng: random.Random | int | None = None,
    clock: SleepingClock | None = None,
    on_retry: Hooks = None,
    on_give_up: Hooks = None,
    reraise: bool = False,
) -> Callable[[F], F]: ...


def retry(
    policy: Any = None,
    /,
    *,
    on: ErrorClassifier | None = None,
    attempts: int | None = None,
    retries: int | None = None,
    backoff: Backoff | None = None,
    attempt_timeout: float | None = None,
    total_timeout: float | None = None,
    budget: RetryBudget | None = _UNSET,
    rng: random.Random | int | None = None,
    clock: SleepingClock | None = None,
    on_retry: Hooks = None,
    on_give_up: Hooks = None,
    reraise: bool = False,
) -> Any:
    """Retry a function (sync or ``async def``) under a policy.

    Use it bare (``@stormproof.retry``, the :func:`~stormproof.policies.presets.default`
    policy), with a policy (``@stormproof.retry(my_policy)``), or with keyword overrides applied
    to the policy (or to the default one)::

        @stormproof.retry(on=ConnectionError, attempts=5, total_timeout=30)
        def fetch(url): ...

    ``attempts`` counts total attempts, ``retries`` the retries after the first; give one of
    them. ``budget=None`` removes the default policy's retry budget. ``rng`` (a seed or a
    ``random.Random``) fixes the jitter. ``clock``, ``on_retry``, ``on_give_up`` and ``reraise``
    configure the driver (see :class:`stormproof.run.Retrying`).

    The decorated function keeps its signature; its driver is available as ``fn.retrying``.
    Each decorated function gets its own policy object, and so its own budget, unless you pass
    the same policy to several.
    """
    if policy is not None and not isinstance(policy, RetryPolicy):
        if callable(policy):
            return retry()(policy)
        raise ConfigError("policy", "must be a RetryPolicy or the function to decorate", policy)
    if attempts is not None and retries is not None:
        raise ConfigError("attempts", "give either attempts or retries, not both")
    base = policy if policy is not None else presets.default()
    changes: dict[str, Any] = {}
    if on is not None:
        changes["retry_on"] = on
    if attempts is not None:
        changes["max_attempts"] = attempts
    if retries is not None:
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise ConfigError("retries", "must be an integer >= 0", retries)
        changes["max_attempts"] = retries + 1
    if backoff is not None:
        changes["backoff"] = backoff
    if attempt_timeout is not None:
        changes["attempt_timeout"] = attempt_timeout
    if total_timeout is not None:
        changes["total_timeout"] = total_timeout
    if budget is not _UNSET:
        changes["budget"] = budget
    if rng is not None:
        changes["rng"] = rng if isinstance(rng, random.Random) else random.Random(rng)
    chosen = base.replace(**changes) if changes else base
    options: dict[str, Any] = {
        "clock": clock,
        "on_retry": on_retry,
        "on_give_up": on_give_up,
        "reraise": reraise,
    }

    def decorate(fn: F) -> F:
        if inspect.iscoroutinefunction(fn):
            return cast(F, AsyncRetrying(chosen, **options)(fn))
        return cast(F, Retrying(chosen, **options)(fn))

    return decorate
