"""Back ends for the store tests: memory, SQLite, the real PostgreSQL and Redis servers, and
DynamoDB emulated in-process by moto.

PostgreSQL (127.0.0.1:5432, database ``test``) and Redis (127.0.0.1:6379) are used when they
answer. When one does not, its tests are skipped with the reason -- unless
``STORMPROOF_REQUIRE_SERVICES=1`` (set by ``.ci/run``), where a missing server is a failure.
Each test gets its own table or key prefix, dropped afterwards. The ``store`` fixture runs each
conformance scenario twice per back end: on ``stores.open(url)`` and on ``stores.open_async(url)``
(native PostgreSQL and Redis stores, the ``to_thread`` adapter for the others) through
:class:`async_shim.BlockingView`. DynamoDB tests run inside
``moto.mock_aws()`` (the ``aws_mock`` fixture), with fake credentials, so nothing leaves the
process; the mock outlives the ``store`` fixture, whose tear-down drops the table.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from async_shim import BlockingView
from async_shim import drop as drop_async
from store_services import POSTGRES, REDIS, require_service, store_url

from stormproof import stores
from stormproof.stores.base import IdempotencyStore

__all__ = ["POSTGRES", "REDIS", "require_service", "store_url"]

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


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest) -> str:
    """Which protocol the ``store`` fixture exercises: ``stores.open`` or ``stores.open_async``."""
    return str(request.param)


@pytest.fixture
def store(url: str, api: str) -> Iterator[IdempotencyStore]:
    """The back end of ``url``, through the blocking API or (``api == "async"``) through
    ``stores.open_async`` behind a blocking view, so one set of scenarios covers both."""
    if api == "async":
        with asyncio.Runner() as runner:
            native = stores.open_async(url)
            view = cast(IdempotencyStore, BlockingView(native, runner))
            view.init()
            try:
                yield view
            finally:
                runner.run(drop_async(native))
                view.close()
        return
    opened = stores.open(url)
    opened.init()
    try:
        yield opened
    finally:
        drop = getattr(opened, "drop", None)
        if drop is not None:
            drop()  # test-only clean-up of the table or keys
        opened.close()
