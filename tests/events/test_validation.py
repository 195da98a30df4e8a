from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from stormproof.errors import ConfigError
from stormproof.events.validation import DeadLetterFailed, Invalid, ValidationPolicy

ORDER = {
    "type": "object",
    "required": ["id", "amount"],
    "properties": {"id": {"type": "string"}, "amount": {"type": "integer", "minimum": 1}},
}


class Order(BaseModel):
    id: str
    amount: int


def test_valid_events_pass_invalid_ones_are_counted_and_dead_lettered() -> None:
    dead: list[Invalid] = []
    policy = ValidationPolicy(ORDER, dead_letter=dead.append)
    events: list[Any] = [
        {"id": "a", "amount": 3},
        {"id": "b", "amount": "3"},
        {"id": "c", "amount": 0},
        '{"id": "d", "amount": 2}',
        b"{not json",
        {"amount": 1},
    ]
    passed = policy.filter(events)
    assert passed == [{"id": "a", "amount": 3}, {"id": "d", "amount": 2}]
    assert policy.valid == 2
    assert dict(policy.counts) == {
        "schema:type:data.amount": 1,
        "schema:minimum:data.amount": 1,
        "invalid_json": 1,
        "schema:required:data": 1,
    }
    assert [d.event for d in dead] == [events[1], events[2], events[4], events[5]]
    assert all(d.detail for d in dead)


def test_pydantic_models_pass_on_coerced_instances() -> None:
    policy = ValidationPolicy(Order)
    passed = policy.filter([{"id": "a", "amount": "3"}, {"id": "b", "amount": "x"}, [1]])
    assert passed == [Order(id="a", amount=3)]  # "3" was coerced
    assert dict(policy.counts) == {
        "schema:int_parsing:data.amount": 1,
        "schema:model_type:data": 1,  # an error about the whole event is reported at "data"
    }


def test_a_failing_dead_letter_sink_loses_nothing() -> None:
    def broken_sink(invalid: Invalid) -> None:
        raise OSError("DLQ unreachable")

    policy = ValidationPolicy(ORDER, dead_letter=broken_sink)
    with pytest.raises(DeadLetterFailed) as excinfo:
        policy.filter([{"id": "x"}, {"id": "a", "amount": 1}, b"{bad"])
    failure = excinfo.value
    assert [i.reason for i, _ in failure.undelivered] == ["schema:required:data", "invalid_json"]
    assert failure.passed == [{"id": "a", "amount": 1}]
    assert policy.valid == 1


def test_text_size_is_measured_in_utf8_bytes_even_unparsed() -> None:
    policy = ValidationPolicy({"type": "string"}, max_bytes=10, parse_json=False)
    assert policy.filter(["é" * 6]) == []  # 6 characters, 12 bytes
    assert policy.counts["too_large"] == 1
    assert policy.filter(["é" * 5]) == ["é" * 5]


def test_size_and_depth_limits() -> None:
    policy = ValidationPolicy({"type": "object"}, max_bytes=100)
    deep = "[" * 100_000 + "]" * 100_000
    assert policy.filter(["x" * 101, deep]) == []
    assert policy.counts["too_large"] == 2  # the deep one is also over 100 bytes
    roomy = ValidationPolicy({"type": "array"}, max_bytes=1_000_000)
    assert roomy.filter([deep]) == []
    assert roomy.counts["too_deep"] == 1


def test_bad_configuration() -> None:
    with pytest.raises(ConfigError) as excinfo:
        ValidationPolicy({"type": "no-such-type"})
    assert excinfo.value.field == "schema"
    with pytest.raises(ConfigError):
        ValidationPolicy(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as excinfo:
        ValidationPolicy(ORDER, max_bytes=0)
    assert excinfo.value.field == "max_bytes"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


@given(st.one_of(json_values, st.text(), st.binary()))
@settings(max_examples=300)
def test_any_input_is_either_passed_or_counted_never_a_crash(event: Any) -> None:
    dead: list[Invalid] = []
    policy = ValidationPolicy(ORDER, dead_letter=dead.append, max_bytes=10_000)
    passed = policy.filter([event])
    assert len(passed) + sum(policy.counts.values()) == 1
    assert len(dead) == sum(policy.counts.values())
    if passed:
        candidate = passed[0]
        assert isinstance(candidate, dict) and isinstance(candidate["id"], str)
        assert isinstance(candidate["amount"], int) and candidate["amount"] >= 1
        json.dumps(candidate)
