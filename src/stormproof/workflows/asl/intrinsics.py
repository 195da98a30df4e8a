"""Intrinsic functions (States Language, "Intrinsic Functions" and Appendix B).

An intrinsic is parsed once, when the definition is parsed, into a small tree; evaluating it needs
the payload template's input, the Context Object and a ``random.Random`` (for ``States.UUID`` and
``States.MathRandom``), so evaluation stays pure. A failure while evaluating raises
:class:`~stormproof.workflows.asl.errors.StatesError` with ``States.IntrinsicFailure``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import random
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stormproof.workflows.asl.errors import INTRINSIC_FAILURE, StatesError
from stormproof.workflows.asl.jsonpath import JsonPath, PathNotFound, parse_path

__all__ = ["FUNCTIONS", "Intrinsic", "parse_intrinsic"]

_NAME = re.compile(r"[A-Za-z0-9._]+")
_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?")
_RESERVED = "'{}\\"


@dataclass(frozen=True, slots=True)
class _Literal:
    value: Any
    raw: str | None = None  # a string literal as written (escapes kept), for States.Format


@dataclass(frozen=True, slots=True)
class _PathArg:
    path: JsonPath


@dataclass(frozen=True, slots=True)
class Intrinsic:
    """A parsed intrinsic function call: ``name(args...)``."""

    name: str
    args: tuple[_Literal | _PathArg | Intrinsic, ...]

    def evaluate(self, data: Any, context: Any, rng: random.Random) -> Any:
        """Call the function with its arguments resolved against ``data`` and ``context``."""
        values = [_resolve(arg, data, context, rng) for arg in self.args]
        function = FUNCTIONS[self.name][0]
        try:
            return function(self, values, rng)
        except StatesError:
            raise
        except (TypeError, ValueError, KeyError, IndexError, OverflowError) as exc:
            raise StatesError(INTRINSIC_FAILURE, f"{self.name}: {exc}") from exc


def _resolve(
    arg: _Literal | _PathArg | Intrinsic, data: Any, context: Any, rng: random.Random
) -> Any:
    if isinstance(arg, _Literal):
        return arg.value
    if isinstance(arg, _PathArg):
        try:
            return arg.path.get(context if arg.path.context else data)
        except PathNotFound as exc:
            raise StatesError(INTRINSIC_FAILURE, str(exc)) from exc
    return arg.evaluate(data, context, rng)


# ---------------------------------------------------------------------------------- parsing


def parse_intrinsic(text: str) -> Intrinsic:
    """Parse ``text`` as an intrinsic function call; raises :class:`ValueError` if it is not one."""
    parser = _Parser(text)
    call = parser.call()
    parser.skip_spaces()
    if parser.pos != len(text):
        raise ValueError(f"unexpected text after the closing ')' in {text!r}")
    return call


class _Parser:
    __slots__ = ("pos", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, why: str) -> ValueError:
        return ValueError(f"invalid intrinsic function {self.text!r}: {why}")

    def skip_spaces(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] == " ":
            self.pos += 1

    def call(self) -> Intrinsic:
        match = _NAME.match(self.text, self.pos)
        if match is None:
            raise self.fail("expected a function name")
        name = match.group(0)
        if name not in FUNCTIONS:
            raise self.fail(f"unknown function {name!r}")
        self.pos = match.end()
        if self.pos >= len(self.text) or self.text[self.pos] != "(":
            raise self.fail(f"expected '(' after {name}")
        self.pos += 1
        args: list[_Literal | _PathArg | Intrinsic] = []
        self.skip_spaces()
        if self.pos < len(self.text) and self.text[self.pos] == ")":
            self.pos += 1
        else:
            while True:
                self.skip_spaces()
                args.append(self.argument())
                self.skip_spaces()
                if self.pos >= len(self.text):
                    raise self.fail("missing ')'")
                if self.text[self.pos] == ",":
                    self.pos += 1
                    continue
                if self.text[self.pos] == ")":
                    self.pos += 1
                    break
                raise self.fail(f"unexpected {self.text[self.pos]!r}")
        low, high = FUNCTIONS[name][1], FUNCTIONS[name][2]
        if not low <= len(args) <= high:
            expected = str(low) if low == high else f"{low} to {high}"
            raise self.fail(f"{name} takes {expected} argument(s), got {len(args)}")
        return Intrinsic(name, tuple(args))

    def argument(self) -> _Literal | _PathArg | Intrinsic:
        if self.pos >= len(self.text):
            raise self.fail("missing argument")
        char = self.text[self.pos]
        if char == "'":
            return self.string()
        if char == "$":
            return self.path()
        number = _NUMBER.match(self.text, self.pos)
        if number is not None:
            self.pos = number.end()
            token = number.group(0)
            is_int = number.group(1) is None and number.group(2) is None
            return _Literal(int(token) if is_int else float(token))
        for word, value in (("null", None), ("true", True), ("false", False)):
            if self.text.startswith(word, self.pos) and not _NAME.match(
                self.text, self.pos + len(word)
            ):
                self.pos += len(word)
                return _Literal(value)
        return self.call()

    def string(self) -> _Literal:
        start = self.pos
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\":
                nxt = self.text[self.pos + 1 : self.pos + 2]
                if not nxt or nxt not in _RESERVED:
                    raise self.fail("an open '\\' escapes nothing reserved (' { } \\)")
                out.append(nxt)
                self.pos += 2
                continue
            if char == "'":
                self.pos += 1
                raw = self.text[start + 1 : self.pos - 1]
                return _Literal("".join(out), raw)
            out.append(char)
            self.pos += 1
        raise self.fail("unterminated string")

    def path(self) -> _PathArg:
        start = self.pos
        depth = 0
        quote: str | None = None
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if quote is not None:
                if char == quote:
                    quote = None
            elif char in "'\"" and depth > 0:
                quote = char
            elif char == "[":
                depth += 1
            elif char == "]":
                depth -= 1
            elif depth == 0 and char in ",)":
                break
            self.pos += 1
        text = self.text[start : self.pos].strip()
        return _PathArg(parse_path(text))


# ------------------------------------------------------------------------------- functions


def _is_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _need(condition: bool, message: str) -> None:
    if not condition:
        raise StatesError(INTRINSIC_FAILURE, message)


def _text(value: Any) -> str:
    """The natural string form of a scalar (strings without quotes, JSON otherwise)."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value)


def _format(call: Intrinsic, values: list[Any], rng: random.Random) -> str:
    template_arg = call.args[0]
    template = values[0]
    _need(isinstance(template, str), "States.Format: the template must be a string")
    # A literal template keeps its escapes, so an escaped brace is not a placeholder.
    raw = template_arg.raw if isinstance(template_arg, _Literal) and template_arg.raw else None
    pieces = _split_template(raw if raw is not None else template)
    args = values[1:]
    _need(
        len(pieces) - 1 == len(args),
        f"States.Format: {len(pieces) - 1} placeholder(s) but {len(args)} argument(s)",
    )
    out = [pieces[0]]
    for value, piece in zip(args, pieces[1:], strict=True):
        _need(
            not isinstance(value, dict | list),
            "States.Format: an argument must not be an array or object",
        )
        out.append(_text(value))
        out.append(piece)
    return "".join(out)


def _split_template(template: str) -> list[str]:
    pieces: list[str] = []
    current: list[str] = []
    index = 0
    while index < len(template):
        char = template[index]
        if char == "\\" and index + 1 < len(template):
            current.append(template[index + 1])
            index += 2
            continue
        if template.startswith("{}", index):
            pieces.append("".join(current))
            current = []
            index += 2
            continue
        current.append(char)
        index += 1
    pieces.append("".join(current))
    return pieces


def _string_to_json(call: Intrinsic, values: list[Any], rng: random.Random) -> Any:
    _need(isinstance(values[0], str), "States.StringToJson: the argument must be a string")
    return json.loads(values[0])


def _json_to_string(call: Intrinsic, values: list[Any], rng: random.Random) -> str:
    _need(isinstance(call.args[0], _PathArg), "States.JsonToString: the argument must be a path")
    return json.dumps(values[0], separators=(",", ":"), ensure_ascii=False)


def _array(call: Intrinsic, values: list[Any], rng: random.Random) -> list[Any]:
    return list(values)


def _array_partition(call: Intrinsic, values: list[Any], rng: random.Random) -> list[Any]:
    array, size = values
    _need(isinstance(array, list), "States.ArrayPartition: the first argument must be an array")
    _need(_is_int(size) and size > 0, "States.ArrayPartition: the chunk size must be > 0")
    size = int(size)
    return [array[i : i + size] for i in range(0, len(array), size)]


def _array_contains(call: Intrinsic, values: list[Any], rng: random.Random) -> bool:
    _need(isinstance(values[0], list), "States.ArrayContains: the first argument must be an array")
    return any(_json_equal(item, values[1]) for item in values[0])


def _json_equal(a: Any, b: Any) -> bool:
    # JSON equality: true is not 1, although Python says True == 1.
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


def _array_range(call: Intrinsic, values: list[Any], rng: random.Random) -> list[int]:
    _need(all(_is_int(v) for v in values), "States.ArrayRange: arguments must be integers")
    start, end, step = (int(v) for v in values)
    _need(step != 0, "States.ArrayRange: the step must not be 0")
    result = list(range(start, end + (1 if step > 0 else -1), step))
    _need(len(result) <= 1000, "States.ArrayRange: the array would have more than 1000 items")
    return result


def _array_get_item(call: Intrinsic, values: list[Any], rng: random.Random) -> Any:
    array, index = values
    _need(isinstance(array, list), "States.ArrayGetItem: the first argument must be an array")
    _need(_is_int(index) and 0 <= index < len(array), "States.ArrayGetItem: index out of range")
    return array[int(index)]


def _array_length(call: Intrinsic, values: list[Any], rng: random.Random) -> int:
    _need(isinstance(values[0], list), "States.ArrayLength: the argument must be an array")
    return len(values[0])


def _array_unique(call: Intrinsic, values: list[Any], rng: random.Random) -> list[Any]:
    _need(isinstance(values[0], list), "States.ArrayUnique: the argument must be an array")
    out: list[Any] = []
    for item in values[0]:
        if not any(_json_equal(item, seen) for seen in out):
            out.append(item)
    return out


def _base64_encode(call: Intrinsic, values: list[Any], rng: random.Random) -> str:
    data = values[0]
    _need(isinstance(data, str), "States.Base64Encode: the argument must be a string")
    _need(len(data) <= 10000, "States.Base64Encode: the string is longer than 10000 characters")
    return base64.b64encode(data.encode()).decode("ascii")


def _base64_decode(call: Intrinsic, values: list[Any], rng: random.Random) -> str:
    data = values[0]
    _need(isinstance(data, str), "States.Base64Decode: the argument must be a string")
    _need(len(data) <= 10000, "States.Base64Decode: the string is longer than 10000 characters")
    try:
        return base64.b64decode(data, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise StatesError(INTRINSIC_FAILURE, f"States.Base64Decode: {exc}") from exc


_HASHES: dict[str, Callable[[bytes], Any]] = {
    "MD5": hashlib.md5,
    "SHA-1": hashlib.sha1,
    "SHA-256": hashlib.sha256,
    "SHA-384": hashlib.sha384,
    "SHA-512": hashlib.sha512,
}


def _hash(call: Intrinsic, values: list[Any], rng: random.Random) -> str:
    data, algorithm = values
    _need(algorithm in _HASHES, f"States.Hash: the algorithm must be one of {sorted(_HASHES)}")
    text = _text(data) if not isinstance(data, dict | list) else json.dumps(data)
    _need(len(text) <= 10000, "States.Hash: the data is longer than 10000 characters")
    return str(_HASHES[algorithm](text.encode()).hexdigest())


def _json_merge(call: Intrinsic, values: list[Any], rng: random.Random) -> dict[str, Any]:
    first, second, deep = values
    _need(
        isinstance(first, dict) and isinstance(second, dict),
        "States.JsonMerge: both arguments must be objects",
    )
    _need(isinstance(deep, bool), "States.JsonMerge: the third argument must be a boolean")
    return _merge(first, second, deep)


def _merge(first: dict[str, Any], second: dict[str, Any], deep: bool) -> dict[str, Any]:
    out = dict(first)
    for key, value in second.items():
        if deep and isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = _merge(out[key], value, True)
        else:
            out[key] = value
    return out


def _math_random(call: Intrinsic, values: list[Any], rng: random.Random) -> int:
    _need(all(_is_int(v) for v in values), "States.MathRandom: arguments must be integers")
    start, end = int(values[0]), int(values[1])
    _need(start <= end, "States.MathRandom: the start must not be greater than the end")
    source = random.Random(int(values[2])) if len(values) == 3 else rng
    return source.randint(start, end)


def _math_add(call: Intrinsic, values: list[Any], rng: random.Random) -> int:
    _need(all(_is_int(v) for v in values), "States.MathAdd: arguments must be integers")
    return int(values[0]) + int(values[1])


def _string_split(call: Intrinsic, values: list[Any], rng: random.Random) -> list[str]:
    text, separators = values
    if not (isinstance(text, str) and isinstance(separators, str) and separators):
        raise StatesError(
            INTRINSIC_FAILURE,
            "States.StringSplit: arguments must be a string and a non-empty delimiter string",
        )
    return text.split(separators)


def _uuid(call: Intrinsic, values: list[Any], rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


# name -> (implementation, minimum arguments, maximum arguments)
FUNCTIONS: dict[str, tuple[Callable[[Intrinsic, list[Any], random.Random], Any], int, int]] = {
    "States.Format": (_format, 1, 10_000),
    "States.StringToJson": (_string_to_json, 1, 1),
    "States.JsonToString": (_json_to_string, 1, 1),
    "States.Array": (_array, 0, 10_000),
    "States.ArrayPartition": (_array_partition, 2, 2),
    "States.ArrayContains": (_array_contains, 2, 2),
    "States.ArrayRange": (_array_range, 3, 3),
    "States.ArrayGetItem": (_array_get_item, 2, 2),
    "States.ArrayLength": (_array_length, 1, 1),
    "States.ArrayUnique": (_array_unique, 1, 1),
    "States.Base64Encode": (_base64_encode, 1, 1),
    "States.Base64Decode": (_base64_decode, 1, 1),
    "States.Hash": (_hash, 2, 2),
    "States.JsonMerge": (_json_merge, 3, 3),
    "States.MathRandom": (_math_random, 2, 3),
    "States.MathAdd": (_math_add, 2, 2),
    "States.StringSplit": (_string_split, 2, 2),
    "States.UUID": (_uuid, 0, 0),
}
