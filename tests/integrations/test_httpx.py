"""The httpx transports against a real local server that injects faults."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from http_faults import FaultServer, Reply
from http_policy import policy

from stormproof import ManualClock, RetryPolicy
from stormproof.errors import ConfigError
from stormproof.integrations.httpx import (
    AsyncStormproofTransport,
    CircuitOpenError,
    StormproofTransport,
)
from stormproof.policies.backoff import Constant
from stormproof.policies.breaker import BreakerConfig
from stormproof.run.pipeline import PipelineEvent
from stormproof.testing import instant_sleeps


def client(server: FaultServer, clock: ManualClock, **changes: Any) -> httpx.Client:
    transport = StormproofTransport(policy=policy(**changes), clock=clock)
    return httpx.Client(transport=transport, base_url=server.url)


def test_5xx_is_retried_with_the_backoff_schedule(server: FaultServer, clock: ManualClock) -> None:
    server.script("/orders", Reply(503), Reply(502), Reply(200, body=b"done"))
    with client(server, clock) as http:
        response = http.get("/orders")
    assert response.status_code == 200 and response.text == "done"
    assert server.hits("/orders") == 3
    assert clock.sleeps == [1.0, 2.0]


def test_attempts_exhausted_returns_the_last_response(
    server: FaultServer, clock: ManualClock
) -> None:
    server.script("/orders", Reply(500), Reply(500), Reply(504, body=b"last"))
    with client(server, clock) as http:
        response = http.get("/orders")
    assert response.status_code == 504 and response.text == "last"
    assert server.hits("/orders") == 3


def test_non_retryable_status_is_returned_at_once(server: FaultServer, clock: ManualClock) -> None:
    server.script("/orders", Reply(404), Reply(200))
    with client(server, clock) as http:
        assert http.get("/orders").status_code == 404
    assert server.hits("/orders") == 1 and clock.sleeps == []


def test_429_retry_after_seconds_is_honoured(server: FaultServer, clock: ManualClock) -> None:
    server.script("/orders", Reply(429, headers={"Retry-After": "7"}), Reply(200))
    with client(server, clock) as http:
        assert http.get("/orders").status_code == 200
    assert server.hits("/orders") == 2
    assert clock.sleeps == [7.0]  # max(backoff 1 s, Retry-After 7 s)


def test_retry_after_http_date_is_honoured(server: FaultServer, clock: ManualClock) -> None:
    server.script("/orders", Reply(503, retry_after_date=9), Reply(200))
    with client(server, clock) as http:
        assert http.get("/orders").status_code == 200
    assert clock.sleeps == [9.0]


def test_short_retry_after_does_not_shorten_the_backoff(
    server: FaultServer, clock: ManualClock
) -> None:
    server.script("/orders", Reply(503), Reply(503, headers={"Retry-After": "0"}), Reply(200))
    with client(server, clock) as http:
        assert http.get("/orders").status_code == 200
    assert clock.sleeps == [1.0, 2.0]


def test_retry_after_is_capped(server: FaultServer, clock: ManualClock) -> None:
    capped = RetryPolicy(max_attempts=3, backoff=Constant(1.0), max_server_delay=12.0)
    server.script("/orders", Reply(429, headers={"Retry-After": "3600"}), Reply(200))
    with client(server, clock, retry=capped, total_timeout=None) as http:
        assert http.get("/orders").status_code == 200
    assert clock.sleeps == [12.0]


def test_retry_after_beyond_the_total_deadline_returns_the_429(
    server: FaultServer, clock: ManualClock
) -> None:
    server.script("/orders", Reply(429, headers={"Retry-After": "45"}), Reply(200))
    with client(server, clock, total_timeout=30.0) as http:
        response = http.get("/orders")
    assert response.status_code == 429
    assert server.hits("/orders") == 1 and clock.sleeps == []


def test_total_deadline_bounds_attempts_and_waits(server: FaultServer, clock: ManualClock) -> None:
    many = RetryPolicy(max_attempts=10, backoff=Constant(2.0))
    server.script("/orders", *[Reply(503)] * 10)
    with client(server, clock, retry=many, attempt_timeout=1.0, total_timeout=5.0) as http:
        response = http.get("/orders")
    # Attempts at t = 0, 2, 4; a wait from 4 to 6 would pass the deadline at 5.
    assert response.status_code == 503
    assert server.hits("/orders") == 3 and clock.sleeps == [2.0, 2.0]


def test_slow_response_is_cut_by_the_attempt_timeout(
    server: FaultServer, clock: ManualClock
) -> None:
    server.script("/slow", Reply(delay=30.0), Reply(200, body=b"fast"))
    with client(server, clock, attempt_timeout=0.1) as http:
        response = http.get("/slow")
    assert response.text == "fast"
    assert server.hits("/slow") == 2 and clock.sleeps == [1.0]


def test_connection_reset_is_retried(server: FaultServer, clock: ManualClock) -> None:
    server.script("/orders", Reply(reset=True), Reply(reset=True), Reply(200))
    with client(server, clock) as http:
        assert http.get("/orders").status_code == 200
    assert server.hits("/orders") == 3 and clock.sleeps == [1.0, 2.0]


def test_reset_on_every_attempt_raises_the_httpx_error(
    server: FaultServer, clock: ManualClock
) -> None:
    server.script("/orders", *[Reply(reset=True)] * 3)
    with client(server, clock) as http, pytest.raises(httpx.TransportError):
        http.get("/orders")
    assert server.hits("/orders") == 3


def test_post_without_key_is_not_retried(server: FaultServer, clock: ManualClock) -> None:
    server.script("/pay", Reply(503), Reply(200))
    server.script("/pay-reset", Reply(reset=True), Reply(200))
    with client(server, clock) as http:
        assert http.post("/pay", content=b"{}").status_code == 503
        with pytest.raises(httpx.TransportError):
            http.post("/pay-reset", content=b"{}")
    assert server.hits("/pay") == 1 and server.hits("/pay-reset") == 1


def test_post_with_key_is_retried(server: FaultServer, clock: ManualClock) -> None:
    server.script("/pay", Reply(503), Reply(reset=True), Reply(201))
    with client(server, clock) as http:
        response = http.post("/pay", content=b'{"amount": 5}', headers={"Idempotency-Key": "k1"})
    assert response.status_code == 201 and server.hits("/pay") == 3
    bodies = {seen.body for seen in server.seen}
    keys = {seen.headers.get("Idempotency-Key") for seen in server.seen}
    assert bodies == {b'{"amount": 5}'} and keys == {"k1"}


def test_custom_idempotency_header(server: FaultServer, clock: ManualClock) -> None:
    server.script("/pay", Reply(503), Reply(200))
    with client(server, clock, idempotency_header="X-Request-Id") as http:
        assert http.patch("/pay", headers={"x-request-id": "r"}).status_code == 200
    assert server.hits("/pay") == 2


def test_post_connection_refused_is_retried(clock: ManualClock) -> None:
    events: list[PipelineEvent] = []
    closed = FaultServer()
    url = closed.url
    closed.close()  # nothing listens on that port any more
    transport = StormproofTransport(policy=policy(), clock=clock, on_event=events.append)
    with httpx.Client(transport=transport) as http, pytest.raises(httpx.ConnectError):
        http.post(url + "/pay", content=b"{}")
    # Never sent, so safe to retry even without a key: all 3 attempts were made.
    assert [e.outcome for e in events if e.mechanism == "retry"] == ["retry", "retry", "give_up"]
    assert clock.sleeps == [1.0, 2.0]


def test_streamed_body_is_not_retried(server: FaultServer, clock: ManualClock) -> None:
    server.script("/upload", Reply(503), Reply(200))

    def chunks() -> Iterator[bytes]:
        yield b"part"

    with client(server, clock) as http:
        assert http.put("/upload", content=chunks()).status_code == 503
    assert server.hits("/upload") == 1


def test_breaker_opens_per_host_and_fails_fast(server: FaultServer, clock: ManualClock) -> None:
    other = FaultServer()
    try:
        breaker = BreakerConfig(
            window_size=4, minimum_calls=4, open_duration=30.0, half_open_probes=1
        )
        transport = StormproofTransport(policy=policy(breaker=breaker), clock=clock)
        server.script("/orders", *[Reply(500)] * 4, Reply(200))
        with httpx.Client(transport=transport) as http:
            assert http.get(server.url + "/orders").status_code == 500  # 3 attempts
            # The 4th attempt trips the breaker; the call stops instead of waiting to retry.
            assert http.get(server.url + "/orders").status_code == 500
            assert server.hits("/orders") == 4
            with pytest.raises(CircuitOpenError) as refused:
                http.get(server.url + "/orders")
            assert server.hits("/orders") == 4  # refused without reaching the server
            assert isinstance(refused.value, httpx.HTTPError)
            assert refused.value.retry_after == pytest.approx(30.0 - (clock.now() - 3.0))
            assert http.get(other.url + "/orders").status_code == 200  # another host is fine
            clock.advance(30.0)
            # Half-open: one probe reaches the server; its success closes the breaker.
            assert http.get(server.url + "/orders").status_code == 200
            assert server.hits("/orders") == 5
            assert transport.engine.breakers is not None
            assert transport.engine.breakers.state(server_key(server), clock.now()) == "closed"
    finally:
        other.close()


def server_key(server: FaultServer) -> str:
    return f"http://127.0.0.1:{server.port}"


def test_retried_responses_are_closed(server: FaultServer, clock: ManualClock) -> None:
    seen: list[httpx.Response] = []

    class Recording(httpx.BaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.HTTPTransport()

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            response = self.inner.handle_request(request)
            seen.append(response)
            return response

        def close(self) -> None:
            self.inner.close()

    server.script("/orders", Reply(503), Reply(503), Reply(200))
    transport = StormproofTransport(Recording(), policy=policy(), clock=clock)
    with httpx.Client(transport=transport, base_url=server.url) as http:
        assert http.get("/orders").status_code == 200
    assert [r.is_closed for r in seen[:2]] == [True, True]


def test_attempt_limit_reaches_httpx_timeouts(server: FaultServer, clock: ManualClock) -> None:
    timeouts: list[dict[str, float | None]] = []

    class Recording(httpx.BaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.HTTPTransport()

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            timeouts.append(dict(request.extensions["timeout"]))
            return self.inner.handle_request(request)

        def close(self) -> None:
            self.inner.close()

    many = RetryPolicy(max_attempts=3, backoff=Constant(8.0))
    server.script("/orders", Reply(503), Reply(200))
    transport = StormproofTransport(
        Recording(),
        policy=policy(retry=many, attempt_timeout=10.0, total_timeout=15.0),
        clock=clock,
    )
    timeout = httpx.Timeout(5.0, read=20.0)
    with httpx.Client(transport=transport, base_url=server.url, timeout=timeout) as http:
        assert http.get("/orders").status_code == 200
    # First attempt: min(own timeout, 10 s); second, at t=8: at most the 7 s left of 15.
    assert timeouts[0] == {"connect": 5.0, "read": 10.0, "write": 5.0, "pool": 5.0}
    assert timeouts[1] == {"connect": 5.0, "read": 7.0, "write": 5.0, "pool": 5.0}


def test_events_are_emitted(server: FaultServer, clock: ManualClock) -> None:
    events: list[PipelineEvent] = []
    server.script("/orders", Reply(503), Reply(200))
    transport = StormproofTransport(policy=policy(), clock=clock, on_event=events.append)
    with httpx.Client(transport=transport, base_url=server.url) as http:
        http.get("/orders")
    assert [(e.mechanism, e.outcome, e.reason) for e in events] == [
        ("breaker", "failure", "503"),
        ("retry", "retry", "backoff"),
        ("breaker", "success", "200"),
    ]
    assert events[1].delay == 1.0 and events[1].attempt == 1


def test_default_policy_with_instant_sleeps(server: FaultServer) -> None:
    server.script("/orders", Reply(503), Reply(503), Reply(200))
    with (
        instant_sleeps() as sleeps,
        httpx.Client(transport=StormproofTransport(), base_url=server.url) as http,
    ):
        assert http.get("/orders").status_code == 200
    # The standard preset: full jitter over 0.1 s then 0.2 s.
    assert len(sleeps) == 2 and 0.0 <= sleeps[0] <= 0.1 and 0.0 <= sleeps[1] <= 0.2


def test_bad_inner_transport() -> None:
    with pytest.raises(ConfigError, match="inner"):
        StormproofTransport(object())  # type: ignore[arg-type]


# -- async ---------------------------------------------------------------------------------------


def async_client(server: FaultServer, clock: ManualClock, **changes: Any) -> httpx.AsyncClient:
    transport = AsyncStormproofTransport(policy=policy(**changes), clock=clock)
    return httpx.AsyncClient(transport=transport, base_url=server.url)


@pytest.mark.asyncio
async def test_async_5xx_and_retry_after(server: FaultServer, clock: ManualClock) -> None:
    server.script("/orders", Reply(503), Reply(429, headers={"Retry-After": "6"}), Reply(200))
    async with async_client(server, clock) as http:
        response = await http.get("/orders")
    assert response.status_code == 200
    assert server.hits("/orders") == 3 and clock.sleeps == [1.0, 6.0]


@pytest.mark.asyncio
async def test_async_slow_and_reset(server: FaultServer, clock: ManualClock) -> None:
    server.script("/orders", Reply(delay=30.0), Reply(reset=True), Reply(200))
    async with async_client(server, clock, attempt_timeout=0.1) as http:
        assert (await http.get("/orders")).status_code == 200
    assert server.hits("/orders") == 3 and clock.sleeps == [1.0, 2.0]


@pytest.mark.asyncio
async def test_async_post_rule(server: FaultServer, clock: ManualClock) -> None:
    server.script("/pay", Reply(503), Reply(503), Reply(200))
    async with async_client(server, clock) as http:
        assert (await http.post("/pay", content=b"{}")).status_code == 503
        keyed = await http.post("/pay", content=b"{}", headers={"Idempotency-Key": "k"})
        assert keyed.status_code == 200
    assert server.hits("/pay") == 3


@pytest.mark.asyncio
async def test_async_breaker_fails_fast(server: FaultServer, clock: ManualClock) -> None:
    breaker = BreakerConfig(window_size=3, minimum_calls=3, open_duration=30.0)
    server.script("/orders", *[Reply(500)] * 5)
    async with async_client(server, clock, breaker=breaker) as http:
        assert (await http.get("/orders")).status_code == 500
        with pytest.raises(CircuitOpenError):
            await http.get("/orders")
    assert server.hits("/orders") == 3
