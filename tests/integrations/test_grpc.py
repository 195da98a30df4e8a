"""The gRPC interceptor against a real grpcio server on 127.0.0.1 (generic handlers, bytes)."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

grpc = pytest.importorskip("grpc")

from stormproof.clock import ManualClock  # noqa: E402
from stormproof.errors import ConfigError, DeadlineExceeded  # noqa: E402
from stormproof.integrations.grpc import (  # noqa: E402
    GrpcRetryConfig,
    ResilientInterceptor,
    TargetBreakers,
    parse_pushback,
    resilient_channel,
)
from stormproof.policies.backoff import Constant, Exponential  # noqa: E402
from stormproof.policies.breaker import BreakerConfig, BreakerOpen, BreakerState  # noqa: E402
from stormproof.policies.budget import GrpcRetryThrottle  # noqa: E402
from stormproof.policies.deadline import Deadline, deadline_scope  # noqa: E402
from stormproof.policies.retry import RetryPolicy  # noqa: E402
from stormproof.testing import instant_sleeps  # noqa: E402

METHOD = "/test.Orders/Get"


class Server:
    """Answers ``Get``; ``script`` decides each call's fate by its number (1-based)."""

    def __init__(self) -> None:
        self.calls = 0
        self.remaining: list[float | None] = []
        self.script: Callable[[int, Any], bytes] = lambda n, context: b"ok"
        self.release = threading.Event()
        self.lock = threading.Lock()

    def get(self, request: bytes, context: Any) -> bytes:
        with self.lock:
            self.calls += 1
            number = self.calls
        self.remaining.append(context.time_remaining())
        return self.script(number, context)


@pytest.fixture
def server() -> Iterator[tuple[Server, str]]:
    state = Server()
    handler = grpc.method_handlers_generic_handler(
        "test.Orders", {"Get": grpc.unary_unary_rpc_method_handler(state.get)}
    )
    rpc_server = grpc.server(ThreadPoolExecutor(max_workers=4))
    rpc_server.add_generic_rpc_handlers((handler,))
    port = rpc_server.add_insecure_port("127.0.0.1:0")
    rpc_server.start()
    try:
        yield state, f"127.0.0.1:{port}"
    finally:
        state.release.set()
        rpc_server.stop(grace=None)


def unavailable_until(n: int, trailing: tuple[tuple[str, str], ...] = ()) -> Callable[..., bytes]:
    def script(number: int, context: Any) -> bytes:
        if number <= n:
            if trailing:
                context.set_trailing_metadata(trailing)
            context.abort(grpc.StatusCode.UNAVAILABLE, "injected")
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


def test_unavailable_is_retried_with_the_policys_seeded_delays(server: Any) -> None:
    state, target = server
    state.script = unavailable_until(2)
    clock = ManualClock()
    with resilient_channel(target, policy(), clock=clock) as channel:
        reply = channel.unary_unary(METHOD)(b"order-1", timeout=30.0)
    assert reply == b"reply-3"
    assert state.calls == 3
    rng = random.Random(9)
    assert clock.sleeps == [Exponential(0.1).delay(n, None, rng) for n in (1, 2)]


def test_give_up_returns_the_last_rpc_error(server: Any) -> None:
    state, target = server
    state.script = unavailable_until(100)
    with (
        instant_sleeps() as sleeps,
        resilient_channel(target, policy()) as channel,
        pytest.raises(grpc.RpcError) as raised,
    ):
        channel.unary_unary(METHOD)(b"x")
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert state.calls == 4
    assert len(sleeps) == 3


def test_other_codes_are_not_retried(server: Any) -> None:
    state, target = server

    def not_found(number: int, context: Any) -> bytes:
        context.abort(grpc.StatusCode.NOT_FOUND, "no such order")
        return b""

    state.script = not_found
    with (
        resilient_channel(target, policy(), clock=ManualClock()) as channel,
        pytest.raises(grpc.RpcError) as raised,
    ):
        channel.unary_unary(METHOD)(b"x")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert state.calls == 1


def test_methods_outside_the_allow_list_are_not_retried(server: Any) -> None:
    state, target = server
    state.script = unavailable_until(1)
    config = GrpcRetryConfig(methods=frozenset({"/test.Orders/List"}))
    with (
        resilient_channel(target, policy(), config=config, clock=ManualClock()) as channel,
        pytest.raises(grpc.RpcError),
    ):
        channel.unary_unary(METHOD)(b"x")
    assert state.calls == 1


def test_server_pushback_replaces_the_backoff_or_stops_retries(server: Any) -> None:
    state, target = server
    state.script = unavailable_until(1, ((("grpc-retry-pushback-ms", "1500"),)))
    clock = ManualClock()
    with resilient_channel(target, policy(), clock=clock) as channel:
        assert channel.unary_unary(METHOD)(b"x") == b"reply-2"
    assert clock.sleeps == [1.5]
    state.calls = 0
    state.script = unavailable_until(5, (("grpc-retry-pushback-ms", "-1"),))
    with resilient_channel(target, policy(), clock=clock) as channel, pytest.raises(grpc.RpcError):
        channel.unary_unary(METHOD)(b"x")
    assert state.calls == 1  # the server said: do not retry


def test_the_context_deadline_becomes_the_calls_timeout(server: Any) -> None:
    state, target = server
    with resilient_channel(target, policy()) as channel:
        with deadline_scope(Deadline.after(_now(), 2.0)):
            channel.unary_unary(METHOD)(b"x", timeout=60.0)
        channel.unary_unary(METHOD)(b"x")
        with deadline_scope(Deadline(_now() - 1.0)), pytest.raises(DeadlineExceeded):
            channel.unary_unary(METHOD)(b"x")
    tight, unbounded = state.remaining
    # grpc-timeout is sent in whole units, rounded up: allow a few milliseconds over.
    assert tight is not None and 1.0 < tight <= 2.05
    assert unbounded is None or unbounded > 1e9  # no deadline was sent
    assert state.calls == 2  # the expired call was never sent


def test_a_hung_attempt_is_cut_by_attempt_timeout_and_retried(server: Any) -> None:
    state, target = server

    def hang_first(number: int, context: Any) -> bytes:
        if number == 1:
            state.release.wait(5.0)
        return b"reply-%d" % number

    state.script = hang_first
    retry = policy(attempt_timeout=0.1, total_timeout=5.0, backoff=Constant(0.0))
    with resilient_channel(target, retry) as channel:
        assert channel.unary_unary(METHOD)(b"x") == b"reply-2"
    assert state.calls == 2
    first = state.remaining[0]
    assert first is not None and first <= 0.15


def test_the_budget_stops_retries(server: Any) -> None:
    state, target = server
    state.script = unavailable_until(100)
    throttle = GrpcRetryThrottle(max_tokens=4, token_ratio=0.1)
    retry = policy(budget=throttle, max_attempts=10)
    with (
        resilient_channel(target, retry, clock=ManualClock()) as channel,
        pytest.raises(grpc.RpcError),
    ):
        channel.unary_unary(METHOD)(b"x")
    # Tokens 4 -> 3 (retry allowed: 3 > 2) -> 2 (refused: not above half).
    assert state.calls == 2


def test_the_breaker_opens_per_target_and_probes_after_open_duration(server: Any) -> None:
    state, target = server
    state.script = unavailable_until(4)
    clock = ManualClock()
    breakers = TargetBreakers(
        BreakerConfig(window_size=4, minimum_calls=4, open_duration=30.0, half_open_probes=1)
    )
    retry = policy(max_attempts=2, backoff=Constant(0.0))
    with resilient_channel(target, retry, breakers=breakers, clock=clock) as channel:
        call = channel.unary_unary(METHOD)
        for _ in range(2):
            with pytest.raises(grpc.RpcError):
                call(b"x")
        breaker = breakers.get(target)
        assert breaker.state(clock.now()) is BreakerState.OPEN
        with pytest.raises(BreakerOpen) as refused:
            call(b"x")
        assert refused.value.retry_after == pytest.approx(30.0)
        assert state.calls == 4  # refused calls are not sent
        clock.advance(30.0)
        assert call(b"x") == b"reply-5"  # the probe succeeds and closes the breaker
        assert breaker.state(clock.now()) is BreakerState.CLOSED
    assert len(breakers) == 1
    assert breakers.get("elsewhere:1") is not breaker


def test_application_errors_do_not_trip_the_breaker(server: Any) -> None:
    state, target = server

    def not_found(number: int, context: Any) -> bytes:
        context.abort(grpc.StatusCode.NOT_FOUND, "nope")
        return b""

    state.script = not_found
    breakers = TargetBreakers(BreakerConfig(window_size=2, minimum_calls=2))
    with resilient_channel(target, policy(), breakers=breakers, clock=ManualClock()) as channel:
        for _ in range(3):
            with pytest.raises(grpc.RpcError):
                channel.unary_unary(METHOD)(b"x")
    assert breakers.get(target).state(0.0) is BreakerState.CLOSED


def test_interceptor_on_an_existing_channel(server: Any) -> None:
    state, target = server
    state.script = unavailable_until(1)
    interceptor = ResilientInterceptor(policy(), clock=ManualClock())
    with grpc.insecure_channel(target) as raw:
        channel = grpc.intercept_channel(raw, interceptor)
        reply, call = channel.unary_unary(METHOD).with_call(b"x")
    assert reply == b"reply-2"
    assert call.code() == grpc.StatusCode.OK


def test_pushback_parsing() -> None:
    assert parse_pushback(None) is None
    assert parse_pushback([("other", "1")]) is None
    assert parse_pushback([("grpc-retry-pushback-ms", "250")]) == 0.25
    assert parse_pushback([("grpc-retry-pushback-ms", b"0")]) == 0.0
    assert parse_pushback([("grpc-retry-pushback-ms", "-5")]) == -1.0
    assert parse_pushback([("grpc-retry-pushback-ms", "soon")]) == -1.0


def test_bad_configuration_names_the_field() -> None:
    with pytest.raises(ConfigError, match="retry_codes"):
        GrpcRetryConfig(retry_codes=frozenset({"UNAVAILABLE", "TEAPOT"}))
    with pytest.raises(ConfigError, match="breaker_failure_codes"):
        GrpcRetryConfig(breaker_failure_codes=frozenset({"OK"}))
    with pytest.raises(ConfigError, match="policy"):
        ResilientInterceptor("retry")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_targets"):
        TargetBreakers(max_targets=0)


def _now() -> float:
    from stormproof.clock import WallClock

    return WallClock().now()
