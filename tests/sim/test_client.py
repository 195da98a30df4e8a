"""OpenLoopClient on tiny hand-built models with zero network latency and fixed arrivals."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable

import pytest

from stormproof.policies.backoff import Constant, NoBackoff
from stormproof.policies.budget import AwsRetryQuota
from stormproof.policies.retry import RetryPolicy
from stormproof.sim.kernel import Simulation
from stormproof.sim.metrics import BucketCounters
from stormproof.sim.parts.arrivals import PiecewisePoisson
from stormproof.sim.parts.client import OpenLoopClient
from stormproof.sim.parts.server import Server


class Periodic:
    """Constant-rate, deterministic arrivals at first, first + period, ... (one per call)."""

    def __init__(self, period: float, first: float = 0.0) -> None:
        self.period = period
        self.next = first

    def next_after(self, now: float, rng: random.Random) -> float:
        at = self.next
        self.next += self.period
        assert at > now or at == now == 0.0
        return at


class Model:
    """Simulation + Server + OpenLoopClient; records when each attempt reached the server."""

    def __init__(
        self,
        works: float | Iterable[float],
        policy: RetryPolicy,
        *,
        timeout: float = 3.0,
        horizon: float = 0.5,
        period: float = 1.0,
        workers: int | None = None,
        queue_limit: int | None = None,
        arrivals: object = None,
    ) -> None:
        self.sim = Simulation(seed=1)
        self.metrics = BucketCounters(1.0)
        self.sends: list[float] = []
        works_iter = iter(works) if not isinstance(works, int | float) else None

        def service(concurrency: int, rng: random.Random) -> float:
            self.sends.append(self.sim.now())  # zero latency: server start == send time
            return float(works) if works_iter is None else next(works_iter)  # type: ignore[arg-type]

        self.server = Server(self.sim, service, workers=workers, queue_limit=queue_limit)
        self.client = OpenLoopClient(
            self.sim,
            arrivals if arrivals is not None else Periodic(period),  # type: ignore[arg-type]
            self.server,
            policy,
            timeout=timeout,
            network_latency=lambda rng: 0.0,
            metrics=self.metrics,
            horizon=horizon,
        )
        self.client.start()

    def run(self) -> None:
        self.sim.run()

    def total(self, name: str) -> float:
        return self.metrics.total(name)


def test_reply_before_the_timeout_is_one_success() -> None:
    model = Model(1.0, RetryPolicy(max_attempts=3, backoff=NoBackoff()))
    model.run()
    assert model.sends == [0.0]
    assert model.total("requests") == 1
    assert model.total("attempts") == 1
    assert model.total("successes") == 1
    assert model.total("latency_sum") == pytest.approx(1.0)
    assert model.total("useful_work") == pytest.approx(1.0)
    # the timer was cancelled: no timeout at t = 3 although the simulation ran past it
    for name in ("timeouts", "resends", "failures", "wasted_work", "rejections"):
        assert model.total(name) == 0, name


def test_slow_server_causes_timeouts_and_immediate_resends_with_no_backoff() -> None:
    model = Model(10.0, RetryPolicy(max_attempts=3, backoff=NoBackoff()))
    model.run()
    assert model.sends == [0.0, 3.0, 6.0]
    assert model.total("attempts") == 3
    assert model.total("resends") == 2
    assert model.total("timeouts") == 3
    assert model.total("failures") == 1
    assert model.metrics.series("failures") == [0.0] * 9 + [1.0]  # gave up at t = 9
    assert model.total("successes") == 0
    # all three attempts were served to completion, every reply was too late: wasted
    assert model.total("wasted_work") == pytest.approx(30.0)
    assert model.total("useful_work") == 0
    assert model.server.completed == 3


def test_constant_backoff_waits_exactly_before_each_resend() -> None:
    model = Model(10.0, RetryPolicy(max_attempts=3, backoff=Constant(2.0)))
    model.run()
    # send 0, timeout 3, wait 2 -> 5; timeout 8, wait 2 -> 10; timeout 13 -> give up
    assert model.sends == [0.0, 5.0, 10.0]
    assert model.metrics.series("resends") == [0.0] * 5 + [1.0] + [0.0] * 4 + [1.0]
    assert model.metrics.series("failures") == [0.0] * 13 + [1.0]
    assert model.total("timeouts") == 3


@pytest.mark.parametrize("attempts", [1, 2, 5])
def test_failure_after_max_attempts(attempts: int) -> None:
    model = Model(100.0, RetryPolicy(max_attempts=attempts, backoff=NoBackoff()))
    model.run()
    assert model.total("attempts") == attempts
    assert model.total("resends") == attempts - 1
    assert model.total("timeouts") == attempts
    assert model.total("failures") == 1
    assert model.total("successes") == 0


def test_reply_to_a_superseded_attempt_is_wasted_work_not_a_success() -> None:
    # attempt 1 takes 5 s (times out at 3); attempt 2, sent at 3, takes 1 s and replies at 4;
    # attempt 1's reply at 5 arrives after the request succeeded
    model = Model([5.0, 1.0], RetryPolicy(max_attempts=3, backoff=NoBackoff()))
    model.run()
    assert model.sends == [0.0, 3.0]
    assert model.total("successes") == 1
    assert model.metrics.series("successes") == [0, 0, 0, 0, 1.0]
    assert model.total("latency_sum") == pytest.approx(4.0)
    assert model.total("useful_work") == pytest.approx(1.0)
    assert model.total("wasted_work") == pytest.approx(5.0)
    assert model.total("timeouts") == 1
    assert model.total("failures") == 0


def test_late_reply_of_the_first_attempt_during_backoff_is_wasted() -> None:
    # attempt 1 takes 4 s, times out at 3; the resend waits 2 s (until 5); the reply at 4
    # belongs to no live attempt, and the resend still goes out and succeeds
    model = Model([4.0, 0.5], RetryPolicy(max_attempts=3, backoff=Constant(2.0)))
    model.run()
    assert model.sends == [0.0, 5.0]
    assert model.total("wasted_work") == pytest.approx(4.0)
    assert model.total("successes") == 1
    assert model.total("latency_sum") == pytest.approx(5.5)


def test_shared_retry_quota_limits_resends_across_requests() -> None:
    # three requests at t = 0, 1, 2 to a server that never answers in time; the quota holds
    # two timeout retries (10 tokens each), shared by every request of the client
    quota = AwsRetryQuota(capacity=20, retry_cost=5, timeout_cost=10)
    policy = RetryPolicy(max_attempts=3, backoff=NoBackoff(), budget=quota)
    model = Model(100.0, policy, horizon=2.5)
    model.run()
    assert model.total("requests") == 3
    # request 1 resends at 3, request 2 at 4, request 3 is refused at 5
    assert model.sends == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert model.total("resends") == 2
    assert model.total("failures") == 3
    assert model.total("timeouts") == 5
    assert quota.available(model.sim.now()) == 0

    unlimited = Model(100.0, RetryPolicy(max_attempts=3, backoff=NoBackoff()), horizon=2.5)
    unlimited.run()
    assert unlimited.total("resends") == 6
    assert unlimited.total("failures") == 3


def test_success_refunds_the_quota_so_later_requests_can_retry() -> None:
    # request 1 (t=0): 5 s, times out, resend 1 s -> success refunds 10 tokens;
    # request 2 (t=10): same pattern, retry allowed because of the refund
    quota = AwsRetryQuota(capacity=10, retry_cost=5, timeout_cost=10)
    policy = RetryPolicy(max_attempts=2, backoff=NoBackoff(), budget=quota)
    model = Model([5.0, 1.0, 5.0, 1.0], policy, horizon=15.0, period=10.0)
    model.run()
    assert model.total("requests") == 2
    assert model.total("successes") == 2
    assert model.total("resends") == 2
    assert model.total("failures") == 0


def test_rejected_attempts_count_as_rejections_then_time_out() -> None:
    # one worker, no queue, 5 s of work; requests at 0 and 1. Busy until 5: request 2's first
    # send (1), request 1's resend (3) and request 2's resend (4) are rejected; request 1's
    # third attempt (6) is served; request 2's (7) is rejected as the worker is busy again
    model = Model(
        5.0,
        RetryPolicy(max_attempts=3, backoff=NoBackoff()),
        horizon=1.5,
        workers=1,
        queue_limit=0,
    )
    model.run()
    assert model.metrics.series("rejections") == [0, 1.0, 0, 1.0, 1.0, 0, 0, 1.0]
    assert model.server.rejected == 4
    assert model.sends == [0.0, 6.0]
    # a rejected attempt stays live until its timeout: every attempt times out, both give up
    assert model.total("timeouts") == 6
    assert model.total("failures") == 2
    assert model.total("successes") == 0


def test_no_arrivals_at_or_after_the_horizon() -> None:
    model = Model(0.1, RetryPolicy(max_attempts=1, backoff=NoBackoff()), horizon=5.0)
    model.run()
    assert model.total("requests") == 5  # t = 0, 1, 2, 3, 4
    assert model.total("successes") == 5
    assert model.sends == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_poisson_arrivals_to_a_fast_server_all_succeed_first_time() -> None:
    model = Model(
        0.2,
        RetryPolicy(max_attempts=3, backoff=NoBackoff()),
        horizon=100.0,
        arrivals=PiecewisePoisson([(0.0, 20.0)]),
    )
    model.run()
    requests = model.total("requests")
    assert requests == pytest.approx(2000, rel=0.1)
    assert model.total("successes") == requests == model.total("attempts")
    assert model.total("latency_sum") == pytest.approx(0.2 * requests)
    assert model.total("timeouts") == 0
    assert math.isclose(model.server.busy_time, 0.2 * requests)
