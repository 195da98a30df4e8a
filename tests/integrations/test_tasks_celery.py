"""Celery tasks retried under stormproof policies (eager mode: no broker, no worker)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

celery = pytest.importorskip("celery")

from celery import signals  # noqa: E402

from stormproof.errors import ConfigError  # noqa: E402
from stormproof.integrations.celery import (  # noqa: E402
    celery_countdown,
    celery_retry,
    retry_task,
)
from stormproof.integrations.tasks import task_retry_decision  # noqa: E402
from stormproof.policies.backoff import Constant, Decorrelated, Exponential  # noqa: E402
from stormproof.policies.budget import AdaptiveTokenBucket  # noqa: E402
from stormproof.policies.retry import GiveUp, RetryAfter, RetryPolicy  # noqa: E402


@pytest.fixture
def app() -> Any:
    application = celery.Celery("stormproof-tests", broker="memory://", backend="cache+memory://")
    application.conf.task_always_eager = True
    # Exceptions reach the test through EagerResult.get(); propagating would raise Retry.
    application.conf.task_eager_propagates = False
    return application


@pytest.fixture
def countdowns() -> Iterator[list[float]]:
    """The countdown of every retry Celery was asked for."""
    seen: list[float] = []

    def record(sender: Any = None, request: Any = None, reason: Any = None, **_: Any) -> None:
        seen.append(reason.when)

    signals.task_retry.connect(record, weak=False)
    yield seen
    signals.task_retry.disconnect(record)


class Flaky:
    def __init__(self, failures: int, error: type[Exception] = ConnectionError) -> None:
        self.failures = failures
        self.error = error
        self.runs = 0

    def __call__(self) -> str:
        self.runs += 1
        if self.runs <= self.failures:
            raise self.error(f"failure {self.runs}")
        return "charged"


def test_countdowns_come_from_the_seeded_policy(app: Any, countdowns: list[float]) -> None:
    policy = RetryPolicy(max_attempts=5, backoff=Exponential(base=2.0), rng=random.Random(4))
    flaky = Flaky(2)

    @app.task(bind=True)
    @retry_task(policy)
    def charge(self: Any, order: str) -> str:
        return flaky()

    assert charge.delay("o-1").get() == "charged"
    assert flaky.runs == 3
    rng = random.Random(4)
    assert countdowns == [Exponential(base=2.0).delay(n, None, rng) for n in (1, 2)]


def test_attempts_are_the_policys_not_celerys(app: Any, countdowns: list[float]) -> None:
    policy = RetryPolicy(max_attempts=6, backoff=Constant(1.0))
    flaky = Flaky(100)

    @app.task(bind=True, max_retries=1)  # Celery's own limit is bypassed
    @retry_task(policy)
    def charge(self: Any) -> str:
        return flaky()

    with pytest.raises(ConnectionError, match="failure 6"):
        charge.delay().get()
    assert flaky.runs == 6
    assert countdowns == [1.0] * 5


def test_the_budget_stops_retries(app: Any, countdowns: list[float]) -> None:
    bucket = AdaptiveTokenBucket(capacity=2.0, deposit=0.5)
    policy = RetryPolicy(max_attempts=10, backoff=Constant(0.5), budget=bucket)
    flaky = Flaky(100)

    @app.task(bind=True)
    @retry_task(policy)
    def charge(self: Any) -> str:
        return flaky()

    with pytest.raises(ConnectionError):
        charge.delay().get()
    assert flaky.runs == 3  # two tokens, two retries
    assert bucket.available(0.0) == 0.0
    with pytest.raises(ConnectionError):
        charge.delay().get()
    assert flaky.runs == 4  # no token left: no retry at all


def test_non_retryable_errors_fail_at_once(app: Any, countdowns: list[float]) -> None:
    policy = RetryPolicy(max_attempts=5, retry_on=ConnectionError, backoff=Constant(1.0))
    flaky = Flaky(1, ValueError)

    @app.task(bind=True)
    @retry_task(policy)
    def charge(self: Any) -> str:
        return flaky()

    with pytest.raises(ValueError):
        charge.delay().get()
    assert flaky.runs == 1
    assert countdowns == []


def test_total_timeout_spans_the_retries(app: Any, countdowns: list[float]) -> None:
    now = [1_000.0]
    policy = RetryPolicy(max_attempts=10, backoff=Constant(4.0), total_timeout=10.0)
    runs = 0

    @app.task(bind=True)
    @retry_task(policy, clock=lambda: now[0])
    def charge(self: Any) -> str:
        nonlocal runs
        runs += 1
        if runs > 1:
            now[0] += 4.0  # the countdown passed before this execution
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        charge.delay().get()
    # Executions at 1000, 1004, 1008; a retry at 1012 would be past 1010.
    assert runs == 3
    assert countdowns == [4.0, 4.0]


def test_celery_retry_in_an_except_block(app: Any, countdowns: list[float]) -> None:
    policy = RetryPolicy(max_attempts=3, backoff=Constant(2.5))
    flaky = Flaky(1)
    computed: list[float | None] = []

    @app.task(bind=True)
    def charge(self: Any) -> str:
        try:
            return flaky()
        except ConnectionError as error:
            computed.append(celery_countdown(self, error, policy))
            celery_retry(self, error, policy)

    assert charge.delay().get() == "charged"
    assert computed == [2.5]
    assert countdowns == [2.5]


def test_task_retry_decision_rebuilds_the_call() -> None:
    policy = RetryPolicy(max_attempts=4, backoff=Decorrelated(base=1.0, cap=30.0))
    decision = task_retry_decision(
        policy.replace(rng=random.Random(2)),
        ConnectionError(),
        retries=1,
        now=50.0,
        last_delay=3.0,
    )
    assert isinstance(decision, RetryAfter)
    assert decision.attempt == 3
    assert decision.delay == Decorrelated(base=1.0, cap=30.0).delay(2, 3.0, random.Random(2))
    exhausted = task_retry_decision(policy, ConnectionError(), retries=3, now=50.0)
    assert isinstance(exhausted, GiveUp) and exhausted.reason.value == "attempts_exhausted"
    asked = task_retry_decision(policy, ConnectionError(), retries=0, now=0.0, retry_after=7.0)
    assert isinstance(asked, RetryAfter) and asked.delay == 7.0 and asked.server_delay
    with pytest.raises(ConfigError, match="retries"):
        task_retry_decision(policy, ConnectionError(), retries=-1, now=0.0)


def test_bad_arguments_name_the_field() -> None:
    with pytest.raises(ConfigError, match="policy"):
        retry_task("3 attempts")  # type: ignore[arg-type]
