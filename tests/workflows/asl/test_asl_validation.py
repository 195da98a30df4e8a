"""Validation: each rule reports a Problem naming the state, the field and the rule."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from stormproof.errors import ConfigError
from stormproof.workflows.asl import AslValidationError, Problem, parse, validate

BASE: dict[str, Any] = {
    "StartAt": "T",
    "States": {
        "T": {
            "Type": "Task",
            "Resource": "work",
            "Retry": [{"ErrorEquals": ["E"]}],
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "F"}],
            "Next": "C",
        },
        "C": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.x", "NumericEquals": 1, "Next": "W"}],
            "Default": "S",
        },
        "W": {"Type": "Wait", "Seconds": 1, "Next": "S"},
        "S": {"Type": "Succeed"},
        "F": {"Type": "Fail", "Error": "E", "Cause": "c"},
    },
}


def problems_for(change: Any) -> list[Problem]:
    definition = copy.deepcopy(BASE)
    change(definition)
    return validate(definition)


def has(problems: list[Problem], state: str | None, field: str, words: str) -> bool:
    return any(
        p.state == state and p.field == field and words.lower() in p.rule.lower() for p in problems
    )


def test_the_base_definition_is_valid() -> None:
    assert validate(BASE) == []
    assert parse(json.dumps(BASE)).start_at == "T"


def set_in(state: str, key: str, value: Any) -> Any:
    def change(d: dict[str, Any]) -> None:
        d["States"][state][key] = value

    return change


def delete_in(state: str, key: str) -> Any:
    def change(d: dict[str, Any]) -> None:
        del d["States"][state][key]

    return change


CASES: list[tuple[str, Any, str | None, str, str]] = [
    # (id, change, state, field, words in the rule)
    ("start-at-unknown", lambda d: d.update(StartAt="Nope"), None, "StartAt", "names no state"),
    ("start-at-missing", lambda d: d.pop("StartAt"), None, "StartAt", "required"),
    ("states-empty", lambda d: d.update(States={}), None, "States", "non-empty"),
    ("top-level-unknown", lambda d: d.update(Extra=1), None, "Extra", "not a top-level field"),
    (
        "jsonata",
        lambda d: d.update(QueryLanguage="JSONata"),
        None,
        "QueryLanguage",
        "only JSONPath",
    ),
    ("machine-timeout", lambda d: d.update(TimeoutSeconds=0), None, "TimeoutSeconds", "positive"),
    ("version", lambda d: d.update(Version="2.0"), None, "Version", "1.0"),
    ("type-unknown", set_in("W", "Type", "Sleep"), "W", "Type", "must be one of"),
    ("unknown-field", set_in("W", "Color", "red"), "W", "Color", "not a field of a Wait"),
    ("missing-next", delete_in("W", "Next"), "W", "Next", "must have Next"),
    ("next-and-end", set_in("W", "End", True), "W", "Next", "both Next and End"),
    ("next-unknown", set_in("W", "Next", "Nowhere"), "W", "Next", "not a state"),
    ("end-not-bool", set_in("W", "End", "yes"), "W", "End", "boolean"),
    ("succeed-with-next", set_in("S", "Next", "T"), "S", "Next", "must not have Next"),
    ("choice-with-end", set_in("C", "End", True), "C", "End", "must not have End"),
    (
        "retry-on-pass",
        lambda d: d["States"].update(P={"Type": "Pass", "Retry": [], "End": True}),
        "P",
        "Retry",
        "only in Task, Parallel",
    ),
    ("catch-on-wait", set_in("W", "Catch", []), "W", "Catch", "only in Task, Parallel"),
    ("retry-not-array", set_in("T", "Retry", {}), "T", "Retry", "array"),
    (
        "error-equals-empty",
        set_in("T", "Retry", [{"ErrorEquals": []}]),
        "T",
        "Retry[0].ErrorEquals",
        "non-empty",
    ),
    (
        "all-not-alone",
        set_in("T", "Retry", [{"ErrorEquals": ["States.ALL", "E"]}]),
        "T",
        "Retry[0].ErrorEquals",
        "alone",
    ),
    (
        "all-not-last-retrier",
        set_in("T", "Retry", [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["E"]}]),
        "T",
        "Retry[0].ErrorEquals",
        "last retrier",
    ),
    (
        "all-not-last-catcher",
        set_in(
            "T",
            "Catch",
            [{"ErrorEquals": ["States.ALL"], "Next": "F"}, {"ErrorEquals": ["E"], "Next": "F"}],
        ),
        "T",
        "Catch[0].ErrorEquals",
        "last catcher",
    ),
    (
        "unknown-states-error",
        set_in("T", "Retry", [{"ErrorEquals": ["States.Oops"]}]),
        "T",
        "Retry[0].ErrorEquals",
        "not a States error",
    ),
    (
        "max-attempts-negative",
        set_in("T", "Retry", [{"ErrorEquals": ["E"], "MaxAttempts": -1}]),
        "T",
        "Retry[0].MaxAttempts",
        "non-negative",
    ),
    (
        "backoff-below-one",
        set_in("T", "Retry", [{"ErrorEquals": ["E"], "BackoffRate": 0.5}]),
        "T",
        "Retry[0].BackoffRate",
        ">= 1.0",
    ),
    (
        "interval-zero",
        set_in("T", "Retry", [{"ErrorEquals": ["E"], "IntervalSeconds": 0}]),
        "T",
        "Retry[0].IntervalSeconds",
        "positive",
    ),
    (
        "max-delay-zero",
        set_in("T", "Retry", [{"ErrorEquals": ["E"], "MaxDelaySeconds": 0}]),
        "T",
        "Retry[0].MaxDelaySeconds",
        "positive",
    ),
    (
        "jitter-unknown",
        set_in("T", "Retry", [{"ErrorEquals": ["E"], "JitterStrategy": "HALF"}]),
        "T",
        "Retry[0].JitterStrategy",
        "FULL",
    ),
    (
        "retrier-unknown-field",
        set_in("T", "Retry", [{"ErrorEquals": ["E"], "Delay": 1}]),
        "T",
        "Retry[0].Delay",
        "not a field of a retrier",
    ),
    (
        "catcher-without-next",
        set_in("T", "Catch", [{"ErrorEquals": ["E"]}]),
        "T",
        "Catch[0].Next",
        "Next",
    ),
    (
        "catcher-next-unknown",
        set_in("T", "Catch", [{"ErrorEquals": ["E"], "Next": "Nope"}]),
        "T",
        "Next",
        "not a state",
    ),
    (
        "catcher-result-path",
        set_in("T", "Catch", [{"ErrorEquals": ["E"], "Next": "F", "ResultPath": "$.a[*]"}]),
        "T",
        "Catch[0].ResultPath",
        "reference path",
    ),
    ("task-without-resource", delete_in("T", "Resource"), "T", "Resource", "must have a Resource"),
    ("timeout-zero", set_in("T", "TimeoutSeconds", 0), "T", "TimeoutSeconds", "positive"),
    (
        "heartbeat-not-below-timeout",
        lambda d: d["States"]["T"].update(TimeoutSeconds=5, HeartbeatSeconds=5),
        "T",
        "HeartbeatSeconds",
        "smaller than TimeoutSeconds",
    ),
    (
        "timeout-and-path",
        lambda d: d["States"]["T"].update(TimeoutSeconds=5, TimeoutSecondsPath="$.t"),
        "T",
        "TimeoutSeconds",
        "together with TimeoutSecondsPath",
    ),
    ("bad-input-path", set_in("T", "InputPath", "nope"), "T", "InputPath", "must be a path"),
    ("bad-output-path", set_in("T", "OutputPath", "$..deep"), "T", "OutputPath", "deep scan"),
    (
        "result-path-indefinite",
        set_in("T", "ResultPath", "$.a[*]"),
        "T",
        "ResultPath",
        "reference path",
    ),
    ("result-path-context", set_in("T", "ResultPath", "$$.Execution"), "T", "ResultPath", "$$"),
    ("parameters-not-object", set_in("T", "Parameters", [1]), "T", "Parameters", "JSON object"),
    ("parameters-bad-path", set_in("T", "Parameters", {"a.$": "$.x["}), "T", "Parameters", "a.$"),
    (
        "parameters-bad-intrinsic",
        set_in("T", "Parameters", {"a.$": "States.Nope()"}),
        "T",
        "Parameters",
        "unknown function",
    ),
    (
        "parameters-duplicate",
        set_in("T", "Parameters", {"a.$": "$.x", "a": 1}),
        "T",
        "Parameters",
        "duplicate",
    ),
    (
        "parameters-dollar-non-string",
        set_in("T", "Parameters", {"a.$": 1}),
        "T",
        "Parameters",
        "must be a string",
    ),
    ("choices-empty", set_in("C", "Choices", []), "C", "Choices", "non-empty"),
    (
        "choice-rule-without-next",
        set_in("C", "Choices", [{"Variable": "$.x", "IsNull": True}]),
        "C",
        "Choices[0].Next",
        "top-level",
    ),
    (
        "nested-rule-with-next",
        set_in(
            "C", "Choices", [{"Not": {"Variable": "$.x", "IsNull": True, "Next": "S"}, "Next": "S"}]
        ),
        "C",
        "Choices[0].Not.Next",
        "must not",
    ),
    (
        "two-operators",
        set_in(
            "C", "Choices", [{"Variable": "$.x", "IsNull": True, "IsString": True, "Next": "S"}]
        ),
        "C",
        "Choices[0]",
        "exactly one",
    ),
    (
        "unknown-operator",
        set_in("C", "Choices", [{"Variable": "$.x", "NumericIs": 1, "Next": "S"}]),
        "C",
        "Choices[0].NumericIs",
        "not a comparison",
    ),
    (
        "operand-type",
        set_in("C", "Choices", [{"Variable": "$.x", "NumericEquals": "1", "Next": "S"}]),
        "C",
        "Choices[0].NumericEquals",
        "number",
    ),
    (
        "bad-timestamp-operand",
        set_in("C", "Choices", [{"Variable": "$.x", "TimestampEquals": "2016-03-14", "Next": "S"}]),
        "C",
        "Choices[0].TimestampEquals",
        "RFC 3339",
    ),
    (
        "open-escape-matches",
        set_in("C", "Choices", [{"Variable": "$.x", "StringMatches": "a\\b", "Next": "S"}]),
        "C",
        "Choices[0].StringMatches",
        "escape",
    ),
    (
        "and-empty",
        set_in("C", "Choices", [{"And": [], "Next": "S"}]),
        "C",
        "Choices[0].And",
        "non-empty",
    ),
    (
        "rule-without-variable",
        set_in("C", "Choices", [{"NumericEquals": 1, "Next": "S"}]),
        "C",
        "Choices[0]",
        "Variable",
    ),
    ("default-unknown", set_in("C", "Default", "Nope"), "C", "Next", "not a state"),
    (
        "wait-two-fields",
        set_in("W", "Timestamp", "2016-03-14T01:59:00Z"),
        "W",
        "Seconds",
        "exactly one",
    ),
    ("wait-negative", set_in("W", "Seconds", -1), "W", "Seconds", "non-negative"),
    (
        "wait-bad-timestamp",
        lambda d: (
            d["States"]["W"].update(Timestamp="2016-03-14 01:59", Seconds=None)
            or d["States"]["W"].pop("Seconds")
        ),
        "W",
        "Timestamp",
        "RFC 3339",
    ),
    (
        "fail-error-and-path",
        set_in("F", "ErrorPath", "$.e"),
        "F",
        "Error",
        "together with ErrorPath",
    ),
    ("fail-cause-not-string", set_in("F", "Cause", 3), "F", "Cause", "string"),
    ("unsupported-assign", set_in("W", "Assign", {"x": 1}), "W", "Assign", "not supported"),
    (
        "unreachable",
        lambda d: d["States"].update(Lost={"Type": "Succeed"}),
        "Lost",
        "name",
        "unreachable",
    ),
    (
        "long-name",
        lambda d: d["States"].update({"N" * 81: {"Type": "Succeed"}}),
        "N" * 81,
        "name",
        "80",
    ),
    (
        "no-terminal",
        lambda d: d.update(
            States={"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Pass", "Next": "A"}},
            StartAt="A",
        ),
        None,
        "States",
        "no terminal",
    ),
]


@pytest.mark.parametrize(
    ("change", "state", "field", "words"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_each_rule_names_the_state_and_the_rule(
    change: Any, state: str | None, field: str, words: str
) -> None:
    problems = problems_for(change)
    assert has(problems, state, field, words), problems


def branch_definition(branch_state: dict[str, Any]) -> dict[str, Any]:
    return {
        "StartAt": "P",
        "States": {
            "P": {
                "Type": "Parallel",
                "Branches": [{"StartAt": "B", "States": {"B": branch_state}}],
                "Next": "Out",
            },
            "Out": {"Type": "Succeed"},
        },
    }


def test_a_branch_cannot_transition_outside_its_states() -> None:
    problems = validate(branch_definition({"Type": "Pass", "Next": "Out"}))
    assert has(problems, "B", "Next", "not a state in this scope")


def test_state_names_are_unique_across_branches() -> None:
    problems = validate(branch_definition({"Type": "Pass", "End": True}) | {"StartAt": "P"})
    assert problems == []
    clash = branch_definition({"Type": "Pass", "End": True})
    clash["States"]["P"]["Branches"][0] = {"StartAt": "Out", "States": {"Out": {"Type": "Succeed"}}}
    assert has(validate(clash), "Out", "name", "unique")


def test_problems_inside_branches_and_map_processors_are_reported() -> None:
    problems = validate(branch_definition({"Type": "Wait", "End": True}))
    assert has(problems, "B", "Seconds", "exactly one")
    assert has(problems, "P", "Branches", "invalid branches")
    empty = branch_definition({"Type": "Pass", "End": True})
    empty["States"]["P"]["Branches"] = []
    assert has(validate(empty), "P", "Branches", "non-empty")
    bad_map = {
        "StartAt": "M",
        "States": {
            "M": {
                "Type": "Map",
                "ItemProcessor": {"StartAt": "X", "States": {}},
                "MaxConcurrency": -1,
                "End": True,
            }
        },
    }
    problems = validate(bad_map)
    assert has(problems, "M", "ItemProcessor.States", "non-empty")
    distributed = copy.deepcopy(bad_map)
    distributed["States"]["M"]["ItemProcessor"] = {
        "ProcessorConfig": {"Mode": "DISTRIBUTED"},
        "StartAt": "X",
        "States": {"X": {"Type": "Succeed"}},
    }
    assert has(validate(distributed), "M", "ItemProcessor.ProcessorConfig.Mode", "INLINE")
    reader = copy.deepcopy(distributed)
    reader["States"]["M"]["ItemProcessor"]["ProcessorConfig"] = {}
    reader["States"]["M"]["ItemReader"] = {}
    reader["States"]["M"]["MaxConcurrency"] = 1
    assert has(validate(reader), "M", "ItemReader", "not supported")


def test_errors_collect_every_problem_and_are_config_errors() -> None:
    definition = copy.deepcopy(BASE)
    definition["States"]["W"]["Seconds"] = -1
    definition["States"]["T"]["TimeoutSeconds"] = 0
    with pytest.raises(AslValidationError) as info:
        parse(definition)
    assert isinstance(info.value, ConfigError)
    fields = {(p.state, p.field) for p in info.value.problems}
    assert {("W", "Seconds"), ("T", "TimeoutSeconds")} <= fields
    assert "state 'W': Seconds" in str(info.value)


def test_text_that_is_not_json_or_yaml_object() -> None:
    assert has(validate("[1, 2]"), None, "definition", "JSON object")
    assert has(validate("{not json: ["), None, "definition", "neither valid JSON nor YAML")


def test_yaml_definitions_are_accepted() -> None:
    text = """
StartAt: A
States:
  A:
    Type: Pass
    Result: {x: 1}
    End: true
"""
    assert parse(text).states["A"].result == {"x": 1}
