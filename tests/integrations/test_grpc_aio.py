"""The grpc.aio interceptor against a real grpc.aio server on 127.0.0.1 (generic handlers)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio

grpc = pytest.importorskip("grpc")
aio = pytest.importorskip("grpc.aio")

from stormproof.clock import ManualClock, WallClock  # noqa: E402
from stormproof.errors import ConfigError, DeadlineExceeded  # noqa: E402
from stormproof.integrations.grpc import (  # noqa: E402
    AsyncResilientInterceptor,
    GrpcRetryConfig,
    TargetBreakers,
    resilient_aio_channel,
)
from stormproof.policies.backoff import Constant, Exponential  # noqa: E402
from stormproof.policies.breaker import BreakerConfig, BreakerOpen, BreakerState  # noqa: E402
from stormproof.policies.budget import GrpcRetryThrottle  # noqa: E402
from stormproof.policies.deadline import Deadline, deadline_scope  # noqa: E402
from stormproof.policies.retry import RetryPolicy  # noqa: E402
from stormproof.testing import instant_sleeps  # noqa: E402

METHOD = "/test.Orders/Get"
Script = Callable[[int, Any], Any]


class Server:
    """Answers ``Get``; ``script`` (async) decides each call's fate by its number (1-based)."""

    def __init__(self) -> None:
        self.calls = 0
        self.remaining: list[float | None] = []
        self.release = asyncio.Event()

        async def ok(number: int, context: Any) -> bytes:
            return b"reply-%d" % number

        self.script: Script = ok

    async def get(self, request: bytes, context: Any) -> bytes:
        self.calls += 1
        self.remaining.append(context.time_remaining())
        reply: bytes = await self.script(self.calls, context)
        return reply


@pytest_asyncio.fixture
async def server() -> AsyncIterator[tuple[Server, str]]:
    state = Server()
    handler = grpc.method_handlers_generic_handler(
        "test.Orders", {"Get": grpc.unary_unary_rpc_method_handler(state.get)}
    )
    rpc_server = aio.server()
    rpc_server.add_generic_rpc_handlers((handler,))
    port = rpc_server.add_insecure_port("127.0.0.1:0")
    await rpc_server.start()
    try:
        yield state, f"127.0.0.1:{port}"
    finally:
        state.release.set()
        await rpc_server.stop(grace=None)


def unavailable_until(n: int, trailing: tuple[tuple[str, str], ...] = ()) -> Script:
    async def script(number: int, context: Any) -> bytes:
        if number <= n:
            if trailing:
                context.set_trailing_metadata(trailing)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "injected")
        return b"reply-%d" % number

    return script


def policy(**overrides: Any) -> RetryPolicy:
    settings: dict[str, Any] = {
        "max_attempts": 4,
        "backoff": Exponential(0.1),
        "rng": random.Random(9),
    }
    settings.update(overrides)
    return RetryPolicy(**settings)


@pytest.mark.asyncio
async def test_unavailable_is_retried_with_the_policys_seeded_delays(server: Any) -> None:
    state, target = server
    state.script = unavailable_until(2)
    clock = ManualClock()
    async with resilient_aio_channel(target, policy(), clock=clock) as channel:
        reply = await channel.unary_unary(METHOD)(b"order-1", timeout=30.0)
    assert reply == b"reply-3"
    assert state.calls == 3
    rng = random.Random(9)
    assert clock.sleeps == [Exponential(0.1).delay(n, None, rng) for n in (1, 2)]


@pytest.mark.asyncio
async def test_give_up_raises_the_last_rpc_error(server: Any) -> None:
    state, target = server
    state.script = unavailable_until(100)
    with instant_sleeps() as sleeps:
        async with resilient_aio_channel(target, policy()) as channel:
            with pytest.raises(aio.AioRpcError) as raised:
                await channel.unary_unary(METHOD)(b"x")
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert state.calls == 4 and len(sleeps) == 3


@pytest.mark.asyncio
async def test_other_codes_and_other_methods_are_not_retried(server: Any) -> None:
    state, target = server

    async def not_found(number: int, context: Any) -> bytes:
        await context.abort(grpc.StatusCode.NOT_FOUND, "no such order")
        return b""

    state.script = not_found
    async with resilient_aio_channel(target, policy(), clock=ManualClock()) as channel:
        with pytest.raises(aio.AioRpcError) as raised:
            await channel.unary_unary(METHOD)(b"x")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND and state.calls == 1
    state.calls = 0
    state.script = unavailable_until(1)
    only_list = GrpcRetryConfig(methods=frozenset({"/test.Orders/List"}))
    async with resilient_aio_channel(
        target, policy(), config=only_list, clock=ManualClock()
    ) as channel:
        with pytest.raises(aio.AioRpcError):
            await channel.unary_unary(METHOD)(b"x")
    assert state.calls == 1


@pytest.mark.asyncio
async def test_server_pushback_replaces_the_backoff_or_stops_retries(server: Any) -> None:
    state, target = server
    state.script = unavailable_until(1, (("grpc-retry-pushback-ms", "1500"),))
    clock = ManualClock()
    async with resilient_aio_channel(target, policy(), clock=clock) as channel:
        assert await channel.unary_unary(METHOD)(b"x") == b"reply-2"
    assert clock.sleeps == [1.5]
    state.calls = 0
    state.script = unavailable_until(5, (("grpc-retry-pushback-ms", "-1"),))
    async with resilient_aio_channel(target, policy(), clock=clock) as channel:
        with pytest.raises(aio.AioRpcError):
            await channel.unary_unary(METHOD)(b"x")
    assert state.calls == 1  # the server said: do not retry


@pytest.mark.asyncio
async def test_the_context_deadline_becomes_the_calls_timeout(server: Any) -> None:
    state, target = server
    now = WallClock().now
    async with resilient_aio_channel(target, policy()) as channel:
        with deadline_scope(Deadline.after(now(), 2.0)):
            await channel.unary_unary(METHOD)(b"x", timeout=60.0)
        await channel.unary_unary(METHOD)(b"x")
        with deadline_scope(Deadline(now() - 1.0)), pytest.raises(DeadlineExceeded):
            await channel.unary_unary(METHOD)(b"x")
    tight, unbounded = state.remaining
    # grpc-timeout is sent in whole units, rounded up: allow a few milliseconds over.
    assert tight is not None and 1.0 < tight <= 2.05
    assert unbounded is None or unbounded > 1e9  # no deadline was sent
    assert state.calls == 2  # the expired call was never sent


@pytest.mark.asyncio
async def test_a_hung_attempt_is_cut_by_attempt_timeout_and_retried(server: Any) -> None:
    state, target = server

    async def hang_first(number: int, context: Any) -> bytes:
        if number == 1:
            await state.release.wait()
        return b"reply-%d" % number

    state.script = hang_first
    retry = policy(attempt_timeout=0.1, total_timeout=5.0, backoff=Constant(0.0))
    async with resilient_aio_channel(target, retry) as channel:
        assert await channel.unary_unary(METHOD)(b"x") == b"reply-2"
    assert state.calls == 2
    first = state.remaining[0]
    assert first is not None and first <= 0.15


@pytest.mark.asyncio
async def test_the_budget_stops_retries(server: Any) -> None:
    state, target = server
    state.script = unavailable_until(100)
    throttle = GrpcRetryThrottle(max_tokens=4, token_ratio=0.1)
    retry = policy(budget=throttle, max_attempts=10)
    async with resilient_aio_channel(target, retry, clock=ManualClock()) as channel:
        with pytest.raises(aio.AioRpcError):
            await channel.unary_unary(METHOD)(b"x")
    assert state.calls == 2  # tokens 4 -> 3 (retry allowed) -> 2 (refused)


@pytest.mark.asyncio
async def test_the_breaker_opens_per_target_and_probes_after_open_duration(server: Any) -> None:
    state, target = server
    state.script = unavailable_until(4)
    clock = ManualClock()
    breakers = TargetBreakers(
        BreakerConfig(window_size=4, minimum_calls=4, open_duration=30.0, half_open_probes=1)
    )
    retry = policy(max_attempts=2, backoff=Constant(0.0))
    async with resilient_aio_channel(target, retry, breakers=breakers, clock=clock) as channel:
        call = channel.unary_unary(METHOD)
        for _ in range(2):
            with pytest.raises(aio.AioRpcError):
                await call(b"x")
        breaker = breakers.get(target)
        assert breaker.state(clock.now()) is BreakerState.OPEN
        with pytest.raises(BreakerOpen) as refused:
            await call(b"x")
        assert refused.value.retry_after == pytest.approx(30.0)
        assert state.calls == 4  # refused calls are not sent
        clock.advance(30.0)
        assert await call(b"x") == b"reply-5"  # the probe succeeds and closes the breaker
        assert breaker.state(clock.now()) is BreakerState.CLOSED


@pytest.mark.asyncio
async def test_interceptor_on_a_channel_you_build(server: Any) -> None:
    state, target = server
    state.script = unavailable_until(1)
    interceptor = AsyncResilientInterceptor(policy(), clock=ManualClock())
    async with aio.insecure_channel(target, interceptors=[interceptor]) as channel:
        call = channel.unary_unary(METHOD)(b"x")
        assert await call == b"reply-2"
        assert await call.code() == grpc.StatusCode.OK
    assert state.calls == 2


def test_bad_configuration_names_the_field() -> None:
    with pytest.raises(ConfigError, match="policy"):
        AsyncResilientInterceptor("retry")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="breaker"):
        AsyncResilientInterceptor(policy(), breaker="b")  # type: ignore[arg-type]
