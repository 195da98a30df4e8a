"""Intrinsic functions (spec Appendix B examples) and the JSONPath subset."""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stormproof.workflows.asl.errors import StatesError
from stormproof.workflows.asl.intrinsics import parse_intrinsic
from stormproof.workflows.asl.jsonpath import PathNotFound, parse_path

CONTEXT = {"Execution": {"Name": "exec-1"}}


def call(text: str, data: Any = None, seed: int = 0) -> Any:
    return parse_intrinsic(text).evaluate(data or {}, CONTEXT, random.Random(seed))


@pytest.mark.parametrize(
    ("text", "data", "expected"),
    [
        (
            "States.Format('Your name is {}, we are in the year {}', $.name, 2020)",
            {"name": "Foo"},
            "Your name is Foo, we are in the year 2020",
        ),
        (
            "States.Format('Welcome to {} {}\\'s playlist.', $.f, $.l)",
            {"f": "A", "l": "B"},
            "Welcome to A B's playlist.",
        ),
        ("States.Format('a \\{\\} b {}', 1.0)", {}, "a {} b 1"),
        ("States.Format('{} {} {}', true, null, 2.5)", {}, "true null 2.5"),
        ("States.Format($.t, $$.Execution.Name)", {"t": "run {}"}, "run exec-1"),
        ("States.StringToJson($.someString)", {"someString": '{"number": 20}'}, {"number": 20}),
        (
            "States.JsonToString($.someJson)",
            {"someJson": {"name": "Foo", "year": 2020}},
            '{"name":"Foo","year":2020}',
        ),
        (
            "States.Array('Foo', 2020, $.someJson, null)",
            {"someJson": {"random": "abcdefg"}},
            ["Foo", 2020, {"random": "abcdefg"}, None],
        ),
        ("States.Array()", {}, []),
        (
            "States.ArrayPartition($.a, 4)",
            {"a": [1, 2, 3, 4, 5, 6, 7, 8, 9]},
            [[1, 2, 3, 4], [5, 6, 7, 8], [9]],
        ),
        ("States.ArrayContains($.a, $.x)", {"a": [1, 2, 3], "x": 2}, True),
        ("States.ArrayContains($.a, true)", {"a": [1, 2, 3]}, False),
        ("States.ArrayRange(1, 9, 2)", {}, [1, 3, 5, 7, 9]),
        ("States.ArrayRange(5, 1, -2)", {}, [5, 3, 1]),
        ("States.ArrayGetItem($.a, $.i)", {"a": [1, 2, 3, 4, 5, 6], "i": 5}, 6),
        ("States.ArrayLength($.a)", {"a": [1, 2, 3]}, 3),
        ("States.ArrayUnique($.a)", {"a": [1, 2, 3, 3, 3, 4, True]}, [1, 2, 3, 4, True]),
        ("States.Base64Encode($.s)", {"s": "Data to encode"}, "RGF0YSB0byBlbmNvZGU="),
        ("States.Base64Decode($.s)", {"s": "RGF0YSB0byBlbmNvZGU="}, "Data to encode"),
        (
            "States.Hash($.d, 'SHA-1')",
            {"d": "input data"},
            "aaff4a450a104cd177d28d18d74485e8cae074b7",
        ),
        ("States.Hash('abc', 'MD5')", {}, "900150983cd24fb0d6963f7d28e17f72"),
        (
            "States.Hash('abc', 'SHA-256')",
            {},
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ),
        (
            "States.JsonMerge($.a, $.b, false)",
            {"a": {"a": {"a1": 1}, "b": 2}, "b": {"a": {"a3": 1}, "c": 3}},
            {"a": {"a3": 1}, "b": 2, "c": 3},
        ),
        (
            "States.JsonMerge($.a, $.b, true)",
            {"a": {"a": {"a1": 1}, "b": 2}, "b": {"a": {"a3": 1}, "c": 3}},
            {"a": {"a1": 1, "a3": 1}, "b": 2, "c": 3},
        ),
        ("States.MathAdd($.value1, $.step)", {"value1": 111, "step": -1}, 110),
        ("States.MathAdd(States.MathAdd(1, 2), 3)", {}, 6),
        ("States.StringSplit($.s, ',')", {"s": "1,2,3,4,5"}, ["1", "2", "3", "4", "5"]),
        ("States.ArrayLength(States.StringSplit('a b', ' '))", {}, 2),
    ],
)
def test_intrinsic_functions(text: str, data: Any, expected: Any) -> None:
    assert call(text, data) == expected


def test_uuid_and_math_random_use_the_given_rng() -> None:
    first = call("States.UUID()", seed=3)
    assert first == call("States.UUID()", seed=3) != call("States.UUID()", seed=4)
    assert uuid.UUID(first).version == 4
    values = {call("States.MathRandom(1, 999)", seed=s) for s in range(30)}
    assert all(1 <= v <= 999 for v in values) and len(values) > 10
    assert call("States.MathRandom(1, 999, 7)", seed=1) == call(
        "States.MathRandom(1, 999, 7)", seed=2
    )


@pytest.mark.parametrize(
    ("text", "data"),
    [
        ("States.Format('{} {}', 1)", {}),
        ("States.Format('{}', $.o)", {"o": {"a": 1}}),
        ("States.StringToJson($.s)", {"s": "{not json"}),
        ("States.StringToJson(1)", {}),
        ("States.ArrayPartition($.a, 0)", {"a": [1]}),
        ("States.ArrayRange(1, 2, 0)", {}),
        ("States.ArrayRange(1, 5000, 1)", {}),
        ("States.ArrayGetItem($.a, 3)", {"a": [1]}),
        ("States.ArrayLength('x')", {}),
        ("States.Base64Decode('***')", {}),
        ("States.Hash('a', 'SHA-3')", {}),
        ("States.JsonMerge($.a, 1, false)", {"a": {}}),
        ("States.MathAdd(1.5, 1)", {}),
        ("States.MathRandom(5, 1)", {}),
        ("States.StringSplit('a', '')", {}),
        ("States.Array($.missing)", {}),
    ],
)
def test_intrinsic_failures_raise_states_intrinsic_failure(text: str, data: Any) -> None:
    with pytest.raises(StatesError) as info:
        call(text, data)
    assert info.value.error == "States.IntrinsicFailure"


@pytest.mark.parametrize(
    "text",
    [
        "States.Nope(1)",
        "States.UUID(1)",
        "States.Format('open \\ escape')",
        "States.Format('unterminated)",
        "States.MathAdd(1, 2",
        "States.MathAdd(1, 2) extra",
        "Format('x')",
        "States.JsonToString",
    ],
)
def test_malformed_intrinsics_are_rejected_at_parse_time(text: str) -> None:
    with pytest.raises(ValueError):
        parse_intrinsic(text)


DATA = {
    "store": {"book": [{"title": "A", "price": 8}, {"title": "B", "price": 12}]},
    "a.b": 1,
    "x-y": {"z": True},
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$", DATA),
        ("$.store.book[0].title", "A"),
        ("$.store.book[-1].title", "B"),
        ("$['store']['book'][1]['price']", 12),
        ('$["x-y"].z', True),
        ("$.x-y.z", True),
        ("$.a\\.b", 1),
        ("$['a.b']", 1),
        ("$.store.book[*].title", ["A", "B"]),
        ("$.store.book[0,1].price", [8, 12]),
        ("$.store.book[:1].title", ["A"]),
        ("$.store.*", [DATA["store"]["book"]]),
        ("$['a.b','x-y']", [1, {"z": True}]),
        ("$.nothing[*]", []),
    ],
)
def test_path_get(path: str, expected: Any) -> None:
    assert parse_path(path).get(DATA) == expected


def test_definite_path_that_selects_nothing_raises() -> None:
    with pytest.raises(PathNotFound):
        parse_path("$.store.pen").get(DATA)
    assert not parse_path("$.store.pen").exists(DATA)


@pytest.mark.parametrize(
    "text",
    ["", "store", "$..book", "$.store[?(@.price)]", "$.", "$[", "$[]", "$.a]", "$[1:2:0]", "$[x]"],
)
def test_bad_paths_are_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        parse_path(text)


@pytest.mark.parametrize("text", ["$.a[*]", "$.a[0,1]", "$.a[1:]", "$.*"])
def test_reference_paths_must_be_definite(text: str) -> None:
    parse_path(text)
    with pytest.raises(ValueError):
        parse_path(text, reference=True)


def test_context_paths_can_be_refused() -> None:
    assert parse_path("$$.Execution.Name").context
    with pytest.raises(ValueError):
        parse_path("$$.Execution.Name", allow_context=False)


def test_set_creates_fields_and_rejects_non_objects() -> None:
    path = parse_path("$.master.result.sum", reference=True)
    data = {"master": {"detail": [1, 2, 3]}}
    assert path.set(data, 6) == {"master": {"detail": [1, 2, 3], "result": {"sum": 6}}}
    assert data == {"master": {"detail": [1, 2, 3]}}
    assert parse_path("$.master.detail[1]").set(data, 9) == {"master": {"detail": [1, 9, 3]}}
    with pytest.raises(PathNotFound):
        parse_path("$.x").set("foo", 1)
    with pytest.raises(PathNotFound):
        parse_path("$.master.detail[5]").set(data, 1)


keys = st.text(alphabet="abcxyz_-", min_size=1, max_size=6)
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=10,
)


@given(
    data=st.dictionaries(keys, values, max_size=4),
    path=st.lists(keys, min_size=1, max_size=3),
    value=values,
)
def test_set_then_get_round_trips(data: dict[str, Any], path: list[str], value: Any) -> None:
    reference = parse_path("$" + "".join(f"['{k}']" for k in path), reference=True)
    try:
        updated = reference.set(data, value)
    except PathNotFound:
        return  # an intermediate node is not an object
    assert reference.get(updated) == value
