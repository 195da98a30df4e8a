"""Dramatiq actors with stormproof backoff (full jitter, budgets) instead of Dramatiq's own.

    import dramatiq
    from stormproof.integrations.dramatiq import StormproofRetries, use_stormproof_retries

    use_stormproof_retries(broker, policy)          # replaces dramatiq's Retries middleware

    @dramatiq.actor(retry_policy=other_policy)      # optional per-actor policy
    def charge(order_id): ...

:class:`StormproofRetries` takes the place of ``dramatiq.middleware.Retries`` (the two must not
run together, or a failure is enqueued twice: the worker refuses to boot with both). After a
failed execution it asks the policy (:func:`~stormproof.integrations.tasks.task_retry_decision`)
with the retries so far, the first execution's start time and the previous delay, all kept in
the message's options (``retries``, ``stormproof_started_at``, ``stormproof_last_delay``).
A retry re-enqueues the message with ``delay`` = the policy's delay in milliseconds; a give-up
fails the message (it goes to the dead-letter queue) and records the reason in
``stormproof_give_up``. ``raise dramatiq.Retry(delay=ms)`` asks for a specific delay (it
replaces the backoff, like a server's Retry-After), and the actor option ``throws`` still fails
those exception types at once, as in Dramatiq.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

try:
    import dramatiq
    from dramatiq.broker import Broker, MessageProxy
    from dramatiq.middleware import Retries
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"stormproof.integrations.dramatiq needs dramatiq: pip install 'stormproof[dramatiq]' "
        f"({error})"
    ) from error

from stormproof.errors import ConfigError
from stormproof.integrations.tasks import task_retry_decision
from stormproof.policies.retry import GiveUp, RetryPolicy

__all__ = ["StormproofRetries", "use_stormproof_retries"]


class StormproofRetries(dramatiq.Middleware):
    """Retry failed messages under a stormproof :class:`RetryPolicy`. See the module docstring.

    Args:
        policy: the default policy (an actor's ``retry_policy`` option overrides it).
        clock: wall-clock epoch seconds (default ``time.time``).
    """

    def __init__(self, policy: RetryPolicy, *, clock: Callable[[], float] = time.time) -> None:
        if not isinstance(policy, RetryPolicy):
            raise ConfigError("policy", "must be a stormproof RetryPolicy", policy)
        self.policy = policy
        self.clock = clock

    @property
    def actor_options(self) -> set[str]:
        """Actors may set ``retry_policy`` and ``throws``."""
        return {"retry_policy", "throws"}

    def _policy(self, broker: Broker, message: MessageProxy) -> RetryPolicy:
        actor = broker.get_actor(message.actor_name)
        chosen = actor.options.get("retry_policy", self.policy)
        if not isinstance(chosen, RetryPolicy):
            raise ConfigError("retry_policy", "must be a stormproof RetryPolicy", chosen)
        return chosen

    def before_worker_boot(self, broker: Broker, worker: Any) -> None:
        """Refuse to run next to dramatiq's own Retries middleware."""
        if any(isinstance(m, Retries) for m in broker.middleware):
            raise ConfigError(
                "broker.middleware",
                "holds dramatiq's Retries next to StormproofRetries; use use_stormproof_retries()",
            )

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        """Record the first execution's start, and tell the budget a new task started."""
        if "stormproof_started_at" not in message.options:
            now = self.clock()
            message.options["stormproof_started_at"] = now
            budget = self._policy(broker, message).budget
            if budget is not None:
                budget.on_request(now)

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any | None = None,
        exception: BaseException | None = None,
    ) -> None:
        """Re-enqueue a failed message after the policy's delay, or fail it."""
        policy = self._policy(broker, message)
        now = self.clock()
        if exception is None:
            if policy.budget is not None:
                policy.budget.on_success(now, retry_cost=None)
            return
        actor = broker.get_actor(message.actor_name)
        throws = message.options.get("throws") or actor.options.get("throws")
        if throws and isinstance(exception, throws):
            message.options["stormproof_give_up"] = "throws"
            message.fail()
            return
        retry_after = None
        if isinstance(exception, dramatiq.Retry) and exception.delay is not None:
            retry_after = exception.delay / 1000.0
        retries = int(message.options.get("retries", 0))
        decision = task_retry_decision(
            policy,
            exception,
            retries=retries,
            now=now,
            started_at=message.options.get("stormproof_started_at"),
            last_delay=message.options.get("stormproof_last_delay"),
            retry_after=retry_after,
        )
        if isinstance(decision, GiveUp):
            message.options["stormproof_give_up"] = decision.reason.value
            message.fail()
            return
        message.options["retries"] = retries + 1
        message.options["stormproof_last_delay"] = decision.delay
        # A Message (the proxy only forwards attributes), carrying the updated options.
        broker.enqueue(message.copy(), delay=round(decision.delay * 1000.0))


def use_stormproof_retries(
    broker: Broker, policy: RetryPolicy, *, clock: Callable[[], float] = time.time
) -> StormproofRetries:
    """Remove dramatiq's ``Retries`` middleware from ``broker`` and add stormproof's.

    Call it before declaring actors, so that the ``retry_policy`` option is known.
    """
    middleware = StormproofRetries(policy, clock=clock)
    broker.middleware[:] = [m for m in broker.middleware if not isinstance(m, Retries)]
    broker.add_middleware(middleware)
    return middleware
