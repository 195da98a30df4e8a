"""Per-request overhead of stormproof's httpx transports against a bare httpx client.

    python benchmarks/integrations_http.py            # table
    python benchmarks/integrations_http.py --json     # a JSON list of rows
    python benchmarks/integrations_http.py --quick    # fewer requests (a smoke test, not a result)

One local HTTP/1.1 server (``http.server`` in a thread, 127.0.0.1, random port) answers every
request with 200 and a 2-byte body. The same process, in the same run, times ``client.get(url)``
(response read in full) through:

* ``bare`` -- ``httpx.Client()`` with its default transport;
* ``stormproof`` -- ``httpx.Client(transport=StormproofTransport())``: the default
  ``HttpPolicy`` (retry budget, per-origin breaker, attempt and total timeouts); no request is
  retried, so this is the cost of the success path: starting the retry call, the breaker check
  and record, the timeout arithmetic and the tightened per-request timeouts;

and the same pair with ``httpx.AsyncClient`` (sequential requests on one event loop). The
``*_mock`` cases repeat both pairs over ``httpx.MockTransport`` (an in-process handler returning
the same response, no socket): a round trip on loopback costs about a millisecond and varies by
more than the transport's cost, so these isolate what stormproof adds per request. Each variant
runs ``--repeats`` rounds of ``--requests`` requests, alternating bare and stormproof round by
round so both see the same machine state; a round's per-request time is its wall time divided by
the requests. The table shows the median round of each, the difference (the overhead) and the
ratio. Connections are kept alive, so a request is one round trip on a warm connection.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from stormproof.integrations.httpx import AsyncStormproofTransport, StormproofTransport


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without TCP_NODELAY the second waits for
    # the client's delayed ACK (~40 ms on Linux).
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


def _serve() -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def _sync_round(client: httpx.Client, url: str, requests: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(requests):
        client.get(url).read()
    return (time.perf_counter_ns() - start) / requests


async def _async_round(client: httpx.AsyncClient, url: str, requests: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(requests):
        response = await client.get(url)
        await response.aread()
    return (time.perf_counter_ns() - start) / requests


def _row(case: str, bare: list[float], ours: list[float]) -> dict[str, Any]:
    bare_ns, ours_ns = statistics.median(bare), statistics.median(ours)
    return {
        "case": case,
        "bare_us": round(bare_ns / 1000, 1),
        "stormproof_us": round(ours_ns / 1000, 1),
        "overhead_us": round((ours_ns - bare_ns) / 1000, 1),
        "ratio": round(ours_ns / bare_ns, 3),
    }


def _answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=b"ok")


def measure_sync(url: str, requests: int, repeats: int, mock: bool = False) -> dict[str, Any]:
    """Median per-request time of the bare and the stormproof sync client."""
    bare: list[float] = []
    ours: list[float] = []
    inner = httpx.MockTransport(_answer) if mock else None
    with (
        httpx.Client(transport=inner) as plain,
        httpx.Client(transport=StormproofTransport(inner)) as guarded,
    ):
        for client in (plain, guarded):  # warm up: connect, first-request costs
            _sync_round(client, url, max(10, requests // 10))
        for _ in range(repeats):
            bare.append(_sync_round(plain, url, requests))
            ours.append(_sync_round(guarded, url, requests))
    return _row("sync_mock" if mock else "sync", bare, ours)


async def _measure_async(url: str, requests: int, repeats: int, mock: bool) -> dict[str, Any]:
    bare: list[float] = []
    ours: list[float] = []
    inner = httpx.MockTransport(_answer) if mock else None
    async with (
        httpx.AsyncClient(transport=inner) as plain,
        httpx.AsyncClient(transport=AsyncStormproofTransport(inner)) as guarded,
    ):
        for client in (plain, guarded):
            await _async_round(client, url, max(10, requests // 10))
        for _ in range(repeats):
            bare.append(await _async_round(plain, url, requests))
            ours.append(await _async_round(guarded, url, requests))
    return _row("async_mock" if mock else "async", bare, ours)


def measure_async(url: str, requests: int, repeats: int, mock: bool = False) -> dict[str, Any]:
    """Median per-request time of the bare and the stormproof async client."""
    return asyncio.run(_measure_async(url, requests, repeats, mock))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few requests: a smoke test")
    parser.add_argument("--json", action="store_true", help="print only a JSON list of rows")
    parser.add_argument("--requests", type=int, default=None, help="requests per round")
    parser.add_argument("--repeats", type=int, default=None, help="rounds per variant")
    options = parser.parse_args(argv)
    requests = options.requests or (50 if options.quick else 1000)
    repeats = options.repeats or (3 if options.quick else 9)
    server, url = _serve()
    try:
        measures: list[Callable[..., dict[str, Any]]] = [measure_sync, measure_async]
        rows = [measure(url, requests, repeats) for measure in measures]
        rows += [measure(url, requests * 5, repeats, mock=True) for measure in measures]
    finally:
        server.shutdown()
        server.server_close()
    if options.json:
        print(json.dumps(rows))
        return 0
    print(
        f"httpx {httpx.__version__}, Python {sys.version.split()[0]}, "
        f"{requests} requests x {repeats} rounds, median round"
    )
    print(f"{'case':<10} {'bare µs':>9} {'stormproof µs':>14} {'overhead µs':>12} {'ratio':>6}")
    for row in rows:
        print(
            f"{row['case']:<10} {row['bare_us']:>9.1f} {row['stormproof_us']:>14.1f} "
            f"{row['overhead_us']:>12.1f} {row['ratio']:>6.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
