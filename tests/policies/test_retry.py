"""The retry policy state machine: counting, give-up reasons, Retry-After, budgets, results."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stormproof.errors import ConfigError, RetryError
from stormproof.policies.backoff import Constant, Decorrelated, Exponential, Jitter, NoBackoff
from stormproof.policies.budget import (
    AdaptiveTokenBucket,
    AwsRetryQuota,
    GrpcRetryThrottle,
    RatioBudget,
)
from stormproof.policies.retry import (
    GiveUp,
    GiveUpReason,
    RetryAfter,
    RetryCall,
    RetryPolicy,
    default_retry_after,
    default_retryable,
)


class Boom(Exception):
    pass


class Throttled(Exception):
    pass


class WithRetryAfter(Exception):
    def __init__(self, retry_after: Any) -> None:
        super().__init__("slow down")
        self.retry_after = retry_after


def give_up(decision: RetryAfter | GiveUp | None) -> GiveUp:
    assert isinstance(decision, GiveUp), decision
    return decision


def retry(decision: RetryAfter | GiveUp | None) -> RetryAfter:
    assert isinstance(decision, RetryAfter), decision
    return decision


# --- counting ----------------------------------------------------------------------------------


def test_defaults() -> None:
    policy = RetryPolicy()
    assert policy.max_attempts == 3
    assert policy.max_retries == 2
    assert policy.backoff == Exponential(base=0.1, factor=2.0, cap=20.0, jitter=Jitter.FULL)
    assert policy.max_server_delay == 60.0
    assert policy.budget is None


def test_max_attempts_counts_total_attempts() -> None:
    call = RetryPolicy(max_attempts=3, backoff=Constant(0.5)).start(0.0)
    assert isinstance(call, RetryCall)
    assert call.attempt == 1
    assert call.last_delay is None
    assert call.on_failure(0.0, Boom()) == RetryAfter(0.5, 2)
    assert (call.attempt, call.last_delay) == (2, 0.5)
    assert call.on_failure(1.0, Boom()) == RetryAfter(0.5, 3)
    decision = give_up(call.on_failure(2.0, Boom()))
    assert decision.reason is GiveUpReason.ATTEMPTS_EXHAUSTED
    assert decision.attempts == 3
    assert call.attempt == 3


def test_single_attempt_never_retries() -> None:
    decision = give_up(RetryPolicy(max_attempts=1).start(0.0).on_failure(0.0, Boom()))
    assert decision.reason is GiveUpReason.ATTEMPTS_EXHAUSTED
    assert decision.attempts == 1


def test_unlimited_attempts() -> None:
    policy = RetryPolicy(max_attempts=None, backoff=NoBackoff())
    assert policy.max_retries is None
    call = policy.start(0.0)
    for n in range(1, 1001):
        assert call.on_failure(float(n), Boom()) == RetryAfter(0.0, n + 1)


def test_with_max_retries_converts_to_attempts() -> None:
    assert RetryPolicy.with_max_retries(2).max_attempts == 3
    assert RetryPolicy.with_max_retries(2).max_retries == 2
    assert RetryPolicy.with_max_retries(0).max_attempts == 1
    assert RetryPolicy.with_max_retries(None).max_attempts is None
    policy = RetryPolicy.with_max_retries(4, backoff=NoBackoff(), max_server_delay=1.0)
    assert (policy.max_attempts, policy.max_server_delay) == (5, 1.0)
    assert policy.backoff == NoBackoff()
    assert RetryPolicy(max_attempts=7).max_retries == 6


@pytest.mark.parametrize(
    ("args", "kwargs", "rule"),
    [
        ((-1,), {}, ">= 0"),
        ((True,), {}, "integer"),
        ((1.5,), {}, "integer"),
        ((2,), {"max_attempts": 3}, "not both"),
    ],
)
def test_with_max_retries_validation(
    args: tuple[Any, ...], kwargs: dict[str, Any], rule: str
) -> None:
    with pytest.raises(ConfigError) as info:
        RetryPolicy.with_max_retries(*args, **kwargs)
    assert info.value.field == "max_retries"
    assert "max_retries" in str(info.value)
    assert rule in str(info.value)


# --- give-up reasons and their order -----------------------------------------------------------


def test_not_retryable_comes_first_and_touches_no_budget() -> None:
    throttle = GrpcRetryThrottle(max_tokens=10.0, token_ratio=1.0)
    policy = RetryPolicy(
        max_attempts=1,
        retry_on=KeyError,
        backoff=Constant(100.0),
        total_timeout=1.0,
        budget=throttle,
    )
    decision = give_up(policy.start(0.0).on_failure(0.5, ValueError("no")))
    assert decision.reason is GiveUpReason.NOT_RETRYABLE
    assert decision.attempts == 1
    assert "ValueError" in decision.detail
    assert throttle.available(0.0) == 10.0  # not told of a non-retryable failure


def test_attempts_exhausted_comes_before_deadline() -> None:
    # delays 0.1, then 10 (which would pass the 5 s deadline)
    backoff = Exponential(base=0.1, factor=100.0, cap=1000.0, jitter=Jitter.NONE)
    two = RetryPolicy(max_attempts=2, backoff=backoff, total_timeout=5.0).start(0.0)
    assert two.on_failure(0.0, Boom()) == RetryAfter(0.1, 2)
    assert give_up(two.on_failure(0.1, Boom())).reason is GiveUpReason.ATTEMPTS_EXHAUSTED
    three = RetryPolicy(max_attempts=3, backoff=backoff, total_timeout=5.0).start(0.0)
    assert three.on_failure(0.0, Boom()) == RetryAfter(0.1, 2)
    assert give_up(three.on_failure(0.1, Boom())).reason is GiveUpReason.DEADLINE


def test_deadline_comes_before_budget_and_charges_nothing() -> None:
    quota = AwsRetryQuota(capacity=5.0)
    policy = RetryPolicy(max_attempts=5, backoff=Constant(2.0), total_timeout=3.0, budget=quota)
    call = policy.start(0.0)
    assert call.on_failure(0.0, Boom()) == RetryAfter(2.0, 2)
    assert quota.available(0.0) == 0.0
    # The quota is empty, but the 2 s wait would also pass the deadline: deadline is reported.
    assert give_up(call.on_failure(2.0, Boom())).reason is GiveUpReason.DEADLINE


@pytest.mark.parametrize(
    ("budget", "start_deposit"),
    [
        (AwsRetryQuota(), 0.0),
        (AdaptiveTokenBucket(capacity=2.0), 0.0),
        (RatioBudget(ratio=0.5, min_retries_per_second=0.25), 0.5),  # the request deposits
    ],
    ids=repr,
)
def test_budget_not_charged_when_giving_up_for_deadline(
    budget: AwsRetryQuota | AdaptiveTokenBucket | RatioBudget, start_deposit: float
) -> None:
    policy = RetryPolicy(backoff=Constant(2.0), total_timeout=1.0, budget=budget)
    before = budget.available(0.0)
    call = policy.start(0.0)
    assert give_up(call.on_failure(0.0, Boom())).reason is GiveUpReason.DEADLINE
    assert budget.available(0.0) == before + start_deposit


def test_budget_not_charged_when_attempts_exhausted() -> None:
    quota = AwsRetryQuota()
    call = RetryPolicy(max_attempts=1, budget=quota).start(0.0)
    assert give_up(call.on_failure(0.0, Boom())).reason is GiveUpReason.ATTEMPTS_EXHAUSTED
    assert quota.available(0.0) == 500.0


def test_budget_exhausted_is_last_and_does_not_advance_the_attempt() -> None:
    quota = AwsRetryQuota(capacity=5.0)
    call = RetryPolicy(max_attempts=5, backoff=Constant(1.0), budget=quota).start(0.0)
    assert call.on_failure(0.0, Boom()) == RetryAfter(1.0, 2)
    decision = give_up(call.on_failure(1.0, Boom()))
    assert decision.reason is GiveUpReason.BUDGET_EXHAUSTED
    assert decision.attempts == 2
    assert call.attempt == 2
    assert "AwsRetryQuota" in decision.detail


def test_give_up_reason_values_and_error() -> None:
    assert [r.value for r in GiveUpReason] == [
        "not_retryable",
        "attempts_exhausted",
        "deadline",
        "budget_exhausted",
    ]
    cause = Boom("last")
    error = GiveUp(GiveUpReason.DEADLINE, 4, "no time").error(cause)
    assert isinstance(error, RetryError)
    assert (error.attempts, error.reason, error.last_error, error.detail) == (
        4,
        "deadline",
        cause,
        "no time",
    )
    assert "gave up after 4 attempt(s): deadline" in str(error)
    from_result = GiveUp(GiveUpReason.ATTEMPTS_EXHAUSTED, 3).error(last_result=503)
    assert from_result.last_error is None
    assert from_result.last_result == 503
    assert "result 503" in str(from_result)


# --- classification ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (Boom(), True),
        (TimeoutError(), True),
        (RetryError(attempts=3, reason="deadline"), False),
        (KeyboardInterrupt(), False),
        (SystemExit(1), False),
        (GeneratorExit(), False),
        (asyncio.CancelledError(), False),
    ],
    ids=lambda value: type(value).__name__,
)
def test_default_retryable(error: BaseException, expected: bool) -> None:
    assert default_retryable(error) is expected
    policy = RetryPolicy()
    assert policy.is_retryable(error) is expected
    decision = policy.start(0.0).on_failure(0.0, error)
    assert isinstance(decision, RetryAfter) is expected
    if not expected:
        assert give_up(decision).reason is GiveUpReason.NOT_RETRYABLE


def test_retry_on_type_tuple_and_predicate() -> None:
    by_type = RetryPolicy(retry_on=LookupError)
    assert by_type.is_retryable(KeyError())
    assert not by_type.is_retryable(ValueError())
    by_tuple = RetryPolicy(retry_on=(KeyError, ValueError))
    assert by_tuple.is_retryable(ValueError())
    assert not by_tuple.is_retryable(TypeError())
    by_predicate = RetryPolicy(retry_on=lambda e: "again" in str(e))
    assert by_predicate.is_retryable(Boom("try again"))
    assert not by_predicate.is_retryable(Boom("fatal"))


def test_retry_on_rejects_non_exception_class() -> None:
    with pytest.raises(ConfigError) as info:
        RetryPolicy(retry_on=int)  # type: ignore[arg-type]
    assert info.value.field == "retry_on"


# --- timeouts ----------------------------------------------------------------------------------


def test_timed_out_is_retryable_regardless_of_retry_on_and_priced_as_timeout() -> None:
    quota = AwsRetryQuota()
    policy = RetryPolicy(retry_on=KeyError, backoff=Constant(1.0), budget=quota)
    call = policy.start(0.0)
    assert give_up(call.on_failure(0.0, ValueError())).reason is GiveUpReason.NOT_RETRYABLE
    call = policy.start(0.0)
    assert call.on_failure(0.0, ValueError(), timed_out=True) == RetryAfter(1.0, 2)
    assert quota.available(0.0) == 490.0
    assert call.on_failure(1.0, KeyError()) == RetryAfter(1.0, 3)
    assert quota.available(0.0) == 485.0


def test_timeout_error_is_priced_as_timeout_by_default() -> None:
    quota = AwsRetryQuota()
    call = RetryPolicy(backoff=NoBackoff(), budget=quota).start(0.0)
    call.on_failure(0.0, TimeoutError())
    assert quota.available(0.0) == 490.0


def test_custom_is_timeout() -> None:
    quota = AwsRetryQuota()
    policy = RetryPolicy(
        max_attempts=None,
        backoff=NoBackoff(),
        budget=quota,
        is_timeout=lambda e: isinstance(e, Boom),
    )
    call = policy.start(0.0)
    call.on_failure(0.0, Boom())
    assert quota.available(0.0) == 490.0
    call.on_failure(0.0, TimeoutError())  # no longer a timeout under this classifier
    assert quota.available(0.0) == 485.0


def test_throttling_uses_throttling_backoff_and_cost() -> None:
    quota = AwsRetryQuota(throttling_cost=1.0)
    policy = RetryPolicy(
        max_attempts=None,
        backoff=Constant(1.0),
        throttling_backoff=Constant(9.0),
        is_throttling=lambda e: isinstance(e, Throttled),
        budget=quota,
    )
    call = policy.start(0.0)
    assert call.on_failure(0.0, Throttled()) == RetryAfter(9.0, 2)
    assert quota.available(0.0) == 499.0
    assert call.on_failure(9.0, Boom()) == RetryAfter(1.0, 3)
    assert quota.available(0.0) == 494.0
    no_throttling_backoff = RetryPolicy(
        backoff=Constant(1.0), is_throttling=lambda e: isinstance(e, Throttled)
    )
    assert no_throttling_backoff.start(0.0).on_failure(0.0, Throttled()) == RetryAfter(1.0, 2)


# --- Retry-After -------------------------------------------------------------------------------


def test_error_retry_after_attribute_overrides_backoff() -> None:
    call = RetryPolicy(max_attempts=5, backoff=Constant(1.0)).start(0.0)
    assert call.on_failure(0.0, WithRetryAfter(7)) == RetryAfter(7.0, 2, server_delay=True)
    assert call.last_delay == 7.0
    assert call.on_failure(7.0, Boom()) == RetryAfter(1.0, 3, server_delay=False)


def test_explicit_retry_after_overrides_attribute_and_backoff() -> None:
    call = RetryPolicy(max_attempts=5, backoff=Constant(1.0)).start(0.0)
    assert call.on_failure(0.0, WithRetryAfter(7), retry_after=3.0) == RetryAfter(3.0, 2, True)
    assert call.on_failure(3.0, Boom(), retry_after=0.0) == RetryAfter(0.0, 3, True)


def test_server_delay_is_clamped_by_max_server_delay() -> None:
    call = RetryPolicy(max_attempts=5, max_server_delay=5.0).start(0.0)
    assert call.on_failure(0.0, WithRetryAfter(3600)) == RetryAfter(5.0, 2, True)
    assert call.on_failure(5.0, Boom(), retry_after=100.0) == RetryAfter(5.0, 3, True)


def test_server_delay_still_respects_the_deadline() -> None:
    call = RetryPolicy(total_timeout=10.0).start(0.0)
    decision = give_up(call.on_failure(1.0, WithRetryAfter(9.0)))
    assert decision.reason is GiveUpReason.DEADLINE


def test_retry_after_reader_can_be_disabled_or_replaced() -> None:
    ignore = RetryPolicy(backoff=Constant(1.0), retry_after=None).start(0.0)
    assert ignore.on_failure(0.0, WithRetryAfter(7)) == RetryAfter(1.0, 2)
    custom = RetryPolicy(backoff=Constant(1.0), retry_after=lambda e: 4.0).start(0.0)
    assert custom.on_failure(0.0, Boom()) == RetryAfter(4.0, 2, True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(7, 7.0), (0.25, 0.25), (0, 0.0), (True, None), (-1, None), ("5", None), (None, None)],
)
def test_default_retry_after_reader(value: Any, expected: float | None) -> None:
    assert default_retry_after(WithRetryAfter(value)) == expected
    assert default_retry_after(Boom()) is None


def test_non_finite_retry_after_attributes() -> None:
    assert default_retry_after(WithRetryAfter(float("nan"))) is None
    call = RetryPolicy(max_server_delay=5.0).start(0.0)
    assert call.on_failure(0.0, WithRetryAfter(float("inf"))) == RetryAfter(5.0, 2, True)


@pytest.mark.parametrize("server_delay", [-1.0, float("nan")])
def test_explicit_retry_after_never_yields_invalid_delay(server_delay: float) -> None:
    call = RetryPolicy(max_server_delay=5.0).start(0.0)
    decision = retry(call.on_failure(0.0, Boom(), retry_after=server_delay))
    assert 0.0 <= decision.delay <= 5.0


# --- results -----------------------------------------------------------------------------------


def test_on_result_retries_classified_results_and_accepts_others() -> None:
    quota = AwsRetryQuota()
    policy = RetryPolicy(
        max_attempts=3, backoff=Constant(1.0), retry_on_result=lambda r: r == 503, budget=quota
    )
    call = policy.start(0.0)
    assert call.on_result(0.0, 503) == RetryAfter(1.0, 2)
    assert call.on_failure(1.0, Boom()) == RetryAfter(1.0, 3)
    assert quota.available(0.0) == 490.0
    assert call.on_result(2.0, 200) is None
    assert quota.available(0.0) == 495.0  # refunds the latest retry's cost only
    fresh = policy.start(3.0)
    assert fresh.on_result(3.0, 200) is None
    assert quota.available(0.0) == 496.0  # a call without retries adds 1
    exhausted = policy.start(4.0)
    exhausted.on_result(4.0, 503)
    exhausted.on_result(5.0, 503)
    assert give_up(exhausted.on_result(6.0, 503)).reason is GiveUpReason.ATTEMPTS_EXHAUSTED


def test_on_result_without_predicate_accepts_everything() -> None:
    call = RetryPolicy().start(0.0)
    assert call.on_result(0.0, 503) is None
    assert call.on_result(0.0, None) is None


def test_on_success_reports_to_budget() -> None:
    bucket = AdaptiveTokenBucket(capacity=4.0, deposit=0.5)
    policy = RetryPolicy(max_attempts=None, backoff=NoBackoff(), budget=bucket)
    call = policy.start(0.0)
    for _ in range(4):
        retry(call.on_failure(0.0, Boom()))
    assert give_up(call.on_failure(0.0, Boom())).reason is GiveUpReason.BUDGET_EXHAUSTED
    policy.start(1.0).on_success(1.0)
    policy.start(1.0).on_success(1.0)
    assert bucket.available(1.0) == 1.0
    assert retry(policy.start(2.0).on_failure(2.0, Boom())).attempt == 2


def test_start_deposits_and_failures_are_reported() -> None:
    ratio = RatioBudget(ratio=1.0, min_retries_per_second=0.0)
    call = RetryPolicy(backoff=NoBackoff(), budget=ratio).start(0.0)
    assert ratio.available(0.0) == 1.0  # the request deposited
    retry(call.on_failure(0.0, Boom()))
    assert give_up(call.on_failure(0.0, Boom())).reason is GiveUpReason.BUDGET_EXHAUSTED

    throttle = GrpcRetryThrottle(max_tokens=4.0, token_ratio=1.0)
    call = RetryPolicy(max_attempts=None, backoff=NoBackoff(), budget=throttle).start(0.0)
    assert call.on_failure(0.0, Boom()) == RetryAfter(0.0, 2)  # 3 tokens > 2
    assert give_up(call.on_failure(0.0, Boom())).reason is GiveUpReason.BUDGET_EXHAUSTED
    assert throttle.available(0.0) == 2.0


# --- randomness --------------------------------------------------------------------------------


def failure_delays(call: RetryCall, count: int) -> list[float]:
    delays = []
    now = 0.0
    for _ in range(count):
        decision = retry(call.on_failure(now, Boom()))
        delays.append(decision.delay)
        now += decision.delay
    return delays


@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
@settings(max_examples=50, deadline=None)
def test_seeded_policy_replays_full_jitter_formula(seed: int) -> None:
    policy = RetryPolicy(max_attempts=None, rng=random.Random(seed))
    delays = failure_delays(policy.start(0.0), 12)
    replay = random.Random(seed)
    expected = [replay.random() * min(20.0, 0.1 * 2 ** (n - 1)) for n in range(1, 13)]
    assert delays == pytest.approx(expected, rel=1e-12)
    again = RetryPolicy(max_attempts=None, rng=random.Random(seed))
    assert failure_delays(again.start(0.0), 12) == delays
    override = RetryPolicy(max_attempts=None).start(0.0, rng=random.Random(seed))
    assert failure_delays(override, 12) == delays


@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
@settings(max_examples=50, deadline=None)
def test_call_feeds_previous_delay_to_decorrelated(seed: int) -> None:
    policy = RetryPolicy(
        max_attempts=None, backoff=Decorrelated(base=1.0, cap=50.0), rng=random.Random(seed)
    )
    delays = failure_delays(policy.start(0.0), 10)
    replay = random.Random(seed)
    previous = 1.0
    for delay in delays:
        expected = min(50.0, replay.uniform(1.0, 3.0 * previous))
        assert delay == expected
        previous = delay


# --- validation --------------------------------------------------------------------------------

INVALID: list[tuple[dict[str, Any], str, str]] = [
    ({"max_attempts": 0}, "max_attempts", ">= 1"),
    ({"max_attempts": -3}, "max_attempts", ">= 1"),
    ({"max_attempts": True}, "max_attempts", "integer"),
    ({"max_attempts": 2.0}, "max_attempts", "integer"),
    ({"backoff": 1.0}, "backoff", "delay"),
    ({"throttling_backoff": "fast"}, "throttling_backoff", "delay"),
    ({"max_server_delay": -1.0}, "max_server_delay", ">= 0"),
    ({"max_server_delay": float("inf")}, "max_server_delay", "finite"),
    ({"max_server_delay": float("nan")}, "max_server_delay", "finite"),
    ({"retry_on": 5}, "retry_on", "exception type"),
    ({"retry_on": (KeyError, "ValueError")}, "retry_on", "exception types"),
    ({"retry_on_result": 503}, "retry_on_result", "callable"),
    ({"retry_after": 5.0}, "retry_after", "callable"),
    ({"is_timeout": True}, "is_timeout", "callable"),
    ({"is_throttling": "yes"}, "is_throttling", "callable"),
    ({"budget": object()}, "budget", "RetryBudget"),
    ({"rng": 42}, "rng", "random.Random"),
    ({"attempt_timeout": 0.0}, "attempt_timeout", "> 0"),
    ({"total_timeout": -5.0}, "total_timeout", "> 0"),
    ({"total_timeout": float("nan")}, "total_timeout", "finite"),
    ({"attempt_timeout": 5.0, "total_timeout": 2.0}, "total_timeout", "attempt_timeout"),
]


@pytest.mark.parametrize(("kwargs", "field", "rule"), INVALID, ids=[f for _, f, _ in INVALID])
def test_invalid_config_is_rejected_naming_field_and_rule(
    kwargs: dict[str, Any], field: str, rule: str
) -> None:
    with pytest.raises(ConfigError) as info:
        RetryPolicy(**kwargs)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}:")
    assert rule in str(info.value)


def test_replace_revalidates_and_keeps_other_fields() -> None:
    policy = RetryPolicy(max_attempts=4, backoff=Constant(2.0))
    changed = policy.replace(max_server_delay=1.0)
    assert (changed.max_attempts, changed.backoff, changed.max_server_delay) == (
        4,
        Constant(2.0),
        1.0,
    )
    with pytest.raises(ConfigError) as info:
        policy.replace(max_attempts=0)
    assert info.value.field == "max_attempts"
    with pytest.raises(ConfigError) as info:
        policy.replace(attempt_timeout=10.0, total_timeout=1.0)
    assert info.value.field == "total_timeout"
