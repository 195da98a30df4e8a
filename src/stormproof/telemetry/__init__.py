"""Telemetry: turn stormproof's decision hooks into metrics.

stormproof's mechanisms already report every decision through plain callables; this package only
adapts those reports to a metrics library. Nothing here imports a third-party package: the
adapters live in their own modules, each behind an optional extra.

* :mod:`stormproof.telemetry.prometheus` -- :class:`~.prometheus.PrometheusRecorder`, for
  ``prometheus-client`` (``pip install 'stormproof[prometheus]'``);
* :mod:`stormproof.telemetry.otel` -- :class:`~.otel.OpenTelemetryRecorder`, for the
  OpenTelemetry metrics API (``pip install 'stormproof[otel]'``).

Event sources
-------------

===============================================  =============================================
hook                                             recorder method
===============================================  =============================================
``Retrying(on_retry=..., on_give_up=...)``,      :meth:`Recorder.retry`, given a
``AsyncRetrying(...)``, ``@retry(...)``          :class:`~stormproof.run.RetryEvent`
``Pipeline(on_event=...)``                       :meth:`Recorder.pipeline`, given a
                                                 :class:`~stormproof.run.pipeline.PipelineEvent`
``CircuitBreaker(on_state_change=...)``          ``recorder.breaker_hook("db")``, which calls
                                                 :meth:`Recorder.breaker` with the name and a
                                                 :class:`~stormproof.policies.breaker.StateChange`
===============================================  =============================================

A breaker's ``on_state_change`` is told the change but not the breaker's name, hence
``breaker_hook(name)``: it returns the hook bound to that name, and also records the breaker as
closed from the start (every breaker is built closed), so its state series exists before the
first transition.

Metrics
-------

Both adapters use the same names (with the default namespace ``stormproof``), so one dashboard
serves either path:

``stormproof_retry_attempts_total`` (counter; labels ``kind``, ``reason``)
    One per decision of a retry driver: ``kind="retry"`` when it is about to wait and retry
    (``reason`` ``backoff`` or ``server_delay``), ``kind="give_up"`` when it stops (``reason`` a
    :class:`~stormproof.policies.retry.GiveUpReason` value, such as ``attempts_exhausted``).
``stormproof_retry_delay_seconds`` (histogram)
    The delay chosen before each retry. Buckets (:data:`DELAY_BUCKETS`) run from 10 ms to 60 s:
    the default backoff starts at 0.1 s and is capped at 20 s, and server-given delays
    (Retry-After) are capped at 60 s by default (``RetryPolicy.max_server_delay``).
``stormproof_pipeline_decisions_total`` (counter; labels ``mechanism``, ``outcome``)
    One per :class:`~stormproof.run.pipeline.PipelineEvent`, for example
    ``mechanism="breaker", outcome="failure"`` or ``mechanism="rate_limit", outcome="wait"``.
    The event's free-text ``reason`` (an exception's class name, for instance) is left out on
    purpose: labels must have few values. Retry decisions inside a pipeline are *also* counted
    in the two retry metrics above, since a pipeline's internal retry driver cannot be hooked
    directly; a pipeline's retries would otherwise be missing from them.
``stormproof_breaker_state`` (gauge; labels ``name``, ``state``)
    The "state set" pattern: for every breaker, one series per
    :class:`~stormproof.policies.breaker.BreakerState`, 1 for the current state and 0 for the
    others, so ``stormproof_breaker_state{state="open"} == 1`` selects the open breakers.
``stormproof_breaker_transitions_total`` (counter; labels ``name``, ``from``, ``to``)
    One per state change of a breaker.
``stormproof_queue_messages`` (gauge; labels ``queue``, ``state`` = ``visible``/``in_flight``)
and ``stormproof_queue_oldest_age_seconds`` (gauge; label ``queue``)
    A queue's depth and its oldest message's age, as last recorded with ``recorder.queue(...)``
    or ``recorder.observe_queue(store, name, now)`` (call it on a schedule). The dead-letter
    alarm REL 2 asks for, in PromQL:
    ``stormproof_queue_messages{queue="orders-dlq", state="visible"} > 0`` held for 5 minutes,
    or ``stormproof_queue_oldest_age_seconds{queue="orders-dlq"} > 3600``.

Two notes on what the hooks can see. The breaker's state is the one it last *reported*: an open
breaker whose ``open_duration`` has passed reports half-open only when it is next asked
(``allow``), so the gauge stays at open until then. And a call that the pipeline's breaker
refuses raises :class:`~stormproof.policies.breaker.BreakerOpen` and is reported as a
``mechanism="breaker", outcome="rejected"`` pipeline event.

Write another adapter by implementing :class:`Recorder`; the hook methods must be cheap and must
not raise, since they run inside the call they describe.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from stormproof.policies.breaker import StateChange
from stormproof.run._common import RetryEvent
from stormproof.run.pipeline import PipelineEvent

__all__ = ["DELAY_BUCKETS", "METRIC_NAMES", "Recorder"]

#: Histogram bucket upper bounds (seconds) for ``retry_delay_seconds``: from 10 ms, below the
#: default backoff's first delay (0.1 s), past its 20 s cap, to the 60 s cap on server delays.
DELAY_BUCKETS: tuple[float, ...] = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    30.0,
    60.0,
)

#: The metric names (after the namespace prefix) that every adapter uses.
METRIC_NAMES: tuple[str, ...] = (
    "retry_attempts_total",
    "retry_delay_seconds",
    "pipeline_decisions_total",
    "breaker_state",
    "breaker_transitions_total",
    "queue_messages",
    "queue_oldest_age_seconds",
)


@runtime_checkable
class Recorder(Protocol):
    """What a telemetry adapter implements: one method per kind of stormproof event.

    Each method has the signature of the hook it serves, so a bound method can be passed as the
    hook itself (``Retrying(policy, on_retry=rec.retry, on_give_up=rec.retry)``).
    """

    def retry(self, event: RetryEvent) -> None:
        """Record a retry driver's decision (a retry or a give-up)."""
        ...

    def pipeline(self, event: PipelineEvent) -> None:
        """Record one decision inside a :class:`~stormproof.run.pipeline.Pipeline`."""
        ...

    def breaker(self, name: str, change: StateChange) -> None:
        """Record a state change of the circuit breaker called ``name``."""
        ...

    def queue(self, name: str, visible: int, in_flight: int, oldest_age: float | None) -> None:
        """Record a queue's depth and the age of its oldest message."""
        ...
