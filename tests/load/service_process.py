"""Start the reference service in a uvicorn child process on a random port of 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def orders_service(tmp_path: Path, **env: str) -> Iterator[str]:
    """Serve examples.orders_service with a SQLite store in ``tmp_path``; yields the base URL.

    The socket is bound here (port 0: the kernel picks a free port) and handed to uvicorn with
    ``--fd``, so there is no race for the port. On exit the service is stopped with SIGINT
    (a graceful shutdown: in-flight requests finish, stores close).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    port = sock.getsockname()[1]
    environment = {
        **os.environ,
        "STORMPROOF_STORE_URL": f"sqlite:///{tmp_path / 'orders.db'}",
        "PYTHONPATH": str(ROOT),
        **env,
    }
    log = (tmp_path / "service.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "examples.orders_service.app:app",
            "--fd",
            str(sock.fileno()),
            "--log-level",
            "warning",
            "--backlog",
            "512",
        ],
        cwd=ROOT,
        env=environment,
        pass_fds=[sock.fileno()],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    sock.close()  # the child holds its own copy
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, process, tmp_path)
        yield base
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def _wait_ready(base: str, process: subprocess.Popen[bytes], tmp_path: Path) -> None:
    """Poll /healthz until the service answers (the listening socket queues the connects)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (tmp_path / "service.log").read_text(errors="replace")
            raise RuntimeError(f"the service exited with {process.returncode}:\n{log}")
        try:
            if httpx.get(f"{base}/healthz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)  # startup polling, not a timing assertion
    raise RuntimeError("the service did not become ready within 30 s")
