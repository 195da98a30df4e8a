"""An aiohttp client middleware that retries, times out and breaks circuits per request.

    from stormproof.integrations.aiohttp import stormproof_session

    async with stormproof_session() as session:
        async with session.get("https://api.example.com/orders/42") as response:
            body = await response.read()

:class:`StormproofMiddleware` is a client middleware (aiohttp >= 3.12,
``ClientSession(middlewares=...)``) that runs the rules of
:class:`~stormproof.integrations._http.HttpPolicy`, shared with the httpx and requests adapters.
:func:`stormproof_session` builds a ``ClientSession`` with it as the outermost middleware and
with aiohttp's own single retry of idempotent requests on a dropped connection turned off, so
that retries are not multiplied. If you add the middleware to a session yourself, that retry of
aiohttp's stays on (there is no public switch for it): a request whose every attempt ends in a
dropped connection then runs the whole stormproof schedule twice.

Each attempt (connect, send, response headers) is bounded by ``asyncio.timeout`` at the attempt
time limit; the session's ``ClientTimeout`` still bounds the request as a whole. A request is
retried only while its body can be sent again (aiohttp marks streamed payloads as consumed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stormproof.clock import SleepingClock
from stormproof.integrations._http import (
    HttpEngine,
    HttpPolicy,
    TransportFailure,
    origin,
    send_async,
)
from stormproof.policies.breaker import BreakerOpen, BreakerState
from stormproof.run.pipeline import PipelineEvent

try:
    import aiohttp
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "stormproof.integrations.aiohttp needs aiohttp: pip install 'stormproof[aiohttp]'"
    ) from exc

__all__ = ["CircuitOpenError", "HttpPolicy", "StormproofMiddleware", "stormproof_session"]


class CircuitOpenError(BreakerOpen, aiohttp.ClientConnectionError):
    """The origin's circuit breaker refused the request; it was not sent.

    Both a :class:`~stormproof.policies.breaker.BreakerOpen` (``state``, ``retry_after``) and an
    ``aiohttp.ClientConnectionError``, so ``except aiohttp.ClientError`` catches it.
    """

    def __init__(self, name: str, state: BreakerState, retry_after: float | None) -> None:
        super().__init__(name, state, retry_after)


def _classify(error: BaseException) -> TransportFailure | None:
    # TLS and certificate failures are configuration problems, not transient ones.
    if isinstance(error, aiohttp.ClientSSLError | aiohttp.ServerFingerprintMismatch):
        return None
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        return TransportFailure.NOT_SENT_TIMEOUT
    if isinstance(error, aiohttp.ClientConnectorError):
        return TransportFailure.NOT_SENT
    if isinstance(error, aiohttp.ServerTimeoutError):
        return TransportFailure.SENT_TIMEOUT
    if isinstance(error, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError):
        return TransportFailure.SENT
    if isinstance(error, aiohttp.ClientResponseError | aiohttp.ClientPayloadError):
        # A malformed reply (aiohttp's parser failed): the request reached the server.
        return TransportFailure.SENT
    return None


class _Exchange:
    """How the shared driver sees aiohttp responses and errors."""

    __slots__ = ()

    def status(self, response: aiohttp.ClientResponse) -> int:
        return response.status

    def header(self, response: aiohttp.ClientResponse, name: str) -> str | None:
        return response.headers.get(name)

    async def discard(self, response: aiohttp.ClientResponse) -> None:
        # release() returns the connection to the pool if the body was read, else closes it.
        response.release()

    def classify(self, error: BaseException) -> TransportFailure | None:
        return _classify(error)

    def refused(self, error: BreakerOpen, key: str) -> BaseException:
        return CircuitOpenError(key, error.state, error.retry_after)


_EXCHANGE = _Exchange()


def _replayable(request: aiohttp.ClientRequest) -> Callable[[], bool]:
    def replayable() -> bool:
        body: Any = request.body
        return body == b"" or not bool(getattr(body, "consumed", False))

    return replayable


class StormproofMiddleware:
    """An aiohttp client middleware applying an :class:`HttpPolicy` to every request.

    Args:
        policy: default ``HttpPolicy()``.
        clock: where decisions read time and waits happen; ``ManualClock`` in tests.
        on_event: receives a ``PipelineEvent`` per retry, give-up and breaker decision.

    Give-ups return the last response (for a retryable status) or re-raise the last aiohttp
    error; a refused call raises :class:`CircuitOpenError`; an attempt cut by its time limit
    raises :class:`~stormproof.integrations._http.AttemptTimedOut` (a ``TimeoutError``) if no
    retry follows. Retried responses are released. Share one instance per session.

    With ``policy.hedge`` set, a slow request that may be retried gets hedged attempts, each
    running ``handler(request)`` concurrently; the first good response wins and the others
    are cancelled (their connections closed) and released.
    """

    __slots__ = ("engine",)

    def __init__(
        self,
        policy: HttpPolicy | None = None,
        *,
        clock: SleepingClock | None = None,
        on_event: Callable[[PipelineEvent], None] | None = None,
    ) -> None:
        self.engine = HttpEngine(policy, clock=clock, on_event=on_event)

    @property
    def policy(self) -> HttpPolicy:
        """The middleware's policy."""
        return self.engine.policy

    async def __call__(
        self, request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        """Send ``request`` through ``handler`` (the rest of the chain) under the policy."""
        engine = self.engine
        url = request.url
        header = engine.policy.idempotency_header
        call = engine.start(
            request.method,
            origin(url.scheme, url.host or "", url.port),
            header is not None and header in request.headers,
            _replayable(request),
        )

        async def attempt(limit: float | None) -> aiohttp.ClientResponse:
            return await handler(request)

        return await send_async(call, attempt, _EXCHANGE)


def stormproof_session(
    policy: HttpPolicy | None = None,
    *,
    clock: SleepingClock | None = None,
    on_event: Callable[[PipelineEvent], None] | None = None,
    **session_options: Any,
) -> aiohttp.ClientSession:
    """A ``ClientSession`` whose requests go through a :class:`StormproofMiddleware`.

    ``session_options`` go to ``aiohttp.ClientSession``; ``middlewares`` given there run inside
    stormproof's, so each retry passes through them again (a signing middleware signs every
    attempt). Must be called inside a running event loop, like ``ClientSession`` itself.
    """
    middleware = StormproofMiddleware(policy, clock=clock, on_event=on_event)
    inner = tuple(session_options.pop("middlewares", ()))
    session = aiohttp.ClientSession(middlewares=(middleware, *inner), **session_options)
    # aiohttp retries an idempotent request once when a pooled connection drops (RFC 9112
    # §9.3.1). Outside the middleware, that retry would repeat stormproof's whole schedule.
    # The attribute is private; aiohttp's own test client sets it the same way.
    if hasattr(session, "_retry_connection"):
        session._retry_connection = False
    return session
