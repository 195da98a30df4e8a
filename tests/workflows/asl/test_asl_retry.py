"""Retry and Catch: ordering, counting, exact delays, MaxDelaySeconds, jitter, error matching."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stormproof.clock import ManualClock
from stormproof.workflows.asl import (
    Context,
    Failed,
    RetryIn,
    StatesError,
    Transition,
    parse,
)
from stormproof.workflows.asl.local import TaskRegistry, run_local
from stormproof.workflows.asl.retry import Retrier

CTX = Context()


def task_machine(retry: list[dict[str, Any]], catch: list[dict[str, Any]] | None = None) -> Any:
    state: dict[str, Any] = {"Type": "Task", "Resource": "work", "Next": "Done", "Retry": retry}
    states: dict[str, Any] = {"T": state, "Done": {"Type": "Succeed"}}
    if catch is not None:
        state["Catch"] = catch
        for catcher in catch:
            states.setdefault(catcher["Next"], {"Type": "Pass", "End": True})
    return parse({"StartAt": "T", "States": states})


def failing(errors: list[str]) -> TaskRegistry:
    """A task that raises the given error names in turn, then succeeds."""
    tasks = TaskRegistry()
    remaining = list(errors)

    @tasks.task("work")
    def work(event: Any) -> str:
        if remaining:
            raise StatesError(remaining.pop(0), "boom")
        return "ok"

    return tasks


def test_the_spec_complex_retry_scenario() -> None:
    # States Language spec, "Complex retry scenarios": ErrorA, ErrorB, ErrorC, ErrorB.
    machine = task_machine(
        [
            {
                "ErrorEquals": ["ErrorA", "ErrorB"],
                "IntervalSeconds": 1,
                "BackoffRate": 2,
                "MaxAttempts": 2,
            },
            {"ErrorEquals": ["ErrorC"], "IntervalSeconds": 5},
        ],
        [{"ErrorEquals": ["States.ALL"], "Next": "Z"}],
    )
    clock = ManualClock()
    result = run_local(machine, {}, failing(["ErrorA", "ErrorB", "ErrorC", "ErrorB"]), clock=clock)
    assert clock.sleeps == [1.0, 2.0, 5.0]
    assert result.output == {"Error": "ErrorB", "Cause": "boom"}
    assert [e.state for e in result.events("StateEntered")] == ["T", "Z"]


def test_default_retrier_is_one_second_doubling_three_retries() -> None:
    machine = task_machine([{"ErrorEquals": ["States.ALL"]}])
    clock = ManualClock()
    result = run_local(machine, {}, failing(["E"] * 10), clock=clock)
    assert clock.sleeps == [1.0, 2.0, 4.0]
    assert result.error == "E"
    assert len(result.events("TaskScheduled")) == 4


def test_max_attempts_zero_never_retries_and_exhausted_does_not_fall_through() -> None:
    machine = task_machine(
        [
            {"ErrorEquals": ["States.Timeout"], "MaxAttempts": 0},
            {"ErrorEquals": ["States.ALL"], "IntervalSeconds": 7},
        ]
    )
    clock = ManualClock()
    result = run_local(machine, {}, failing(["States.Timeout"]), clock=clock)
    assert clock.sleeps == []
    assert result.error == "States.Timeout"
    other = run_local(machine, {}, failing(["Other"]), clock=ManualClock())
    assert other.succeeded


def test_max_delay_seconds_caps_the_backoff() -> None:
    # The spec's example: 3 s doubling, capped at 4 s -> waits of 3 and 4 s.
    machine = task_machine(
        [
            {
                "ErrorEquals": ["States.ALL"],
                "IntervalSeconds": 3,
                "MaxAttempts": 4,
                "BackoffRate": 2.0,
                "MaxDelaySeconds": 4,
            }
        ]
    )
    clock = ManualClock()
    run_local(machine, {}, failing(["E"] * 10), clock=clock)
    assert clock.sleeps == [3.0, 4.0, 4.0, 4.0]


def test_interval_above_max_delay_is_capped_from_the_first_retry() -> None:
    machine = task_machine(
        [{"ErrorEquals": ["E"], "IntervalSeconds": 10, "MaxDelaySeconds": 2, "MaxAttempts": 2}]
    )
    clock = ManualClock()
    run_local(machine, {}, failing(["E", "E"]), clock=clock)
    assert clock.sleeps == [2.0, 2.0]


def test_full_jitter_is_reproducible_with_a_seeded_rng() -> None:
    machine = task_machine(
        [{"ErrorEquals": ["E"], "JitterStrategy": "FULL", "MaxAttempts": 5, "IntervalSeconds": 2}]
    )
    first, second = ManualClock(), ManualClock()
    run_local(machine, {}, failing(["E"] * 5), clock=first, rng=random.Random(11))
    run_local(machine, {}, failing(["E"] * 5), clock=second, rng=random.Random(11))
    assert first.sleeps == second.sleeps
    assert len(set(first.sleeps)) == 5
    assert all(0 <= d <= 2 * 2**n for n, d in enumerate(first.sleeps))


@settings(max_examples=150, deadline=None)
@given(
    interval=st.integers(1, 100),
    rate=st.floats(1.0, 5.0),
    cap=st.one_of(st.none(), st.integers(1, 500)),
    retries=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_full_jitter_delay_is_within_zero_and_the_capped_backoff(
    interval: int, rate: float, cap: int | None, retries: int, seed: int
) -> None:
    retrier = Retrier(("E",), interval, retries, rate, cap, "FULL")
    rng = random.Random(seed)
    for n in range(1, retries + 1):
        bound = interval * rate ** (n - 1)
        if cap is not None:
            bound = min(cap, bound)
        delay = retrier.delay(n, rng)
        assert 0.0 <= delay <= bound * (1 + 1e-12)


def test_none_jitter_delays_are_exact_powers() -> None:
    retrier = Retrier(("E",), 3, 5, 1.5)
    assert [retrier.delay(n, random.Random(0)) for n in (1, 2, 3)] == [3.0, 4.5, 6.75]


def test_retry_state_counts_per_retrier_and_is_json_friendly() -> None:
    machine = task_machine(
        [{"ErrorEquals": ["A"], "MaxAttempts": 1}, {"ErrorEquals": ["B"], "MaxAttempts": 2}]
    )
    rng = random.Random(0)
    step = machine.task_failed("T", {}, "B", "", None, CTX, rng)
    assert isinstance(step, RetryIn) and step.retry_state == (0, 1) and step.retrier == 1
    step = machine.task_failed("T", {}, "A", "", [0, 1], CTX, rng)  # a list, as from JSON
    assert isinstance(step, RetryIn) and step.retry_state == (1, 1)
    assert isinstance(machine.task_failed("T", {}, "A", "", step.retry_state, CTX, rng), Failed)
    step = machine.task_failed("T", {}, "B", "", step.retry_state, CTX, rng)
    assert isinstance(step, RetryIn) and step.retry_state == (1, 2)
    assert isinstance(machine.task_failed("T", {}, "B", "", step.retry_state, CTX, rng), Failed)


def test_counters_reset_when_the_state_is_entered_again() -> None:
    machine = parse(
        {
            "StartAt": "T",
            "States": {
                "T": {
                    "Type": "Task",
                    "Resource": "work",
                    "Retry": [{"ErrorEquals": ["E"], "MaxAttempts": 1, "IntervalSeconds": 5}],
                    "Next": "Loop",
                },
                "Loop": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$", "NumericEquals": 1, "Next": "Again"}],
                    "Default": "Done",
                },
                "Again": {"Type": "Pass", "Next": "T"},
                "Done": {"Type": "Succeed"},
            },
        }
    )
    outcomes: list[Any] = ["E", 1, "E", 2]
    tasks = TaskRegistry()

    @tasks.task("work")
    def work(event: Any) -> Any:
        outcome = outcomes.pop(0)
        if outcome == "E":
            raise StatesError("E", "again")
        return outcome

    # MaxAttempts 1 allows a second retry only because re-entering T resets the counter.
    clock = ManualClock()
    result = run_local(machine, {}, tasks, clock=clock)
    assert result.output == 2
    assert clock.sleeps == [5.0, 5.0]


def test_catch_order_first_match_wins_and_result_path_keeps_the_input() -> None:
    machine = task_machine(
        [],
        [
            {"ErrorEquals": ["Java.Exception"], "ResultPath": "$.error-info", "Next": "Recovery"},
            {"ErrorEquals": ["States.ALL"], "Next": "End"},
        ],
    )
    step = machine.task_failed(
        "T", {"order": 1}, "Java.Exception", "npe", None, CTX, random.Random()
    )
    assert step == Transition(
        "Recovery",
        {"order": 1, "error-info": {"Error": "Java.Exception", "Cause": "npe"}},
        "Java.Exception",
        "npe",
    )
    other = machine.task_failed("T", {"order": 1}, "Other", "x", None, CTX, random.Random())
    assert other == Transition("End", {"Error": "Other", "Cause": "x"}, "Other", "x")


def test_catch_result_path_null_passes_the_input_through() -> None:
    machine = task_machine([], [{"ErrorEquals": ["E"], "ResultPath": None, "Next": "H"}])
    step = machine.task_failed("T", {"keep": True}, "E", "c", None, CTX, random.Random())
    assert step == Transition("H", {"keep": True}, "E", "c")


def test_catch_result_path_that_cannot_apply_fails_with_result_path_match_failure() -> None:
    machine = task_machine([], [{"ErrorEquals": ["E"], "ResultPath": "$.x", "Next": "H"}])
    step = machine.task_failed("T", "a string", "E", "c", None, CTX, random.Random())
    assert isinstance(step, Failed) and step.error == "States.ResultPathMatchFailure"


def test_retry_then_catch_when_the_retries_do_not_resolve_the_error() -> None:
    machine = task_machine(
        [{"ErrorEquals": ["E"], "MaxAttempts": 1}], [{"ErrorEquals": ["E"], "Next": "H"}]
    )
    rng = random.Random()
    first = machine.task_failed("T", {}, "E", "", None, CTX, rng)
    assert isinstance(first, RetryIn)
    second = machine.task_failed("T", {}, "E", "", first.retry_state, CTX, rng)
    assert isinstance(second, Transition) and second.next_state == "H"


@pytest.mark.parametrize(
    ("names", "error", "matches"),
    [
        (["States.ALL"], "Anything", True),
        (["States.ALL"], "States.Runtime", False),
        (["States.Runtime"], "States.Runtime", False),
        (["States.Timeout"], "States.HeartbeatTimeout", True),
        (["States.HeartbeatTimeout"], "States.Timeout", False),
        (["States.TaskFailed"], "Lambda.Unknown", True),
        (["States.TaskFailed"], "States.Timeout", False),
        (["States.TaskFailed"], "States.HeartbeatTimeout", False),
        (["States.BranchFailed"], "Lambda.Unknown", False),
        (["Other"], "Lambda.Unknown", False),
    ],
)
def test_error_matching_for_task_errors(names: list[str], error: str, matches: bool) -> None:
    machine = task_machine([], [{"ErrorEquals": names, "Next": "H"}])
    step = machine.task_failed("T", {}, error, "", None, CTX, random.Random())
    assert isinstance(step, Transition) is matches


def test_heartbeat_timeout_surfaces_as_states_timeout() -> None:
    machine = task_machine([{"ErrorEquals": ["States.HeartbeatTimeout"], "MaxAttempts": 1}])
    rng = random.Random()
    retry = machine.task_failed("T", {}, "States.HeartbeatTimeout", "hb", None, CTX, rng)
    assert isinstance(retry, RetryIn) and retry.error == "States.Timeout"
    failed = machine.task_failed("T", {}, "States.HeartbeatTimeout", "hb", [1], CTX, rng)
    assert failed == Failed("States.Timeout", "hb")


def parallel_machine(fail_with: str, handler: list[str]) -> Any:
    return parse(
        {
            "StartAt": "P",
            "States": {
                "P": {
                    "Type": "Parallel",
                    "Branches": [
                        {"StartAt": "OK", "States": {"OK": {"Type": "Pass", "End": True}}},
                        {
                            "StartAt": "Bad",
                            "States": {"Bad": {"Type": "Fail", "Error": fail_with, "Cause": "b"}},
                        },
                    ],
                    "Retry": [{"ErrorEquals": handler, "MaxAttempts": 2, "IntervalSeconds": 3}],
                    "Catch": [{"ErrorEquals": handler, "Next": "H"}],
                    "End": True,
                },
                "H": {"Type": "Pass", "End": True},
            },
        }
    )


@pytest.mark.parametrize("handler", [["States.BranchFailed"], ["Custom"], ["States.ALL"]])
def test_a_failed_branch_goes_through_the_parallel_retry_then_catch(handler: list[str]) -> None:
    clock = ManualClock()
    result = run_local(parallel_machine("Custom", handler), {}, clock=clock)
    assert clock.sleeps == [3.0, 6.0]
    assert result.output == {"Error": "Custom", "Cause": "b"}


def test_a_runtime_error_in_a_branch_is_not_caught() -> None:
    result = run_local(parallel_machine("States.Runtime", ["States.ALL"]), {})
    assert result.error == "States.Runtime"


def test_choice_without_match_fails_with_no_choice_matched() -> None:
    machine = parse(
        {
            "StartAt": "C",
            "States": {
                "C": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$.x", "NumericEquals": 1, "Next": "D"}],
                },
                "D": {"Type": "Succeed"},
            },
        }
    )
    assert machine.start({"x": 2}, CTX) == Failed(
        "States.NoChoiceMatched", "no choice rule of 'C' matched its input"
    )


def test_parameter_path_failure_is_caught_but_not_retried() -> None:
    machine = parse(
        {
            "StartAt": "T",
            "States": {
                "T": {
                    "Type": "Task",
                    "Resource": "work",
                    "Parameters": {"x.$": "$.missing"},
                    "Retry": [{"ErrorEquals": ["States.ALL"]}],
                    "Catch": [{"ErrorEquals": ["States.ParameterPathFailure"], "Next": "H"}],
                    "End": True,
                },
                "H": {"Type": "Pass", "End": True},
            },
        }
    )
    step = machine.start({"a": 1}, CTX)
    assert isinstance(step, Transition) and step.next_state == "H"
    assert step.output["Error"] == "States.ParameterPathFailure"


def test_result_selector_and_intrinsic_failures_are_catchable() -> None:
    machine = parse(
        {
            "StartAt": "T",
            "States": {
                "T": {
                    "Type": "Task",
                    "Resource": "work",
                    "ResultSelector": {"n.$": "States.MathAdd($.a, 'x')"},
                    "Catch": [{"ErrorEquals": ["States.IntrinsicFailure"], "Next": "H"}],
                    "End": True,
                },
                "H": {"Type": "Pass", "End": True},
            },
        }
    )
    step = machine.task_succeeded("T", {}, {"a": 1}, CTX)
    assert isinstance(step, Transition) and step.error == "States.IntrinsicFailure"


def test_output_path_that_selects_nothing_is_a_terminal_runtime_error() -> None:
    machine = task_machine([], [{"ErrorEquals": ["States.ALL"], "Next": "H"}])
    state = dict(machine.definition["States"]["T"])
    state["OutputPath"] = "$.nope"
    definition = dict(machine.definition)
    definition["States"] = {**machine.definition["States"], "T": state}
    step = parse(definition).task_succeeded("T", {}, {"a": 1}, CTX)
    assert isinstance(step, Failed) and step.error == "States.Runtime"
