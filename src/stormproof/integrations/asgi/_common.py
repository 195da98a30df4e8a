"""ASGI types and the small response helpers the middlewares share (no framework needed)."""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

__all__ = [
    "ASGIApp",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "header",
    "json_body",
    "retry_after_value",
    "send_response",
]


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of request header ``name`` (lower-case bytes), decoded as latin-1."""
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def retry_after_value(seconds: float) -> str:
    """A ``Retry-After`` delta-seconds value: whole seconds, rounded up, at least 0.

    RFC 9110 section 10.2.3 allows only a non-negative integer, so a 0.2 s wait is sent as 1.
    """
    if not seconds > 0.0:  # also NaN
        return "0"
    # An unbounded wait (a cost that can never be granted) is advertised as one hour.
    return str(math.ceil(min(seconds, 3600.0)))


async def send_response(
    send: Send,
    status: int,
    body: bytes,
    headers: Iterable[tuple[bytes, bytes]] = (),
    *,
    content_type: bytes = b"application/json",
) -> None:
    """Send a complete response (start and one body message)."""
    raw = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    raw.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def json_body(**fields: Any) -> bytes:
    """A compact JSON object for an error response."""
    return json.dumps(fields, separators=(",", ":")).encode()
