"""The async load runner: sends planned requests on schedule with httpx and records each answer.

Needs httpx (``pip install 'stormproof[load]'``); the live view needs rich as well.

The runner is an open-model generator: each request is started at its due time whatever
happened to the earlier ones (one asyncio task per request, no user loop), so a slow target
meets the same arrival rate as a fast one. It is bounded three ways: ``duration`` (nothing is
started at or after it), ``max_requests`` (nothing beyond that many), and ``drain`` (seconds
after the last start that in-flight requests may still finish; they are then cancelled and
recorded with ``error="Cancelled"``).

Time comes from a :class:`~stormproof.clock.SleepingClock` (the wall clock by default), so a
test can drive the runner on a :class:`~stormproof.clock.ManualClock` with an in-process
transport and no real waiting.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stormproof._validate import finite_above, int_at_least, optional_positive
from stormproof.clock import SleepingClock, WallClock
from stormproof.errors import ConfigError
from stormproof.load.metrics import RequestRecord
from stormproof.load.traffic import PlannedRequest

if TYPE_CHECKING:
    import httpx

__all__ = ["RunConfig", "parse_retry_after", "run_load", "run_load_sync"]


def _httpx() -> Any:
    try:
        import httpx
    except ImportError as error:  # pragma: no cover - httpx is in the dev install
        raise ImportError("the load runner needs httpx: pip install 'stormproof[load]'") from error
    return httpx


@dataclass(frozen=True, slots=True)
class RunConfig:
    """How to drive the target. Invalid values raise ``ConfigError`` naming the field.

    Args:
        target: the URL every request goes to (``http://127.0.0.1:8000/orders``).
        duration: seconds; no request starts at or after it.
        max_requests: start at most this many (``None``: all the plan holds before ``duration``).
        timeout: per-request timeout in seconds (connect, read, write and pool).
        drain: seconds in-flight requests may take after the last start (default: ``timeout``).
        max_connections: the connection pool size. Requests beyond it wait for a connection;
            their latency, measured from the due time, includes that wait.
    """

    target: str
    duration: float
    max_requests: int | None = None
    timeout: float = 10.0
    drain: float | None = None
    max_connections: int = 256

    def __post_init__(self) -> None:
        if not isinstance(self.target, str) or not self.target.startswith(("http://", "https://")):
            raise ConfigError("target", "must be an http:// or https:// URL", self.target)
        finite_above("duration", self.duration, 0.0)
        if self.max_requests is not None:
            int_at_least("max_requests", self.max_requests, 1)
        finite_above("timeout", self.timeout, 0.0)
        optional_positive("drain", self.drain)
        int_at_least("max_connections", self.max_connections, 1)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` value: delta-seconds or an HTTP date (RFC 9110 10.2.3).

    ``now`` is the current epoch time for dates (default ``time.time()``). Junk gives ``None``.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


class _Progress:
    """Counts for the live view."""

    __slots__ = ("done", "errors", "in_flight", "ok", "shed", "started")

    def __init__(self) -> None:
        self.started = self.done = self.ok = self.shed = self.errors = self.in_flight = 0


async def _send(
    client: httpx.AsyncClient,
    config: RunConfig,
    request: PlannedRequest,
    clock: SleepingClock,
    start: float,
    record: RequestRecord,
    progress: _Progress,
) -> None:
    headers = dict(request.headers)
    if request.body is not None:
        headers.setdefault("content-type", "application/json")
    progress.in_flight += 1
    try:
        response = await client.request(
            request.method, config.target, content=request.body, headers=headers
        )
    except asyncio.CancelledError:
        record.error = "Cancelled"
        raise
    except Exception as error:
        record.finished = clock.now() - start
        record.error = type(error).__name__
        progress.errors += 1
    else:
        record.finished = clock.now() - start
        record.status = response.status_code
        record.retry_after = parse_retry_after(response.headers.get("retry-after"))
        record.replayed = response.headers.get("idempotent-replayed", "").lower() == "true"
        if response.status_code in (429, 503):
            progress.shed += 1
        elif response.status_code >= 500 or response.status_code == 408:
            progress.errors += 1
        else:
            progress.ok += 1
    finally:
        progress.in_flight -= 1
        progress.done += 1


async def run_load(
    config: RunConfig,
    requests: Sequence[PlannedRequest],
    *,
    clock: SleepingClock | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    on_tick: Callable[[dict[str, int], float], None] | None = None,
) -> list[RequestRecord]:
    """Send ``requests`` at their due times; return one record per request started.

    Args:
        config: the target and the bounds.
        requests: the plan, in due order (see :func:`stormproof.load.traffic.plan_requests`).
        clock: time and sleeps (default the wall clock).
        transport: an httpx transport (for example ``httpx.ASGITransport(app)`` in tests).
        on_tick: called about four times a second with the counters and the elapsed time
            (the CLI's live view uses it).
    """
    httpx = _httpx()
    if not isinstance(config, RunConfig):
        raise ConfigError("config", "must be a RunConfig", config)
    clock = clock if clock is not None else WallClock()
    limits = httpx.Limits(
        max_connections=config.max_connections, max_keepalive_connections=config.max_connections
    )
    progress = _Progress()
    records: list[RequestRecord] = []
    tasks: list[asyncio.Task[None]] = []
    ticker: asyncio.Task[None] | None = None
    async with httpx.AsyncClient(
        timeout=config.timeout, limits=limits, transport=transport
    ) as client:
        start = clock.now()
        if on_tick is not None:
            ticker = asyncio.create_task(_tick(on_tick, progress, clock, start))
        try:
            for request in requests:
                if request.at >= config.duration:
                    break
                if config.max_requests is not None and len(records) >= config.max_requests:
                    break
                delay = request.at - (clock.now() - start)
                if delay > 0:
                    await clock.async_sleep(delay)
                record = RequestRecord(
                    index=request.index,
                    kind=request.kind,
                    due=request.at,
                    sent=clock.now() - start,
                    finished=None,
                    status=None,
                    key=request.key,
                    priority=request.priority,
                )
                records.append(record)
                progress.started += 1
                tasks.append(
                    asyncio.create_task(
                        _send(client, config, request, clock, start, record, progress)
                    )
                )
            await _drain(tasks, config, clock)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if ticker is not None:
                ticker.cancel()
                await asyncio.gather(ticker, return_exceptions=True)
            if on_tick is not None:
                on_tick(_counts(progress), clock.now() - start)
    return records


async def _drain(tasks: list[asyncio.Task[None]], config: RunConfig, clock: SleepingClock) -> None:
    pending = [task for task in tasks if not task.done()]
    if not pending:
        return
    limit = config.drain if config.drain is not None else config.timeout
    try:
        async with clock.timeout(limit):
            await asyncio.gather(*pending, return_exceptions=True)
    except TimeoutError:
        pass  # the finally block of run_load cancels what is left


def _counts(progress: _Progress) -> dict[str, int]:
    return {name: getattr(progress, name) for name in _Progress.__slots__}


async def _tick(
    on_tick: Callable[[dict[str, int], float], None],
    progress: _Progress,
    clock: SleepingClock,
    start: float,
) -> None:
    while True:
        on_tick(_counts(progress), clock.now() - start)
        await asyncio.sleep(0.25)


def run_load_sync(
    config: RunConfig,
    requests: Sequence[PlannedRequest],
    *,
    on_tick: Callable[[dict[str, int], float], None] | None = None,
) -> list[RequestRecord]:
    """:func:`run_load` in a fresh event loop (for scripts and the CLI)."""
    return asyncio.run(run_load(config, requests, on_tick=on_tick))
