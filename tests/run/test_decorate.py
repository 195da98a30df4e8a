"""Tests of @stormproof.retry: bare, with a policy, with keyword overrides, on async functions."""

import inspect
import random
from typing import Any

import pytest

import stormproof
from stormproof import (
    AsyncRetrying,
    ConfigError,
    ManualClock,
    RetryError,
    RetryEvent,
    Retrying,
    RetryPolicy,
)
from stormproof.policies import AwsRetryQuota, Constant, Exponential, Jitter, RatioBudget


def failing(times: int, error: type[BaseException] = ConnectionError) -> Any:
    """A plain function that raises ``error`` ``times`` times, then returns its call count."""
    state = {"calls": 0}

    def fn() -> int:
        state["calls"] += 1
        if state["calls"] <= times:
            raise error(state["calls"])
        return state["calls"]

    fn.state = state  # type: ignore[attr-defined]
    return fn


def calls_of(fn: Any) -> int:
    return fn.state["calls"]  # type: ignore[no-any-return]


def test_bare_decorator_uses_the_default_policy() -> None:
    @stormproof.retry
    def fetch(url: str) -> str:
        """Fetch a URL."""
        return url * 2

    assert fetch("ab") == "abab"
    assert fetch.__name__ == "fetch"
    assert fetch.__doc__ == "Fetch a URL."
    assert fetch.__wrapped__.__name__ == "fetch"  # type: ignore[attr-defined]
    retrying = fetch.retrying  # type: ignore[attr-defined]
    assert type(retrying) is Retrying
    assert retrying.policy.max_attempts == 3
    assert isinstance(retrying.policy.budget, RatioBudget)
    assert retrying.policy.backoff == Exponential(0.1, 2.0, 20.0, Jitter.FULL)
    assert isinstance(retrying.clock, stormproof.WallClock)
    assert retrying.reraise is False


def test_bare_decorator_on_async_def() -> None:
    @stormproof.retry
    async def fetch() -> str:
        return "x"

    assert inspect.iscoroutinefunction(fetch)
    assert fetch.__name__ == "fetch"
    assert type(fetch.retrying) is AsyncRetrying  # type: ignore[attr-defined]


def test_each_bare_decoration_gets_its_own_budget() -> None:
    @stormproof.retry
    def a() -> None: ...

    @stormproof.retry
    def b() -> None: ...

    budget_a = a.retrying.policy.budget  # type: ignore[attr-defined]
    budget_b = b.retrying.policy.budget  # type: ignore[attr-defined]
    assert budget_a is not None
    assert budget_a is not budget_b


def test_decorator_with_a_policy_uses_it_as_is() -> None:
    policy = RetryPolicy(max_attempts=4, backoff=Constant(1.5), rng=random.Random(1))
    clock = ManualClock()

    @stormproof.retry(policy, clock=clock)
    def fetch() -> int:
        return flaky()

    flaky = failing(3)
    assert fetch() == 4
    assert fetch.retrying.policy is policy  # type: ignore[attr-defined]
    assert clock.sleeps == [1.5, 1.5, 1.5]


def test_a_policy_shared_by_two_functions_shares_its_budget() -> None:
    quota = AwsRetryQuota(capacity=5, retry_cost=5)
    policy = RetryPolicy(max_attempts=2, backoff=Constant(1.0), budget=quota)
    clock = ManualClock()
    first = stormproof.retry(policy, clock=clock)(failing(5))
    second = stormproof.retry(policy, clock=clock)(failing(5))

    with pytest.raises(RetryError) as one:
        first()
    with pytest.raises(RetryError) as two:
        second()
    assert one.value.reason == "attempts_exhausted"
    assert two.value.reason == "budget_exhausted"


def test_on_overrides_the_classifier() -> None:
    clock = ManualClock()
    type_error = failing(1, TypeError)
    decorated = stormproof.retry(on=ValueError, clock=clock)(type_error)
    with pytest.raises(TypeError):
        decorated()
    assert calls_of(type_error) == 1

    value_error = failing(1, ValueError)
    assert stormproof.retry(on=(KeyError, ValueError), clock=clock)(value_error)() == 2

    predicate = failing(2, OSError)
    on = lambda error: "2" not in str(error)  # noqa: E731
    with pytest.raises(OSError):
        stormproof.retry(on=on, clock=clock, budget=None)(predicate)()
    assert calls_of(predicate) == 2


@pytest.mark.parametrize(("options", "attempts"), [({"attempts": 5}, 5), ({"retries": 5}, 6)])
def test_attempts_and_retries(options: dict[str, int], attempts: int) -> None:
    clock = ManualClock()
    fn = failing(100)
    decorated = stormproof.retry(clock=clock, backoff=Constant(1.0), budget=None, **options)(fn)
    with pytest.raises(RetryError) as excinfo:
        decorated()
    assert excinfo.value.attempts == attempts
    assert calls_of(fn) == attempts
    assert clock.sleeps == [1.0] * (attempts - 1)
    assert decorated.retrying.policy.max_attempts == attempts


def test_retries_zero_means_a_single_attempt() -> None:
    fn = failing(1)
    with pytest.raises(RetryError) as excinfo:
        stormproof.retry(retries=0, clock=ManualClock())(fn)()
    assert excinfo.value.attempts == 1
    assert calls_of(fn) == 1


def test_attempts_and_retries_together_raise_config_error() -> None:
    with pytest.raises(ConfigError) as excinfo:
        stormproof.retry(attempts=3, retries=2)
    assert excinfo.value.field == "attempts"


@pytest.mark.parametrize("retries", [-1, 1.5, True, "2"])
def test_bad_retries_raise_config_error(retries: Any) -> None:
    with pytest.raises(ConfigError) as excinfo:
        stormproof.retry(retries=retries)
    assert excinfo.value.field == "retries"


def test_bad_attempts_raise_config_error_naming_the_argument() -> None:
    with pytest.raises(ConfigError) as excinfo:
        stormproof.retry(attempts=0)
    assert excinfo.value.field == "attempts"


def test_bad_policy_argument_raises_config_error() -> None:
    with pytest.raises(ConfigError) as excinfo:
        stormproof.retry(42)  # type: ignore[call-overload]
    assert excinfo.value.field == "policy"


def test_budget_none_removes_the_default_budget() -> None:
    decorated = stormproof.retry(budget=None)(lambda: 1)
    assert decorated.retrying.policy.budget is None
    kept = stormproof.retry(attempts=2)(lambda: 1)
    assert isinstance(kept.retrying.policy.budget, RatioBudget)


def test_budget_override_is_used() -> None:
    quota = AwsRetryQuota(capacity=10, retry_cost=5)
    clock = ManualClock()
    decorated = stormproof.retry(budget=quota, clock=clock, backoff=Constant(0.5))(failing(1))
    assert decorated() == 2
    assert decorated.retrying.policy.budget is quota
    assert quota.available(clock.now()) == 10.0  # 5 withdrawn, refunded on success


def test_overrides_leave_the_given_policy_untouched() -> None:
    policy = RetryPolicy(max_attempts=2, backoff=Constant(1.0))
    decorated = stormproof.retry(policy, attempts=7, total_timeout=30.0)(lambda: 1)
    chosen = decorated.retrying.policy
    assert chosen is not policy
    assert (chosen.max_attempts, chosen.total_timeout, chosen.backoff) == (7, 30.0, Constant(1.0))
    assert (policy.max_attempts, policy.total_timeout) == (2, None)


def test_timeouts_are_passed_to_the_policy() -> None:
    decorated = stormproof.retry(attempt_timeout=2.0, total_timeout=9.0)(lambda: 1)
    timeouts = decorated.retrying.policy.timeouts
    assert (timeouts.attempt, timeouts.total) == (2.0, 9.0)
    with pytest.raises(ConfigError) as excinfo:
        stormproof.retry(attempt_timeout=10.0, total_timeout=9.0)
    assert excinfo.value.field == "total_timeout"


def _default_backoff_schedule(seed: int, retries: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.random() * min(20.0, 0.1 * 2.0 ** (n - 1)) for n in range(1, retries + 1)]


@pytest.mark.parametrize("rng", [7, random.Random(7)], ids=["seed", "random"])
def test_rng_seed_makes_the_schedule_reproducible(rng: Any) -> None:
    sleeps = []
    for _ in range(2):
        clock = ManualClock()
        seed_or_rng = rng if isinstance(rng, int) else random.Random(7)
        decorated = stormproof.retry(rng=seed_or_rng, clock=clock, attempts=4)(failing(3))
        assert decorated() == 4
        sleeps.append(clock.sleeps)
    assert sleeps[0] == sleeps[1]
    assert sleeps[0] == pytest.approx(_default_backoff_schedule(7, 3))


def test_hooks_and_reraise_are_passed_to_the_driver() -> None:
    clock = ManualClock()
    retries: list[RetryEvent] = []
    give_ups: list[RetryEvent] = []
    decorated = stormproof.retry(
        attempts=2,
        backoff=Constant(3.0),
        clock=clock,
        on_retry=retries.append,
        on_give_up=[give_ups.append],
        reraise=True,
    )(failing(5, OSError))
    with pytest.raises(OSError) as excinfo:
        decorated()
    assert str(excinfo.value) == "2"
    assert [(e.kind, e.attempt, e.delay) for e in retries] == [("retry", 1, 3.0)]
    assert [(e.kind, e.reason) for e in give_ups] == [("give_up", "attempts_exhausted")]


def test_non_callable_hook_in_decorator_raises_config_error() -> None:
    with pytest.raises(ConfigError) as excinfo:
        stormproof.retry(on_retry=[None])(lambda: 1)
    assert excinfo.value.field == "on_retry"


@pytest.mark.asyncio
async def test_async_function_with_overrides() -> None:
    clock = ManualClock()
    events: list[RetryEvent] = []
    calls = 0

    @stormproof.retry(
        on=ConnectionError, retries=2, backoff=Constant(2.0), clock=clock, on_retry=events.append
    )
    async def fetch(value: int) -> int:
        """Fetch async."""
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError
        return value + calls

    assert inspect.iscoroutinefunction(fetch)
    assert fetch.__name__ == "fetch"
    assert fetch.__doc__ == "Fetch async."
    assert type(fetch.retrying) is AsyncRetrying  # type: ignore[attr-defined]
    assert await fetch(10) == 13
    assert clock.sleeps == [2.0, 2.0]
    assert [e.attempt for e in events] == [1, 2]


@pytest.mark.asyncio
async def test_async_function_exhaustion_and_non_retryable() -> None:
    clock = ManualClock()
    calls = 0

    @stormproof.retry(on=ConnectionError, attempts=2, clock=clock, backoff=Constant(1.0))
    async def fetch(error: BaseException) -> None:
        nonlocal calls
        calls += 1
        raise error

    with pytest.raises(RetryError) as excinfo:
        await fetch(ConnectionError())
    assert (excinfo.value.attempts, excinfo.value.reason, calls) == (2, "attempts_exhausted", 2)

    with pytest.raises(KeyError):
        await fetch(KeyError())
    assert calls == 3


@pytest.mark.asyncio
async def test_async_rng_seed_matches_the_formula() -> None:
    clock = ManualClock()
    outcomes = iter([OSError(), OSError(), None])

    @stormproof.retry(rng=11, clock=clock, budget=None)
    async def fetch() -> str:
        error = next(outcomes)
        if error is not None:
            raise error
        return "ok"

    assert await fetch() == "ok"
    assert clock.sleeps == pytest.approx(_default_backoff_schedule(11, 2))


def test_overrides_given_with_the_function_are_not_dropped() -> None:
    def fn() -> None: ...

    try:
        decorated = stormproof.retry(fn, attempts=5)  # type: ignore[call-overload]
    except ConfigError:
        return  # rejecting the combination would be acceptable too
    assert decorated.retrying.policy.max_attempts == 5


def test_a_reused_decorator_gives_each_function_its_own_budget() -> None:
    decorator = stormproof.retry(attempts=5)

    @decorator
    def a() -> None: ...

    @decorator
    def b() -> None: ...

    assert a.retrying.policy.budget is not b.retrying.policy.budget  # type: ignore[attr-defined]
