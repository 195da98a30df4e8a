from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from stormproof.clock import ManualClock
from stormproof.errors import ConfigError
from stormproof.integrations.asgi import LoadShedding, SheddingConfig
from stormproof.policies.admission import QueueRate


class Gate:
    """Handlers block on it until the test opens it; counts who entered."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.entered = 0
        self.arrived = asyncio.Event()

    async def endpoint(self, request: Request) -> PlainTextResponse:
        self.entered += 1
        self.arrived.set()
        await self.open.wait()
        return PlainTextResponse("done")


def build(config: SheddingConfig, clock: ManualClock | None = None) -> tuple[Any, LoadShedding]:
    gate = Gate()

    async def fast(request: Request) -> PlainTextResponse:
        return PlainTextResponse("fast")

    app = Starlette(routes=[Route("/slow", gate.endpoint), Route("/fast", fast)])
    shedder = LoadShedding(app, config, clock=clock)
    return gate, shedder


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_lower_priorities_are_shed_first_as_load_rises() -> None:
    gate, shedder = build(SheddingConfig(max_concurrent=4))
    async with client(shedder) as http:
        busy = [asyncio.create_task(http.get("/slow")) for _ in range(3)]
        await settle()
        assert shedder.in_flight == 3  # load 0.75
        low = await http.get("/fast", headers={"x-priority": "low"})
        assert low.status_code == 503
        assert low.headers["retry-after"] == "1"
        assert low.headers["x-stormproof-shed"] == "priority"
        assert low.json() == {"error": "overloaded", "reason": "priority"}
        normal = await http.get("/fast", headers={"x-priority": "normal"})
        assert normal.status_code == 200  # 0.75 < 0.8
        junk = await http.get("/fast", headers={"x-priority": "urgent!!"})
        assert junk.status_code == 200  # an unknown class gets the default, "normal"
        high = await http.get("/fast", headers={"x-priority": "high"})
        assert high.status_code == 200
        gate.open.set()
        assert [r.status_code for r in await asyncio.gather(*busy)] == [200, 200, 200]
    assert shedder.in_flight == 0
    assert shedder.stats.shed_priority == 1
    assert shedder.stats.admitted == 6


@pytest.mark.asyncio
async def test_classifier_takes_precedence_and_unknown_classes_are_a_bug() -> None:
    def classify(scope: Any) -> str | None:
        return {"/fast": "low", "/typo": "lowest"}.get(scope["path"])

    gate, shedder = build(SheddingConfig(max_concurrent=2, classify=classify))
    async with client(shedder) as http:
        busy = asyncio.create_task(http.get("/slow"))
        await settle()  # load 0.5: "low" (0.6) still admitted
        assert (await http.get("/fast", headers={"x-priority": "high"})).status_code == 200
        gate.open.set()
        await busy
        with pytest.raises(ConfigError, match="priority"):
            await http.get("/typo")


@pytest.mark.asyncio
async def test_queued_requests_wait_for_a_permit_in_fifo_order() -> None:
    gate, shedder = build(SheddingConfig(max_concurrent=1, max_queue=2, queue_timeout=5.0))
    async with client(shedder) as http:
        first = asyncio.create_task(http.get("/slow"))
        await settle()
        second = asyncio.create_task(http.get("/slow", headers={"x-priority": "high"}))
        await settle()
        assert (shedder.in_flight, shedder.waiting) == (1, 1)
        assert gate.entered == 1
        gate.open.set()
        responses = await asyncio.gather(first, second)
    assert [r.status_code for r in responses] == [200, 200]
    assert gate.entered == 2
    assert shedder.stats.queued == 1
    assert (shedder.in_flight, shedder.waiting) == (0, 0)


@pytest.mark.asyncio
async def test_a_request_that_waits_past_queue_timeout_is_shed() -> None:
    clock = ManualClock()
    gate, shedder = build(
        SheddingConfig(max_concurrent=1, max_queue=1, queue_timeout=2.0, retry_after=3.0), clock
    )
    async with client(shedder) as http:
        first = asyncio.create_task(http.get("/slow"))
        await settle()
        queued = asyncio.create_task(http.get("/fast", headers={"x-priority": "high"}))
        await settle()
        assert shedder.waiting == 1
        clock.advance(1.9)
        await settle()
        assert not queued.done()
        clock.advance(0.1)
        response = await queued
        assert response.status_code == 503
        assert response.headers["retry-after"] == "3"
        assert response.headers["x-stormproof-shed"] == "queue_timeout"
        assert (shedder.in_flight, shedder.waiting) == (1, 0)
        gate.open.set()
        assert (await first).status_code == 200
    assert shedder.stats.shed_timeout == 1
    assert shedder.in_flight == 0


@pytest.mark.asyncio
async def test_queue_policy_throttles_joining_the_queue() -> None:
    clock = ManualClock()
    config = SheddingConfig(
        max_concurrent=1,
        max_queue=4,
        queue_policy=QueueRate(max_queue=4, rate=0.5, soft_queue=0, burst=1.0),
    )
    gate, shedder = build(config, clock)
    async with client(shedder) as http:
        first = asyncio.create_task(http.get("/slow"))
        await settle()
        waiting = asyncio.create_task(http.get("/slow", headers={"x-priority": "high"}))
        await settle()
        assert shedder.waiting == 1  # the bucket's one token
        refused = await http.get("/fast", headers={"x-priority": "high"})
        assert refused.status_code == 503
        assert refused.headers["x-stormproof-shed"] == "queue"
        gate.open.set()
        assert [r.status_code for r in await asyncio.gather(first, waiting)] == [200, 200]
    assert shedder.stats.shed_queue == 1


@pytest.mark.asyncio
async def test_per_client_rate_limit_answers_429_with_retry_after() -> None:
    clock = ManualClock()

    def client_key(scope: Any) -> str | None:
        for name, value in scope["headers"]:
            if name == b"x-client":
                return str(value.decode())
        return None

    config = SheddingConfig(client_key=client_key, client_rate=0.5, client_burst=2.0)
    _, shedder = build(config, clock)
    async with client(shedder) as http:
        a = {"x-client": "a"}
        assert [(await http.get("/fast", headers=a)).status_code for _ in range(2)] == [200, 200]
        limited = await http.get("/fast", headers=a)
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "2"  # one token at 0.5/s
        assert limited.headers["x-stormproof-shed"] == "rate"
        assert (await http.get("/fast", headers={"x-client": "b"})).status_code == 200
        assert (await http.get("/fast")).status_code == 200  # no client id: not limited
        clock.advance(2.0)
        assert (await http.get("/fast", headers=a)).status_code == 200
    assert shedder.stats.rate_limited == 1


@pytest.mark.asyncio
async def test_exempt_paths_and_non_http_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    shedder = LoadShedding(app, SheddingConfig(max_concurrent=1, exempt_paths=("/health",)))
    await shedder({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    async with client(shedder) as http:
        shedder._bulkhead.acquire(0.0)  # saturate: every other request is shed
        assert (await http.get("/health")).status_code == 204
        assert (await http.get("/other")).status_code == 503
    assert seen == ["lifespan", "http"]


def test_bad_configuration_names_the_field() -> None:
    with pytest.raises(ConfigError, match="default_priority"):
        SheddingConfig(default_priority="vip")
    with pytest.raises(ConfigError, match="max_concurrent"):
        SheddingConfig(max_concurrent=0)
    with pytest.raises(ConfigError, match="levels"):
        SheddingConfig(priorities={"a": 1.5}, default_priority="a")
    with pytest.raises(ConfigError, match="queue_timeout"):
        SheddingConfig(queue_timeout=0)
    with pytest.raises(ConfigError, match="config"):
        LoadShedding(lambda s, r, w: None, config={"max_concurrent": 3})  # type: ignore[arg-type]
