"""Choice Rules (spec, "Choice State": Boolean and Data-test expressions for JSONPath).

A rule is compiled once; evaluating it against the state's effective input is pure. A comparison
between values of the wrong types is false (spec); a ``Variable`` (or ``...Path`` operand) that
selects nothing is a ``States.Runtime`` error, except for ``IsPresent``, which is then false.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stormproof.workflows.asl.errors import RUNTIME, FieldProblem, StatesError
from stormproof.workflows.asl.jsonpath import JsonPath, PathNotFound, parse_path
from stormproof.workflows.asl.steps import timestamp_to_epoch

__all__ = ["OPERATORS", "Rule", "compile_rule", "glob_matches"]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_timestamp(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        timestamp_to_epoch(value)
    except ValueError:
        return False
    return True


def _compare(kind: str, test: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    if kind == "String":
        return lambda a, b: isinstance(a, str) and isinstance(b, str) and test(a, b)
    if kind == "Numeric":
        return lambda a, b: _is_number(a) and _is_number(b) and test(a, b)
    if kind == "Boolean":
        return lambda a, b: isinstance(a, bool) and isinstance(b, bool) and test(a, b)
    return lambda a, b: (
        _is_timestamp(a) and _is_timestamp(b) and test(timestamp_to_epoch(a), timestamp_to_epoch(b))
    )


_TESTS: dict[str, Callable[[Any, Any], bool]] = {
    "Equals": lambda a, b: a == b,
    "LessThan": lambda a, b: a < b,
    "GreaterThan": lambda a, b: a > b,
    "LessThanEquals": lambda a, b: a <= b,
    "GreaterThanEquals": lambda a, b: a >= b,
}

#: operator name -> (kind of operand: "String" | "Numeric" | "Boolean" | "Timestamp" | "Path"
#: | "Pattern" | "Flag", comparison on (variable value, operand value)).
OPERATORS: dict[str, tuple[str, Callable[[Any, Any], bool]]] = {}
for _kind in ("String", "Numeric", "Timestamp"):
    for _name, _test in _TESTS.items():
        OPERATORS[f"{_kind}{_name}"] = (_kind, _compare(_kind, _test))
        OPERATORS[f"{_kind}{_name}Path"] = ("Path", _compare(_kind, _test))
OPERATORS["BooleanEquals"] = ("Boolean", _compare("Boolean", _TESTS["Equals"]))
OPERATORS["BooleanEqualsPath"] = ("Path", _compare("Boolean", _TESTS["Equals"]))
OPERATORS["StringMatches"] = ("Pattern", lambda a, b: isinstance(a, str) and glob_matches(b, a))
OPERATORS["IsNull"] = ("Flag", lambda a, b: (a is None) == b)
OPERATORS["IsPresent"] = ("Flag", lambda a, b: True)  # handled before the value is read
OPERATORS["IsNumeric"] = ("Flag", lambda a, b: _is_number(a) == b)
OPERATORS["IsString"] = ("Flag", lambda a, b: isinstance(a, str) == b)
OPERATORS["IsBoolean"] = ("Flag", lambda a, b: isinstance(a, bool) == b)
OPERATORS["IsTimestamp"] = ("Flag", lambda a, b: _is_timestamp(a) == b)
del _kind, _name, _test


def _check_pattern(pattern: str) -> None:
    index = 0
    while index < len(pattern):
        if pattern[index] == "\\":
            if pattern[index + 1 : index + 2] not in ("*", "\\"):
                raise ValueError("an open '\\' in StringMatches must escape '*' or '\\'")
            index += 2
        else:
            index += 1


def glob_matches(pattern: str, text: str) -> bool:
    r"""StringMatches: ``*`` matches any run of characters; ``\*`` and ``\\`` are literals."""
    tokens: list[str | None] = []  # None stands for the wildcard
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            tokens.append(pattern[index + 1])
            index += 2
        elif char == "*":
            tokens.append(None)
            index += 1
        else:
            tokens.append(char)
            index += 1
    # Iterative wildcard matching with backtracking to the last '*' (linear in practice).
    t = p = 0
    star = -1
    mark = 0
    while t < len(text):
        if p < len(tokens) and tokens[p] is not None and tokens[p] == text[t]:
            t += 1
            p += 1
        elif p < len(tokens) and tokens[p] is None:
            star = p
            mark = t
            p += 1
        elif star >= 0:
            p = star + 1
            mark += 1
            t = mark
        else:
            return False
    while p < len(tokens) and tokens[p] is None:
        p += 1
    return p == len(tokens)


@dataclass(frozen=True, slots=True)
class Rule:
    """A compiled Choice Rule. ``next`` is set on top-level rules only."""

    kind: str  # "And" | "Or" | "Not" | "Test"
    children: tuple[Rule, ...] = ()
    variable: JsonPath | None = None
    operator: str = ""
    operand: Any = None
    next: str | None = None

    def evaluate(self, data: Any, context: Any) -> bool:
        """Whether the rule holds for the effective input ``data``."""
        if self.kind == "And":
            return all(child.evaluate(data, context) for child in self.children)
        if self.kind == "Or":
            return any(child.evaluate(data, context) for child in self.children)
        if self.kind == "Not":
            return not self.children[0].evaluate(data, context)
        assert self.variable is not None
        source = context if self.variable.context else data
        if self.operator == "IsPresent":
            return bool(self.variable.exists(source) == self.operand)
        value = _read(self.variable, source)
        kind, test = OPERATORS[self.operator]
        operand = self.operand
        if kind == "Path":
            path: JsonPath = operand
            operand = _read(path, context if path.context else data)
        if kind == "Numeric" and isinstance(operand, float) and math.isnan(operand):
            return False
        return bool(test(value, operand))


def _read(path: JsonPath, source: Any) -> Any:
    try:
        return path.get(source)
    except PathNotFound as exc:
        raise StatesError(
            RUNTIME, f"Invalid path {path.text!r}: the choice rule references a missing value"
        ) from exc


def compile_rule(obj: Any, where: str, *, top: bool) -> Rule:
    """Compile one Choice Rule; raises :class:`FieldProblem` naming the field at fault."""
    if not isinstance(obj, dict):
        raise FieldProblem(where, "a choice rule must be a JSON object")
    next_state = obj.get("Next")
    if top:
        if not isinstance(next_state, str) or not next_state:
            raise FieldProblem(f"{where}.Next", "a top-level choice rule must have a Next state")
    elif "Next" in obj:
        raise FieldProblem(f"{where}.Next", "a nested choice rule must not have a Next field")
    allowed = {"Next", "Comment", "Assign"}
    for combinator in ("And", "Or"):
        if combinator in obj:
            items = obj[combinator]
            if not isinstance(items, list) or not items:
                raise FieldProblem(f"{where}.{combinator}", "must be a non-empty array of rules")
            _only(obj, allowed | {combinator}, where)
            children = tuple(
                compile_rule(item, f"{where}.{combinator}[{i}]", top=False)
                for i, item in enumerate(items)
            )
            return Rule(combinator, children, next=next_state if top else None)
    if "Not" in obj:
        _only(obj, allowed | {"Not"}, where)
        child = compile_rule(obj["Not"], f"{where}.Not", top=False)
        return Rule("Not", (child,), next=next_state if top else None)
    if "Variable" not in obj:
        raise FieldProblem(where, "a choice rule needs And, Or, Not, or a Variable to test")
    try:
        variable = parse_path(obj["Variable"])
    except ValueError as exc:
        raise FieldProblem(f"{where}.Variable", str(exc)) from None
    operators = [key for key in obj if key in OPERATORS]
    unknown = [key for key in obj if key not in OPERATORS and key not in allowed | {"Variable"}]
    if unknown:
        raise FieldProblem(f"{where}.{unknown[0]}", "is not a comparison operator")
    if len(operators) != 1:
        raise FieldProblem(where, "a data-test rule must have exactly one comparison operator")
    operator = operators[0]
    operand = _operand(operator, obj[operator], f"{where}.{operator}")
    return Rule("Test", (), variable, operator, operand, next_state if top else None)


def _only(obj: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in obj:
        if key not in allowed:
            raise FieldProblem(f"{where}.{key}", "is not allowed in a boolean expression")


def _operand(operator: str, value: Any, where: str) -> Any:
    kind = OPERATORS[operator][0]
    if kind == "Path":
        try:
            return parse_path(value)
        except ValueError as exc:
            raise FieldProblem(where, str(exc)) from None
    if kind in ("String", "Pattern"):
        if not isinstance(value, str):
            raise FieldProblem(where, "must be a string")
        if kind == "Pattern":
            try:
                _check_pattern(value)
            except ValueError as exc:
                raise FieldProblem(where, str(exc)) from None
        return value
    if kind == "Numeric":
        if not _is_number(value):
            raise FieldProblem(where, "must be a number")
        return value
    if kind == "Timestamp":
        if not _is_timestamp(value):
            raise FieldProblem(where, "must be an RFC 3339 timestamp such as 2016-03-14T01:59:00Z")
        return value
    if not isinstance(value, bool):  # Boolean and Flag
        raise FieldProblem(where, "must be a boolean")
    return value
