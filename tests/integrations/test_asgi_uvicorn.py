"""The three middlewares stacked on a Starlette app, served by a real uvicorn on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from stormproof import stores
from stormproof.events.idempotency import Idempotency
from stormproof.integrations.asgi import (
    DeadlinePropagation,
    IdempotencyMiddleware,
    LoadShedding,
    SheddingConfig,
)
from stormproof.policies.deadline import current_deadline


@asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """Run uvicorn in this event loop on a random port; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)  # connections wait in the backlog until uvicorn accepts them
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.mark.asyncio
async def test_the_stack_over_a_real_server(tmp_path: Any) -> None:
    created = 0
    gate = asyncio.Event()

    async def create(request: Request) -> JSONResponse:
        nonlocal created
        created += 1
        deadline = current_deadline()
        return JSONResponse({"n": created, "deadline": deadline is not None}, status_code=201)

    async def slow(request: Request) -> JSONResponse:
        await gate.wait()
        return JSONResponse({})

    store = stores.open(f"sqlite:///{tmp_path / 'records.db'}")
    store.init()
    inner = Starlette(routes=[Route("/orders", create, methods=["POST"]), Route("/slow", slow)])
    shedding = LoadShedding(
        DeadlinePropagation(IdempotencyMiddleware(inner, Idempotency(store))),
        SheddingConfig(max_concurrent=1, retry_after=2.0),
    )
    async with serve(shedding) as base, httpx.AsyncClient(base_url=base) as http:
        headers = {"idempotency-key": "order-1", "x-stormproof-deadline-ms": "5000"}
        first = await http.post("/orders", json={"sku": "a"}, headers=headers)
        replay = await http.post("/orders", json={"sku": "a"}, headers=headers)
        assert first.status_code == replay.status_code == 201
        assert first.json() == replay.json() == {"n": 1, "deadline": True}
        assert replay.headers["idempotent-replayed"] == "true"

        expired = await http.post(
            "/orders", json={"sku": "b"}, headers={"x-stormproof-deadline-ms": "0"}
        )
        assert expired.status_code == 504

        busy = asyncio.create_task(http.get("/slow"))
        for _ in range(5_000):  # until the slow request holds the only permit
            if shedding.in_flight:
                break
            await asyncio.sleep(0.001)
        shed = await http.get("/slow", headers={"x-priority": "high"})
        assert shed.status_code == 503
        assert shed.headers["retry-after"] == "2"
        gate.set()
        assert (await busy).status_code == 200
    assert created == 1
    store.close()
