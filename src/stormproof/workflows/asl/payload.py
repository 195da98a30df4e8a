"""Payload Templates: Parameters, ResultSelector and ItemSelector (spec, "Payload Template").

A field whose name ends in ``.$`` is renamed without the suffix and its value replaced by a Path
applied to the template's input, a ``$$.`` path applied to the Context Object, or the result of an
intrinsic function. Templates are compiled once at parse time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from stormproof.workflows.asl.errors import PARAMETER_PATH_FAILURE, StatesError
from stormproof.workflows.asl.intrinsics import Intrinsic, parse_intrinsic
from stormproof.workflows.asl.jsonpath import JsonPath, PathNotFound, parse_path

__all__ = ["Template", "compile_template"]

# Node shapes: ("const", value) | ("path", JsonPath) | ("fn", Intrinsic)
# | ("object", ((key, node), ...)) | ("array", (node, ...))
_Node = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled payload template."""

    root: _Node

    def render(self, data: Any, context: Any, rng: random.Random) -> Any:
        """The payload for input ``data`` and Context Object ``context``.

        Raises :class:`StatesError` -- ``States.ParameterPathFailure`` when a path selects
        nothing, ``States.IntrinsicFailure`` when an intrinsic function fails.
        """
        return _render(self.root, data, context, rng)


def _render(node: _Node, data: Any, context: Any, rng: random.Random) -> Any:
    kind = node[0]
    if kind == "const":
        return node[1]
    if kind == "object":
        return {key: _render(child, data, context, rng) for key, child in node[1]}
    if kind == "array":
        return [_render(child, data, context, rng) for child in node[1]]
    if kind == "path":
        path: JsonPath = node[1]
        try:
            return path.get(context if path.context else data)
        except PathNotFound as exc:
            raise StatesError(PARAMETER_PATH_FAILURE, str(exc)) from exc
    function: Intrinsic = node[1]
    return function.evaluate(data, context, rng)


def compile_template(value: Any) -> Template:
    """Compile a payload template; raises :class:`ValueError` naming the offending field."""
    if not isinstance(value, dict):
        raise ValueError("a payload template must be a JSON object")
    return Template(_compile(value, ""))


def _compile(value: Any, where: str) -> _Node:
    if isinstance(value, dict):
        items: list[tuple[str, _Node]] = []
        seen: set[str] = set()
        for key, child in value.items():
            here = f"{where}.{key}" if where else key
            if key.endswith(".$"):
                name = key[:-2]
                node = _dynamic(child, here)
            else:
                name = key
                node = _compile(child, here)
            if name in seen:
                raise ValueError(f"{here}: duplicate field {name!r} after stripping '.$'")
            seen.add(name)
            items.append((name, node))
        if all(node[0] == "const" for _, node in items):
            return ("const", {name: node[1] for name, node in items})
        return ("object", tuple(items))
    if isinstance(value, list):
        nodes = [_compile(child, f"{where}[{i}]") for i, child in enumerate(value)]
        if all(node[0] == "const" for node in nodes):
            return ("const", [node[1] for node in nodes])
        return ("array", tuple(nodes))
    return ("const", value)


def _dynamic(value: Any, where: str) -> _Node:
    if not isinstance(value, str):
        raise ValueError(f"{where}: the value of a '.$' field must be a string")
    try:
        if value.startswith("$"):
            return ("path", parse_path(value))
        return ("fn", parse_intrinsic(value))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
