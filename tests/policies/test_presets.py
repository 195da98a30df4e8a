"""Preset policies pinned to the schedules of the systems they reproduce."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stormproof.errors import ConfigError
from stormproof.policies import presets
from stormproof.policies.backoff import Exponential, Jitter
from stormproof.policies.budget import AwsRetryQuota, RatioBudget
from stormproof.policies.retry import GiveUp, GiveUpReason, RetryAfter, RetryCall, RetryPolicy

seeds = st.integers(min_value=0, max_value=2**32 - 1)


class Boom(Exception):
    def __init__(self, throttling: bool = False) -> None:
        super().__init__("boom")
        self.throttling = throttling


def run_failures(
    call: RetryCall, errors: list[BaseException], *, timed_out: bool = False
) -> tuple[list[float], GiveUp | None]:
    """Fail with each error in turn; return the delays chosen and the give-up, if any."""
    delays: list[float] = []
    now = 0.0
    for error in errors:
        decision = call.on_failure(now, error, timed_out=timed_out)
        if isinstance(decision, GiveUp):
            return delays, decision
        assert decision.attempt == len(delays) + 2
        delays.append(decision.delay)
        now += decision.delay
    return delays, None


# --- Step Functions ----------------------------------------------------------------------------


def test_step_functions_none_jitter_doubles_then_gives_up_after_four_attempts() -> None:
    policy = presets.step_functions(interval=1, backoff_rate=2, max_attempts=3)
    assert policy.max_attempts == 4  # MaxAttempts counts retries
    assert policy.max_retries == 3
    delays, final = run_failures(policy.start(0.0), [Boom()] * 10)
    assert delays == [1.0, 2.0, 4.0]
    assert final is not None
    assert final.reason is GiveUpReason.ATTEMPTS_EXHAUSTED
    assert final.attempts == 4


def test_step_functions_defaults_are_states_language_defaults() -> None:
    delays, final = run_failures(presets.step_functions().start(0.0), [Boom()] * 10)
    assert delays == [1.0, 2.0, 4.0]
    assert final is not None
    assert final.attempts == 4


def test_step_functions_max_delay_caps() -> None:
    policy = presets.step_functions(interval=1, backoff_rate=2, max_attempts=3, max_delay=3)
    assert run_failures(policy.start(0.0), [Boom()] * 10)[0] == [1.0, 2.0, 3.0]


def test_step_functions_max_delay_below_interval() -> None:
    # min(5 * 2 ** (k - 1), 2) = 2 for every k
    policy = presets.step_functions(interval=5, backoff_rate=2, max_attempts=3, max_delay=2)
    assert run_failures(policy.start(0.0), [Boom()] * 10)[0] == [2.0, 2.0, 2.0]


def test_step_functions_rate_one_is_constant() -> None:
    policy = presets.step_functions(interval=2.5, backoff_rate=1.0, max_attempts=4)
    assert run_failures(policy.start(0.0), [Boom()] * 10)[0] == [2.5] * 4


def test_step_functions_zero_max_attempts_never_retries() -> None:
    policy = presets.step_functions(max_attempts=0)
    delays, final = run_failures(policy.start(0.0), [Boom()])
    assert delays == []
    assert final is not None
    assert final.reason is GiveUpReason.ATTEMPTS_EXHAUSTED
    assert final.attempts == 1


def test_step_functions_no_max_delay_is_uncapped() -> None:
    policy = presets.step_functions(interval=1, backoff_rate=2, max_attempts=40)
    delays = run_failures(policy.start(0.0), [Boom()] * 40)[0]
    assert delays == [2.0 ** (k - 1) for k in range(1, 41)]


@given(
    interval=st.floats(min_value=0.01, max_value=10.0),
    rate=st.floats(min_value=1.0, max_value=4.0),
    max_delay=st.none() | st.floats(min_value=0.01, max_value=100.0),
    max_attempts=st.integers(min_value=0, max_value=12),
    seed=seeds,
)
@settings(max_examples=100, deadline=None)
def test_step_functions_full_jitter_replays_seeded_draws(
    interval: float, rate: float, max_delay: float | None, max_attempts: int, seed: int
) -> None:
    policy = presets.step_functions(
        interval=interval,
        backoff_rate=rate,
        max_attempts=max_attempts,
        max_delay=max_delay,
        jitter="FULL",
        rng=seed,
    )
    delays, final = run_failures(policy.start(0.0), [Boom()] * (max_attempts + 1))
    replay = random.Random(seed)
    expected = []
    for k in range(1, max_attempts + 1):
        bound = interval * rate ** (k - 1)
        if max_delay is not None:
            bound = min(bound, max_delay)
        expected.append(replay.random() * bound)
    assert delays == pytest.approx(expected, rel=1e-12)
    assert final is not None
    assert final.attempts == max_attempts + 1


def test_step_functions_accepts_a_random_instance() -> None:
    rng = random.Random(5)
    policy = presets.step_functions(jitter="FULL", rng=rng)
    assert policy.rng is rng
    by_seed = presets.step_functions(jitter="FULL", rng=5)
    first = run_failures(policy.start(0.0), [Boom()] * 4)[0]
    second = run_failures(by_seed.start(0.0), [Boom()] * 4)[0]
    assert first == second


@pytest.mark.parametrize(
    ("kwargs", "field", "rule"),
    [
        ({"interval": 0.0}, "interval", "> 0"),
        ({"interval": -1.0}, "interval", "> 0"),
        ({"interval": float("nan")}, "interval", "finite"),
        ({"max_attempts": -1}, "max_attempts", ">= 0"),
        ({"max_attempts": True}, "max_attempts", "integer"),
        ({"max_attempts": 2.0}, "max_attempts", "integer"),
        ({"backoff_rate": 0.5}, "backoff_rate", ">= 1"),
        ({"backoff_rate": float("inf")}, "backoff_rate", "finite"),
        ({"max_delay": 0.0}, "max_delay", "> 0"),
        ({"jitter": "PARTIAL"}, "jitter", "NONE"),
        ({"jitter": "full"}, "jitter", "FULL"),
    ],
)
def test_step_functions_validation(kwargs: dict[str, Any], field: str, rule: str) -> None:
    with pytest.raises(ConfigError) as info:
        presets.step_functions(**kwargs)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}:")
    assert rule in str(info.value)


# --- AWS SDK standard mode ---------------------------------------------------------------------


def test_aws_standard_shape() -> None:
    policy = presets.aws_sdk_standard()
    assert policy.max_attempts == 3
    assert isinstance(policy.budget, AwsRetryQuota)
    quota = policy.budget
    assert (quota.capacity, quota.retry_cost, quota.timeout_cost) == (500.0, 5.0, 10.0)
    assert quota.available(0.0) == 500.0
    assert presets.aws_sdk_standard().budget is not policy.budget  # a new quota per preset


@given(seed=seeds)
@settings(max_examples=50, deadline=None)
def test_aws_standard_three_attempts_full_jitter_from_one_second(seed: int) -> None:
    policy = presets.aws_sdk_standard(rng=seed)
    delays, final = run_failures(policy.start(0.0), [Boom()] * 5)
    replay = random.Random(seed)
    assert delays == [replay.random() * 1.0, replay.random() * 2.0]
    assert final is not None
    assert final.reason is GiveUpReason.ATTEMPTS_EXHAUSTED
    assert final.attempts == 3
    assert policy.budget is not None
    assert policy.budget.available(0.0) == 490.0  # two retries at 5 tokens


@given(seed=seeds)
@settings(max_examples=50, deadline=None)
def test_aws_standard_delay_is_capped_at_20_seconds(seed: int) -> None:
    policy = presets.aws_sdk_standard(max_attempts=12, rng=random.Random(seed))
    assert policy.max_attempts == 12
    delays, _ = run_failures(policy.start(0.0), [Boom()] * 11)
    replay = random.Random(seed)
    expected = [replay.random() * min(2 ** (n - 1), 20) for n in range(1, 12)]
    assert delays == pytest.approx(expected, rel=1e-12)
    assert max(delays) <= 20.0


def test_aws_standard_timeout_retries_cost_ten() -> None:
    policy = presets.aws_sdk_standard(rng=1)
    run_failures(policy.start(0.0), [TimeoutError()])
    assert policy.budget is not None
    assert policy.budget.available(0.0) == 490.0
    run_failures(policy.start(0.0), [Boom()], timed_out=True)
    assert policy.budget.available(0.0) == 480.0


def test_aws_standard_quota_stops_a_storm_after_100_retries() -> None:
    policy = presets.aws_sdk_standard(rng=3)
    outcomes = []
    for _ in range(101):
        decision = policy.start(0.0).on_failure(0.0, Boom())
        outcomes.append(decision.reason if isinstance(decision, GiveUp) else "retry")
    assert outcomes == ["retry"] * 100 + [GiveUpReason.BUDGET_EXHAUSTED]


@given(seed=seeds, pattern=st.lists(st.booleans(), min_size=1, max_size=9))
@settings(max_examples=50, deadline=None)
def test_aws_standard_2026_backoffs_and_costs(seed: int, pattern: list[bool]) -> None:
    policy = presets.aws_sdk_standard("2026", max_attempts=10, rng=seed)
    quota = policy.budget
    assert isinstance(quota, AwsRetryQuota)
    assert (quota.retry_cost, quota.timeout_cost, quota.throttling_cost) == (14.0, 14.0, 5.0)
    errors: list[BaseException] = [Boom(throttling=flag) for flag in pattern]
    delays, final = run_failures(policy.start(0.0), errors)
    assert final is None
    replay = random.Random(seed)
    expected = [
        replay.random() * min((1.0 if throttled else 0.05) * 2 ** (n - 1), 20.0)
        for n, throttled in enumerate(pattern, start=1)
    ]
    assert delays == pytest.approx(expected, rel=1e-12)
    spent = sum(5 if throttled else 14 for throttled in pattern)
    assert quota.available(0.0) == 500 - spent


def test_aws_standard_2026_timeouts_cost_the_same_as_other_errors() -> None:
    policy = presets.aws_sdk_standard("2026", rng=0)
    run_failures(policy.start(0.0), [TimeoutError()])
    assert policy.budget is not None
    assert policy.budget.available(0.0) == 486.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"version": "3.0"}, "version"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
    ],
)
def test_aws_standard_validation(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        presets.aws_sdk_standard(**kwargs)
    assert info.value.field == field
    assert field in str(info.value)


# --- AWS SDK legacy mode -----------------------------------------------------------------------


@given(seed=seeds)
@settings(max_examples=50, deadline=None)
def test_aws_legacy_five_attempts_uncapped_no_budget(seed: int) -> None:
    policy = presets.aws_sdk_legacy(rng=seed)
    assert policy.max_attempts == 5
    assert policy.budget is None
    delays, final = run_failures(policy.start(0.0), [Boom()] * 10)
    replay = random.Random(seed)
    assert delays == [replay.random() * 2 ** (n - 1) for n in range(1, 5)]
    assert final is not None
    assert final.reason is GiveUpReason.ATTEMPTS_EXHAUSTED
    assert final.attempts == 5


def test_aws_legacy_retry_30_is_huge() -> None:
    policy = presets.aws_sdk_legacy(max_attempts=31, rng=11)
    delays, final = run_failures(policy.start(0.0), [Boom()] * 30)
    assert final is None
    replay = random.Random(11)
    expected = [replay.random() * 2.0 ** (n - 1) for n in range(1, 31)]
    assert delays == expected
    # With no cap the 30th retry draws from U(0, 2**29 s), i.e. up to 17 years.
    assert policy.backoff.delay(30, None, random.Random(2)) == random.Random(2).random() * 2**29
    assert policy.backoff.delay(30, None, random.Random(2)) > 1e6


def test_aws_legacy_validation() -> None:
    with pytest.raises(ConfigError) as info:
        presets.aws_sdk_legacy(max_attempts=0)
    assert info.value.field == "max_attempts"


# --- stormproof default ------------------------------------------------------------------------


def test_default_preset() -> None:
    policy = presets.default(rng=9)
    assert isinstance(policy, RetryPolicy)
    assert policy.max_attempts == 3
    assert policy.backoff == Exponential(base=0.1, factor=2.0, cap=20.0, jitter=Jitter.FULL)
    assert isinstance(policy.budget, RatioBudget)
    assert (policy.budget.ratio, policy.budget.min_retries_per_second, policy.budget.ttl) == (
        0.2,
        10.0,
        10.0,
    )
    call = policy.start(0.0)
    replay = random.Random(9)
    assert call.on_failure(0.0, Boom()) == RetryAfter(replay.random() * 0.1, 2)
    assert call.on_failure(1.0, Boom()) == RetryAfter(replay.random() * 0.2, 3)
    assert isinstance(call.on_failure(2.0, Boom()), GiveUp)


def test_presets_with_same_seed_agree_and_differ_from_other_seed() -> None:
    def schedule(seed: int) -> list[float]:
        policy = presets.aws_sdk_standard(max_attempts=8, rng=seed)
        return run_failures(policy.start(0.0), [Boom()] * 7)[0]

    assert schedule(123) == schedule(123)
    replay = random.Random(124)
    assert schedule(124) == pytest.approx(
        [replay.random() * min(2 ** (n - 1), 20) for n in range(1, 8)], rel=1e-12
    )
    assert schedule(123) != schedule(124)
