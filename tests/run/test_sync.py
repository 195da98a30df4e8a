"""Tests of the synchronous driver, stormproof.run.sync.Retrying, on a ManualClock."""

import random
from collections.abc import Callable
from typing import Any

import pytest

import stormproof
from stormproof import (
    ConfigError,
    Deadline,
    DeadlineExceeded,
    ManualClock,
    RetryError,
    RetryEvent,
    Retrying,
    RetryPolicy,
    current_deadline,
    deadline_scope,
)
from stormproof.policies import AwsRetryQuota, Constant, Exponential, Jitter, NoBackoff, RatioBudget

FORMS = ("call", "decorator", "block")


class Flaky:
    """Raises the queued errors one per call, then returns ``result``; counts calls."""

    def __init__(self, *errors: BaseException, result: Any = "ok") -> None:
        self.errors = list(errors)
        self.result = result
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.result


def run(form: str, retrying: Retrying, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` through one of the three ways of using a Retrying."""
    if form == "call":
        return retrying.call(fn)
    if form == "decorator":

        def target() -> Any:
            return fn()

        return retrying(target)()
    result = None
    for attempt in retrying:
        with attempt:
            result = fn()
            attempt.set_result(result)
    return result


def make_policy(**options: Any) -> RetryPolicy:
    options.setdefault("max_attempts", 3)
    options.setdefault("backoff", Constant(2.0))
    options.setdefault("rng", random.Random(0))
    return RetryPolicy(**options)


@pytest.fixture(params=FORMS)
def form(request: pytest.FixtureRequest) -> str:
    return request.param


# --- the basic outcomes, for every form ------------------------------------------------------


def test_success_first_time_does_not_sleep_or_call_hooks(form: str) -> None:
    clock = ManualClock()
    retries: list[RetryEvent] = []
    give_ups: list[RetryEvent] = []
    retrying = Retrying(
        make_policy(), clock=clock, on_retry=retries.append, on_give_up=give_ups.append
    )
    fn = Flaky(result=42)

    assert run(form, retrying, fn) == 42

    assert fn.calls == 1
    assert clock.sleeps == []
    assert clock.now() == 0.0
    assert retries == []
    assert give_ups == []


def test_call_passes_arguments_through() -> None:
    retrying = Retrying(make_policy(), clock=ManualClock())
    assert retrying.call(lambda a, b=0: a * 10 + b, 4, b=2) == 42


def test_fail_then_succeed_sleeps_the_exact_schedule(form: str) -> None:
    clock = ManualClock()
    retrying = Retrying(make_policy(backoff=Constant(2.5)), clock=clock)
    fn = Flaky(ConnectionError("a"), ConnectionError("b"), result="done")

    assert run(form, retrying, fn) == "done"

    assert fn.calls == 3
    assert clock.sleeps == [2.5, 2.5]
    assert clock.now() == 5.0


def test_fail_then_succeed_follows_the_jittered_formula(form: str) -> None:
    clock = ManualClock()
    backoff = Exponential(base=0.5, factor=3.0, cap=4.0, jitter=Jitter.FULL)
    policy = make_policy(max_attempts=4, backoff=backoff, rng=random.Random(99))
    fn = Flaky(OSError(), OSError(), OSError())

    assert run(form, Retrying(policy, clock=clock), fn) == "ok"

    expected_rng = random.Random(99)
    expected = [expected_rng.random() * min(4.0, 0.5 * 3.0 ** (n - 1)) for n in (1, 2, 3)]
    assert clock.sleeps == pytest.approx(expected)


def test_exhaustion_raises_retry_error(form: str) -> None:
    clock = ManualClock()
    errors = [ConnectionError(f"attempt {i}") for i in (1, 2, 3)]
    fn = Flaky(*errors)

    with pytest.raises(RetryError) as excinfo:
        run(form, Retrying(make_policy(), clock=clock), fn)

    error = excinfo.value
    assert error.attempts == 3
    assert error.reason == "attempts_exhausted"
    assert error.last_error is errors[2]
    assert error.__cause__ is errors[2]
    assert error.last_result is None
    assert fn.calls == 3
    assert clock.sleeps == [2.0, 2.0]


def test_reraise_raises_the_last_original_error(form: str) -> None:
    errors = [ConnectionError(f"attempt {i}") for i in (1, 2, 3)]
    fn = Flaky(*errors)

    with pytest.raises(ConnectionError) as excinfo:
        run(form, Retrying(make_policy(), clock=ManualClock(), reraise=True), fn)

    assert excinfo.value is errors[2]
    assert fn.calls == 3


def test_non_retryable_error_propagates_unchanged_after_one_attempt(form: str) -> None:
    clock = ManualClock()
    give_ups: list[RetryEvent] = []
    retrying = Retrying(
        make_policy(retry_on=ConnectionError), clock=clock, on_give_up=give_ups.append
    )
    boom = ValueError("not transient")
    fn = Flaky(boom)

    with pytest.raises(ValueError) as excinfo:
        run(form, retrying, fn)

    assert excinfo.value is boom
    assert fn.calls == 1
    assert clock.sleeps == []
    assert [(e.kind, e.attempt, e.reason, e.error) for e in give_ups] == [
        ("give_up", 1, "not_retryable", boom)
    ]


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_is_never_retried(form: str, interrupt: type[BaseException]) -> None:
    clock = ManualClock()
    fn = Flaky(interrupt())

    with pytest.raises(interrupt):
        run(form, Retrying(make_policy(max_attempts=5), clock=clock), fn)

    assert fn.calls == 1
    assert clock.sleeps == []


def test_nested_retry_error_is_not_retried(form: str) -> None:
    clock = ManualClock()
    inner = RetryError(attempts=3, reason="attempts_exhausted", last_error=OSError())
    fn = Flaky(inner)

    with pytest.raises(RetryError) as excinfo:
        run(form, Retrying(make_policy(max_attempts=5), clock=clock), fn)

    assert excinfo.value is inner
    assert fn.calls == 1
    assert clock.sleeps == []


def test_retry_on_result_retries_then_accepts(form: str) -> None:
    clock = ManualClock()
    retries: list[RetryEvent] = []
    policy = make_policy(retry_on_result=lambda r: r == "busy")
    results = iter(["busy", "busy", "fine"])
    retrying = Retrying(policy, clock=clock, on_retry=retries.append)

    assert run(form, retrying, lambda: next(results)) == "fine"

    assert clock.sleeps == [2.0, 2.0]
    assert [(e.attempt, e.error, e.result) for e in retries] == [
        (1, None, "busy"),
        (2, None, "busy"),
    ]


def test_retry_on_result_exhaustion_reports_the_last_result(form: str) -> None:
    policy = make_policy(retry_on_result=lambda r: r < 0)
    values = iter([-1, -2, -3])

    with pytest.raises(RetryError) as excinfo:
        run(form, Retrying(policy, clock=ManualClock()), lambda: next(values))

    assert excinfo.value.reason == "attempts_exhausted"
    assert excinfo.value.attempts == 3
    assert excinfo.value.last_error is None
    assert excinfo.value.last_result == -3


def test_retry_on_result_with_reraise_still_raises_retry_error() -> None:
    policy = make_policy(retry_on_result=lambda r: True)
    with pytest.raises(RetryError) as excinfo:
        Retrying(policy, clock=ManualClock(), reraise=True).call(lambda: "bad")
    assert excinfo.value.last_result == "bad"


# --- block form specifics --------------------------------------------------------------------


def test_block_form_numbers_attempts_and_exposes_the_result() -> None:
    clock = ManualClock()
    seen: list[int] = []
    policy = make_policy(retry_on_result=lambda r: r is None)
    last = None
    for attempt in Retrying(policy, clock=clock):
        with attempt:
            seen.append(attempt.number)
            if attempt.number == 1:
                raise TimeoutError("slow")
            attempt.set_result(None if attempt.number == 2 else "value")
        last = attempt
    assert seen == [1, 2, 3]
    assert last is not None
    assert last.result == "value"
    assert clock.sleeps == [2.0, 2.0]


def test_block_form_without_set_result_is_a_success() -> None:
    clock = ManualClock()
    count = 0
    for attempt in Retrying(make_policy(retry_on_result=lambda r: True), clock=clock):
        with attempt:
            count += 1
    assert count == 1
    assert clock.sleeps == []


# --- fast path vs full path ------------------------------------------------------------------

SEED = 1234


def _seeded_policy(variant: str, **options: Any) -> RetryPolicy:
    extra: dict[str, Any] = {
        "plain": {},
        "aws_budget": {"budget": AwsRetryQuota()},
        "ratio_budget": {"budget": RatioBudget()},
        "total_timeout": {"total_timeout": 1e6},
        "attempt_timeout": {"attempt_timeout": 1e5},
        "budget_and_timeout": {"budget": AwsRetryQuota(), "total_timeout": 1e6},
    }[variant]
    return RetryPolicy(
        max_attempts=5,
        backoff=Exponential(base=1.0, factor=2.0, cap=5.0, jitter=Jitter.FULL),
        rng=random.Random(SEED),
        **extra,
        **options,
    )


def _expected_full_jitter(retries: int) -> list[float]:
    rng = random.Random(SEED)
    return [rng.random() * min(5.0, 1.0 * 2.0 ** (n - 1)) for n in range(1, retries + 1)]


VARIANTS = (
    "plain",
    "aws_budget",
    "ratio_budget",
    "total_timeout",
    "attempt_timeout",
    "budget_and_timeout",
)


@pytest.mark.parametrize("variant", VARIANTS)
def test_fast_and_full_paths_sleep_the_same_schedule(form: str, variant: str) -> None:
    clock = ManualClock()
    fn = Flaky(*[ConnectionError() for _ in range(3)])
    assert run(form, Retrying(_seeded_policy(variant), clock=clock), fn) == "ok"
    assert clock.sleeps == pytest.approx(_expected_full_jitter(3))


@pytest.mark.parametrize("variant", VARIANTS)
def test_fast_and_full_paths_give_up_the_same_way(variant: str) -> None:
    clock = ManualClock()
    fn = Flaky(*[ConnectionError() for _ in range(9)])
    with pytest.raises(RetryError) as excinfo:
        Retrying(_seeded_policy(variant), clock=clock).call(fn)
    assert excinfo.value.attempts == 5
    assert excinfo.value.reason == "attempts_exhausted"
    assert clock.sleeps == pytest.approx(_expected_full_jitter(4))


@pytest.mark.parametrize("variant", VARIANTS)
def test_fast_and_full_paths_agree_on_results(variant: str) -> None:
    clock = ManualClock()
    values = iter([503, 503, 200])
    policy = _seeded_policy(variant, retry_on_result=lambda status: status >= 500)
    assert Retrying(policy, clock=clock).call(lambda: next(values)) == 200
    assert clock.sleeps == pytest.approx(_expected_full_jitter(2))


# --- budgets ---------------------------------------------------------------------------------

TIMEOUT_VARIANTS = ({}, {"total_timeout": 1000.0})


@pytest.mark.parametrize("timeouts", TIMEOUT_VARIANTS)
def test_shared_aws_quota_stops_retries_of_the_third_failing_call(
    form: str, timeouts: dict[str, float]
) -> None:
    clock = ManualClock()
    quota = AwsRetryQuota(capacity=10, retry_cost=5)
    retrying = Retrying(
        make_policy(max_attempts=2, backoff=Constant(1.0), budget=quota, **timeouts), clock=clock
    )
    outcomes = []
    for _ in range(3):
        fn = Flaky(*[ConnectionError() for _ in range(5)])
        with pytest.raises(RetryError) as excinfo:
            run(form, retrying, fn)
        outcomes.append((excinfo.value.reason, excinfo.value.attempts, fn.calls))

    assert outcomes == [
        ("attempts_exhausted", 2, 2),
        ("attempts_exhausted", 2, 2),
        ("budget_exhausted", 1, 1),
    ]
    assert quota.available(clock.now()) == 0.0
    assert clock.sleeps == [1.0, 1.0]


@pytest.mark.parametrize("timeouts", TIMEOUT_VARIANTS)
def test_aws_quota_refunds_a_successful_retry(form: str, timeouts: dict[str, float]) -> None:
    clock = ManualClock()
    quota = AwsRetryQuota(capacity=10, retry_cost=5, no_retry_increment=1)
    retrying = Retrying(make_policy(budget=quota, **timeouts), clock=clock)

    assert run(form, retrying, Flaky(ConnectionError())) == "ok"
    assert quota.available(clock.now()) == 10.0  # withdrew 5, refunded 5 on success


@pytest.mark.parametrize("timeouts", TIMEOUT_VARIANTS)
def test_ratio_budget_is_told_of_each_call_once(form: str, timeouts: dict[str, float]) -> None:
    clock = ManualClock()
    budget = RatioBudget(ratio=0.5, min_retries_per_second=1.0, ttl=10.0)
    retrying = Retrying(make_policy(backoff=NoBackoff(), budget=budget, **timeouts), clock=clock)
    assert budget.available(clock.now()) == 10.0

    # One call of three attempts: one request (+0.5), two retries (-2).
    assert run(form, retrying, Flaky(OSError(), OSError())) == "ok"
    assert budget.available(clock.now()) == pytest.approx(8.5)

    # A call that succeeds at once: one more request.
    assert run(form, retrying, Flaky()) == "ok"
    assert budget.available(clock.now()) == pytest.approx(9.0)


def test_no_budget_call_when_the_error_is_not_retryable() -> None:
    quota = AwsRetryQuota(capacity=10, retry_cost=5)
    retrying = Retrying(make_policy(budget=quota, retry_on=OSError), clock=ManualClock())
    with pytest.raises(KeyError):
        retrying.call(Flaky(KeyError("x")))
    assert quota.available(0.0) == 10.0


# --- deadlines -------------------------------------------------------------------------------


def test_total_timeout_never_sleeps_past_the_deadline(form: str) -> None:
    clock = ManualClock()
    give_ups: list[RetryEvent] = []
    policy = make_policy(max_attempts=None, backoff=Constant(4.0), total_timeout=10.0)
    calls = 0

    def slow_failure() -> None:
        nonlocal calls
        calls += 1
        clock.advance(1.0)  # each attempt takes 1 s
        raise ConnectionError(calls)

    with pytest.raises(RetryError) as excinfo:
        run(form, Retrying(policy, clock=clock, on_give_up=give_ups.append), slow_failure)

    # 0..1 attempt, 1..5 sleep, 5..6 attempt; 6 + 4 >= 10, so it gives up instead of sleeping.
    assert excinfo.value.reason == "deadline"
    assert excinfo.value.attempts == 2
    assert calls == 2
    assert clock.sleeps == [4.0]
    assert clock.now() == 6.0
    assert [(e.kind, e.attempt, e.reason, e.delay) for e in give_ups] == [
        ("give_up", 2, "deadline", None)
    ]


def test_deadline_gives_up_before_each_sleep_would_cross_it() -> None:
    clock = ManualClock()
    policy = make_policy(max_attempts=None, backoff=Constant(3.0), total_timeout=10.0)
    with pytest.raises(RetryError) as excinfo:
        Retrying(policy, clock=clock).call(Flaky(*[OSError() for _ in range(50)]))
    # sleeps end at 3, 6, 9; another one would end at 12 >= 10.
    assert clock.sleeps == [3.0, 3.0, 3.0]
    assert excinfo.value.attempts == 4
    assert excinfo.value.reason == "deadline"
    assert clock.now() < 10.0


@pytest.mark.parametrize("outer_at", [50.0, 100.0])
def test_passed_outer_deadline_raises_without_calling(form: str, outer_at: float) -> None:
    clock = ManualClock(start=100.0)
    fn = Flaky()
    with deadline_scope(Deadline(outer_at)), pytest.raises(DeadlineExceeded) as excinfo:
        run(form, Retrying(make_policy(), clock=clock), fn)
    assert fn.calls == 0
    assert excinfo.value.deadline == outer_at
    assert excinfo.value.now == 100.0
    assert not isinstance(excinfo.value, RetryError)


def test_passed_outer_deadline_raises_with_a_budget_too() -> None:
    quota = AwsRetryQuota(capacity=10)
    clock = ManualClock(start=5.0)
    fn = Flaky()
    with deadline_scope(Deadline(1.0)), pytest.raises(DeadlineExceeded):
        Retrying(make_policy(budget=quota), clock=clock).call(fn)
    assert fn.calls == 0


def test_current_deadline_in_attempt_is_the_tighter_of_attempt_and_total(form: str) -> None:
    clock = ManualClock(start=100.0)
    policy = make_policy(backoff=Constant(4.0), attempt_timeout=5.0, total_timeout=12.0)
    seen: list[Deadline | None] = []

    def fn() -> str:
        seen.append(current_deadline())
        if len(seen) < 3:
            raise ConnectionError
        return "ok"

    assert run(form, Retrying(policy, clock=clock), fn) == "ok"
    # starts at 100, 104, 108: attempt deadlines 105, 109, 113 -- the last capped by 112.
    assert seen == [Deadline(105.0), Deadline(109.0), Deadline(112.0)]
    assert current_deadline() is None


def test_outer_deadline_tightens_attempts_and_the_call(form: str) -> None:
    clock = ManualClock(start=100.0)
    policy = make_policy(backoff=Constant(4.0), attempt_timeout=5.0, total_timeout=12.0)
    seen: list[Deadline | None] = []

    def fn() -> str:
        seen.append(current_deadline())
        raise ConnectionError

    with deadline_scope(Deadline(107.0)), pytest.raises(RetryError) as excinfo:
        run(form, Retrying(policy, clock=clock), fn)
    assert seen == [Deadline(105.0), Deadline(107.0)]
    assert excinfo.value.reason == "deadline"
    assert clock.now() == 104.0


def test_outer_deadline_is_visible_without_policy_timeouts() -> None:
    seen: list[Deadline | None] = []

    def fn() -> None:
        seen.append(current_deadline())

    with deadline_scope(Deadline(30.0)):
        Retrying(make_policy(), clock=ManualClock()).call(fn)
    Retrying(make_policy(), clock=ManualClock()).call(fn)
    assert seen == [Deadline(30.0), None]


# --- hooks -----------------------------------------------------------------------------------


def test_on_retry_is_told_before_each_sleep(form: str) -> None:
    clock = ManualClock()
    events: list[RetryEvent] = []
    sleeps_at_hook: list[int] = []

    def hook(event: RetryEvent) -> None:
        events.append(event)
        sleeps_at_hook.append(len(clock.sleeps))

    errors = [ConnectionError(1), ConnectionError(2)]
    retrying = Retrying(make_policy(backoff=Constant(2.0)), clock=clock, on_retry=hook)
    assert run(form, retrying, Flaky(*errors)) == "ok"

    assert events == [
        RetryEvent("retry", 1, 2.0, "backoff", errors[0], None, 0.0),
        RetryEvent("retry", 2, 2.0, "backoff", errors[1], None, 2.0),
    ]
    assert sleeps_at_hook == [0, 1]


class Throttled(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"retry after {retry_after}")
        self.retry_after = retry_after


def test_server_delay_replaces_backoff_and_is_reported(form: str) -> None:
    clock = ManualClock()
    events: list[RetryEvent] = []
    retrying = Retrying(
        make_policy(backoff=Constant(1.0), max_server_delay=5.0),
        clock=clock,
        on_retry=events.append,
    )
    fn = Flaky(Throttled(2.5), Throttled(30.0))

    assert run(form, retrying, fn) == "ok"

    assert [(e.attempt, e.delay, e.reason) for e in events] == [
        (1, 2.5, "server_delay"),
        (2, 5.0, "server_delay"),  # capped by max_server_delay
    ]
    assert clock.sleeps == [2.5, 5.0]


def test_server_delay_then_backoff_reasons() -> None:
    clock = ManualClock()
    events: list[RetryEvent] = []
    policy = make_policy(max_attempts=4, backoff=Constant(1.0))
    Retrying(policy, clock=clock, on_retry=events.append).call(
        Flaky(Throttled(2.5), ConnectionError(), Throttled(0.0))
    )
    assert [(e.delay, e.reason) for e in events] == [
        (2.5, "server_delay"),
        (1.0, "backoff"),
        (0.0, "server_delay"),
    ]
    assert clock.sleeps == [2.5, 1.0]  # a zero delay is not slept


def test_on_give_up_receives_the_reason(form: str) -> None:
    clock = ManualClock()
    events: list[RetryEvent] = []
    errors = [OSError(i) for i in range(3)]
    retrying = Retrying(make_policy(), clock=clock, on_give_up=events.append)

    with pytest.raises(RetryError):
        run(form, retrying, Flaky(*errors))

    assert len(events) == 1
    event = events[0]
    assert (event.kind, event.attempt, event.delay, event.reason) == (
        "give_up",
        3,
        None,
        "attempts_exhausted",
    )
    assert event.error is errors[2]
    assert event.elapsed == 4.0
    assert "max_attempts=3" in event.detail


def test_lists_of_hooks_are_all_called_in_order() -> None:
    clock = ManualClock()
    calls: list[tuple[str, str]] = []
    retrying = Retrying(
        make_policy(max_attempts=2),
        clock=clock,
        on_retry=[lambda e: calls.append(("r1", e.kind)), lambda e: calls.append(("r2", e.kind))],
        on_give_up=(
            lambda e: calls.append(("g1", e.reason)),
            lambda e: calls.append(("g2", e.reason)),
        ),
    )
    with pytest.raises(RetryError):
        retrying.call(Flaky(OSError(), OSError()))
    assert calls == [
        ("r1", "retry"),
        ("r2", "retry"),
        ("g1", "attempts_exhausted"),
        ("g2", "attempts_exhausted"),
    ]


def test_hooks_from_a_generator_are_kept() -> None:
    seen: list[int] = []
    hooks = (lambda e, i=i: seen.append(i) for i in range(3))
    retrying = Retrying(make_policy(), clock=ManualClock(), on_retry=hooks)
    retrying.call(Flaky(OSError()))
    retrying.call(Flaky(OSError()))
    assert seen == [0, 1, 2, 0, 1, 2]


@pytest.mark.parametrize("field", ["on_retry", "on_give_up"])
@pytest.mark.parametrize("hooks", [[42], [print, None], ("not", "callable")])
def test_non_callable_hook_raises_config_error_naming_the_field(field: str, hooks: Any) -> None:
    with pytest.raises(ConfigError) as excinfo:
        Retrying(make_policy(), clock=ManualClock(), **{field: hooks})
    assert excinfo.value.field == field
    assert str(excinfo.value).startswith(f"{field}:")


@pytest.mark.parametrize("field", ["on_retry", "on_give_up"])
def test_non_iterable_non_callable_hook_raises_config_error(field: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        Retrying(make_policy(), clock=ManualClock(), **{field: 42})
    assert excinfo.value.field == field


def test_elapsed_counts_the_first_attempt_without_a_budget() -> None:
    clock = ManualClock()
    events: list[RetryEvent] = []

    def slow_then_ok() -> str:
        clock.advance(3.0)
        if not events:
            raise ConnectionError
        return "ok"

    policy = make_policy(backoff=Constant(1.0))
    Retrying(policy, clock=clock, on_retry=events.append).call(slow_then_ok)
    assert [e.elapsed for e in events] == [3.0]


@pytest.mark.parametrize(
    "options",
    [{"budget": AwsRetryQuota()}, {"total_timeout": 100.0}],
    ids=["budget", "total_timeout"],
)
def test_elapsed_counts_the_first_attempt_on_the_full_path(options: dict[str, Any]) -> None:
    clock = ManualClock()
    events: list[RetryEvent] = []
    give_ups: list[RetryEvent] = []

    def slow_failure() -> str:
        clock.advance(3.0)
        raise ConnectionError

    retrying = Retrying(
        make_policy(max_attempts=2, backoff=Constant(1.0), **options),
        clock=clock,
        on_retry=events.append,
        on_give_up=give_ups.append,
    )
    with pytest.raises(RetryError):
        retrying.call(slow_failure)
    assert [e.elapsed for e in events] == [3.0]
    assert [e.elapsed for e in give_ups] == [7.0]


# --- construction ----------------------------------------------------------------------------


def test_default_construction_uses_the_default_policy_and_wall_clock() -> None:
    retrying = Retrying()
    assert isinstance(retrying.clock, stormproof.WallClock)
    assert retrying.policy.max_attempts == 3
    assert isinstance(retrying.policy.budget, RatioBudget)
    assert "Retrying(" in repr(retrying)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"policy": "fast"}, "policy"), ({"clock": object()}, "clock")],
)
def test_bad_policy_or_clock_raise_config_error(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        Retrying(**kwargs)
    assert excinfo.value.field == field


def test_decorator_keeps_metadata_and_exposes_the_driver() -> None:
    retrying = Retrying(make_policy(), clock=ManualClock())

    @retrying
    def fetch(url: str, *, timeout: float = 1.0) -> str:
        """Fetch it."""
        return f"{url}:{timeout}"

    assert fetch.__name__ == "fetch"
    assert fetch.__doc__ == "Fetch it."
    assert fetch.retrying is retrying  # type: ignore[attr-defined]
    assert fetch("x", timeout=2.0) == "x:2.0"
