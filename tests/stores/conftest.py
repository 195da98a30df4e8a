"""Back ends for the store tests: memory, SQLite, the real PostgreSQL and Redis servers, and
DynamoDB emulated in-process by moto.

PostgreSQL (127.0.0.1:5432, database ``test``) and Redis (127.0.0.1:6379) are used when they
answer. When one does not, its tests are skipped with the reason -- unless
``STORMPROOF_REQUIRE_SERVICES=1`` (set by ``.ci/run``), where a missing server is a failure.
Each test gets its own table or key prefix, dropped afterwards. DynamoDB tests run inside
``moto.mock_aws()`` (the ``aws_mock`` fixture), with fake credentials, so nothing leaves the
process; the mock outlives the ``store`` fixture, whose tear-down drops the table.
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
BACKENDS = ["memory", "sqlite", "postgresql", "redis", "dynamodb"]
#: Fake credentials and region for moto, so boto3 never finds (or uses) real ones.
_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
_AWS_UNSET = ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ROLE_ARN")


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


@pytest.fixture
def aws_mock(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Run the test inside ``moto.mock_aws()`` with fake credentials and region."""
    moto = pytest.importorskip("moto", reason="moto is not installed")
    for name, value in _AWS_ENV.items():
        monkeypatch.setenv(name, value)
    for name in _AWS_UNSET:
        monkeypatch.delenv(name, raising=False)
    # No shared config or credentials files of the machine running the tests.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    with moto.mock_aws():
        yield


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "dynamodb":
        # Requested from here, the mock is set up before and torn down after ``url`` and so
        # after ``store`` (which depends on ``url``): the table is dropped inside the mock.
        request.getfixturevalue("aws_mock")
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
