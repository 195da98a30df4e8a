"""Prometheus metrics for stormproof's retries, pipelines and circuit breakers.

Needs ``prometheus-client`` (``pip install 'stormproof[prometheus]'``)::

    from stormproof.telemetry.prometheus import PrometheusRecorder

    rec = PrometheusRecorder()                      # the default registry
    retrying = Retrying(policy, on_retry=rec.retry, on_give_up=rec.retry)
    pipeline = Pipeline(strategies, on_event=rec.pipeline)
    breaker = CircuitBreaker(config, name="db", on_state_change=rec.breaker_hook("db"))

The metrics and their labels are described in :mod:`stormproof.telemetry`. Expose them the usual
way (``prometheus_client.start_http_server`` or your framework's ``/metrics`` handler).
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from stormproof.errors import ConfigError
from stormproof.policies.breaker import BreakerState
from stormproof.telemetry import DELAY_BUCKETS
from stormproof.telemetry._base import _check_buckets, _RecorderBase

__all__ = ["PrometheusRecorder"]

_STATES = tuple(BreakerState)


class PrometheusRecorder(_RecorderBase):
    """A :class:`~stormproof.telemetry.Recorder` that updates ``prometheus_client`` metrics.

    Args:
        registry: where the metrics are registered; ``None`` (the default) means
            ``prometheus_client.REGISTRY``, the one the standard ``/metrics`` handlers serve.
        namespace: the prefix of every metric name (``stormproof_retry_attempts_total`` with the
            default). An empty string leaves the names unprefixed.
        buckets: upper bounds (seconds) of the ``retry_delay_seconds`` histogram; default
            :data:`stormproof.telemetry.DELAY_BUCKETS` (10 ms to 60 s).

    A registry refuses a metric name twice, so create one recorder per registry and namespace
    and share it among all drivers, pipelines and breakers (every method is thread-safe);
    a second one raises ``ValueError`` from ``prometheus_client``.

    Raises:
        ConfigError: ``namespace`` is not a string, ``registry`` is not a
            ``CollectorRegistry``, or ``buckets`` are not finite and strictly increasing.
    """

    __slots__ = (
        "_decisions",
        "_delays",
        "_queue_age",
        "_queue_messages",
        "_retries",
        "_state",
        "_transitions",
    )

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        namespace: str = "stormproof",
        *,
        buckets: Sequence[float] = DELAY_BUCKETS,
    ) -> None:
        super().__init__()
        if registry is None:
            registry = REGISTRY
        elif not isinstance(registry, CollectorRegistry):
            raise ConfigError("registry", "must be a prometheus_client CollectorRegistry", registry)
        if not isinstance(namespace, str):
            raise ConfigError("namespace", "must be a string", namespace)
        bounds = _check_buckets(buckets)
        self._retries = Counter(
            "retry_attempts_total",
            "Decisions of stormproof retry drivers: kind=retry (wait, then retry) or give_up.",
            ("kind", "reason"),
            namespace=namespace,
            registry=registry,
        )
        self._delays = Histogram(
            "retry_delay_seconds",
            "Delay chosen by a stormproof retry driver before a retry, in seconds.",
            namespace=namespace,
            registry=registry,
            buckets=bounds,
        )
        self._decisions = Counter(
            "pipeline_decisions_total",
            "Decisions inside stormproof pipelines, by mechanism and outcome.",
            ("mechanism", "outcome"),
            namespace=namespace,
            registry=registry,
        )
        self._state = Gauge(
            "breaker_state",
            "Circuit breaker state: 1 for the breaker's current state, 0 for the others.",
            ("name", "state"),
            namespace=namespace,
            registry=registry,
        )
        self._transitions = Counter(
            "breaker_transitions_total",
            "State changes of stormproof circuit breakers.",
            ("name", "from", "to"),
            namespace=namespace,
            registry=registry,
        )
        self._queue_messages = Gauge(
            "queue_messages",
            "Messages in a stormproof queue, visible or in flight.",
            ("queue", "state"),
            namespace=namespace,
            registry=registry,
        )
        self._queue_age = Gauge(
            "queue_oldest_age_seconds",
            "Age of the oldest message in a stormproof queue (0 when empty).",
            ("queue",),
            namespace=namespace,
            registry=registry,
        )

    def _count_retry(self, kind: str, reason: str) -> None:
        self._retries.labels(kind, reason).inc()

    def _observe_delay(self, delay: float) -> None:
        self._delays.observe(delay)

    def _count_decision(self, mechanism: str, outcome: str) -> None:
        self._decisions.labels(mechanism, outcome).inc()

    def _count_transition(self, name: str, old: str, new: str) -> None:
        self._transitions.labels(name, old, new).inc()

    def _state_set(self, name: str, state: BreakerState) -> None:
        gauge = self._state
        for each in _STATES:
            gauge.labels(name, each.value).set(1.0 if each is state else 0.0)

    def _queue_set(self, name: str, visible: int, in_flight: int, oldest_age: float) -> None:
        self._queue_messages.labels(name, "visible").set(visible)
        self._queue_messages.labels(name, "in_flight").set(in_flight)
        self._queue_age.labels(name).set(oldest_age)

    def __repr__(self) -> str:
        return f"PrometheusRecorder(breakers={sorted(self.breaker_states())!r})"
