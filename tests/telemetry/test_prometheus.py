"""The Prometheus adapter, driven by real stormproof objects on a ManualClock."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client import CollectorRegistry, generate_latest

from stormproof import ManualClock, Retrying, RetryPolicy
from stormproof.errors import ConfigError, RetryError
from stormproof.policies.backoff import Constant
from stormproof.policies.breaker import (
    BreakerConfig,
    BreakerOpen,
    BreakerState,
    CircuitBreaker,
    StateChange,
)
from stormproof.policies.pipeline import Breaker, Retry
from stormproof.run.pipeline import Pipeline
from stormproof.telemetry import Recorder
from stormproof.telemetry.prometheus import PrometheusRecorder


class Throttled(Exception):
    """An error carrying a server-given delay, as a 429 with Retry-After would."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"throttled; retry after {retry_after}")
        self.retry_after = retry_after


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def rec(registry: CollectorRegistry) -> PrometheusRecorder:
    return PrometheusRecorder(registry)


def value(registry: CollectorRegistry, metric: str, /, **labels: str) -> float | None:
    return registry.get_sample_value(metric, labels)


def states(registry: CollectorRegistry, name: str) -> dict[str, float | None]:
    return {
        state.value: value(registry, "stormproof_breaker_state", name=name, state=state.value)
        for state in BreakerState
    }


def test_recorder_satisfies_the_protocol(rec: PrometheusRecorder) -> None:
    assert isinstance(rec, Recorder)


def test_retrying_records_each_retry_its_delay_and_the_give_up(
    registry: CollectorRegistry, rec: PrometheusRecorder
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
    total = "stormproof_retry_attempts_total"
    assert value(registry, total, kind="retry", reason="server_delay") == 1.0
    assert value(registry, total, kind="retry", reason="backoff") == 1.0
    assert value(registry, total, kind="give_up", reason="attempts_exhausted") is None
    assert value(registry, "stormproof_retry_delay_seconds_count") == 2.0
    assert value(registry, "stormproof_retry_delay_seconds_sum") == 2.5
    bucket = "stormproof_retry_delay_seconds_bucket"
    assert value(registry, bucket, le="0.25") == 0.0
    assert value(registry, bucket, le="0.5") == 1.0
    assert value(registry, bucket, le="2.5") == 2.0
    assert value(registry, bucket, le="+Inf") == 2.0

    def down() -> None:
        raise ConnectionError("down")

    with pytest.raises(RetryError):
        retrying.call(down)
    assert value(registry, total, kind="retry", reason="backoff") == 3.0
    assert value(registry, total, kind="give_up", reason="attempts_exhausted") == 1.0
    assert value(registry, "stormproof_retry_delay_seconds_count") == 4.0
    assert value(registry, "stormproof_retry_delay_seconds_sum") == 3.5


def test_pipeline_with_a_breaker_that_opens_and_recovers(
    registry: CollectorRegistry, rec: PrometheusRecorder
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
    # Bound but not yet changed: the breaker is published as closed.
    assert states(registry, "db") == {"closed": 1.0, "open": 0.0, "half_open": 0.0, "isolated": 0.0}

    def down() -> None:
        raise ConnectionError("down")

    for _ in range(2):  # 2 calls x 2 attempts = 4 failures: the breaker opens on the 4th
        with pytest.raises(RetryError):
            pipeline.call(down)
    assert breaker.state(clock.now()) is BreakerState.OPEN
    assert states(registry, "db") == {"closed": 0.0, "open": 1.0, "half_open": 0.0, "isolated": 0.0}
    transitions = "stormproof_breaker_transitions_total"
    assert value(registry, transitions, name="db", **{"from": "closed", "to": "open"}) == 1.0

    with pytest.raises(BreakerOpen):  # refused, and BreakerOpen is not retryable here
        pipeline.call(down)

    decisions = "stormproof_pipeline_decisions_total"
    assert value(registry, decisions, mechanism="breaker", outcome="failure") == 4.0
    assert value(registry, decisions, mechanism="breaker", outcome="rejected") == 1.0
    assert value(registry, decisions, mechanism="retry", outcome="retry") == 2.0
    assert value(registry, decisions, mechanism="retry", outcome="give_up") == 3.0
    # The pipeline's own retry decisions also feed the retry metrics.
    total = "stormproof_retry_attempts_total"
    assert value(registry, total, kind="retry", reason="backoff") == 2.0
    assert value(registry, total, kind="give_up", reason="attempts_exhausted") == 2.0
    assert value(registry, total, kind="give_up", reason="not_retryable") == 1.0
    assert value(registry, "stormproof_retry_delay_seconds_count") == 2.0
    assert value(registry, "stormproof_retry_delay_seconds_sum") == 2.0

    clock.advance(10)  # open_duration is over: the next call is the probe, and it succeeds
    assert pipeline.call(lambda: "ok") == "ok"
    assert states(registry, "db") == {"closed": 1.0, "open": 0.0, "half_open": 0.0, "isolated": 0.0}
    assert value(registry, transitions, name="db", **{"from": "open", "to": "half_open"}) == 1.0
    assert value(registry, transitions, name="db", **{"from": "half_open", "to": "closed"}) == 1.0
    assert value(registry, transitions, name="db", **{"from": "closed", "to": "open"}) == 1.0
    assert rec.breaker_states() == {"db": BreakerState.CLOSED}


def test_breakers_are_tracked_per_name(
    registry: CollectorRegistry, rec: PrometheusRecorder
) -> None:
    clock = ManualClock()
    db = CircuitBreaker(name="db", on_state_change=rec.breaker_hook("db"))
    cache = CircuitBreaker(name="cache", on_state_change=rec.breaker_hook("cache"))
    db.isolate(clock.now())
    assert states(registry, "db")["isolated"] == 1.0
    assert sum(v or 0.0 for v in states(registry, "db").values()) == 1.0
    assert states(registry, "cache")["closed"] == 1.0
    cache.force_open(clock.now())
    db.reset(clock.now())
    assert states(registry, "db")["closed"] == 1.0
    assert states(registry, "cache")["open"] == 1.0
    # Binding a known name again keeps its state; a direct call needs no binding.
    rec.breaker_hook("cache")
    assert states(registry, "cache")["open"] == 1.0
    rec.breaker("queue", StateChange(1.0, BreakerState.CLOSED, BreakerState.OPEN, "forced"))
    assert states(registry, "queue") == {
        "closed": 0.0,
        "open": 1.0,
        "half_open": 0.0,
        "isolated": 0.0,
    }


def test_names_in_the_exposition_and_a_custom_namespace(
    registry: CollectorRegistry, rec: PrometheusRecorder
) -> None:
    rec.breaker_hook("db")
    text = generate_latest(registry).decode()
    for line in (
        "# TYPE stormproof_retry_attempts_total counter",
        "# TYPE stormproof_retry_delay_seconds histogram",
        "# TYPE stormproof_pipeline_decisions_total counter",
        "# TYPE stormproof_breaker_state gauge",
        "# TYPE stormproof_breaker_transitions_total counter",
        'stormproof_breaker_state{name="db",state="closed"} 1.0',
    ):
        assert line in text
    other = CollectorRegistry()
    PrometheusRecorder(other, namespace="app", buckets=(1.0, 2.0)).breaker_hook("db")
    assert other.get_sample_value("app_breaker_state", {"name": "db", "state": "closed"}) == 1.0
    assert other.get_sample_value("app_retry_delay_seconds_bucket", {"le": "2.0"}) == 0.0


def test_invalid_configuration_names_the_field(registry: CollectorRegistry) -> None:
    cases: list[tuple[str, dict[str, object]]] = [
        ("registry", {"registry": "default"}),
        ("namespace", {"registry": registry, "namespace": None}),
        ("buckets", {"registry": registry, "buckets": ()}),
        ("buckets", {"registry": registry, "buckets": (1.0, 0.5)}),
        ("buckets", {"registry": registry, "buckets": (1.0, float("inf"))}),
        ("buckets", {"registry": registry, "buckets": ("fast",)}),
    ]
    for field, options in cases:
        with pytest.raises(ConfigError) as excinfo:
            PrometheusRecorder(**options)  # type: ignore[arg-type]
        assert excinfo.value.field == field
    rec = PrometheusRecorder(registry)
    with pytest.raises(ConfigError) as excinfo:
        rec.breaker_hook("")
    assert excinfo.value.field == "name"
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        PrometheusRecorder(registry)  # one recorder per registry and namespace


def test_queue_depth_and_age_gauges_from_a_queue_store(tmp_path: Path) -> None:
    from stormproof.events.queue import open_queue

    registry = CollectorRegistry()
    rec = PrometheusRecorder(registry)
    queues = open_queue(f"sqlite:///{tmp_path / 'q.db'}")
    queues.init()
    for n in range(3):
        queues.send("orders-dlq", str(n), None, 100.0 + n)
    queues.receive("orders-dlq", 1, 30.0, 150.0)
    rec.observe_queue(queues, "orders-dlq", 160.0)
    queues.close()
    assert (
        registry.get_sample_value(
            "stormproof_queue_messages", {"queue": "orders-dlq", "state": "visible"}
        )
        == 2.0
    )
    assert (
        registry.get_sample_value(
            "stormproof_queue_messages", {"queue": "orders-dlq", "state": "in_flight"}
        )
        == 1.0
    )
    assert registry.get_sample_value(
        "stormproof_queue_oldest_age_seconds", {"queue": "orders-dlq"}
    ) == pytest.approx(60.0)
    rec.queue("empty", 0, 0, None)
    assert (
        registry.get_sample_value("stormproof_queue_oldest_age_seconds", {"queue": "empty"}) == 0.0
    )
