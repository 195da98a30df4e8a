"""A local HTTP server that answers each request from a script of faults (not a conftest).

    server = FaultServer()                         # 127.0.0.1, random port, own thread
    server.script("/flaky", Reply(503), Reply(503), Reply(200, body=b"ok"))
    ...                                            # requests to server.url + "/flaky"
    assert server.hits("/flaky") == 3
    server.close()

Each path has a queue of :class:`Reply`; a request takes the next one, and a path whose queue is
empty answers ``Reply()`` (200 "ok"). A reply can be a status with headers, a slow reply (the
handler waits ``delay`` seconds before answering, cut short when the server closes), or a
connection reset (the socket is closed with RST, no response at all).

A slow reply watches its connection while it waits: if the client closes it (a cancelled or
timed-out attempt), the handler stops and counts the path in :meth:`FaultServer.abandoned`.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Reply:
    """One scripted answer."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0
    reset: bool = False
    #: Send ``Retry-After`` as an HTTP-date this many seconds after the response's ``Date``
    #: (both formatted from one timestamp, so the difference is exact).
    retry_after_date: int | None = None


@dataclass(frozen=True)
class Seen:
    """A request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class FaultServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 with a random port."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._abandoned: dict[str, int] = defaultdict(int)
        self._scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self._hits: dict[str, int] = defaultdict(int)
        self.seen: list[Seen] = []
        self._stop = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; without TCP_NODELAY the second waits for
            # the client's delayed ACK (~40 ms on Linux).
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                reply = owner._take(self.command, path, dict(self.headers.items()), body)
                if reply.reset:
                    # SO_LINGER with a zero timeout makes close() send RST: a reset, no response.
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    self.close_connection = True
                    self.connection.close()
                    return
                if reply.delay and owner._hold(self.connection, path, reply.delay):
                    self.close_connection = True
                    return
                try:
                    stamp = time.time()
                    self.send_response_only(reply.status)
                    self.send_header("Date", self.date_time_string(stamp))
                    if reply.retry_after_date is not None:
                        later = self.date_time_string(stamp + reply.retry_after_date)
                        self.send_header("Retry-After", later)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(reply.body)
                except OSError:
                    self.close_connection = True  # the client gave up first (a timeout)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _serve

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # resets and abandoned connections are the point of this server

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # A short poll interval so that close() returns at once.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()

    def _take(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        with self._lock:
            self._hits[path] += 1
            self.seen.append(Seen(method, path, headers, body))
            queue = self._scripts.get(path)
            return queue.popleft() if queue else Reply()

    def _hold(self, connection: socket.socket, path: str, delay: float) -> bool:
        """Wait ``delay`` s before answering; True to answer nothing (closing, or abandoned)."""
        until = time.monotonic() + delay
        while (left := until - time.monotonic()) > 0:
            if self._stop.is_set():
                return True
            readable, _, _ = select.select([connection], [], [], min(left, 0.01))
            if readable:
                try:
                    gone = connection.recv(1, socket.MSG_PEEK) == b""
                except OSError:
                    gone = True
                if gone:
                    with self._lock:
                        self._abandoned[path] += 1
                        self._lock.notify_all()
                    return True
                self._stop.wait(min(left, 0.01))  # more bytes (pipelining): keep waiting
        return self._stop.is_set()

    def abandoned(self, path: str, count: int = 1, timeout: float = 5.0) -> int:
        """Slow replies of ``path`` whose client closed the connection first.

        Waits up to ``timeout`` s for ``count`` of them (the handler notices within 10 ms), so
        that a test can assert a cancelled attempt's connection was closed.
        """
        with self._lock:
            self._lock.wait_for(lambda: self._abandoned[path] >= count, timeout)
            return self._abandoned[path]

    def script(self, path: str, *replies: Reply) -> None:
        """Queue ``replies`` for ``path``, answered in order."""
        with self._lock:
            self._scripts[path].extend(replies)

    def hits(self, path: str) -> int:
        """Requests received for ``path`` so far."""
        with self._lock:
            return self._hits[path]

    def close(self) -> None:
        """Stop serving; slow replies in progress end at once."""
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
