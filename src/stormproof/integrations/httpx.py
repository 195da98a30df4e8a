"""httpx transports that retry, time out and break circuits per request, under an HttpPolicy.

    import httpx
    from stormproof.integrations.httpx import StormproofTransport

    client = httpx.Client(transport=StormproofTransport())
    client.get("https://api.example.com/orders/42")    # retried on 503, reset, timeout ...

:class:`StormproofTransport` wraps any ``httpx.BaseTransport`` (default ``httpx.HTTPTransport()``),
:class:`AsyncStormproofTransport` any ``httpx.AsyncBaseTransport``. The rules (which methods and
statuses are retried, ``Retry-After``, per-origin breakers, timeouts) are those of
:class:`~stormproof.integrations._http.HttpPolicy`, shared with the requests and aiohttp adapters.

The attempt time limit is applied to httpx's own per-request timeouts (connect, read, write and
pool, each shortened to the limit), so a hung server is cut off by the socket; the async
transport also bounds the whole attempt (until the response headers) with ``asyncio.timeout``.
Only requests whose body is held in memory are retried; a streamed upload is sent once.

Hedging (``HttpPolicy(hedge=Hedge(...))``) is async only: :class:`AsyncStormproofTransport` races
hedged attempts of a slow request that may be retried; :class:`StormproofTransport` refuses such
a policy, as it starts no threads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stormproof.clock import SleepingClock
from stormproof.errors import ConfigError
from stormproof.integrations._http import (
    ClosingExchange,
    HttpCall,
    HttpEngine,
    HttpPolicy,
    StatusCodeReader,
    TransportFailure,
    origin,
    refuse_hedging,
    send_async,
    send_sync,
)
from stormproof.policies.breaker import BreakerOpen, BreakerState
from stormproof.run.pipeline import PipelineEvent

try:
    import httpx
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "stormproof.integrations.httpx needs httpx: pip install 'stormproof[httpx]'"
    ) from exc

__all__ = ["AsyncStormproofTransport", "CircuitOpenError", "HttpPolicy", "StormproofTransport"]


class CircuitOpenError(BreakerOpen, httpx.TransportError):
    """The origin's circuit breaker refused the request; it was not sent.

    Both a :class:`~stormproof.policies.breaker.BreakerOpen` (with ``state`` and
    ``retry_after``) and an ``httpx.TransportError``, so ``except httpx.HTTPError`` catches it.
    """

    def __init__(
        self, name: str, state: BreakerState, retry_after: float | None, request: httpx.Request
    ) -> None:
        super().__init__(name, state, retry_after)
        self.request = request


def _key(request: httpx.Request) -> str:
    url = request.url
    return origin(url.scheme, url.host, url.port)


def _has_key(request: httpx.Request, header: str | None) -> bool:
    return header is not None and header in request.headers


def _tightened(timeouts: Any, limit: float) -> dict[str, float | None]:
    """httpx's per-request timeouts, each shortened to ``limit`` seconds."""
    base = timeouts if isinstance(timeouts, dict) else {}
    shortened: dict[str, float | None] = {}
    for name in ("connect", "read", "write", "pool"):
        value = base.get(name)
        shortened[name] = limit if value is None else min(float(value), limit)
    return shortened


def _classify(error: BaseException) -> TransportFailure | None:
    # The request never left: no connection was made or none was free in the pool.
    if isinstance(error, httpx.ConnectTimeout | httpx.PoolTimeout):
        return TransportFailure.NOT_SENT_TIMEOUT
    if isinstance(error, httpx.ConnectError):
        return TransportFailure.NOT_SENT
    if isinstance(error, httpx.TimeoutException):
        return TransportFailure.SENT_TIMEOUT
    # Reset or closed mid-exchange, or a malformed reply: the request may have been processed.
    if isinstance(error, httpx.NetworkError | httpx.RemoteProtocolError):
        return TransportFailure.SENT
    return None


class _Exchange(ClosingExchange[httpx.Response]):
    """How the shared drivers see httpx responses and errors (sync)."""

    __slots__ = ("request",)

    def __init__(self, request: httpx.Request) -> None:
        self.request = request

    def classify(self, error: BaseException) -> TransportFailure | None:
        return _classify(error)

    def refused(self, error: BreakerOpen, key: str) -> BaseException:
        return CircuitOpenError(key, error.state, error.retry_after, self.request)


class _AsyncExchange(StatusCodeReader[httpx.Response]):
    """How the shared drivers see httpx responses and errors (async)."""

    __slots__ = ("sync",)

    def __init__(self, request: httpx.Request) -> None:
        self.sync = _Exchange(request)

    async def discard(self, response: httpx.Response) -> None:
        await response.aclose()

    def classify(self, error: BaseException) -> TransportFailure | None:
        return _classify(error)

    def refused(self, error: BreakerOpen, key: str) -> BaseException:
        return self.sync.refused(error, key)


class _Base:
    """What both transports share: the engine and how a request is prepared per attempt."""

    _engine: HttpEngine

    def _setup(
        self,
        policy: HttpPolicy | None,
        clock: SleepingClock | None,
        on_event: Callable[[PipelineEvent], None] | None,
    ) -> None:
        self._engine = HttpEngine(policy, clock=clock, on_event=on_event)

    @property
    def policy(self) -> HttpPolicy:
        """The transport's policy."""
        return self._engine.policy

    @property
    def engine(self) -> HttpEngine:
        """The shared state: clock, per-origin breakers (``engine.breakers``), telemetry hook."""
        return self._engine

    def _start(self, request: httpx.Request) -> HttpCall:
        engine = self._engine
        stream = request.stream
        return engine.start(
            request.method,
            _key(request),
            _has_key(request, engine.policy.idempotency_header),
            # Bytes held in memory can be sent again; a generator or file stream cannot.
            None if isinstance(stream, httpx.ByteStream) else _never,
        )


def _never() -> bool:
    return False


def _limited(request: httpx.Request, limit: float | None) -> None:
    if limit is not None:
        timeouts = request.extensions.get("timeout")
        request.extensions = {**request.extensions, "timeout": _tightened(timeouts, limit)}


class StormproofTransport(_Base, httpx.BaseTransport):
    """A sync httpx transport that applies an :class:`HttpPolicy` to every request.

    Args:
        inner: the transport that does the I/O; default ``httpx.HTTPTransport()``. Closed with
            this one.
        policy: default ``HttpPolicy()`` (3 attempts, full-jitter backoff, a retry budget,
            per-origin breakers, 10 s per attempt, 30 s in total).
        clock: where decisions read time and waits happen; ``ManualClock`` in tests.
        on_event: receives a ``PipelineEvent`` per retry, give-up and breaker decision.

    Give-ups return the last response (for a retryable status) or re-raise the last httpx
    error; a refused call raises :class:`CircuitOpenError`. Retried responses are closed.
    A policy with a ``hedge`` raises ``ConfigError``: hedging is async only (use
    :class:`AsyncStormproofTransport`), as a race needs concurrency and this transport starts
    no threads.
    """

    def __init__(
        self,
        inner: httpx.BaseTransport | None = None,
        *,
        policy: HttpPolicy | None = None,
        clock: SleepingClock | None = None,
        on_event: Callable[[PipelineEvent], None] | None = None,
    ) -> None:
        if inner is not None and not isinstance(inner, httpx.BaseTransport):
            raise ConfigError("inner", "must be an httpx.BaseTransport", inner)
        self._setup(policy, clock, on_event)
        refuse_hedging(self._engine.policy, "StormproofTransport", "AsyncStormproofTransport")
        self._inner = inner if inner is not None else httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the policy."""
        original = request.extensions

        def attempt(limit: float | None) -> httpx.Response:
            request.extensions = original
            _limited(request, limit)
            return self._inner.handle_request(request)

        try:
            return send_sync(self._start(request), attempt, _Exchange(request))
        finally:
            request.extensions = original

    def close(self) -> None:
        """Close the inner transport."""
        self._inner.close()


class AsyncStormproofTransport(_Base, httpx.AsyncBaseTransport):
    """The asyncio form of :class:`StormproofTransport` (inner default ``AsyncHTTPTransport()``)."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport | None = None,
        *,
        policy: HttpPolicy | None = None,
        clock: SleepingClock | None = None,
        on_event: Callable[[PipelineEvent], None] | None = None,
    ) -> None:
        if inner is not None and not isinstance(inner, httpx.AsyncBaseTransport):
            raise ConfigError("inner", "must be an httpx.AsyncBaseTransport", inner)
        self._inner = inner if inner is not None else httpx.AsyncHTTPTransport()
        self._setup(policy, clock, on_event)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the policy."""
        original = request.extensions

        async def attempt(limit: float | None) -> httpx.Response:
            request.extensions = original
            _limited(request, limit)
            return await self._inner.handle_async_request(request)

        try:
            return await send_async(self._start(request), attempt, _AsyncExchange(request))
        finally:
            request.extensions = original

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self._inner.aclose()
