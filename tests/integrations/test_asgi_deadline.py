from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from stormproof import Retrying, RetryPolicy
from stormproof.clock import ManualClock
from stormproof.errors import ConfigError, RetryError
from stormproof.integrations.asgi import (
    DeadlineConfig,
    DeadlinePropagation,
    deadline_headers,
    parse_deadline_ms,
    parse_grpc_timeout,
)
from stormproof.policies.backoff import Constant
from stormproof.policies.deadline import Deadline, current_deadline, deadline_scope


def build(
    config: DeadlineConfig | None = None,
) -> tuple[DeadlinePropagation, ManualClock, list[str]]:
    clock = ManualClock(100.0)
    calls: list[str] = []

    async def remaining(request: Request) -> JSONResponse:
        calls.append("async")
        deadline = current_deadline()
        left = None if deadline is None else deadline.remaining(clock.now())
        return JSONResponse({"remaining": left})

    def remaining_sync(request: Request) -> JSONResponse:
        calls.append("sync")  # runs in starlette's thread pool
        deadline = current_deadline()
        left = None if deadline is None else deadline.remaining(clock.now())
        return JSONResponse({"remaining": left})

    def retried(request: Request) -> JSONResponse:
        attempts = 0

        def flaky() -> None:
            nonlocal attempts
            attempts += 1
            raise ConnectionError("down")

        policy = RetryPolicy(max_attempts=10, backoff=Constant(0.2))
        try:
            Retrying(policy, clock=clock).call(flaky)
        except RetryError as error:
            return JSONResponse({"attempts": attempts, "reason": error.reason})
        return JSONResponse({})

    async def slow(request: Request) -> JSONResponse:
        await clock.async_sleep(5.0)
        return JSONResponse({"late": True})

    app = Starlette(
        routes=[
            Route("/", remaining),
            Route("/sync", remaining_sync),
            Route("/retried", retried),
            Route("/slow", slow),
        ]
    )
    return DeadlinePropagation(app, config, clock=clock), clock, calls


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def remaining(http: httpx.AsyncClient, path: str = "/", **headers: str) -> Any:
    response = await http.get(path, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["remaining"]


@pytest.mark.asyncio
async def test_the_header_becomes_the_handlers_deadline() -> None:
    app, _, calls = build()
    async with client(app) as http:
        assert await remaining(http, **{"x-stormproof-deadline-ms": "250"}) == pytest.approx(0.25)
        assert await remaining(http, **{"grpc-timeout": "100m"}) == pytest.approx(0.1)
        both = {"x-stormproof-deadline-ms": "900", "grpc-timeout": "2S"}
        assert await remaining(http, **both) == pytest.approx(0.9)  # the tighter one
        assert await remaining(http) is None
        assert await remaining(http, "/sync", **{"X-Stormproof-Deadline-Ms": "1500.5"}) == (
            pytest.approx(1.5005)
        )
    assert calls == ["async"] * 4 + ["sync"]


@pytest.mark.asyncio
async def test_default_and_maximum_timeouts() -> None:
    app, _, _ = build(DeadlineConfig(default_timeout=3.0, max_timeout=10.0, grpc_timeout=False))
    async with client(app) as http:
        assert await remaining(http) == pytest.approx(3.0)
        assert await remaining(http, **{"x-stormproof-deadline-ms": "60000"}) == pytest.approx(10)
        assert await remaining(http, **{"grpc-timeout": "1S"}) == pytest.approx(3.0)  # ignored


@pytest.mark.asyncio
async def test_an_expired_deadline_is_answered_504_without_running() -> None:
    app, _, calls = build()
    async with client(app) as http:
        for value in ("0", "-20"):
            response = await http.get("/", headers={"x-stormproof-deadline-ms": value})
            assert response.status_code == 504
            assert response.json()["error"] == "deadline_exceeded"
        assert (await http.get("/", headers={"grpc-timeout": "0n"})).status_code == 504
    assert calls == []


@pytest.mark.asyncio
async def test_malformed_headers_are_ignored() -> None:
    app, _, calls = build()
    async with client(app) as http:
        for headers in (
            {"x-stormproof-deadline-ms": "soon"},
            {"x-stormproof-deadline-ms": "nan"},
            {"grpc-timeout": "123456789S"},  # nine digits
            {"grpc-timeout": "10s"},  # unit is case-sensitive
        ):
            assert await remaining(http, **headers) is None
    assert len(calls) == 4


@pytest.mark.asyncio
async def test_retries_inside_the_handler_stop_at_the_propagated_deadline() -> None:
    app, _, _ = build()
    async with client(app) as http:
        response = await http.get("/retried", headers={"x-stormproof-deadline-ms": "500"})
    # Attempts at 0, 0.2 and 0.4 s; a fourth would start at 0.6 s, past the 0.5 s deadline.
    assert response.json() == {"attempts": 3, "reason": "deadline"}


@pytest.mark.asyncio
async def test_enforce_cancels_a_handler_that_runs_past_its_deadline() -> None:
    app, clock, _ = build(DeadlineConfig(enforce=True))
    async with client(app) as http:
        response = await http.get("/slow", headers={"x-stormproof-deadline-ms": "1000"})
        assert response.status_code == 504
        assert "while handling" in response.json()["detail"]
        assert clock.sleeps == [5.0]
        ok = await http.get("/", headers={"x-stormproof-deadline-ms": "1000"})
        assert ok.status_code == 200


@pytest.mark.asyncio
async def test_non_http_scopes_pass_through() -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(current_deadline())

    middleware = DeadlinePropagation(app, DeadlineConfig(default_timeout=1.0))
    await middleware({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen == [None]
    await asyncio.sleep(0)


def test_deadline_headers_round_down_to_whole_milliseconds() -> None:
    clock = ManualClock(10.0)
    assert deadline_headers(clock) == {}
    with deadline_scope(Deadline(10.2509)):
        assert deadline_headers(clock) == {"x-stormproof-deadline-ms": "250"}
        clock.advance(1.0)
        assert deadline_headers(clock, header_name="x-left") == {"x-left": "0"}


@given(st.integers(min_value=0, max_value=99_999_999), st.sampled_from("HMSmun"))
def test_grpc_timeout_parses_every_valid_value(amount: int, unit: str) -> None:
    scale = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}[unit]
    assert parse_grpc_timeout(f"{amount}{unit}") == pytest.approx(amount * scale)


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9))
def test_deadline_ms_round_trips(milliseconds: float) -> None:
    parsed = parse_deadline_ms(repr(milliseconds))
    assert parsed == pytest.approx(milliseconds / 1000.0)


def test_bad_configuration_names_the_field() -> None:
    with pytest.raises(ConfigError, match="default_timeout"):
        DeadlineConfig(default_timeout=0)
    with pytest.raises(ConfigError, match="expired_status"):
        DeadlineConfig(expired_status=200)
    with pytest.raises(ConfigError, match="header"):
        DeadlineConfig(header="")
