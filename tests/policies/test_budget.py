"""Retry budgets: documented accounting, invariants under any sequence of operations."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from stormproof.errors import ConfigError
from stormproof.policies.budget import (
    AdaptiveTokenBucket,
    AwsRetryQuota,
    GrpcRetryThrottle,
    RatioBudget,
    RetryBudget,
)

PROPERTY = settings(max_examples=150, deadline=None)

# Fractions of a power of two are exact in binary floating point, so models written with them
# can be compared with ``==`` instead of a tolerance.
DYADIC_FRACTIONS = [0.0625, 0.125, 0.25, 0.375, 0.5, 0.75, 1.0, 2.0]

Op = tuple[str, bool, bool]
operations = st.lists(
    st.tuples(
        st.sampled_from(["request", "failure", "acquire", "success"]),
        st.booleans(),  # timeout / refund flag
        st.booleans(),  # throttling flag
    ),
    max_size=120,
)


def test_every_budget_implements_the_protocol() -> None:
    for budget in (AwsRetryQuota(), RatioBudget(), GrpcRetryThrottle(), AdaptiveTokenBucket()):
        assert isinstance(budget, RetryBudget)


# --- AwsRetryQuota -----------------------------------------------------------------------------


def test_aws_quota_defaults_are_botocore_standard() -> None:
    quota = AwsRetryQuota()
    assert quota.capacity == 500
    assert quota.retry_cost == 5
    assert quota.timeout_cost == 10
    assert quota.no_retry_increment == 1
    assert quota.throttling_cost == quota.retry_cost
    assert quota.available(0.0) == 500


def test_aws_quota_full_bucket_allows_exactly_100_retries() -> None:
    quota = AwsRetryQuota()
    costs = [quota.acquire_retry(float(i)) for i in range(100)]
    assert costs == [5.0] * 100
    assert quota.available(100.0) == 0.0
    assert quota.acquire_retry(100.0) is None
    assert quota.available(100.0) == 0.0


def test_aws_quota_timeout_retries_cost_10() -> None:
    quota = AwsRetryQuota()
    assert [quota.acquire_retry(0.0, timeout=True) for _ in range(50)] == [10.0] * 50
    assert quota.acquire_retry(0.0, timeout=True) is None
    assert quota.available(0.0) == 0.0


def test_aws_quota_refuses_only_when_cost_exceeds_tokens() -> None:
    quota = AwsRetryQuota(capacity=12.0)
    assert quota.acquire_retry(0.0) == 5.0
    assert quota.acquire_retry(0.0) == 5.0
    assert quota.acquire_retry(0.0) is None  # 2 < 5
    assert quota.available(0.0) == 2.0
    exact = AwsRetryQuota(capacity=10.0)
    assert exact.acquire_retry(0.0, timeout=True) == 10.0  # cost == tokens is allowed
    assert exact.available(0.0) == 0.0


def test_aws_quota_throttling_is_priced_before_timeout() -> None:
    quota = AwsRetryQuota(retry_cost=5.0, timeout_cost=10.0, throttling_cost=2.0)
    assert quota.acquire_retry(0.0, timeout=True, throttling=True) == 2.0
    assert quota.acquire_retry(0.0, throttling=True) == 2.0
    assert quota.acquire_retry(0.0, timeout=True) == 10.0
    assert quota.acquire_retry(0.0) == 5.0
    assert quota.available(0.0) == 500 - 2 - 2 - 10 - 5


def test_aws_quota_refunds_latest_retry_cost_or_adds_increment() -> None:
    quota = AwsRetryQuota()
    quota.acquire_retry(0.0)
    quota.acquire_retry(0.0, timeout=True)
    assert quota.available(0.0) == 485.0
    quota.on_success(0.0, retry_cost=10.0)  # the latest retry's cost comes back
    assert quota.available(0.0) == 495.0
    quota.on_success(0.0)  # a call that never retried adds 1
    assert quota.available(0.0) == 496.0
    quota.on_request(0.0)
    quota.on_failure(0.0)  # neither changes the quota
    assert quota.available(0.0) == 496.0
    for _ in range(10):
        quota.on_success(0.0, retry_cost=5.0)
    assert quota.available(0.0) == 500.0  # never above capacity


def test_aws_quota_v2026_costs() -> None:
    quota = AwsRetryQuota.v2026()
    assert (quota.capacity, quota.retry_cost, quota.timeout_cost, quota.throttling_cost) == (
        500.0,
        14.0,
        14.0,
        5.0,
    )
    assert quota.no_retry_increment == 1.0
    # 35 * 14 = 490; 10 tokens left: too few for 14, enough for two throttling retries.
    assert [quota.acquire_retry(0.0, timeout=True) for _ in range(35)] == [14.0] * 35
    assert quota.acquire_retry(0.0) is None
    assert quota.acquire_retry(0.0, throttling=True) == 5.0
    assert quota.acquire_retry(0.0, throttling=True) == 5.0
    assert quota.acquire_retry(0.0, throttling=True) is None


class AwsQuotaMachine(RuleBasedStateMachine):
    """The quota against a model in whole tokens, for any sequence of operations."""

    def __init__(self) -> None:
        super().__init__()
        self.quota = AwsRetryQuota()
        self.tokens = 500
        self.capacity = 500
        self.costs = {"retry": 5, "timeout": 10, "throttling": 5}
        self.increment = 1
        self.withdrawn: list[float] = []

    @initialize(
        capacity=st.integers(min_value=1, max_value=600),
        retry=st.integers(min_value=0, max_value=30),
        timeout=st.integers(min_value=0, max_value=30),
        throttling=st.integers(min_value=0, max_value=30),
        increment=st.integers(min_value=0, max_value=7),
    )
    def configure(
        self, capacity: int, retry: int, timeout: int, throttling: int, increment: int
    ) -> None:
        self.quota = AwsRetryQuota(capacity, retry, timeout, increment, throttling)
        self.tokens = self.capacity = capacity
        self.costs = {"retry": retry, "timeout": timeout, "throttling": throttling}
        self.increment = increment

    @rule(timeout=st.booleans(), throttling=st.booleans())
    def acquire(self, timeout: bool, throttling: bool) -> None:
        kind = "throttling" if throttling else "timeout" if timeout else "retry"
        cost = self.costs[kind]
        got = self.quota.acquire_retry(0.0, timeout=timeout, throttling=throttling)
        if cost > self.tokens:
            assert got is None
        else:
            assert got == cost
            self.tokens -= cost
            self.withdrawn.append(got)

    @rule(refund=st.booleans())
    def success(self, refund: bool) -> None:
        if refund and self.withdrawn:
            cost = self.withdrawn.pop()
            self.quota.on_success(0.0, retry_cost=cost)
            self.tokens = min(self.capacity, self.tokens + int(cost))
        else:
            self.quota.on_success(0.0)
            self.tokens = min(self.capacity, self.tokens + self.increment)

    @rule()
    def request_and_failure(self) -> None:
        self.quota.on_request(0.0)
        self.quota.on_failure(0.0)

    @invariant()
    def matches_model_within_bounds(self) -> None:
        available = self.quota.available(0.0)
        assert available == self.tokens
        assert 0.0 <= available <= self.quota.capacity


TestAwsQuotaMachine = AwsQuotaMachine.TestCase
TestAwsQuotaMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


# --- RatioBudget -------------------------------------------------------------------------------


def test_ratio_budget_defaults_are_finagle() -> None:
    budget = RatioBudget()
    assert (budget.ratio, budget.min_retries_per_second, budget.ttl) == (0.2, 10.0, 10.0)
    assert budget.reserve == 100.0
    assert budget.available(0.0) == 100.0


def test_ratio_budget_reserve_allows_min_retries_per_second_times_ttl() -> None:
    budget = RatioBudget()
    assert all(budget.acquire_retry(0.0) == 1.0 for _ in range(100))
    assert budget.acquire_retry(0.0) is None


def test_ratio_budget_requests_deposit_ratio_of_a_retry() -> None:
    budget = RatioBudget(ratio=0.2, min_retries_per_second=0.0)
    assert budget.acquire_retry(0.0) is None  # no traffic, no reserve
    for _ in range(50):
        budget.on_request(0.0)
    assert budget.available(0.0) == pytest.approx(10.0)
    allowed = 0
    while budget.acquire_retry(0.0) is not None:
        allowed += 1
    assert allowed == 10
    budget.on_failure(0.0)
    budget.on_success(0.0, retry_cost=1.0)  # neither deposits nor refunds
    assert budget.acquire_retry(0.0) is None


def test_ratio_budget_needs_a_whole_retry() -> None:
    budget = RatioBudget(ratio=0.25, min_retries_per_second=0.0)
    for _ in range(3):
        budget.on_request(0.0)
    assert budget.available(0.0) == 0.75
    assert budget.acquire_retry(0.0) is None
    budget.on_request(0.0)
    assert budget.acquire_retry(0.0) == 1.0


def test_ratio_budget_deposits_expire_after_ttl() -> None:
    budget = RatioBudget(ratio=0.5, min_retries_per_second=0.0, ttl=10.0, slots=10)
    for _ in range(10):
        budget.on_request(0.5)
    assert budget.available(0.5) == 5.0
    assert budget.available(9.9) == 5.0  # still inside the window
    assert budget.available(10.5) == 0.0  # 10 s after the deposit: gone
    assert budget.acquire_retry(10.5) is None


def test_ratio_budget_withdrawals_expire_after_ttl_too() -> None:
    budget = RatioBudget(ratio=0.5, min_retries_per_second=0.25, ttl=8.0, slots=4)
    assert budget.available(0.0) == 2.0
    assert budget.acquire_retry(0.0) == 1.0
    assert budget.acquire_retry(0.0) == 1.0
    assert budget.acquire_retry(1.0) is None
    assert budget.acquire_retry(7.0) is None
    assert budget.available(8.0) == 2.0
    assert budget.acquire_retry(8.0) == 1.0


@given(
    ttl=st.sampled_from([1.0, 2.0, 4.0, 8.0]),
    slots=st.sampled_from([1, 2, 4, 8]),
    deposit_quarters=st.integers(min_value=0, max_value=4000),
    later_quarters=st.integers(min_value=0, max_value=400),
)
@PROPERTY
def test_ratio_budget_deposit_lives_between_ttl_minus_one_slot_and_ttl(
    ttl: float, slots: int, deposit_quarters: int, later_quarters: int
) -> None:
    width = ttl / slots
    deposit_at = deposit_quarters / 4
    query_at = deposit_at + later_quarters / 4
    budget = RatioBudget(ratio=1.0, min_retries_per_second=0.0, ttl=ttl, slots=slots)
    budget.on_request(deposit_at)
    available = budget.available(query_at)
    if query_at >= deposit_at + ttl:
        assert available == 0.0
    elif query_at < deposit_at + ttl - width:
        assert available == 1.0
    else:
        assert available in (0.0, 1.0)


@given(
    ratio=st.sampled_from(DYADIC_FRACTIONS),
    min_rps=st.sampled_from([0.0, 0.125, 0.25, 1.0]),
    ttl=st.sampled_from([1.0, 2.0, 4.0, 8.0]),
    slots=st.sampled_from([1, 2, 4, 8]),
    ops=operations,
    steps=st.lists(st.integers(min_value=0, max_value=12), min_size=120, max_size=120),
)
@PROPERTY
def test_ratio_budget_matches_a_sliding_window_model(
    ratio: float, min_rps: float, ttl: float, slots: int, ops: list[Op], steps: list[int]
) -> None:
    budget = RatioBudget(ratio, min_rps, ttl, slots)
    reserve = min_rps * ttl
    width = ttl / slots
    events: list[tuple[int, str]] = []  # (time bucket, "request" | "retry")
    now = 0.0
    for (op, _, _), step in zip(ops, steps, strict=False):
        now += step / 4
        bucket = math.floor(now / width)
        window = [kind for at, kind in events if at > bucket - slots]
        requests = window.count("request")
        retries = window.count("retry")
        balance = ratio * requests + reserve - retries
        # Expired requests may have paid for retries still in the window: never below zero.
        assert budget.available(now) == max(0.0, balance)
        if op == "request":
            budget.on_request(now)
            events.append((bucket, "request"))
        elif op == "acquire":
            got = budget.acquire_retry(now)
            if balance >= 1.0:
                assert got == 1.0
                events.append((bucket, "retry"))
            else:
                assert got is None
        elif op == "failure":
            budget.on_failure(now)
        else:
            budget.on_success(now, retry_cost=1.0)


def test_ratio_budget_available_never_negative() -> None:
    budget = RatioBudget(ratio=0.5, min_retries_per_second=0.0, ttl=10.0, slots=10)
    for _ in range(4):
        budget.on_request(0.5)
    assert budget.acquire_retry(5.0) == 1.0
    assert budget.acquire_retry(5.0) == 1.0
    # At t=10.5 the four requests have expired but the two retries (made at t=5) have not.
    assert budget.acquire_retry(10.5) is None
    assert budget.available(10.5) >= 0.0


def test_ratio_budget_earlier_time_is_booked_in_current_bucket() -> None:
    budget = RatioBudget(ratio=1.0, min_retries_per_second=0.0, ttl=10.0, slots=10)
    budget.on_request(50.0)
    budget.on_request(45.0)  # earlier than the newest time seen: counted now, not in the past
    assert budget.available(50.0) == 2.0
    assert budget.available(59.9) == 2.0
    assert budget.available(60.0) == 0.0


# --- GrpcRetryThrottle -------------------------------------------------------------------------


def test_grpc_throttle_threshold_is_strictly_more_than_half() -> None:
    throttle = GrpcRetryThrottle(max_tokens=10.0, token_ratio=0.5)
    assert throttle.threshold == 5.0
    for _ in range(4):
        throttle.on_failure(0.0)
    assert throttle.available(0.0) == 6.0
    assert throttle.acquire_retry(0.0) == 0.0  # allowed, withdraws nothing
    assert throttle.available(0.0) == 6.0
    throttle.on_failure(0.0)
    assert throttle.available(0.0) == 5.0
    assert throttle.acquire_retry(0.0) is None  # 5 is not > 5
    throttle.on_success(0.0)
    assert throttle.available(0.0) == 5.5
    assert throttle.acquire_retry(0.0) == 0.0


def test_grpc_throttle_odd_max_tokens() -> None:
    throttle = GrpcRetryThrottle(max_tokens=7.0, token_ratio=1.0)
    for _ in range(3):
        throttle.on_failure(0.0)
    assert throttle.acquire_retry(0.0) == 0.0  # 4 > 3.5
    throttle.on_failure(0.0)
    assert throttle.acquire_retry(0.0) is None  # 3 <= 3.5


def test_grpc_throttle_tokens_stay_within_zero_and_max() -> None:
    throttle = GrpcRetryThrottle(max_tokens=3.0, token_ratio=0.5)
    for _ in range(10):
        throttle.on_failure(0.0)
    assert throttle.available(0.0) == 0.0
    for _ in range(100):
        throttle.on_success(0.0)
    assert throttle.available(0.0) == 3.0
    throttle.on_request(0.0)
    assert throttle.available(0.0) == 3.0


def test_grpc_throttle_accepts_the_grfc_maximum() -> None:
    assert GrpcRetryThrottle(max_tokens=1000.0).available(0.0) == 1000.0


def test_grpc_throttle_threshold_exact_after_fractional_ratios() -> None:
    throttle = GrpcRetryThrottle(max_tokens=10.0, token_ratio=0.2)
    # Each round: -3 tokens, then +10 * 0.2 = +2; never clamped. 10 - 5 * 1 = 5 tokens.
    for _ in range(5):
        for _ in range(3):
            throttle.on_failure(0.0)
        for _ in range(10):
            throttle.on_success(0.0)
    assert throttle.acquire_retry(0.0) is None


@given(
    max_tokens=st.integers(min_value=1, max_value=1000),
    ratio=st.sampled_from(DYADIC_FRACTIONS),
    ops=operations,
)
@PROPERTY
def test_grpc_throttle_matches_model(max_tokens: int, ratio: float, ops: list[Op]) -> None:
    throttle = GrpcRetryThrottle(float(max_tokens), ratio)
    tokens = float(max_tokens)
    for op, _, _ in ops:
        if op == "failure":
            throttle.on_failure(0.0)
            tokens = max(0.0, round(tokens - 1.0, 9))
        elif op == "success":
            throttle.on_success(0.0)
            tokens = min(max_tokens, round(tokens + ratio, 9))
        elif op == "acquire":
            got = throttle.acquire_retry(0.0)
            assert got == (0.0 if tokens > max_tokens / 2 else None)
        else:
            throttle.on_request(0.0)
        assert throttle.available(0.0) == tokens


@given(
    max_tokens=st.floats(min_value=0.001, max_value=1000.0),
    ratio=st.floats(min_value=0.001, max_value=50.0),
    ops=operations,
)
@PROPERTY
def test_grpc_throttle_never_leaves_bounds(max_tokens: float, ratio: float, ops: list[Op]) -> None:
    throttle = GrpcRetryThrottle(max_tokens, ratio)
    for op, _, _ in ops:
        if op == "failure":
            throttle.on_failure(0.0)
        elif op == "success":
            throttle.on_success(0.0)
        elif op == "acquire":
            got = throttle.acquire_retry(0.0)
            assert (got is not None) == (throttle.available(0.0) > max_tokens / 2)
        tokens = throttle.available(0.0)
        assert 0.0 <= tokens <= max_tokens


# --- AdaptiveTokenBucket -----------------------------------------------------------------------


def test_adaptive_bucket_starts_full_and_retries_cost_one() -> None:
    bucket = AdaptiveTokenBucket(capacity=3.0, deposit=0.5)
    assert [bucket.acquire_retry(0.0) for _ in range(4)] == [1.0, 1.0, 1.0, None]
    assert bucket.available(0.0) == 0.0
    bucket.on_request(0.0)
    bucket.on_failure(0.0)
    assert bucket.available(0.0) == 0.0


def test_adaptive_bucket_successes_deposit_a_fraction() -> None:
    bucket = AdaptiveTokenBucket(capacity=2.0, deposit=0.25)
    assert bucket.acquire_retry(0.0) == 1.0
    assert bucket.acquire_retry(0.0) == 1.0
    for _ in range(3):
        bucket.on_success(0.0, retry_cost=1.0)  # retry_cost is not refunded
    assert bucket.available(0.0) == 0.75
    assert bucket.acquire_retry(0.0) is None  # 0.75 < 1
    bucket.on_success(0.0)
    assert bucket.acquire_retry(0.0) == 1.0  # four successes earned one retry
    for _ in range(100):
        bucket.on_success(0.0)
    assert bucket.available(0.0) == 2.0


def test_adaptive_bucket_ten_tenths_earn_one_retry() -> None:
    bucket = AdaptiveTokenBucket(capacity=10.0, deposit=0.1)
    for _ in range(10):
        assert bucket.acquire_retry(0.0) == 1.0
    for _ in range(10):
        bucket.on_success(0.0)
    assert bucket.acquire_retry(0.0) == 1.0


@given(
    capacity=st.integers(min_value=1, max_value=50),
    deposit=st.sampled_from(DYADIC_FRACTIONS),
    ops=operations,
)
@PROPERTY
def test_adaptive_bucket_matches_model(capacity: int, deposit: float, ops: list[Op]) -> None:
    bucket = AdaptiveTokenBucket(float(capacity), deposit)
    tokens = float(capacity)
    for op, _, _ in ops:
        if op == "acquire":
            got = bucket.acquire_retry(0.0)
            if tokens >= 1.0:
                assert got == 1.0
                tokens = round(tokens - 1.0, 9)
            else:
                assert got is None
        elif op == "success":
            bucket.on_success(0.0, retry_cost=1.0)
            tokens = min(capacity, round(tokens + deposit, 9))
        elif op == "failure":
            bucket.on_failure(0.0)
        else:
            bucket.on_request(0.0)
        assert bucket.available(0.0) == tokens
        assert 0.0 <= tokens <= capacity


@given(
    capacity=st.floats(min_value=1.0, max_value=1e6),
    deposit=st.floats(min_value=1e-6, max_value=1e3),
    ops=operations,
)
@PROPERTY
def test_adaptive_bucket_never_leaves_bounds(
    capacity: float, deposit: float, ops: list[Op]
) -> None:
    bucket = AdaptiveTokenBucket(capacity, deposit)
    for op, _, _ in ops:
        if op == "acquire":
            before = bucket.available(0.0)
            got = bucket.acquire_retry(0.0)
            assert (got == 1.0) if before >= 1.0 else (got is None)
        elif op == "success":
            bucket.on_success(0.0)
        assert 0.0 <= bucket.available(0.0) <= capacity


# --- validation --------------------------------------------------------------------------------

NAN = float("nan")
INF = float("inf")


INVALID: list[Any] = [
    (AwsRetryQuota, {"capacity": 0.0}, "capacity", "> 0"),
    (AwsRetryQuota, {"capacity": INF}, "capacity", "finite"),
    pytest.param(
        AwsRetryQuota,
        {"retry_cost": -1.0},
        "retry_cost",
        ">= 0",
        id="AwsRetryQuota-retry_cost-negative",
    ),
    (AwsRetryQuota, {"timeout_cost": NAN}, "timeout_cost", "finite"),
    (AwsRetryQuota, {"no_retry_increment": -0.5}, "no_retry_increment", ">= 0"),
    (AwsRetryQuota, {"throttling_cost": -5.0}, "throttling_cost", ">= 0"),
    pytest.param(
        AwsRetryQuota,
        {"retry_cost": True},
        "retry_cost",
        "number",
        id="AwsRetryQuota-retry_cost-bool",
    ),
    (RatioBudget, {"ratio": -0.1}, "ratio", ">= 0"),
    (RatioBudget, {"ratio": 0.0, "min_retries_per_second": 0.0}, "ratio", "both be 0"),
    (RatioBudget, {"min_retries_per_second": -1.0}, "min_retries_per_second", ">= 0"),
    (RatioBudget, {"ttl": 0.0}, "ttl", "> 0"),
    (RatioBudget, {"ttl": INF}, "ttl", "finite"),
    (RatioBudget, {"slots": 0}, "slots", ">= 1"),
    (RatioBudget, {"slots": 2.5}, "slots", "integer"),
    (RatioBudget, {"slots": True}, "slots", "integer"),
    (GrpcRetryThrottle, {"max_tokens": 0.0}, "max_tokens", "> 0"),
    (GrpcRetryThrottle, {"max_tokens": 1000.5}, "max_tokens", "<= 1000"),
    (GrpcRetryThrottle, {"max_tokens": NAN}, "max_tokens", "finite"),
    (GrpcRetryThrottle, {"token_ratio": 0.0}, "token_ratio", "> 0"),
    (GrpcRetryThrottle, {"token_ratio": False}, "token_ratio", "number"),
    (AdaptiveTokenBucket, {"capacity": 0.5}, "capacity", ">= 1"),
    (AdaptiveTokenBucket, {"deposit": 0.0}, "deposit", "> 0"),
    (AdaptiveTokenBucket, {"deposit": INF}, "deposit", "finite"),
]


@pytest.mark.parametrize(
    ("cls", "kwargs", "field", "rule"),
    INVALID,
    ids=[
        case.id if hasattr(case, "marks") else f"{case[0].__name__}-{case[1]}" for case in INVALID
    ],
)
def test_invalid_config_is_rejected_naming_field_and_rule(
    cls: type[Any], kwargs: dict[str, Any], field: str, rule: str
) -> None:
    with pytest.raises(ConfigError) as info:
        cls(**kwargs)
    assert info.value.field == field
    message = str(info.value)
    assert message.startswith(f"{field}:")
    assert rule in message


def test_ratio_budget_zero_ratio_with_reserve_is_valid() -> None:
    budget = RatioBudget(ratio=0.0, min_retries_per_second=0.1, ttl=10.0)
    budget.on_request(0.0)
    assert budget.acquire_retry(0.0) == 1.0
    assert budget.acquire_retry(0.0) is None
