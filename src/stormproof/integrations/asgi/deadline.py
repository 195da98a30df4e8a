"""Deadline propagation for ASGI apps: a caller's remaining time becomes the handler's deadline.

A request carries the time its caller has left, and the handler runs inside
:func:`~stormproof.policies.deadline.deadline_scope`, so every stormproof retry, pipeline and
client inside it stops in time -- the way gRPC propagates deadlines between services. Two
request headers are read; when both are present the tighter wins:

* ``X-Stormproof-Deadline-Ms`` -- remaining milliseconds, a non-negative decimal number
  (``250``, ``1500.5``). Relative, so the clocks of the two machines need not agree.
* ``grpc-timeout`` -- gRPC's format (PROTOCOL-HTTP2.md): 1 to 8 digits and a unit, ``H`` hours,
  ``M`` minutes, ``S`` seconds, ``m`` milliseconds, ``u`` microseconds, ``n`` nanoseconds
  (``100m`` = 0.1 s).

A request whose deadline has already passed (``0`` or a negative number) is answered ``504`` at
once, without running the handler: nobody is waiting for its answer. A malformed header is
ignored, as if absent, so that one bad client cannot break a route. To pass the deadline on,
add :func:`deadline_headers` to outgoing requests.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from stormproof._validate import optional_positive
from stormproof.clock import SleepingClock, WallClock
from stormproof.errors import ConfigError
from stormproof.integrations.asgi._common import (
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    header,
    json_body,
    send_response,
)
from stormproof.policies.deadline import Deadline, current_deadline, deadline_scope

__all__ = [
    "DEADLINE_HEADER",
    "DeadlineConfig",
    "DeadlinePropagation",
    "deadline_headers",
    "parse_deadline_ms",
    "parse_grpc_timeout",
]

#: The header stormproof reads and writes: remaining milliseconds.
DEADLINE_HEADER = "x-stormproof-deadline-ms"

_GRPC_TIMEOUT = re.compile(r"^([0-9]{1,8})([HMSmun])$")
_GRPC_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def parse_deadline_ms(value: str) -> float | None:
    """Seconds left from an ``X-Stormproof-Deadline-Ms`` value; ``None`` if malformed.

    A negative value is returned as is (the caller's deadline has passed).
    """
    try:
        milliseconds = float(value.strip())
    except ValueError:
        return None
    if math.isnan(milliseconds) or math.isinf(milliseconds):
        return None
    return milliseconds / 1000.0


def parse_grpc_timeout(value: str) -> float | None:
    """Seconds from a ``grpc-timeout`` value (``"100m"``, ``"5S"``); ``None`` if malformed."""
    match = _GRPC_TIMEOUT.match(value.strip())
    if match is None:
        return None
    return int(match.group(1)) * _GRPC_UNITS[match.group(2)]


def deadline_headers(
    clock: SleepingClock | None = None, *, header_name: str = DEADLINE_HEADER
) -> dict[str, str]:
    """Headers that pass the current context deadline on to a downstream call.

    Returns ``{}`` outside any deadline scope. The remaining time is rounded *down* to whole
    milliseconds so that the callee never believes it has more time than the caller.
    ``clock`` must be the clock the deadline was set on (default the wall clock).
    """
    deadline = current_deadline()
    if deadline is None:
        return {}
    now = (clock if clock is not None else WallClock()).now()
    return {header_name: str(math.floor(deadline.remaining(now) * 1000.0))}


@dataclass(frozen=True, slots=True)
class DeadlineConfig:
    """How :class:`DeadlinePropagation` reads deadlines.

    Args:
        header: the remaining-milliseconds header (default ``x-stormproof-deadline-ms``).
        grpc_timeout: also read ``grpc-timeout``.
        default_timeout: seconds given to a request that carries no deadline (``None``: none).
        max_timeout: a cap on what callers may ask for (``None``: no cap).
        enforce: cancel the handler when the deadline passes; a ``504`` is sent if no
            response had started. Off by default: the deadline is published, and the code
            inside decides what to stop.
        expired_status: the status of a request that arrives (or, with ``enforce``, runs)
            past its deadline; 504 Gateway Timeout by default.
    """

    header: str = DEADLINE_HEADER
    grpc_timeout: bool = True
    default_timeout: float | None = None
    max_timeout: float | None = None
    enforce: bool = False
    expired_status: int = 504

    def __post_init__(self) -> None:
        if not isinstance(self.header, str) or not self.header:
            raise ConfigError("header", "must be a non-empty header name", self.header)
        optional_positive("default_timeout", self.default_timeout)
        optional_positive("max_timeout", self.max_timeout)
        if not isinstance(self.expired_status, int) or not 400 <= self.expired_status <= 599:
            raise ConfigError("expired_status", "must be an HTTP error status", self.expired_status)


class DeadlinePropagation:
    """Pure ASGI middleware that runs each request inside the deadline its caller sent.

    ``clock`` is the monotonic clock deadlines are kept on (default
    :class:`~stormproof.clock.WallClock`, the one every stormproof driver uses by default).
    """

    def __init__(
        self,
        app: ASGIApp,
        config: DeadlineConfig | None = None,
        *,
        clock: SleepingClock | None = None,
    ) -> None:
        self.app = app
        self.config = config if config is not None else DeadlineConfig()
        if not isinstance(self.config, DeadlineConfig):
            raise ConfigError("config", "must be a DeadlineConfig", config)
        self.clock: SleepingClock = clock if clock is not None else WallClock()
        self._header = self.config.header.lower().encode("latin-1")

    def remaining(self, scope: Scope) -> float | None:
        """Seconds the request may take (tightest header, default and cap); ``None``: no limit."""
        config = self.config
        found: list[float] = []
        raw = header(scope, self._header)
        if raw is not None:
            seconds = parse_deadline_ms(raw)
            if seconds is not None:
                found.append(seconds)
        if config.grpc_timeout:
            raw = header(scope, b"grpc-timeout")
            if raw is not None:
                seconds = parse_grpc_timeout(raw)
                if seconds is not None:
                    found.append(seconds)
        left = min(found) if found else config.default_timeout
        if left is not None and config.max_timeout is not None:
            left = min(left, config.max_timeout)
        return left

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request under its deadline, or answer ``504`` if it has none left."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        left = self.remaining(scope)
        if left is None:
            await self.app(scope, receive, send)
            return
        if left <= 0.0:
            await self._expired(send, "deadline passed before the request arrived")
            return
        deadline = Deadline(self.clock.now() + left)
        with deadline_scope(deadline) as effective:
            if not self.config.enforce:
                await self.app(scope, receive, send)
                return
            assert effective is not None
            await self._enforced(scope, receive, send, effective)

    async def _enforced(
        self, scope: Scope, receive: Receive, send: Send, deadline: Deadline
    ) -> None:
        started = False
        expired = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            async with self.clock.timeout(deadline.remaining(self.clock.now())) as block:
                try:
                    await self.app(scope, receive, tracked)
                finally:
                    expired = block.expired()
        except TimeoutError:
            if not expired:
                raise
            if not started:
                await self._expired(send, "deadline passed while handling the request")

    async def _expired(self, send: Send, detail: str) -> None:
        await send_response(
            send, self.config.expired_status, json_body(error="deadline_exceeded", detail=detail)
        )

    def __repr__(self) -> str:
        return f"DeadlinePropagation({self.config!r})"
