"""The aiohttp middleware and session factory against a real local server that injects faults."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from http_faults import FaultServer, Reply
from http_policy import policy

from stormproof import ManualClock, RetryPolicy
from stormproof.integrations._http import AttemptTimedOut
from stormproof.integrations.aiohttp import (
    CircuitOpenError,
    StormproofMiddleware,
    stormproof_session,
)
from stormproof.policies.backoff import Constant
from stormproof.policies.breaker import BreakerConfig
from stormproof.run.pipeline import PipelineEvent

pytestmark = pytest.mark.asyncio


def session(clock: ManualClock, **changes: Any) -> aiohttp.ClientSession:
    return stormproof_session(policy(**changes), clock=clock)


async def status(http: aiohttp.ClientSession, method: str, url: str, **options: Any) -> int:
    async with http.request(method, url, **options) as response:
        await response.read()
        return response.status


async def test_5xx_and_retry_after(server: FaultServer, clock: ManualClock) -> None:
    server.script(
        "/orders",
        Reply(503),
        Reply(429, headers={"Retry-After": "6"}),
        Reply(200, body=b"done"),
    )
    async with session(clock) as http, http.get(server.url + "/orders") as response:
        assert await response.text() == "done"
    assert server.hits("/orders") == 3 and clock.sleeps == [1.0, 6.0]


async def test_retry_after_date_capped_and_deadline(
    server: FaultServer, clock: ManualClock
) -> None:
    capped = RetryPolicy(max_attempts=3, backoff=Constant(1.0), max_server_delay=11.0)
    server.script("/date", Reply(503, retry_after_date=4), Reply(200))
    server.script("/capped", Reply(429, headers={"Retry-After": "500"}), Reply(200))
    server.script("/late", Reply(429, headers={"Retry-After": "50"}), Reply(200))
    async with session(clock, retry=capped, total_timeout=None) as http:
        assert await status(http, "GET", server.url + "/date") == 200
        assert await status(http, "GET", server.url + "/capped") == 200
    async with session(clock, total_timeout=30.0) as http:
        assert await status(http, "GET", server.url + "/late") == 429
    assert clock.sleeps == [4.0, 11.0] and server.hits("/late") == 1


async def test_slow_response_is_cut(server: FaultServer, clock: ManualClock) -> None:
    server.script("/slow", Reply(delay=30.0), Reply(200))
    async with session(clock, attempt_timeout=0.1) as http:
        assert await status(http, "GET", server.url + "/slow") == 200
    assert server.hits("/slow") == 2 and clock.sleeps == [1.0]


async def test_slow_every_time_raises_attempt_timed_out(
    server: FaultServer, clock: ManualClock
) -> None:
    server.script("/slow", *[Reply(delay=30.0)] * 2)
    two = RetryPolicy(max_attempts=2, backoff=Constant(1.0))
    async with session(clock, retry=two, attempt_timeout=0.05) as http:
        with pytest.raises(AttemptTimedOut):
            await status(http, "GET", server.url + "/slow")
    assert server.hits("/slow") == 2


async def test_resets_are_not_retried_twice_over(server: FaultServer, clock: ManualClock) -> None:
    server.script("/orders", *[Reply(reset=True)] * 6)
    async with session(clock) as http:
        with pytest.raises(aiohttp.ClientError):
            await status(http, "GET", server.url + "/orders")
    # Exactly 3: aiohttp's own retry of a dropped connection is off in stormproof_session.
    assert server.hits("/orders") == 3


async def test_reset_then_success(server: FaultServer, clock: ManualClock) -> None:
    server.script("/orders", Reply(reset=True), Reply(200))
    async with session(clock) as http:
        assert await status(http, "GET", server.url + "/orders") == 200
    assert server.hits("/orders") == 2


async def test_post_rule(server: FaultServer, clock: ManualClock) -> None:
    server.script("/pay", Reply(503), Reply(200))
    server.script("/keyed", Reply(503), Reply(reset=True), Reply(201))
    headers = {"Idempotency-Key": "k"}
    async with session(clock) as http:
        assert await status(http, "POST", server.url + "/pay", data=b"{}") == 503
        assert await status(http, "POST", server.url + "/keyed", json={}, headers=headers) == 201
    assert server.hits("/pay") == 1 and server.hits("/keyed") == 3
    assert {s.body for s in server.seen if s.path == "/keyed"} == {b"{}"}


async def test_streamed_body_is_not_retried(server: FaultServer, clock: ManualClock) -> None:
    server.script("/upload", Reply(503), Reply(200))

    async def chunks() -> AsyncIterator[bytes]:
        yield b"part"

    headers = {"Content-Length": "4"}
    async with session(clock) as http:
        assert (
            await status(http, "PUT", server.url + "/upload", data=chunks(), headers=headers) == 503
        )
    assert server.hits("/upload") == 1


async def test_breaker_per_host(server: FaultServer, clock: ManualClock) -> None:
    other = FaultServer()
    try:
        breaker = BreakerConfig(window_size=3, minimum_calls=3, open_duration=20.0)
        server.script("/orders", *[Reply(500)] * 5)
        async with session(clock, breaker=breaker) as http:
            assert await status(http, "GET", server.url + "/orders") == 500
            with pytest.raises(CircuitOpenError) as refused:
                await status(http, "GET", server.url + "/orders")
            assert isinstance(refused.value, aiohttp.ClientError)
            assert server.hits("/orders") == 3
            assert await status(http, "GET", other.url + "/orders") == 200
    finally:
        other.close()


async def test_middleware_on_a_plain_session(server: FaultServer, clock: ManualClock) -> None:
    events: list[PipelineEvent] = []
    middleware = StormproofMiddleware(policy(), clock=clock, on_event=events.append)
    server.script("/orders", Reply(502), Reply(200))
    async with aiohttp.ClientSession(middlewares=(middleware,)) as http:
        assert await status(http, "GET", server.url + "/orders") == 200
    assert [(e.mechanism, e.outcome) for e in events] == [
        ("breaker", "failure"),
        ("retry", "retry"),
        ("breaker", "success"),
    ]


async def test_inner_middlewares_see_every_attempt(server: FaultServer, clock: ManualClock) -> None:
    seen: list[str] = []

    async def signer(
        request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        seen.append(str(request.url.path))
        return await handler(request)

    server.script("/orders", Reply(503), Reply(200))
    async with stormproof_session(policy(), clock=clock, middlewares=(signer,)) as http:
        assert await status(http, "GET", server.url + "/orders") == 200
    assert seen == ["/orders", "/orders"]
