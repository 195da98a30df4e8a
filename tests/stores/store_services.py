"""Where the store tests find their back ends, importable by test modules and child processes.

(Kept out of ``conftest.py`` so that processes started with ``spawn``, which import the test
module afresh, resolve these helpers by a name no other ``conftest`` can shadow.)
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

POSTGRES = os.environ.get("STORMPROOF_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("STORMPROOF_REDIS_URL", "redis://127.0.0.1:6379/15")


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
    if backend == "dynamodb":
        # Usable only while moto's mock runs: request the ``aws_mock`` fixture too.
        pytest.importorskip("boto3", reason="the aws extra is not installed")
        pytest.importorskip("moto", reason="moto is not installed")
        return f"dynamodb://sp-test-{unique}?region=us-east-1"
    raise ValueError(backend)
