"""The requests adapter against a real local server that injects faults."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from http_faults import FaultServer, Reply
from http_policy import policy
from urllib3.util import Timeout

from stormproof import ManualClock, RetryPolicy
from stormproof.integrations.requests import (
    CircuitOpenError,
    StormproofAdapter,
    _timeout,
)
from stormproof.policies.backoff import Constant
from stormproof.policies.breaker import BreakerConfig
from stormproof.run.pipeline import PipelineEvent


def session(clock: ManualClock, **changes: Any) -> requests.Session:
    adapter = StormproofAdapter(policy(**changes), clock=clock)
    mounted = requests.Session()
    mounted.mount("http://", adapter)
    return mounted


def test_urllib3_retries_are_off() -> None:
    adapter = StormproofAdapter()
    assert adapter.max_retries.total == 0 and adapter.max_retries.read is False


def test_5xx_is_retried(server: FaultServer, clock: ManualClock) -> None:
    server.script("/orders", Reply(503), Reply(500), Reply(200, body=b"done"))
    with session(clock) as http:
        response = http.get(server.url + "/orders")
    assert response.text == "done"
    assert server.hits("/orders") == 3 and clock.sleeps == [1.0, 2.0]


def test_attempts_exhausted_returns_the_last_response(
    server: FaultServer, clock: ManualClock
) -> None:
    server.script("/orders", *[Reply(502)] * 3)
    with session(clock) as http:
        assert http.get(server.url + "/orders").status_code == 502
    assert server.hits("/orders") == 3


def test_retry_after_seconds_and_date(server: FaultServer, clock: ManualClock) -> None:
    server.script(
        "/orders",
        Reply(429, headers={"Retry-After": "5"}),
        Reply(503, retry_after_date=8),
        Reply(200),
    )
    with session(clock) as http:
        assert http.get(server.url + "/orders").status_code == 200
    assert clock.sleeps == [5.0, 8.0]


def test_retry_after_capped_and_deadline(server: FaultServer, clock: ManualClock) -> None:
    capped = RetryPolicy(max_attempts=3, backoff=Constant(1.0), max_server_delay=10.0)
    server.script("/capped", Reply(429, headers={"Retry-After": "999"}), Reply(200))
    server.script("/late", Reply(429, headers={"Retry-After": "40"}), Reply(200))
    with session(clock, retry=capped, total_timeout=30.0) as http:
        assert http.get(server.url + "/capped").status_code == 200
    with session(clock, total_timeout=30.0) as http:  # max_server_delay 60 s
        assert http.get(server.url + "/late").status_code == 429
    assert clock.sleeps == [10.0]  # /late: 40 s is past the 30 s deadline, so no wait
    assert server.hits("/late") == 1


def test_total_deadline(server: FaultServer, clock: ManualClock) -> None:
    many = RetryPolicy(max_attempts=10, backoff=Constant(3.0))
    server.script("/orders", *[Reply(503)] * 10)
    with session(clock, retry=many, attempt_timeout=1.0, total_timeout=7.0) as http:
        assert http.get(server.url + "/orders").status_code == 503
    assert server.hits("/orders") == 3 and clock.sleeps == [3.0, 3.0]


def test_slow_response_and_reset(server: FaultServer, clock: ManualClock) -> None:
    server.script("/orders", Reply(delay=30.0), Reply(reset=True), Reply(200))
    with session(clock, attempt_timeout=0.1) as http:
        # The caller's 20 s timeout is shortened to the 0.1 s attempt limit.
        assert http.get(server.url + "/orders", timeout=20).status_code == 200
    assert server.hits("/orders") == 3 and clock.sleeps == [1.0, 2.0]


def test_resets_exhausted_raise_the_requests_error(server: FaultServer, clock: ManualClock) -> None:
    server.script("/orders", *[Reply(reset=True)] * 3)
    with session(clock) as http, pytest.raises(requests.ConnectionError):
        http.get(server.url + "/orders")
    assert server.hits("/orders") == 3


def test_post_rule(server: FaultServer, clock: ManualClock) -> None:
    server.script("/pay", Reply(503), Reply(200))
    server.script("/pay-reset", Reply(reset=True), Reply(200))
    server.script("/keyed", Reply(reset=True), Reply(503), Reply(201))
    with session(clock) as http:
        assert http.post(server.url + "/pay", json={"a": 1}).status_code == 503
        with pytest.raises(requests.ConnectionError):
            http.post(server.url + "/pay-reset", data=b"x")
        keyed = http.post(server.url + "/keyed", json={"a": 1}, headers={"Idempotency-Key": "k"})
        assert keyed.status_code == 201
    assert server.hits("/pay") == 1 and server.hits("/pay-reset") == 1
    assert server.hits("/keyed") == 3


def test_generator_body_is_not_retried(server: FaultServer, clock: ManualClock) -> None:
    server.script("/upload", Reply(503), Reply(200))
    with session(clock) as http:
        assert http.put(server.url + "/upload", data=iter([b"a", b"b"])).status_code == 503
    assert server.hits("/upload") == 1


def test_breaker_per_host(server: FaultServer, clock: ManualClock) -> None:
    other = FaultServer()
    try:
        breaker = BreakerConfig(window_size=3, minimum_calls=3, open_duration=20.0)
        server.script("/orders", *[Reply(500)] * 5)
        with session(clock, breaker=breaker) as http:
            assert http.get(server.url + "/orders").status_code == 500
            with pytest.raises(CircuitOpenError) as refused:
                http.get(server.url + "/orders")
            assert isinstance(refused.value, requests.RequestException)
            assert server.hits("/orders") == 3
            assert http.get(other.url + "/orders").status_code == 200
    finally:
        other.close()


def test_events(server: FaultServer, clock: ManualClock) -> None:
    events: list[PipelineEvent] = []
    adapter = StormproofAdapter(policy(), clock=clock, on_event=events.append)
    server.script("/pay", Reply(503))
    with requests.Session() as http:
        http.mount("http://", adapter)
        http.post(server.url + "/pay", data=b"{}")
    assert [(e.mechanism, e.outcome, e.reason) for e in events] == [
        ("breaker", "failure", "503"),
        ("retry", "give_up", "not_idempotent"),
    ]


@pytest.mark.parametrize(
    ("given", "limit", "expected"),
    [
        (None, None, None),
        (None, 2.0, 2.0),
        (5, 2.0, 2.0),
        (1, 2.0, 1.0),
        ((1.0, 9.0), 2.0, (1.0, 2.0)),
        ((None, None), 2.0, (2.0, 2.0)),
    ],
)
def test_timeout_is_shortened(given: Any, limit: float | None, expected: Any) -> None:
    assert _timeout(given, limit) == expected


def test_urllib3_timeout_is_shortened() -> None:
    shortened = _timeout(Timeout(connect=1.0, read=9.0, total=30.0), 2.0)
    assert isinstance(shortened, Timeout) and shortened.total == 2.0
