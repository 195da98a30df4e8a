"""Idempotency by ``Idempotency-Key`` header for ASGI apps, on stormproof's stores.

A client that retries a ``POST`` after a timeout cannot tell whether the first one ran. With an
``Idempotency-Key`` (the IETF httpapi draft "The Idempotency-Key HTTP Header Field"), the server
can: the first request with a key runs, and its response is stored; a retry with the same key
gets the same response without running the handler again.

For each request whose method is guarded (``POST`` and ``PATCH`` by default) and that carries a
key, the middleware reads the whole body (up to ``max_body``) and asks
:class:`~stormproof.events.idempotency.Idempotency` to run the handler once for
``namespace(scope) + key``, with the method, path, query string and a SHA-256 of the body as the
payload:

========================================  ======================================================
situation                                 response
========================================  ======================================================
first request with the key                the handler's own response; stored (status, the
                                          ``stored_headers``, body) as JSON when
                                          ``store_status(status)`` holds (default: < 500)
duplicate, first one finished             the stored response, plus ``Idempotent-Replayed: true``
duplicate, first one still running        ``409`` with ``Retry-After`` (``on_in_progress=
                                          "raise"``), or it waits for the stored response
                                          (``"wait"``, up to ``wait_timeout``; then ``409``)
same key, different method/path/body      ``422`` (the key was reused for another request)
handler raised, or status not stored      the record is released, so a retry runs again
key too long or empty                     ``400``; body larger than ``max_body``: ``413``
no key (``required=False``)               passed through untouched
========================================  ======================================================

Which of the IETF draft's answers it follows: 409 for a concurrent duplicate and 422 for a
reused key are the draft's; a missing key is an error (400) only when ``required=True``.
The response to the first request is buffered until the handler finishes, since it is stored
before it is sent. Store calls follow the engine: give ``Idempotency(stores.open_async(url))``
for a PostgreSQL or Redis store that never blocks the loop, or a blocking store (SQLite on local
disk, memory for tests), called on the loop unless ``store_calls="thread"``.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stormproof._validate import int_at_least
from stormproof.errors import ConfigError, StormproofError
from stormproof.events.idempotency import (
    Idempotency,
    IdempotencyInProgress,
    IdempotencyKeyReused,
)
from stormproof.integrations.asgi._common import (
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    header,
    json_body,
    retry_after_value,
    send_response,
)

__all__ = ["IdempotencyHttpConfig", "IdempotencyMiddleware", "StoredResponse"]

#: Headers worth replaying: they describe the representation or the created resource. Hop-by-hop
#: headers, ``date``, ``set-cookie`` and ``content-length`` (recomputed) are not stored.
DEFAULT_STORED_HEADERS = (
    "content-type",
    "content-language",
    "content-encoding",
    "location",
    "etag",
    "last-modified",
    "cache-control",
)


def _below_500(status: int) -> bool:
    return status < 500


def _method_and_path(scope: Scope) -> str:
    return f"{scope.get('method', '')} {scope.get('path', '')}"


@dataclass(frozen=True, slots=True)
class IdempotencyHttpConfig:
    """The HTTP side of :class:`IdempotencyMiddleware`; store behaviour is the engine's.

    Args:
        header: the request header with the key (default ``idempotency-key``).
        methods: the guarded methods (default ``POST`` and ``PATCH``).
        required: a guarded request without a key gets ``400`` instead of passing through.
        max_key_length: longer keys get ``400`` (default 255).
        max_body: request bodies larger than this (bytes) get ``413`` (default 1 MiB).
        stored_headers: response headers stored and replayed (lower case).
        replay_header: the header marking a replayed response (value ``true``).
        store_status: which statuses are stored; others release the key (default: < 500, so
            a server error can be retried with the same key).
        namespace: ``scope -> str`` prefixed to the key; default ``"METHOD /path"``. Add the
            authenticated client to it so that two clients' keys never meet.
    """

    header: str = "idempotency-key"
    methods: frozenset[str] = frozenset({"POST", "PATCH"})
    required: bool = False
    max_key_length: int = 255
    max_body: int = 1 << 20
    stored_headers: tuple[str, ...] = DEFAULT_STORED_HEADERS
    replay_header: str = "idempotent-replayed"
    store_status: Callable[[int], bool] = _below_500
    namespace: Callable[[Scope], str] = field(default=_method_and_path)

    def __post_init__(self) -> None:
        if not isinstance(self.header, str) or not self.header:
            raise ConfigError("header", "must be a non-empty header name", self.header)
        if not isinstance(self.methods, frozenset) or not self.methods:
            raise ConfigError("methods", "must be a non-empty frozenset of methods", self.methods)
        object.__setattr__(self, "methods", frozenset(m.upper() for m in self.methods))
        int_at_least("max_key_length", self.max_key_length, 1)
        int_at_least("max_body", self.max_body, 0)
        object.__setattr__(self, "stored_headers", tuple(h.lower() for h in self.stored_headers))
        if not self.replay_header:
            raise ConfigError("replay_header", "must be a non-empty header name", "")
        for name in ("store_status", "namespace"):
            if not callable(getattr(self, name)):
                raise ConfigError(name, "must be callable", getattr(self, name))


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A response as kept in the store: status, selected headers, body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def to_json(self) -> dict[str, Any]:
        """The JSON form: text bodies as ``body``, others base64 as ``body_b64``."""
        record: dict[str, Any] = {"status": self.status, "headers": [list(h) for h in self.headers]}
        try:
            record["body"] = self.body.decode("utf-8")
        except UnicodeDecodeError:
            record["body_b64"] = base64.b64encode(self.body).decode("ascii")
        return record

    @classmethod
    def from_json(cls, record: Any) -> StoredResponse:
        """Rebuild a response from :meth:`to_json`'s form."""
        if "body_b64" in record:
            body = base64.b64decode(record["body_b64"])
        else:
            body = str(record.get("body", "")).encode("utf-8")
        headers = tuple((str(k), str(v)) for k, v in record.get("headers", ()))
        return cls(int(record["status"]), headers, body)


class _Captured:
    """What the handler sent, buffered."""

    __slots__ = ("body", "headers", "status")

    def __init__(self) -> None:
        self.status = 500
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = bytearray()

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = int(message["status"])
            self.headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", ())]
        elif kind == "http.response.body":
            self.body.extend(message.get("body", b""))


class _NotStored(StormproofError):
    """The handler's response is not to be stored (``store_status`` refused it)."""

    def __init__(self, captured: _Captured) -> None:
        super().__init__(f"status {captured.status} is not stored")
        self.captured = captured


class IdempotencyMiddleware:
    """Pure ASGI middleware: one run per ``Idempotency-Key``. See the module docstring.

    Args:
        app: the ASGI app.
        idempotency: the engine, with its store and
            :class:`~stormproof.events.idempotency.IdempotencyConfig` (TTL, lease,
            ``on_in_progress``). The store must have been ``init()``-ed.
        config: the HTTP side (:class:`IdempotencyHttpConfig`).
    """

    def __init__(
        self,
        app: ASGIApp,
        idempotency: Idempotency,
        config: IdempotencyHttpConfig | None = None,
    ) -> None:
        if not isinstance(idempotency, Idempotency):
            raise ConfigError("idempotency", "must be a stormproof Idempotency", idempotency)
        self.app = app
        self.idempotency = idempotency
        self.config = config if config is not None else IdempotencyHttpConfig()
        if not isinstance(self.config, IdempotencyHttpConfig):
            raise ConfigError("config", "must be an IdempotencyHttpConfig", config)
        self._header = self.config.header.lower().encode("latin-1")
        self._stored = frozenset(self.config.stored_headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run, replay or refuse one request."""
        config = self.config
        if scope["type"] != "http" or scope.get("method", "").upper() not in config.methods:
            await self.app(scope, receive, send)
            return
        key = header(scope, self._header)
        if key is None:
            if config.required:
                await send_response(send, 400, json_body(error="idempotency_key_missing"))
            else:
                await self.app(scope, receive, send)
            return
        key = key.strip()
        if not key or len(key) > config.max_key_length:
            await send_response(send, 400, json_body(error="idempotency_key_invalid"))
            return
        body = await self._read_body(receive)
        if body is None:
            await send_response(send, 413, json_body(error="request_body_too_large"))
            return
        await self._guarded(scope, receive, send, key, body)

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole request body, or ``None`` once it exceeds ``max_body``."""
        chunks = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                # A disconnect before the body was complete: nothing to run.
                break
            chunks.extend(message.get("body", b""))
            if len(chunks) > self.config.max_body:
                return None
            if not message.get("more_body", False):
                break
        return bytes(chunks)

    async def _guarded(
        self, scope: Scope, receive: Receive, send: Send, key: str, body: bytes
    ) -> None:
        payload = {
            "method": scope.get("method", ""),
            "path": scope.get("path", ""),
            "query": bytes(scope.get("query_string", b"")).decode("latin-1"),
            "body_sha256": hashlib.sha256(body).hexdigest(),
        }
        replayed = False

        async def replay_receive() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        fresh: _Captured | None = None

        async def run() -> dict[str, Any]:
            nonlocal fresh
            captured = _Captured()
            await self.app(scope, replay_receive, captured.send)
            if not self.config.store_status(captured.status):
                raise _NotStored(captured)
            fresh = captured
            return self._to_store(captured).to_json()

        name = f"{self.config.namespace(scope)} {key}"
        try:
            stored = await self.idempotency.arun(name, payload, run)
        except _NotStored as not_stored:
            await self._send_captured(send, not_stored.captured)
            return
        except IdempotencyKeyReused:
            await send_response(send, 422, json_body(error="idempotency_key_reused"))
            return
        except IdempotencyInProgress as busy:
            await send_response(
                send,
                409,
                json_body(error="idempotency_key_in_progress"),
                [(b"retry-after", retry_after_value(busy.retry_after).encode())],
            )
            return
        if fresh is not None:
            await self._send_captured(send, fresh)
            return
        response = StoredResponse.from_json(stored)
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
        headers.append((self.config.replay_header.encode("latin-1"), b"true"))
        headers.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body, "more_body": False})

    def _to_store(self, captured: _Captured) -> StoredResponse:
        kept = tuple(
            (k.decode("latin-1").lower(), v.decode("latin-1"))
            for k, v in captured.headers
            if k.decode("latin-1").lower() in self._stored
        )
        return StoredResponse(captured.status, kept, bytes(captured.body))

    @staticmethod
    async def _send_captured(send: Send, captured: _Captured) -> None:
        await send(
            {"type": "http.response.start", "status": captured.status, "headers": captured.headers}
        )
        await send({"type": "http.response.body", "body": bytes(captured.body), "more_body": False})

    def __repr__(self) -> str:
        return f"IdempotencyMiddleware(store={self.idempotency.store.url!r})"
