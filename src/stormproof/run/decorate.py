"""``@stormproof.retry``: the one-line way to retry a sync or async function."""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable
from typing import Any, TypeVar, cast, overload

from stormproof._validate import int_at_least
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
    function: Callable[..., Any] | None = None
    if policy is not None and not isinstance(policy, RetryPolicy):
        if not callable(policy):
            raise ConfigError("policy", "must be a RetryPolicy or the function to decorate", policy)
        function, policy = policy, None
    if attempts is not None and retries is not None:
        raise ConfigError("attempts", "give either attempts or retries, not both")
    changes: dict[str, Any] = {}
    if on is not None:
        changes["retry_on"] = on
    if attempts is not None:
        int_at_least("attempts", attempts, 1)
        changes["max_attempts"] = attempts
    if retries is not None:
        int_at_least("retries", retries, 0)
        changes["max_attempts"] = retries + 1
    if backoff is not None:
        changes["backoff"] = backoff
    if attempt_timeout is not None:
        changes["attempt_timeout"] = attempt_timeout
    if total_timeout is not None:
        changes["total_timeout"] = total_timeout
    if budget is not _UNSET:
        changes["budget"] = budget
    options: dict[str, Any] = {
        "clock": clock,
        "on_retry": on_retry,
        "on_give_up": on_give_up,
        "reraise": reraise,
    }

    def build() -> RetryPolicy:
        # Without a given policy each decorated function gets its own default policy, so that
        # unrelated functions do not share one retry budget.
        base = policy if policy is not None else presets.default()
        own = dict(changes)
        if rng is not None:
            own["rng"] = rng if isinstance(rng, random.Random) else random.Random(rng)
        return base.replace(**own) if own else base

    build()  # validate the overrides now, at decoration time, not at the first call

    def decorate(fn: F) -> F:
        chosen = build()
        if inspect.iscoroutinefunction(fn):
            return cast(F, AsyncRetrying(chosen, **options)(fn))
        return cast(F, Retrying(chosen, **options)(fn))

    return decorate if function is None else decorate(function)
