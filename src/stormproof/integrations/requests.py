"""A requests adapter that retries, times out and breaks circuits per request, under an HttpPolicy.

    import requests
    from stormproof.integrations.requests import StormproofAdapter

    session = requests.Session()
    adapter = StormproofAdapter()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.get("https://api.example.com/orders/42", timeout=5)

:class:`StormproofAdapter` is an ``HTTPAdapter`` whose ``send`` runs the rules of
:class:`~stormproof.integrations._http.HttpPolicy` (shared with the httpx and aiohttp adapters).
urllib3's own ``Retry`` is off (``max_retries=0``, read retries disabled), so a request is
never retried twice over. The attempt time limit shortens the ``timeout`` passed to ``send``
(connect and read); sync code cannot be interrupted otherwise. Only bodies held in memory
(``bytes`` or ``str``, which includes ``data=`` dicts and ``json=``) are retried; a generator or
file body is sent once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from stormproof.clock import SleepingClock
from stormproof.integrations._http import (
    ClosingExchange,
    HttpEngine,
    HttpPolicy,
    TransportFailure,
    origin,
    refuse_hedging,
    send_sync,
)
from stormproof.policies.breaker import BreakerOpen, BreakerState
from stormproof.run.pipeline import PipelineEvent

try:
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.exceptions import (
        ConnectTimeoutError,
        MaxRetryError,
        NewConnectionError,
    )
    from urllib3.util import Timeout
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "stormproof.integrations.requests needs requests: pip install 'stormproof[requests]'"
    ) from exc

__all__ = ["CircuitOpenError", "HttpPolicy", "StormproofAdapter"]


class CircuitOpenError(BreakerOpen, requests.ConnectionError):
    """The origin's circuit breaker refused the request; it was not sent.

    Both a :class:`~stormproof.policies.breaker.BreakerOpen` (``state``, ``retry_after``) and a
    ``requests.ConnectionError``, so ``except requests.RequestException`` catches it.
    """

    def __init__(
        self,
        name: str,
        state: BreakerState,
        retry_after: float | None,
        request: requests.PreparedRequest,
    ) -> None:
        super().__init__(name, state, retry_after)
        self.request = request
        self.response = None


def _shorter(value: Any, limit: float) -> Any:
    return limit if value is None else min(float(value), limit)


def _timeout(timeout: Any, limit: float | None) -> Any:
    """``send``'s ``timeout`` (a number, a (connect, read) tuple or a urllib3 Timeout), capped."""
    if limit is None:
        return timeout
    if isinstance(timeout, tuple):
        connect, read = timeout
        return (_shorter(connect, limit), _shorter(read, limit))
    if isinstance(timeout, Timeout):
        capped = timeout.clone()
        capped.total = _shorter(timeout.total, limit)
        return capped
    return _shorter(timeout, limit)


def _classify(error: BaseException) -> TransportFailure | None:
    if isinstance(error, requests.ConnectTimeout):
        return TransportFailure.NOT_SENT_TIMEOUT
    if isinstance(error, requests.ReadTimeout):
        return TransportFailure.SENT_TIMEOUT
    if isinstance(error, requests.exceptions.SSLError | requests.exceptions.ProxyError):
        return None
    if isinstance(error, requests.ConnectionError):
        cause = error.args[0] if error.args else None
        if isinstance(cause, MaxRetryError):
            cause = cause.reason
        if isinstance(cause, NewConnectionError):
            return TransportFailure.NOT_SENT
        if isinstance(cause, ConnectTimeoutError):
            return TransportFailure.NOT_SENT_TIMEOUT
        # Reset or closed without a response (urllib3's ProtocolError): it may have been acted on.
        return TransportFailure.SENT
    return None


class _Exchange(ClosingExchange[requests.Response]):
    """How the shared driver sees requests' responses and errors."""

    __slots__ = ("request",)

    def __init__(self, request: requests.PreparedRequest) -> None:
        self.request = request

    def classify(self, error: BaseException) -> TransportFailure | None:
        return _classify(error)

    def refused(self, error: BreakerOpen, key: str) -> BaseException:
        return CircuitOpenError(key, error.state, error.retry_after, self.request)


def _never() -> bool:
    return False


class StormproofAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` that applies an :class:`HttpPolicy` to every request it sends.

    Args:
        policy: default ``HttpPolicy()``.
        clock: where decisions read time and waits happen; ``ManualClock`` in tests.
        on_event: receives a ``PipelineEvent`` per retry, give-up and breaker decision.
        pool_connections, pool_maxsize, pool_block: as for ``HTTPAdapter``.

    Mount one adapter for both schemes so they share breakers and budget. Give-ups return the
    last response (for a retryable status) or re-raise the last requests error; a refused call
    raises :class:`CircuitOpenError`. Retried responses are closed. A policy with a ``hedge``
    raises ``ConfigError``: hedging is async only (a race needs concurrency, and stormproof
    starts no threads behind your back).
    """

    def __init__(
        self,
        policy: HttpPolicy | None = None,
        *,
        clock: SleepingClock | None = None,
        on_event: Callable[[PipelineEvent], None] | None = None,
        pool_connections: int = 10,
        pool_maxsize: int = 10,
        pool_block: bool = False,
    ) -> None:
        self.engine = HttpEngine(policy, clock=clock, on_event=on_event)
        refuse_hedging(
            self.engine.policy, "StormproofAdapter", "the aiohttp or async httpx adapter"
        )
        # max_retries=0 is HTTPAdapter's Retry(0, read=False): urllib3 makes one attempt only.
        super().__init__(
            pool_connections=pool_connections,
            pool_maxsize=pool_maxsize,
            max_retries=0,
            pool_block=pool_block,
        )

    @property
    def policy(self) -> HttpPolicy:
        """The adapter's policy."""
        return self.engine.policy

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send ``request`` through the policy (same arguments as ``HTTPAdapter.send``)."""
        engine = self.engine
        parts = urlsplit(request.url or "")
        header = engine.policy.idempotency_header
        body = request.body
        call = engine.start(
            request.method or "GET",
            origin(parts.scheme, parts.hostname or "", parts.port),
            header is not None and header in request.headers,
            None if body is None or isinstance(body, bytes | str) else _never,
        )
        send = super().send

        def attempt(limit: float | None) -> requests.Response:
            return send(
                request,
                stream=stream,
                timeout=_timeout(timeout, limit),
                verify=verify,
                cert=cert,
                proxies=None if proxies is None else dict(proxies),
            )

        return send_sync(call, attempt, _Exchange(request))
