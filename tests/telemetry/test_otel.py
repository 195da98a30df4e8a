"""The OpenTelemetry adapter, driven by real stormproof objects, read back through the SDK."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.metrics")
pytest.importorskip("opentelemetry.sdk.metrics")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    Gauge,
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
    Sum,
)

from stormproof import ManualClock, Retrying, RetryPolicy
from stormproof.errors import ConfigError, RetryError
from stormproof.policies.backoff import Constant
from stormproof.policies.breaker import BreakerConfig, BreakerOpen, BreakerState, CircuitBreaker
from stormproof.policies.pipeline import Breaker, Retry
from stormproof.run.pipeline import Pipeline
from stormproof.telemetry import DELAY_BUCKETS, Recorder
from stormproof.telemetry.otel import OpenTelemetryRecorder

Key = frozenset[tuple[str, Any]]


class Throttled(Exception):
    """An error carrying a server-given delay, as a 429 with Retry-After would."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"throttled; retry after {retry_after}")
        self.retry_after = retry_after


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def rec(reader: InMemoryMetricReader) -> Iterator[OpenTelemetryRecorder]:
    provider = MeterProvider(metric_readers=[reader])
    yield OpenTelemetryRecorder(provider.get_meter("stormproof-tests"))
    provider.shutdown()


def collect(reader: InMemoryMetricReader) -> dict[str, Any]:
    """Every metric by name: its data (Sum, Gauge or Histogram) as the SDK exports it."""
    data = reader.get_metrics_data()
    assert data is not None
    return {
        metric.name: metric
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }


def points(metrics: dict[str, Any], name: str) -> dict[Key, float]:
    """A counter's or gauge's values by attribute set."""
    found: dict[Key, float] = {}
    for point in metrics[name].data.data_points:
        assert isinstance(point, NumberDataPoint)
        found[frozenset((point.attributes or {}).items())] = point.value
    return found


def attrs(**attributes: str) -> Key:
    return frozenset(attributes.items())


def state_set(name: str, current: str) -> dict[Key, float]:
    return {
        attrs(name=name, state=state.value): 1 if state.value == current else 0
        for state in BreakerState
    }


def histogram(metrics: dict[str, Any]) -> HistogramDataPoint:
    (point,) = metrics["stormproof_retry_delay_seconds"].data.data_points
    assert isinstance(point, HistogramDataPoint)
    return point


def test_recorder_satisfies_the_protocol(rec: OpenTelemetryRecorder) -> None:
    assert isinstance(rec, Recorder)


def test_retrying_records_each_retry_its_delay_and_the_give_up(
    reader: InMemoryMetricReader, rec: OpenTelemetryRecorder
) -> None:
    clock = ManualClock()
    retrying = Retrying(
        RetryPolicy(max_attempts=3, backoff=Constant(0.5)),
        clock=clock,
        on_retry=rec.retry,
        on_give_up=rec.retry,
    )
    failures = [Throttled(2.0), ConnectionError("reset")]

    def flaky() -> str:
        if failures:
            raise failures.pop(0)
        return "ok"

    assert retrying.call(flaky) == "ok"
    assert clock.sleeps == [2.0, 0.5]
    metrics = collect(reader)
    retries = metrics["stormproof_retry_attempts_total"]
    assert isinstance(retries.data, Sum) and retries.data.is_monotonic
    assert retries.unit == "{decision}"
    assert points(metrics, "stormproof_retry_attempts_total") == {
        attrs(kind="retry", reason="server_delay"): 1,
        attrs(kind="retry", reason="backoff"): 1,
    }
    delays = histogram(metrics)
    assert metrics["stormproof_retry_delay_seconds"].unit == "s"
    assert tuple(delays.explicit_bounds) == DELAY_BUCKETS
    assert (delays.count, delays.sum, delays.min, delays.max) == (2, 2.5, 0.5, 2.0)
    by_bound = dict(zip(delays.explicit_bounds, delays.bucket_counts, strict=False))
    assert by_bound[0.5] == 1 and by_bound[2.5] == 1 and sum(delays.bucket_counts) == 2

    def down() -> None:
        raise ConnectionError("down")

    with pytest.raises(RetryError):
        retrying.call(down)
    metrics = collect(reader)
    assert points(metrics, "stormproof_retry_attempts_total") == {
        attrs(kind="retry", reason="server_delay"): 1,
        attrs(kind="retry", reason="backoff"): 3,
        attrs(kind="give_up", reason="attempts_exhausted"): 1,
    }
    delays = histogram(metrics)
    assert (delays.count, delays.sum) == (4, 3.5)


def test_pipeline_with_a_breaker_that_opens_and_recovers(
    reader: InMemoryMetricReader, rec: OpenTelemetryRecorder
) -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(
        BreakerConfig(
            window_size=4,
            minimum_calls=4,
            failure_rate_threshold=0.5,
            open_duration=10,
            half_open_probes=1,
        ),
        name="db",
        on_state_change=rec.breaker_hook("db"),
    )
    pipeline = Pipeline(
        [
            Retry(RetryPolicy(max_attempts=2, backoff=Constant(1.0), retry_on=ConnectionError)),
            Breaker(breaker),
        ],
        clock=clock,
        on_event=rec.pipeline,
    )
    metrics = collect(reader)
    gauge = metrics["stormproof_breaker_state"]
    assert isinstance(gauge.data, Gauge)
    assert points(metrics, "stormproof_breaker_state") == state_set("db", "closed")

    def down() -> None:
        raise ConnectionError("down")

    for _ in range(2):  # 2 calls x 2 attempts = 4 failures: the breaker opens on the 4th
        with pytest.raises(RetryError):
            pipeline.call(down)
    with pytest.raises(BreakerOpen):  # refused, and BreakerOpen is not retryable here
        pipeline.call(down)
    metrics = collect(reader)
    assert points(metrics, "stormproof_breaker_state") == state_set("db", "open")
    assert points(metrics, "stormproof_breaker_transitions_total") == {
        attrs(name="db", **{"from": "closed", "to": "open"}): 1,
    }
    assert points(metrics, "stormproof_pipeline_decisions_total") == {
        attrs(mechanism="breaker", outcome="failure"): 4,
        attrs(mechanism="breaker", outcome="rejected"): 1,
        attrs(mechanism="retry", outcome="retry"): 2,
        attrs(mechanism="retry", outcome="give_up"): 3,
    }
    # The pipeline's own retry decisions also feed the retry metrics.
    assert points(metrics, "stormproof_retry_attempts_total") == {
        attrs(kind="retry", reason="backoff"): 2,
        attrs(kind="give_up", reason="attempts_exhausted"): 2,
        attrs(kind="give_up", reason="not_retryable"): 1,
    }
    delays = histogram(metrics)
    assert (delays.count, delays.sum) == (2, 2.0)

    clock.advance(10)  # open_duration is over: the next call is the probe, and it succeeds
    assert pipeline.call(lambda: "ok") == "ok"
    metrics = collect(reader)
    assert points(metrics, "stormproof_breaker_state") == state_set("db", "closed")
    assert points(metrics, "stormproof_breaker_transitions_total") == {
        attrs(name="db", **{"from": "closed", "to": "open"}): 1,
        attrs(name="db", **{"from": "open", "to": "half_open"}): 1,
        attrs(name="db", **{"from": "half_open", "to": "closed"}): 1,
    }


def test_gauge_reports_every_breaker_by_name(
    reader: InMemoryMetricReader, rec: OpenTelemetryRecorder
) -> None:
    clock = ManualClock()
    db = CircuitBreaker(name="db", on_state_change=rec.breaker_hook("db"))
    CircuitBreaker(name="cache", on_state_change=rec.breaker_hook("cache"))
    db.isolate(clock.now())
    assert points(collect(reader), "stormproof_breaker_state") == {
        **state_set("cache", "closed"),
        **state_set("db", "isolated"),
    }


def test_default_meter_and_invalid_configuration() -> None:
    # Without an SDK the global meter is a no-op: recording must still work, silently.
    rec = OpenTelemetryRecorder()
    CircuitBreaker(name="db", on_state_change=rec.breaker_hook("db")).force_open(0.0)
    assert rec.breaker_states() == {"db": BreakerState.OPEN}
    with pytest.raises(ConfigError) as excinfo:
        OpenTelemetryRecorder("meter")  # type: ignore[arg-type]
    assert excinfo.value.field == "meter"
    with pytest.raises(ConfigError) as excinfo:
        OpenTelemetryRecorder(buckets=(2.0, 1.0))
    assert excinfo.value.field == "buckets"
    with pytest.raises(ConfigError) as excinfo:
        rec.breaker_hook(None)  # type: ignore[arg-type]
    assert excinfo.value.field == "name"


def test_queue_gauges(reader: InMemoryMetricReader, rec: OpenTelemetryRecorder) -> None:
    rec.queue("orders-dlq", 4, 1, 90.0)
    rec.queue("orders", 0, 0, None)
    metrics = collect(reader)
    assert points(metrics, "stormproof_queue_messages") == {
        attrs(queue="orders", state="visible"): 0,
        attrs(queue="orders", state="in_flight"): 0,
        attrs(queue="orders-dlq", state="visible"): 4,
        attrs(queue="orders-dlq", state="in_flight"): 1,
    }
    assert points(metrics, "stormproof_queue_oldest_age_seconds") == {
        attrs(queue="orders"): 0.0,
        attrs(queue="orders-dlq"): 90.0,
    }
