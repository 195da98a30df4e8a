"""OpenTelemetry metrics for stormproof's retries, pipelines and circuit breakers.

Needs the OpenTelemetry API (``pip install 'stormproof[otel]'``); the application configures the
SDK and its exporters as usual::

    from stormproof.telemetry.otel import OpenTelemetryRecorder

    rec = OpenTelemetryRecorder()                   # a meter from the global MeterProvider
    retrying = Retrying(policy, on_retry=rec.retry, on_give_up=rec.retry)
    pipeline = Pipeline(strategies, on_event=rec.pipeline)
    breaker = CircuitBreaker(config, name="db", on_state_change=rec.breaker_hook("db"))

The instruments carry the same names and attribute keys as the Prometheus adapter's metrics
(see :mod:`stormproof.telemetry`), so dashboards and alerts work whichever path the numbers
take:

========================================  ===================  ================================
instrument                                kind                 attributes
========================================  ===================  ================================
``stormproof_retry_attempts_total``       Counter              ``kind``, ``reason``
``stormproof_retry_delay_seconds``        Histogram (``s``)    none
``stormproof_pipeline_decisions_total``   Counter              ``mechanism``, ``outcome``
``stormproof_breaker_state``              ObservableGauge      ``name``, ``state``
``stormproof_breaker_transitions_total``  Counter              ``name``, ``from``, ``to``
========================================  ===================  ================================

Why an observable gauge for the breaker state, and not an UpDownCounter: the state is a current
value, not a running sum. An UpDownCounter would record +1 for the new state and -1 for the old
one; that reads right only under cumulative temporality (under delta temporality, which some
back ends ask for, each export would show +1/-1 instead of 1/0), and one lost or duplicated
change would leave a breaker in two states, or none, until restart. The observable gauge reports
the recorder's last-known state of every breaker each time the reader collects, 1 for it and 0
for the others, and is exported as a gauge whatever the temporality. Its one cost is that the
value is as fresh as the last collection, which is also how a Prometheus scrape sees a gauge.

The counters' units are annotations (``{decision}``, ``{transition}``) and the gauge has none,
so an exporter that appends unit suffixes to Prometheus names leaves these names as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Meter, Observation

from stormproof import __version__
from stormproof.errors import ConfigError
from stormproof.policies.breaker import BreakerState
from stormproof.telemetry import DELAY_BUCKETS
from stormproof.telemetry._base import _check_buckets, _RecorderBase

__all__ = ["OpenTelemetryRecorder"]

_STATES = tuple(BreakerState)

#: The instrumentation scope of the default meter.
SCOPE = "stormproof"


class OpenTelemetryRecorder(_RecorderBase):
    """A :class:`~stormproof.telemetry.Recorder` that records with OpenTelemetry instruments.

    Args:
        meter: the meter that creates the instruments; default
            ``opentelemetry.metrics.get_meter("stormproof", <stormproof version>)``, from the
            global ``MeterProvider`` (a no-op one until the application sets up the SDK).
        buckets: the advised bucket bounds (seconds) of ``stormproof_retry_delay_seconds``;
            default :data:`stormproof.telemetry.DELAY_BUCKETS`. An SDK view still overrides
            them.

    Create one recorder per meter and share it: a meter hands out one instrument per name, so a
    second recorder would register a second gauge callback under the same name. Every method
    is thread-safe.

    Raises:
        ConfigError: ``meter`` is not an OpenTelemetry ``Meter``, or ``buckets`` are not finite
            and strictly increasing.
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

    def __init__(self, meter: Meter | None = None, *, buckets: Sequence[float] = DELAY_BUCKETS):
        super().__init__()
        if meter is None:
            meter = metrics.get_meter(SCOPE, __version__)
        elif not isinstance(meter, Meter):
            raise ConfigError("meter", "must be an opentelemetry.metrics.Meter", meter)
        bounds = _check_buckets(buckets)
        self._retries = meter.create_counter(
            "stormproof_retry_attempts_total",
            unit="{decision}",
            description="Decisions of stormproof retry drivers: kind=retry or give_up.",
        )
        self._delays = meter.create_histogram(
            "stormproof_retry_delay_seconds",
            unit="s",
            description="Delay chosen by a stormproof retry driver before a retry.",
            explicit_bucket_boundaries_advisory=bounds,
        )
        self._decisions = meter.create_counter(
            "stormproof_pipeline_decisions_total",
            unit="{decision}",
            description="Decisions inside stormproof pipelines, by mechanism and outcome.",
        )
        self._transitions = meter.create_counter(
            "stormproof_breaker_transitions_total",
            unit="{transition}",
            description="State changes of stormproof circuit breakers.",
        )
        self._state = meter.create_observable_gauge(
            "stormproof_breaker_state",
            callbacks=[self._observe_states],
            description="Circuit breaker state: 1 for the breaker's current state, 0 for others.",
        )
        self._queue_messages = meter.create_observable_gauge(
            "stormproof_queue_messages",
            callbacks=[self._observe_queue_messages],
            unit="{message}",
            description="Messages in a stormproof queue, visible or in flight.",
        )
        self._queue_age = meter.create_observable_gauge(
            "stormproof_queue_oldest_age_seconds",
            callbacks=[self._observe_queue_ages],
            unit="s",
            description="Age of the oldest message in a stormproof queue (0 when empty).",
        )

    def _count_retry(self, kind: str, reason: str) -> None:
        self._retries.add(1, {"kind": kind, "reason": reason})

    def _observe_delay(self, delay: float) -> None:
        self._delays.record(delay)

    def _count_decision(self, mechanism: str, outcome: str) -> None:
        self._decisions.add(1, {"mechanism": mechanism, "outcome": outcome})

    def _count_transition(self, name: str, old: str, new: str) -> None:
        self._transitions.add(1, {"name": name, "from": old, "to": new})

    # _state_set stays the base's no-op: the gauge reads the states when it is collected.

    def _observe_states(self, options: CallbackOptions) -> Iterable[Observation]:
        """The gauge callback: a 1/0 observation per known breaker and state, in name order."""
        states = self.breaker_states()
        return [
            Observation(1 if each is current else 0, {"name": name, "state": each.value})
            for name, current in sorted(states.items())
            for each in _STATES
        ]

    def _observe_queue_messages(self, options: CallbackOptions) -> Iterable[Observation]:
        """The queue-depth gauge callback, from the last recorded depths, in name order."""
        return [
            Observation(count, {"queue": name, "state": state})
            for name, (visible, in_flight, _) in sorted(self.queue_depths().items())
            for state, count in (("visible", visible), ("in_flight", in_flight))
        ]

    def _observe_queue_ages(self, options: CallbackOptions) -> Iterable[Observation]:
        """The oldest-age gauge callback."""
        return [
            Observation(age, {"queue": name})
            for name, (_, _, age) in sorted(self.queue_depths().items())
        ]

    def __repr__(self) -> str:
        return f"OpenTelemetryRecorder(breakers={sorted(self.breaker_states())!r})"
