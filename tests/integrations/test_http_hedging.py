"""Hedged requests in the async httpx transport and the aiohttp middleware, on a fault server.

The hedge timer runs on a :class:`GatedClock`: a manual clock whose k-th sleep first waits until
the server has received k requests. So a hedge is sent only after the server has taken the
request before it (which of them gets the slow scripted reply is then certain), and the hedge
delay is asserted on the clock, never by sleeping.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from http_faults import FaultServer, Reply
from http_policy import policy

from stormproof import ManualClock
from stormproof.errors import ConfigError
from stormproof.integrations._http import HttpPolicy
from stormproof.integrations.aiohttp import stormproof_session
from stormproof.integrations.httpx import (
    AsyncStormproofTransport,
    CircuitOpenError,
    StormproofTransport,
)
from stormproof.integrations.requests import StormproofAdapter
from stormproof.policies.breaker import BreakerConfig
from stormproof.policies.pipeline import Hedge
from stormproof.run.pipeline import PipelineEvent

DELAY = 0.3  # the hedge delay, on the manual clock


class GatedClock(ManualClock):
    """A manual clock whose k-th async sleep starts once the server has seen k requests."""

    def __init__(self, server: FaultServer, path: str) -> None:
        super().__init__()
        self.server = server
        self.path = path

    async def async_sleep(self, seconds: float) -> None:
        needed = len(self.sleeps) + 1
        for _ in range(1000):  # at most ~5 s: a wait for a condition, not a timing assumption
            if self.server.hits(self.path) >= needed:
                break
            await asyncio.sleep(0.005)
        await super().async_sleep(seconds)


class Budget:
    """A retry budget that refuses every retry and counts the requests."""

    def __init__(self) -> None:
        self.asked = 0

    def on_request(self, now: float) -> None:
        pass

    def on_failure(self, now: float) -> None:
        pass

    def acquire_retry(
        self, now: float, *, timeout: bool = False, throttling: bool = False
    ) -> float | None:
        self.asked += 1
        return None

    def on_success(self, now: float, *, retry_cost: float | None = None) -> None:
        pass

    def available(self, now: float) -> float:
        return 0.0


def hedged(**changes: Any) -> HttpPolicy:
    # A generous attempt timeout: the slow first attempt must lose to the hedge, not time out.
    settings: dict[str, Any] = {"hedge": Hedge(DELAY), "attempt_timeout": 10.0}
    settings.update(changes)
    return policy(**settings)


class Recording(httpx.AsyncBaseTransport):
    """Wraps the real transport and notes which attempts were cancelled."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.cancelled = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self.inner.handle_async_request(request)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    async def aclose(self) -> None:
        await self.inner.aclose()


def pairs(events: list[PipelineEvent]) -> list[tuple[str, str, str, int | None]]:
    return [(e.mechanism, e.outcome, e.reason, e.attempt) for e in events]


# -- httpx ---------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_httpx_hedge_wins_and_the_slow_attempt_is_cancelled(server: FaultServer) -> None:
    server.script("/orders", Reply(delay=30.0, body=b"slow"), Reply(body=b"fast"))
    clock = GatedClock(server, "/orders")
    events: list[PipelineEvent] = []
    inner = Recording()
    transport = AsyncStormproofTransport(
        inner, policy=hedged(), clock=clock, on_event=events.append
    )
    async with httpx.AsyncClient(transport=transport, base_url=server.url) as http:
        response = await http.get("/orders")
        assert response.text == "fast"
        assert inner.cancelled == 1  # the loser was cancelled before the call returned
    assert server.hits("/orders") == 2
    assert server.abandoned("/orders") == 1  # ... and its connection closed
    assert clock.sleeps == [DELAY]  # the hedge waited its delay on the injected clock
    assert pairs(events) == [
        ("hedge", "started", "", 2),
        ("breaker", "success", "200", None),
        ("hedge", "won", "", 2),
    ]


@pytest.mark.asyncio
async def test_httpx_failed_hedge_is_replaced_and_counted_by_the_breaker(
    server: FaultServer,
) -> None:
    server.script("/orders", Reply(delay=30.0), Reply(503), Reply(body=b"third"))
    clock = GatedClock(server, "/orders")
    events: list[PipelineEvent] = []
    transport = AsyncStormproofTransport(
        policy=hedged(hedge=Hedge(DELAY, max_hedges=2)), clock=clock, on_event=events.append
    )
    async with httpx.AsyncClient(transport=transport, base_url=server.url) as http:
        assert (await http.get("/orders")).text == "third"
    assert server.hits("/orders") == 3
    outcomes = [(e.outcome, e.reason) for e in events if e.mechanism == "breaker"]
    # The 503 hedge is a failure, the winner a success; the cancelled original is neither.
    assert outcomes == [("failure", "503"), ("success", "200")]
    assert [e.attempt for e in events if e.mechanism == "hedge" and e.outcome == "won"] == [3]
    assert server.abandoned("/orders") == 1


@pytest.mark.asyncio
async def test_httpx_post_without_key_is_not_hedged(server: FaultServer) -> None:
    clock = ManualClock()  # its sleeps end at once: any hedge timer would fire immediately
    server.script("/pay", Reply(body=b"paid"))
    transport = AsyncStormproofTransport(policy=hedged(), clock=clock)
    async with httpx.AsyncClient(transport=transport, base_url=server.url) as http:
        assert (await http.post("/pay", content=b"{}")).text == "paid"
    assert server.hits("/pay") == 1 and clock.sleeps == []


@pytest.mark.asyncio
async def test_httpx_post_with_key_is_hedged(server: FaultServer) -> None:
    server.script("/pay", Reply(delay=30.0), Reply(201, body=b"paid"))
    clock = GatedClock(server, "/pay")
    transport = AsyncStormproofTransport(policy=hedged(), clock=clock)
    async with httpx.AsyncClient(transport=transport, base_url=server.url) as http:
        response = await http.post("/pay", content=b"{}", headers={"Idempotency-Key": "k7"})
    assert response.status_code == 201
    assert server.hits("/pay") == 2
    assert [seen.headers.get("Idempotency-Key") for seen in server.seen] == ["k7", "k7"]
    assert [seen.body for seen in server.seen] == [b"{}", b"{}"]


@pytest.mark.asyncio
async def test_httpx_hedge_takes_a_retry_from_the_budget(server: FaultServer) -> None:
    budget = Budget()
    server.script("/orders", Reply(delay=30.0), Reply())
    clock = GatedClock(server, "/orders")
    events: list[PipelineEvent] = []
    retry = policy().retry.replace(budget=budget)
    transport = AsyncStormproofTransport(
        policy=hedged(retry=retry, attempt_timeout=0.2), clock=clock, on_event=events.append
    )
    async with httpx.AsyncClient(transport=transport, base_url=server.url) as http:
        with pytest.raises((httpx.TimeoutException, TimeoutError)):
            await http.get("/orders")
    # The budget refused the hedge (and then the retry after the slow attempt timed out).
    assert server.hits("/orders") == 1 and budget.asked == 2
    assert ("hedge", "refused", "budget", None) in pairs(events)


@pytest.mark.asyncio
async def test_httpx_all_hedges_failing_goes_to_the_retry_policy(server: FaultServer) -> None:
    # Round 2's attempt and its hedge may reach the server in either order (the hedge delay
    # passes at once on a manual clock), so both get the same good answer.
    server.script(
        "/orders",
        Reply(503),
        Reply(503),
        Reply(body=b"after backoff"),
        Reply(body=b"after backoff"),
    )
    clock = ManualClock()
    events: list[PipelineEvent] = []
    transport = AsyncStormproofTransport(policy=hedged(), clock=clock, on_event=events.append)
    async with httpx.AsyncClient(transport=transport, base_url=server.url) as http:
        assert (await http.get("/orders")).text == "after backoff"
    # Round 1: the original and its hedge both get 503; the retry waits its 1 s backoff;
    # round 2's first attempt succeeds (its hedge, if started, is cancelled or discarded).
    retries = [(e.outcome, e.delay) for e in events if e.mechanism == "retry"]
    assert retries == [("retry", 1.0)]
    assert 1.0 in clock.sleeps
    assert 3 <= server.hits("/orders") <= 4


@pytest.mark.asyncio
async def test_httpx_open_breaker_refuses_the_request_before_any_hedge(
    server: FaultServer,
) -> None:
    breaker = BreakerConfig(window_size=2, minimum_calls=2, open_duration=30.0)
    server.script("/orders", Reply(500), Reply(500))
    transport = AsyncStormproofTransport(
        policy=hedged(breaker=breaker, retry=policy().retry.replace(max_attempts=1)),
        clock=GatedClock(server, "/orders"),
    )
    async with httpx.AsyncClient(transport=transport, base_url=server.url) as http:
        assert (await http.get("/orders")).status_code == 500
        with pytest.raises(CircuitOpenError):
            await http.get("/orders")
    assert server.hits("/orders") == 2


def test_sync_adapters_refuse_a_hedge() -> None:
    with pytest.raises(ConfigError, match=r"policy\.hedge"):
        StormproofTransport(policy=hedged())
    with pytest.raises(ConfigError, match=r"policy\.hedge"):
        StormproofAdapter(hedged())
    with pytest.raises(ConfigError, match="hedge"):
        HttpPolicy(hedge=0.5)  # type: ignore[arg-type]


# -- aiohttp -------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_aiohttp_hedge_wins_and_the_slow_attempt_is_closed(server: FaultServer) -> None:
    server.script("/orders", Reply(delay=30.0, body=b"slow"), Reply(body=b"fast"))
    clock = GatedClock(server, "/orders")
    events: list[PipelineEvent] = []
    session = stormproof_session(hedged(), clock=clock, on_event=events.append)
    async with session, session.get(server.url + "/orders") as response:
        assert await response.read() == b"fast"
    assert server.hits("/orders") == 2
    assert server.abandoned("/orders") == 1
    assert clock.sleeps == [DELAY]
    assert ("hedge", "won", "", 2) in pairs(events)


@pytest.mark.asyncio
async def test_aiohttp_post_rule_for_hedges(server: FaultServer) -> None:
    server.script("/pay", Reply(body=b"once"), Reply(delay=30.0), Reply(201))
    instant = ManualClock()  # its sleeps end at once: any hedge timer would fire immediately
    session = stormproof_session(hedged(), clock=instant)
    async with session, session.post(server.url + "/pay", data=b"{}") as response:
        assert await response.read() == b"once"
    assert instant.sleeps == [] and server.hits("/pay") == 1
    gated = GatedClock(server, "/pay")
    async with stormproof_session(hedged(), clock=gated) as session:
        keyed = session.post(server.url + "/pay", data=b"{}", headers={"Idempotency-Key": "k"})
        async with keyed as response:
            assert response.status == 201
    assert server.hits("/pay") == 3 and gated.sleeps == [DELAY]
    assert [seen.body for seen in server.seen] == [b"{}"] * 3


@pytest.mark.asyncio
async def test_aiohttp_hedged_session_can_be_reused(server: FaultServer) -> None:
    server.script("/orders", Reply(delay=30.0), Reply(body=b"one"))
    clock = GatedClock(server, "/orders")
    async with stormproof_session(hedged(), clock=clock) as session:
        async with session.get(server.url + "/orders") as response:
            assert await response.read() == b"one"
        # The cancelled attempt's connection is gone; the pool still serves the next request.
        clock.sleeps.clear()
        async with session.get(server.url + "/orders") as response:
            assert await response.read() == b"ok"
    assert server.abandoned("/orders") == 1
