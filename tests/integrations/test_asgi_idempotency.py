from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from stormproof import stores
from stormproof.errors import ConfigError
from stormproof.events.idempotency import Idempotency, IdempotencyConfig
from stormproof.integrations.asgi import (
    IdempotencyHttpConfig,
    IdempotencyMiddleware,
    StoredResponse,
)
from stormproof.policies.backoff import Constant
from stormproof.stores.base import IdempotencyStore


def _store_services() -> ModuleType:
    """tests/stores/store_services.py, which skips (or fails in CI) when a server is absent."""
    loaded = sys.modules.get("store_services")
    if loaded is not None:
        return loaded
    path = Path(__file__).resolve().parents[1] / "stores" / "store_services.py"
    spec = importlib.util.spec_from_file_location("store_services", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["store_services"] = module
    return module


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IdempotencyStore]:
    url = _store_services().store_url(request.param, tmp_path)
    opened = stores.open(url)
    opened.init()
    yield opened
    drop = getattr(opened, "drop", None)
    if drop is not None:
        drop()  # the test's own table
    opened.close()


class Orders:
    """A small order API whose side effects are counted."""

    def __init__(self) -> None:
        self.created = 0
        self.release = asyncio.Event()
        self.release.set()
        self.started = asyncio.Event()

    async def create(self, request: Request) -> Response:
        body = await request.json()
        self.started.set()
        await self.release.wait()
        self.created += 1
        if body.get("fail") == "raise":
            raise RuntimeError("payment provider down")
        if body.get("fail") == "500":
            return JSONResponse({"error": "later"}, status_code=500)
        if body.get("binary"):
            return Response(bytes(range(256)), media_type="application/octet-stream")
        return JSONResponse(
            {"order": self.created, "amount": body["amount"]},
            status_code=201,
            headers={"location": f"/orders/{self.created}", "x-trace": str(self.created)},
        )

    async def show(self, request: Request) -> Response:
        return JSONResponse({"orders": self.created})


def build(
    store: IdempotencyStore,
    config: IdempotencyHttpConfig | None = None,
    engine_config: IdempotencyConfig | None = None,
) -> tuple[Any, Orders]:
    orders = Orders()
    app = Starlette(
        routes=[
            Route("/orders", orders.create, methods=["POST"]),
            Route("/orders", orders.show, methods=["GET"]),
        ]
    )
    engine = Idempotency(store, engine_config)
    return IdempotencyMiddleware(app, engine, config), orders


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        base_url="http://test",
    )


def keyed(key: str) -> dict[str, str]:
    return {"idempotency-key": key}


@pytest.mark.asyncio
async def test_a_duplicate_gets_the_stored_response_without_running(
    store: IdempotencyStore,
) -> None:
    app, orders = build(store)
    async with client(app) as http:
        first = await http.post("/orders", json={"amount": 42}, headers=keyed("k-1"))
        second = await http.post("/orders", json={"amount": 42}, headers=keyed("k-1"))
    assert orders.created == 1
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json() == {"order": 1, "amount": 42}
    assert second.headers["location"] == "/orders/1"
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert first.headers["x-trace"] == "1"  # the first response is the handler's own
    assert "x-trace" not in second.headers  # not among the stored headers
    assert second.headers["content-length"] == str(len(second.content))


@pytest.mark.asyncio
async def test_the_same_key_with_another_body_is_refused_with_422(
    store: IdempotencyStore,
) -> None:
    app, orders = build(store)
    async with client(app) as http:
        assert (await http.post("/orders", json={"amount": 1}, headers=keyed("k"))).is_success
        reused = await http.post("/orders", json={"amount": 2}, headers=keyed("k"))
        other = await http.post("/orders", json={"amount": 2}, headers=keyed("k-2"))
    assert reused.status_code == 422
    assert reused.json() == {"error": "idempotency_key_reused"}
    assert other.status_code == 201
    assert orders.created == 2


@pytest.mark.asyncio
async def test_server_errors_and_exceptions_release_the_key(store: IdempotencyStore) -> None:
    app, orders = build(store)
    async with client(app) as http:
        failed = await http.post("/orders", json={"fail": "500"}, headers=keyed("e"))
        again = await http.post("/orders", json={"fail": "500"}, headers=keyed("e"))
        assert failed.status_code == again.status_code == 500
        assert "idempotent-replayed" not in again.headers
        assert orders.created == 2  # ran twice: a 500 is not stored
        crashed = await http.post("/orders", json={"fail": "raise"}, headers=keyed("x"))
        assert crashed.status_code == 500
        assert orders.created == 3
        assert store.get("POST /orders x") is None  # released for a retry


@pytest.mark.asyncio
async def test_requests_without_a_key_or_method_pass_through(store: IdempotencyStore) -> None:
    app, _orders = build(store)
    async with client(app) as http:
        for _ in range(2):
            assert (await http.post("/orders", json={"amount": 1})).status_code == 201
        assert (await http.get("/orders", headers=keyed("k"))).json() == {"orders": 2}


@pytest.mark.asyncio
async def test_binary_bodies_are_stored_as_base64(store: IdempotencyStore) -> None:
    app, orders = build(store)
    async with client(app) as http:
        first = await http.post("/orders", json={"binary": True}, headers=keyed("b"))
        second = await http.post("/orders", json={"binary": True}, headers=keyed("b"))
    assert first.content == second.content == bytes(range(256))
    assert second.headers["content-type"] == "application/octet-stream"
    record = store.get("POST /orders b")
    assert record is not None and record.result is not None
    assert "body_b64" in json.loads(record.result)
    assert orders.created == 1


@pytest.mark.asyncio
async def test_a_concurrent_duplicate_gets_409_with_retry_after() -> None:
    store = stores.open("memory://")
    store.init()
    app, orders = build(store, engine_config=IdempotencyConfig(lease=30.0))
    orders.release.clear()
    async with client(app) as http:
        first = asyncio.create_task(http.post("/orders", json={"amount": 5}, headers=keyed("c")))
        await orders.started.wait()
        busy = await http.post("/orders", json={"amount": 5}, headers=keyed("c"))
        assert busy.status_code == 409
        assert busy.json() == {"error": "idempotency_key_in_progress"}
        assert 1 <= int(busy.headers["retry-after"]) <= 30
        orders.release.set()
        assert (await first).status_code == 201
    assert orders.created == 1


@pytest.mark.asyncio
async def test_a_concurrent_duplicate_can_wait_for_the_stored_response() -> None:
    store = stores.open("memory://")
    store.init()
    engine_config = IdempotencyConfig(on_in_progress="wait", wait_backoff=Constant(0.001))
    app, orders = build(store, engine_config=engine_config)
    orders.release.clear()
    async with client(app) as http:
        first = asyncio.create_task(http.post("/orders", json={"amount": 5}, headers=keyed("w")))
        await orders.started.wait()
        waiting = asyncio.create_task(http.post("/orders", json={"amount": 5}, headers=keyed("w")))
        for _ in range(5):
            await asyncio.sleep(0.001)
        assert not waiting.done()
        orders.release.set()
        responses = await asyncio.gather(first, waiting)
    assert [r.status_code for r in responses] == [201, 201]
    assert responses[1].headers["idempotent-replayed"] == "true"
    assert responses[0].json() == responses[1].json()
    assert orders.created == 1


@pytest.mark.asyncio
async def test_limits_on_keys_and_bodies() -> None:
    store = stores.open("memory://")
    store.init()
    config = IdempotencyHttpConfig(required=True, max_body=64, max_key_length=8)
    app, orders = build(store, config)
    async with client(app) as http:
        missing = await http.post("/orders", json={"amount": 1})
        too_long = await http.post("/orders", json={"amount": 1}, headers=keyed("123456789"))
        blank = await http.post("/orders", json={"amount": 1}, headers=keyed("  "))
        big = await http.post("/orders", json={"amount": "x" * 100}, headers=keyed("k"))
    assert missing.status_code == 400
    assert missing.json() == {"error": "idempotency_key_missing"}
    assert too_long.status_code == blank.status_code == 400
    assert big.status_code == 413
    assert orders.created == 0


@pytest.mark.asyncio
async def test_namespace_separates_clients_keys() -> None:
    store = stores.open("memory://")
    store.init()

    def per_tenant(scope: Any) -> str:
        tenant = dict(scope["headers"]).get(b"x-tenant", b"-").decode()
        return f"{tenant} {scope['method']} {scope['path']}"

    app, orders = build(store, IdempotencyHttpConfig(namespace=per_tenant))
    async with client(app) as http:
        for tenant in ("a", "b", "a"):
            headers = {**keyed("same"), "x-tenant": tenant}
            await http.post("/orders", json={"amount": 1}, headers=headers)
    assert orders.created == 2


def test_stored_response_json_round_trip() -> None:
    response = StoredResponse(201, (("location", "/x"),), "é".encode())
    assert StoredResponse.from_json(json.loads(json.dumps(response.to_json()))) == response
    binary = StoredResponse(200, (), b"\xff\x00")
    assert StoredResponse.from_json(binary.to_json()) == binary


def test_bad_configuration_names_the_field() -> None:
    with pytest.raises(ConfigError, match="methods"):
        IdempotencyHttpConfig(methods=frozenset())
    with pytest.raises(ConfigError, match="max_body"):
        IdempotencyHttpConfig(max_body=-1)
    with pytest.raises(ConfigError, match="idempotency"):
        IdempotencyMiddleware(lambda s, r, w: None, idempotency=object())  # type: ignore[arg-type]
