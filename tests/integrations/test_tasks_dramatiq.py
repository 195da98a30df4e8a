"""Dramatiq actors retried under stormproof policies, on the StubBroker with a real Worker."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

dramatiq = pytest.importorskip("dramatiq")

from dramatiq.brokers.stub import StubBroker  # noqa: E402
from dramatiq.middleware import Retries  # noqa: E402

from stormproof.errors import ConfigError  # noqa: E402
from stormproof.integrations.dramatiq import StormproofRetries, use_stormproof_retries  # noqa: E402
from stormproof.policies.backoff import Constant, Exponential, Jitter  # noqa: E402
from stormproof.policies.budget import AdaptiveTokenBucket  # noqa: E402
from stormproof.policies.retry import RetryPolicy  # noqa: E402

# Delays are real (the StubBroker's delay queue waits for them), so the schedules are
# milliseconds long; the assertions are on the delays requested, not on elapsed time.
BASE = 0.004


class Setup:
    def __init__(self, policy: RetryPolicy) -> None:
        self.broker = StubBroker()
        self.broker.emit_after("process_boot")
        self.middleware = use_stormproof_retries(self.broker, policy)
        self.delays: list[int] = []
        enqueue = self.broker.enqueue

        def spy(message: Any, *, delay: int | None = None) -> Any:
            if delay is not None:  # sends, and the delay queue handing messages back, have none
                self.delays.append(delay)
            return enqueue(message, delay=delay)

        self.broker.enqueue = spy  # type: ignore[method-assign]
        self.worker: Any = None

    def run(self) -> None:
        self.worker = dramatiq.Worker(self.broker, worker_timeout=10, worker_threads=1)
        self.worker.start()
        try:
            self.broker.join("default", timeout=10_000, fail_fast=False)
            self.worker.join()
        finally:
            self.worker.stop()


@pytest.fixture
def make() -> Iterator[Any]:
    made: list[Setup] = []

    def build(policy: RetryPolicy) -> Setup:
        setup = Setup(policy)
        made.append(setup)
        return setup

    yield build
    for setup in made:
        setup.broker.close()


def test_delays_come_from_the_seeded_policy(make: Any) -> None:
    backoff = Exponential(base=BASE, factor=2.0, cap=1.0, jitter=Jitter.FULL)
    setup = make(RetryPolicy(max_attempts=5, backoff=backoff, rng=random.Random(21)))
    runs: list[int] = []

    @dramatiq.actor(broker=setup.broker)
    def charge(order: str) -> None:
        runs.append(1)
        if len(runs) <= 3:
            raise ConnectionError("down")

    charge.send("o-1")
    setup.run()
    assert len(runs) == 4
    rng = random.Random(21)
    expected = [round(backoff.delay(n, None, rng) * 1000.0) for n in (1, 2, 3)]
    assert setup.delays == expected
    assert setup.broker.dead_letters == []


def test_exhausted_attempts_dead_letter_the_message(make: Any) -> None:
    setup = make(RetryPolicy(max_attempts=3, backoff=Constant(BASE)))

    @dramatiq.actor(broker=setup.broker)
    def charge() -> None:
        raise ConnectionError("down")

    charge.send()
    setup.run()
    assert setup.delays == [4, 4]
    [dead] = setup.broker.dead_letters
    assert dead.options["retries"] == 2
    assert dead.options["stormproof_give_up"] == "attempts_exhausted"


def test_the_budget_stops_retries(make: Any) -> None:
    bucket = AdaptiveTokenBucket(capacity=1.0, deposit=0.5)
    setup = make(RetryPolicy(max_attempts=10, backoff=Constant(BASE), budget=bucket))
    runs: list[int] = []

    @dramatiq.actor(broker=setup.broker)
    def charge() -> None:
        runs.append(1)
        raise ConnectionError("down")

    charge.send()
    setup.run()
    assert len(runs) == 2  # one token, one retry
    [dead] = setup.broker.dead_letters
    assert dead.options["stormproof_give_up"] == "budget_exhausted"


def test_per_actor_policy_throws_and_explicit_retry_delay(make: Any) -> None:
    setup = make(RetryPolicy(max_attempts=2, backoff=Constant(BASE)))
    strict = RetryPolicy(max_attempts=1)
    runs = {"strict": 0, "asked": 0, "thrown": 0}

    @dramatiq.actor(broker=setup.broker, retry_policy=strict)
    def once() -> None:
        runs["strict"] += 1
        raise ConnectionError("down")

    @dramatiq.actor(broker=setup.broker)
    def asked() -> None:
        runs["asked"] += 1
        if runs["asked"] == 1:
            raise dramatiq.Retry(delay=7)

    @dramatiq.actor(broker=setup.broker, throws=(ValueError,))
    def thrown() -> None:
        runs["thrown"] += 1
        raise ValueError("bad input")

    once.send()
    asked.send()
    thrown.send()
    setup.run()
    assert runs == {"strict": 1, "asked": 2, "thrown": 1}
    assert 7 in setup.delays
    reasons = sorted(m.options["stormproof_give_up"] for m in setup.broker.dead_letters)
    assert reasons == ["attempts_exhausted", "throws"]


def test_running_next_to_dramatiqs_retries_is_refused() -> None:
    broker = StubBroker()
    broker.add_middleware(StormproofRetries(RetryPolicy()))
    assert any(isinstance(m, Retries) for m in broker.middleware)
    with pytest.raises(ConfigError, match="Retries"):
        broker.middleware[-1].before_worker_boot(broker, None)
    broker.close()


def test_bad_arguments_name_the_field() -> None:
    with pytest.raises(ConfigError, match="policy"):
        StormproofRetries("retry")  # type: ignore[arg-type]
