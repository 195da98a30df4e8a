"""Each state type and field, the input/output processing order, and Choice operators."""

from __future__ import annotations

import random
from typing import Any

import pytest

from stormproof.workflows.asl import (
    Context,
    Failed,
    RunBranches,
    RunTask,
    Succeeded,
    Transition,
    WaitUntil,
    parse,
)

CTX = Context(now=1_700_000_000.0, execution_name="exec-1", execution_input={"in": 1})


def single(state: dict[str, Any], extra: dict[str, Any] | None = None) -> Any:
    states = {"S": state, **(extra or {})}
    return parse({"StartAt": "S", "States": states})


def test_processing_order_input_parameters_selector_resultpath_outputpath() -> None:
    machine = single(
        {
            "Type": "Task",
            "Resource": "add",
            "InputPath": "$.numbers",
            "Parameters": {"a.$": "$.val1", "b.$": "$.val2", "who.$": "$$.Execution.Name"},
            "ResultSelector": {"total.$": "$.sum", "fixed": 1},
            "ResultPath": "$.result",
            "OutputPath": "$.result",
            "End": True,
        }
    )
    raw = {"title": "Numbers", "numbers": {"val1": 3, "val2": 4}}
    task = machine.start(raw, CTX)
    assert task == RunTask("S", "add", {"a": 3, "b": 4, "who": "exec-1"})
    done = machine.task_succeeded("S", raw, {"sum": 7, "noise": True}, CTX)
    assert done == Succeeded({"total": 7, "fixed": 1})


def test_result_path_merges_into_the_raw_input_not_the_effective_input() -> None:
    machine = single(
        {
            "Type": "Task",
            "Resource": "r",
            "InputPath": "$.numbers",
            "ResultPath": "$.sum",
            "End": True,
        }
    )
    raw = {"title": "t", "numbers": {"val1": 3}}
    assert machine.task_succeeded("S", raw, 7, CTX) == Succeeded({**raw, "sum": 7})
    # The raw input is not mutated.
    assert raw == {"title": "t", "numbers": {"val1": 3}}


def test_result_path_builds_intervening_objects_and_null_discards_the_result() -> None:
    deep = single({"Type": "Pass", "Result": "Hi!", "ResultPath": "$.b.greeting", "End": True})
    assert deep.start({"a": 1}, CTX) == Succeeded({"a": 1, "b": {"greeting": "Hi!"}})
    discard = single({"Type": "Pass", "Result": "x", "ResultPath": None, "End": True})
    assert discard.start({"a": 1}, CTX) == Succeeded({"a": 1})


def test_null_input_and_output_paths_give_empty_objects() -> None:
    machine = single(
        {
            "Type": "Pass",
            "InputPath": None,
            "Parameters": {"k": 1},
            "ResultPath": "$.p",
            "End": True,
        }
    )
    assert machine.start({"a": 1}, CTX) == Succeeded({"a": 1, "p": {"k": 1}})
    nothing = single({"Type": "Pass", "OutputPath": None, "End": True})
    assert nothing.start({"a": 1}, CTX) == Succeeded({})


def test_indefinite_paths_gather_matches_into_an_array() -> None:
    machine = single({"Type": "Pass", "InputPath": "$.a[0,1]", "End": True})
    assert machine.start({"a": [1, 2, 3]}, CTX) == Succeeded([1, 2])
    star = single({"Type": "Pass", "OutputPath": "$.items[*].id", "End": True})
    assert star.start({"items": [{"id": 1}, {"id": 2}]}, CTX) == Succeeded([1, 2])


def test_spec_payload_template_example() -> None:
    machine = single(
        {
            "Type": "Task",
            "Resource": "X",
            "Parameters": {
                "flagged": True,
                "parts": {"first.$": "$.vals[0]", "last3.$": "$.vals[-3:]"},
                "weekday.$": "$$.DayOfWeek",
                "formattedOutput.$": "States.Format('Today is {}', $$.DayOfWeek)",
                "list": [{"x.$": "$.flagged"}, 2],
            },
            "End": True,
        }
    )

    class DayContext(Context):
        def context_object(self, state_name: str) -> dict[str, Any]:
            return {"DayOfWeek": "TUESDAY"}

    step = machine.start({"flagged": 7, "vals": [0, 10, 20, 30, 40, 50]}, DayContext())
    assert isinstance(step, RunTask)
    assert step.parameters == {
        "flagged": True,
        "parts": {"first": 0, "last3": [30, 40, 50]},
        "weekday": "TUESDAY",
        "formattedOutput": "Today is TUESDAY",
        "list": [{"x": 7}, 2],
    }


def test_context_object_fields() -> None:
    machine = single(
        {
            "Type": "Pass",
            "Parameters": {
                "name.$": "$$.Execution.Name",
                "input.$": "$$.Execution.Input",
                "state.$": "$$.State.Name",
                "retry.$": "$$.State.RetryCount",
                "entered.$": "$$.State.EnteredTime",
                "start.$": "$$.Execution.StartTime",
            },
            "End": True,
        }
    )
    ctx = CTX.with_changes(retry_count=2, execution_start=0.0)
    step = machine.start({}, ctx)
    assert step == Succeeded(
        {
            "name": "exec-1",
            "input": {"in": 1},
            "state": "S",
            "retry": 2,
            "entered": "2023-11-14T22:13:20.000Z",
            "start": "1970-01-01T00:00:00.000Z",
        }
    )


def test_pass_state_defaults_and_result() -> None:
    assert single({"Type": "Pass", "End": True}).start({"a": 1}, CTX) == Succeeded({"a": 1})
    replace = single({"Type": "Pass", "Result": {"x": 1}, "Next": "N"}, {"N": {"Type": "Succeed"}})
    assert replace.start({"a": 1}, CTX) == Transition("N", {"x": 1})


def test_task_timeouts_and_paths() -> None:
    fixed = single(
        {"Type": "Task", "Resource": "r", "TimeoutSeconds": 30, "HeartbeatSeconds": 10, "End": True}
    )
    assert fixed.start({}, CTX) == RunTask("S", "r", {}, 30.0, 10.0)
    dynamic = single(
        {
            "Type": "Task",
            "Resource": "r",
            "TimeoutSecondsPath": "$.t",
            "HeartbeatSecondsPath": "$.h",
            "End": True,
        }
    )
    assert dynamic.start({"t": 9, "h": 3}, CTX) == RunTask("S", "r", {"t": 9, "h": 3}, 9.0, 3.0)
    bad = dynamic.start({"t": -1, "h": 3}, CTX)
    assert isinstance(bad, Failed) and bad.error == "States.Runtime"


def test_wait_state_variants() -> None:
    seconds = single({"Type": "Wait", "Seconds": 10, "Next": "N"}, {"N": {"Type": "Succeed"}})
    step = seconds.start({"a": 1}, CTX)
    assert step == WaitUntil("S", 10.0, None, "N", {"a": 1})
    assert isinstance(step, WaitUntil)
    assert step.due_at(100.0) == 110.0
    assert step.then() == Transition("N", {"a": 1})
    stamp = single({"Type": "Wait", "Timestamp": "2016-03-14T01:59:00Z", "End": True})
    wait = stamp.start({}, CTX)
    assert isinstance(wait, WaitUntil) and wait.due_at(0.0) == 1457920740.0
    assert wait.then() == Succeeded({})
    by_path = single({"Type": "Wait", "SecondsPath": "$.s", "End": True})
    assert by_path.start({"s": 5}, CTX) == WaitUntil("S", 5.0, None, None, {"s": 5})
    assert isinstance(by_path.start({"s": "5"}, CTX), Failed)
    ts_path = single({"Type": "Wait", "TimestampPath": "$.when", "End": True})
    ok = ts_path.start({"when": "2016-03-14T01:59:00+01:00"}, CTX)
    assert isinstance(ok, WaitUntil) and ok.due_at(0.0) == 1457920740.0 - 3600
    assert ts_path.start({"when": "tomorrow"}, CTX) == Failed(
        "States.Runtime", "TimestampPath selected 'tomorrow', not an RFC 3339 timestamp"
    )


def test_succeed_applies_input_and_output_paths() -> None:
    machine = single({"Type": "Succeed", "InputPath": "$.a", "OutputPath": "$.b"})
    assert machine.start({"a": {"b": 2}}, CTX) == Succeeded(2)


def test_fail_state_error_and_cause_fixed_by_path_and_by_intrinsic() -> None:
    fixed = single({"Type": "Fail", "Error": "ErrorA", "Cause": "Kaiju attack"})
    assert fixed.start({}, CTX) == Failed("ErrorA", "Kaiju attack")
    paths = single({"Type": "Fail", "ErrorPath": "$.Error", "CausePath": "$.Cause"})
    assert paths.start({"Error": "E", "Cause": "C"}, CTX) == Failed("E", "C")
    fn = single({"Type": "Fail", "Error": "E", "CausePath": "States.Format('code {}', $.code)"})
    assert fn.start({"code": 7}, CTX) == Failed("E", "code 7")
    assert single({"Type": "Fail"}).start({}, CTX) == Failed("", "")
    bad = paths.start({"Error": 1, "Cause": "C"}, CTX)
    assert isinstance(bad, Failed) and bad.error == "States.Runtime"


def test_parallel_state_runs_every_branch_with_the_effective_input() -> None:
    machine = single(
        {
            "Type": "Parallel",
            "InputPath": "$.nums",
            "Branches": [
                {
                    "StartAt": "Add",
                    "States": {"Add": {"Type": "Task", "Resource": "add", "End": True}},
                },
                {
                    "StartAt": "Sub",
                    "States": {"Sub": {"Type": "Task", "Resource": "sub", "End": True}},
                },
            ],
            "ResultSelector": {"sum.$": "$[0]", "diff.$": "$[1]"},
            "ResultPath": "$.out",
            "End": True,
        }
    )
    step = machine.start({"nums": [3, 2]}, CTX)
    assert isinstance(step, RunBranches) and step.kind == "Parallel"
    assert [b.input for b in step.branches] == [[3, 2], [3, 2]]
    assert step.branches[0].machine.start_at == "Add"
    assert machine.resources() == ["add", "sub"]
    done = machine.branches_succeeded("S", {"nums": [3, 2]}, [5, 1], CTX)
    assert done == Succeeded({"nums": [3, 2], "out": {"sum": 5, "diff": 1}})


def test_map_state_items_path_item_selector_and_concurrency() -> None:
    machine = single(
        {
            "Type": "Map",
            "InputPath": "$.detail",
            "ItemsPath": "$.shipped",
            "MaxConcurrency": 2,
            "ItemSelector": {
                "parcel.$": "$$.Map.Item.Value",
                "index.$": "$$.Map.Item.Index",
                "courier.$": "$.delivery-partner",
            },
            "ItemProcessor": {
                "StartAt": "Validate",
                "States": {"Validate": {"Type": "Task", "Resource": "ship-val", "End": True}},
            },
            "ResultPath": "$.detail.shipped",
            "End": True,
        }
    )
    raw = {"detail": {"delivery-partner": "UQS", "shipped": [{"prod": "R31"}, {"prod": "S39"}]}}
    step = machine.start(raw, CTX)
    assert isinstance(step, RunBranches) and step.kind == "Map" and step.max_concurrency == 2
    assert [b.input for b in step.branches] == [
        {"parcel": {"prod": "R31"}, "index": 0, "courier": "UQS"},
        {"parcel": {"prod": "S39"}, "index": 1, "courier": "UQS"},
    ]
    assert machine.branch_machine("S", 1) is step.branches[0].machine
    done = machine.branches_succeeded("S", raw, ["ok0", "ok1"], CTX)
    assert done == Succeeded({"detail": {"delivery-partner": "UQS", "shipped": ["ok0", "ok1"]}})


def test_map_defaults_deprecated_fields_and_bad_items() -> None:
    machine = single(
        {
            "Type": "Map",
            "Iterator": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}},
            "Parameters": {"v.$": "$$.Map.Item.Value"},
            "End": True,
        }
    )
    step = machine.start([1, 2], CTX)
    assert isinstance(step, RunBranches)
    assert [b.input for b in step.branches] == [{"v": 1}, {"v": 2}]
    plain = single(
        {
            "Type": "Map",
            "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}},
            "End": True,
        }
    )
    not_array = plain.start({"a": 1}, CTX)
    assert isinstance(not_array, Failed) and not_array.error == "States.Runtime"
    by_path = single(
        {
            "Type": "Map",
            "ItemsPath": "$.items",
            "MaxConcurrencyPath": "$.c",
            "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}},
            "End": True,
        }
    )
    limited = by_path.start({"items": [1], "c": 3}, CTX)
    assert isinstance(limited, RunBranches) and limited.max_concurrency == 3
    assert isinstance(by_path.start({"items": [1], "c": -1}, CTX), Failed)


def choice(rule: dict[str, Any]) -> Any:
    return single(
        {"Type": "Choice", "Choices": [{**rule, "Next": "Yes"}], "Default": "No"},
        {"Yes": {"Type": "Succeed"}, "No": {"Type": "Succeed"}},
    )


def chosen(rule: dict[str, Any], data: Any) -> bool:
    step = choice(rule).start(data, CTX)
    assert isinstance(step, Transition)
    return step.next_state == "Yes"


T1, T2 = "2016-03-14T01:59:00Z", "2016-03-14T02:00:00Z"


@pytest.mark.parametrize(
    ("rule", "data", "expected"),
    [
        ({"Variable": "$.v", "StringEquals": "a"}, {"v": "a"}, True),
        ({"Variable": "$.v", "StringEquals": "a"}, {"v": 1}, False),
        ({"Variable": "$.v", "StringLessThan": "b"}, {"v": "a"}, True),
        ({"Variable": "$.v", "StringGreaterThan": "b"}, {"v": "a"}, False),
        ({"Variable": "$.v", "StringLessThanEquals": "a"}, {"v": "a"}, True),
        ({"Variable": "$.v", "StringGreaterThanEquals": "a"}, {"v": "b"}, True),
        ({"Variable": "$.v", "StringEqualsPath": "$.w"}, {"v": "a", "w": "a"}, True),
        ({"Variable": "$.v", "StringLessThanPath": "$.w"}, {"v": "a", "w": "b"}, True),
        ({"Variable": "$.v", "StringMatches": "foo*.log"}, {"v": "foo23.log"}, True),
        ({"Variable": "$.v", "StringMatches": "*.log"}, {"v": "zebra.log"}, True),
        ({"Variable": "$.v", "StringMatches": "foo*.*"}, {"v": "foobar.zebra"}, True),
        ({"Variable": "$.v", "StringMatches": "a\\*b"}, {"v": "a*b"}, True),
        ({"Variable": "$.v", "StringMatches": "a\\*b"}, {"v": "axb"}, False),
        ({"Variable": "$.v", "StringMatches": "a*b"}, {"v": "ac"}, False),
        ({"Variable": "$.v", "NumericEquals": 1}, {"v": 1.0}, True),
        ({"Variable": "$.v", "NumericEquals": 1}, {"v": True}, False),
        ({"Variable": "$.v", "NumericLessThan": 30}, {"v": 22}, True),
        ({"Variable": "$.v", "NumericGreaterThan": 30}, {"v": 22}, False),
        ({"Variable": "$.v", "NumericLessThanEquals": 22}, {"v": 22}, True),
        ({"Variable": "$.v", "NumericGreaterThanEquals": 20}, {"v": 22}, True),
        ({"Variable": "$.v", "NumericGreaterThanPath": "$.t"}, {"v": 5, "t": 4}, True),
        ({"Variable": "$.v", "NumericEqualsPath": "$.t"}, {"v": 5, "t": "5"}, False),
        ({"Variable": "$.v", "BooleanEquals": True}, {"v": True}, True),
        ({"Variable": "$.v", "BooleanEquals": True}, {"v": 1}, False),
        ({"Variable": "$.v", "BooleanEqualsPath": "$.w"}, {"v": False, "w": False}, True),
        ({"Variable": "$.v", "TimestampEquals": T1}, {"v": "2016-03-14T02:59:00+01:00"}, True),
        ({"Variable": "$.v", "TimestampLessThan": T2}, {"v": T1}, True),
        ({"Variable": "$.v", "TimestampGreaterThan": T2}, {"v": T1}, False),
        ({"Variable": "$.v", "TimestampLessThanEquals": T1}, {"v": T1}, True),
        ({"Variable": "$.v", "TimestampGreaterThanEquals": T1}, {"v": T2}, True),
        ({"Variable": "$.v", "TimestampGreaterThanPath": "$.w"}, {"v": T2, "w": T1}, True),
        ({"Variable": "$.v", "TimestampEquals": T1}, {"v": "not a time"}, False),
        ({"Variable": "$.v", "IsNull": True}, {"v": None}, True),
        ({"Variable": "$.v", "IsNull": False}, {"v": None}, False),
        ({"Variable": "$.v", "IsPresent": True}, {"v": 1}, True),
        ({"Variable": "$.v", "IsPresent": True}, {"w": 1}, False),
        ({"Variable": "$.v", "IsPresent": False}, {"w": 1}, True),
        ({"Variable": "$.v", "IsNumeric": True}, {"v": 2.5}, True),
        ({"Variable": "$.v", "IsNumeric": True}, {"v": False}, False),
        ({"Variable": "$.v", "IsString": True}, {"v": "x"}, True),
        ({"Variable": "$.v", "IsBoolean": True}, {"v": False}, True),
        ({"Variable": "$.v", "IsTimestamp": True}, {"v": T1}, True),
        ({"Variable": "$.v", "IsTimestamp": True}, {"v": "2016-03-14 01:59:00"}, False),
        ({"Variable": "$$.Execution.Name", "StringEquals": "exec-1"}, {}, True),
        ({"Not": {"Variable": "$.type", "StringEquals": "Private"}}, {"type": "Public"}, True),
        (
            {
                "And": [
                    {"Variable": "$.value", "IsPresent": True},
                    {"Variable": "$.value", "IsNumeric": True},
                    {"Variable": "$.value", "NumericGreaterThanEquals": 20},
                    {"Variable": "$.value", "NumericLessThan": 30},
                ]
            },
            {"value": 22},
            True,
        ),
        (
            {
                "And": [
                    {"Variable": "$.v", "IsPresent": True},
                    {"Variable": "$.v", "NumericEquals": 1},
                ]
            },
            {},
            False,  # And stops at the first false, so the missing $.v is never read
        ),
        (
            {
                "Or": [
                    {"Variable": "$.v", "NumericEquals": 1},
                    {"Variable": "$.v", "NumericEquals": 2},
                ]
            },
            {"v": 2},
            True,
        ),
    ],
)
def test_choice_operators(rule: dict[str, Any], data: Any, expected: bool) -> None:
    assert chosen(rule, data) is expected


def test_choice_on_a_missing_variable_is_a_runtime_error_and_output_path_applies() -> None:
    machine = choice({"Variable": "$.missing", "NumericEquals": 1})
    step = machine.start({}, CTX)
    assert isinstance(step, Failed) and step.error == "States.Runtime"
    shaped = single(
        {
            "Type": "Choice",
            "InputPath": "$.in",
            "OutputPath": "$.keep",
            "Choices": [{"Variable": "$.v", "NumericEquals": 1, "Next": "Y"}],
        },
        {"Y": {"Type": "Succeed"}},
    )
    assert shaped.start({"in": {"v": 1, "keep": "k"}}, CTX) == Transition("Y", "k")


def test_intrinsic_randomness_is_deterministic_without_an_rng() -> None:
    machine = single({"Type": "Pass", "Parameters": {"id.$": "States.UUID()"}, "End": True})
    first = machine.start({}, CTX)
    again = machine.start({}, CTX)
    other = machine.start({}, CTX.with_changes(execution_name="exec-2"))
    seeded = machine.start({}, CTX, random.Random(5))
    assert first == again
    assert first != other
    assert isinstance(seeded, Succeeded) and seeded == machine.start({}, CTX, random.Random(5))
