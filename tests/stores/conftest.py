"""Back ends for the store tests: memory, SQLite, and the real PostgreSQL and Redis servers.

PostgreSQL (127.0.0.1:5432, database ``test``) and Redis (127.0.0.1:6379) are used when they
answer. When one does not, its tests are skipped with the reason -- unless
``STORMPROOF_REQUIRE_SERVICES=1`` (set by ``.ci/run``), where a missing server is a failure.
Each test gets its own table or key prefix, dropped afterwards.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stormproof import stores
from stormproof.stores.base import IdempotencyStore

POSTGRES = os.environ.get("STORMPROOF_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("STORMPROOF_REDIS_URL", "redis://127.0.0.1:6379/15")
BACKENDS = ["memory", "sqlite", "postgresql", "redis"]


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip (or, in CI, fail) when a server is not there."""
    if _reachable(host, port):
        return
    reason = f"{name} is not reachable on {host}:{port}"
    if os.environ.get("STORMPROOF_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason}, and STORMPROOF_REQUIRE_SERVICES=1 requires it")
    pytest.skip(reason)


def store_url(backend: str, tmp_path: Path) -> str:
    """A fresh URL of ``backend`` for one test (own file, table or prefix)."""
    unique = uuid.uuid4().hex[:12]
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'stormproof.db'}"
    if backend == "postgresql":
        pytest.importorskip("psycopg", reason="the postgres extra is not installed")
        require_service("PostgreSQL", "127.0.0.1", 5432)
        return f"{POSTGRES}?table=sp_test_{unique}"
    if backend == "redis":
        pytest.importorskip("redis", reason="the redis extra is not installed")
        require_service("Redis", "127.0.0.1", 6379)
        return f"{REDIS}?prefix=sp-test-{unique}:"
    raise ValueError(backend)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def url(backend: str, tmp_path: Path) -> str:
    return store_url(backend, tmp_path)


@pytest.fixture
def store(url: str) -> Iterator[IdempotencyStore]:
    opened = stores.open(url)
    opened.init()
    try:
        yield opened
    finally:
        drop = getattr(opened, "drop", None)
        if drop is not None:
            drop()  # test-only clean-up of the table or keys
        opened.close()
