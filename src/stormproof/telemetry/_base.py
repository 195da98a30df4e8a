"""What every adapter shares: how events map to metric updates, and the breakers' states.

The mapping lives here once, so the Prometheus and OpenTelemetry adapters cannot drift apart;
an adapter supplies only the four primitive updates.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable, Sequence

from stormproof.errors import ConfigError
from stormproof.events.queue import QueueStore
from stormproof.policies.breaker import BreakerState, StateChange
from stormproof.run._common import RetryEvent
from stormproof.run.pipeline import PipelineEvent

#: Every breaker is built closed, so a breaker bound with ``breaker_hook`` starts here.
_INITIAL_STATE = BreakerState.CLOSED


def _check_buckets(buckets: Sequence[float]) -> tuple[float, ...]:
    """Validate histogram bucket bounds: finite numbers, strictly increasing, at least one."""
    try:
        bounds = tuple(float(b) for b in buckets)
    except (TypeError, ValueError):
        raise ConfigError("buckets", "must be a sequence of numbers (seconds)", buckets) from None
    if not bounds:
        raise ConfigError("buckets", "must hold at least one bound", buckets)
    if not all(math.isfinite(b) for b in bounds):
        raise ConfigError("buckets", "must be finite (the +Inf bucket is implicit)", buckets)
    if any(lower >= upper for lower, upper in itertools.pairwise(bounds)):
        raise ConfigError("buckets", "must be strictly increasing", buckets)
    return bounds


class _RecorderBase:
    """Implements the :class:`~stormproof.telemetry.Recorder` methods on four primitives."""

    __slots__ = ("_lock", "_queues", "_states")

    def __init__(self) -> None:
        # Guards _states and the state-set updates: two transitions of one breaker reported from
        # two threads must not leave two states at 1.
        self._lock = threading.Lock()
        self._states: dict[str, BreakerState] = {}
        self._queues: dict[str, tuple[int, int, float]] = {}

    # -- primitives an adapter implements -----------------------------------------------------

    def _count_retry(self, kind: str, reason: str) -> None:
        raise NotImplementedError

    def _observe_delay(self, delay: float) -> None:
        raise NotImplementedError

    def _count_decision(self, mechanism: str, outcome: str) -> None:
        raise NotImplementedError

    def _count_transition(self, name: str, old: str, new: str) -> None:
        raise NotImplementedError

    def _state_set(self, name: str, state: BreakerState) -> None:
        """Publish ``state`` as the current state of breaker ``name`` (called under the lock)."""

    def _queue_set(self, name: str, visible: int, in_flight: int, oldest_age: float) -> None:
        """Publish a queue's depth and oldest age (called under the lock)."""

    # -- the Recorder protocol ----------------------------------------------------------------

    def retry(self, event: RetryEvent) -> None:
        """Record a retry driver's decision; usable as ``on_retry`` and ``on_give_up``.

        Increments ``retry_attempts_total{kind, reason}`` and, for a retry, observes the chosen
        delay in ``retry_delay_seconds`` (a give-up has no delay).
        """
        self._count_retry(event.kind, event.reason)
        if event.delay is not None:
            self._observe_delay(event.delay)

    def pipeline(self, event: PipelineEvent) -> None:
        """Record a pipeline decision; usable as ``Pipeline(on_event=...)``.

        Increments ``pipeline_decisions_total{mechanism, outcome}``. A decision of the pipeline's
        retry strategy (``mechanism="retry"``, outcome ``retry`` or ``give_up``) is also
        recorded in the retry metrics, exactly as :meth:`retry` would record it, because the
        retry driver inside a pipeline has no hook of its own.
        """
        mechanism = event.mechanism
        outcome = event.outcome
        self._count_decision(mechanism, outcome)
        if mechanism == "retry" and (outcome == "retry" or outcome == "give_up"):
            self._count_retry(outcome, event.reason)
            if event.delay is not None:
                self._observe_delay(event.delay)

    def breaker(self, name: str, change: StateChange) -> None:
        """Record that breaker ``name`` went from ``change.old`` to ``change.new``.

        Increments ``breaker_transitions_total{name, from, to}`` and moves the
        ``breaker_state`` state set to ``change.new``. A breaker seen here for the first time
        is added, even without :meth:`breaker_hook`.
        """
        with self._lock:
            self._states[name] = change.new
            self._count_transition(name, change.old.value, change.new.value)
            self._state_set(name, change.new)

    def breaker_hook(self, name: str) -> Callable[[StateChange], None]:
        """A hook for ``CircuitBreaker(on_state_change=...)`` that records under ``name``.

        Binding also publishes the breaker as closed (the state every breaker starts in), so
        its ``breaker_state`` series exist before the first transition; binding a name that is
        already known leaves its state as it is. Use one name per breaker: two breakers under
        one name would overwrite each other's state.

        Raises:
            ConfigError: ``name`` is not a non-empty string.
        """
        if not isinstance(name, str) or not name:
            raise ConfigError("name", "must be a non-empty string (the breaker's name)", name)
        with self._lock:
            if name not in self._states:
                self._states[name] = _INITIAL_STATE
                self._state_set(name, _INITIAL_STATE)

        def on_state_change(change: StateChange) -> None:
            self.breaker(name, change)

        return on_state_change

    def queue(self, name: str, visible: int, in_flight: int, oldest_age: float | None) -> None:
        """Record a queue's depth and the age of its oldest message (0 when empty).

        Sets ``queue_messages{queue, state=visible|in_flight}`` and
        ``queue_oldest_age_seconds{queue}``. Call it periodically, or use :meth:`observe_queue`.
        A dead-letter queue that is not empty, or whose oldest message is old, is the alarm that
        REL 2 asks for: for example, in PromQL,
        ``stormproof_queue_messages{queue="orders-dlq", state="visible"} > 0`` for 5 minutes.
        """
        age = 0.0 if oldest_age is None else float(oldest_age)
        with self._lock:
            self._queues[name] = (int(visible), int(in_flight), age)
            self._queue_set(name, int(visible), int(in_flight), age)

    def observe_queue(self, store: QueueStore, name: str, now: float) -> None:
        """Read ``name``'s depth and oldest age from a queue store and :meth:`queue` them."""
        visible, in_flight = store.depth(name, now)
        self.queue(name, visible, in_flight, store.oldest_age(name, now))

    def queue_depths(self) -> dict[str, tuple[int, int, float]]:
        """The last recorded ``(visible, in_flight, oldest_age)`` of every queue (a copy)."""
        with self._lock:
            return dict(self._queues)

    def breaker_states(self) -> dict[str, BreakerState]:
        """The last reported state of every breaker this recorder knows, by name (a copy)."""
        with self._lock:
            return dict(self._states)
