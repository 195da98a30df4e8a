"""The JSONPath subset the States Language needs, written here so the core stays dependency-free.

Supported: ``$`` (and ``$$`` for the Context Object), ``.field``, ``['field']``/``["field"]``,
``[n]`` (negative counts from the end), and, in plain Paths only, ``.*``/``[*]``, slices
``[start:end:step]`` and unions ``[0,2]``/``['a','b']``. Not supported: deep scan ``..`` and
filters ``[?(...)]``, which parsing rejects.

A *Reference Path* (ResultPath, ItemsPath, SecondsPath, ...) identifies exactly one node: only
fields and single indexes (spec, "Reference Paths"). A plain Path with a wildcard, slice or union
is *indefinite*: applying it yields the list of every match (spec, "Input and Output Processing
with JSONPath": multiple results are gathered into an array).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

__all__ = ["JsonPath", "PathNotFound", "parse_path"]


class PathNotFound(LookupError):
    """A definite path selected nothing, or a reference path cannot be written to."""


# Segment shapes: ("field", name) | ("index", n) | ("wildcard",) | ("slice", a, b, c)
# | ("union", (key, ...)) where a key is a str (field) or an int (index).
Segment = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class JsonPath:
    """A parsed path. ``context`` is true for ``$$.`` paths (applied to the Context Object)."""

    text: str
    segments: tuple[Segment, ...]
    context: bool = False

    @property
    def definite(self) -> bool:
        """Whether the path can select at most one node (no wildcard, slice or union)."""
        return all(seg[0] in ("field", "index") for seg in self.segments)

    def find(self, data: Any) -> list[Any]:
        """Every node the path selects in ``data``, in document order."""
        nodes = [data]
        for seg in self.segments:
            nodes = [child for node in nodes for child in _step(node, seg)]
        return nodes

    def get(self, data: Any) -> Any:
        """The value the path selects: the node for a definite path, else the list of matches.

        Raises :class:`PathNotFound` when a definite path selects nothing.
        """
        found = self.find(data)
        if self.definite:
            if not found:
                raise PathNotFound(f"the path {self.text!r} selects nothing in the input")
            return found[0]
        return found

    def exists(self, data: Any) -> bool:
        """Whether the path selects at least one node in ``data``."""
        return bool(self.find(data))

    def set(self, data: Any, value: Any) -> Any:
        """A copy of ``data`` with ``value`` placed at this (reference) path.

        Missing objects on the way are created (spec, ResultPath); writing into a non-object, or
        to an array index that does not exist, raises :class:`PathNotFound`.
        """
        if not self.segments:
            return copy.deepcopy(value)
        root = copy.deepcopy(data)
        node = root
        for position, seg in enumerate(self.segments):
            last = position == len(self.segments) - 1
            if seg[0] == "field":
                if not isinstance(node, dict):
                    raise PathNotFound(
                        f"cannot set {self.text!r}: {_kind(node)} has no field {seg[1]!r}"
                    )
                if last:
                    node[seg[1]] = copy.deepcopy(value)
                    return root
                if seg[1] not in node:
                    node[seg[1]] = {}
                node = node[seg[1]]
            elif seg[0] == "index":
                if not isinstance(node, list) or not -len(node) <= seg[1] < len(node):
                    raise PathNotFound(f"cannot set {self.text!r}: index {seg[1]} does not exist")
                if last:
                    node[seg[1]] = copy.deepcopy(value)
                    return root
                node = node[seg[1]]
            else:  # pragma: no cover - reference paths hold fields and indexes only
                raise PathNotFound(f"cannot set through {self.text!r}")
        return root  # pragma: no cover - the loop returns at the last segment


def _kind(node: Any) -> str:
    if node is None:
        return "null"
    if isinstance(node, bool):
        return "a boolean"
    if isinstance(node, str):
        return "a string"
    if isinstance(node, int | float):
        return "a number"
    if isinstance(node, list):
        return "an array"
    return "an object"


def _step(node: Any, seg: Segment) -> list[Any]:
    kind = seg[0]
    if kind == "field":
        return [node[seg[1]]] if isinstance(node, dict) and seg[1] in node else []
    if kind == "index":
        if isinstance(node, list) and -len(node) <= seg[1] < len(node):
            return [node[seg[1]]]
        return []
    if kind == "wildcard":
        if isinstance(node, dict):
            return list(node.values())
        return list(node) if isinstance(node, list) else []
    if kind == "slice":
        return list(node[slice(seg[1], seg[2], seg[3])]) if isinstance(node, list) else []
    out: list[Any] = []
    for key in seg[1]:
        out.extend(_step(node, ("field", key) if isinstance(key, str) else ("index", key)))
    return out


def parse_path(text: Any, *, reference: bool = False, allow_context: bool = True) -> JsonPath:
    """Parse a Path (or, with ``reference=True``, a Reference Path).

    Raises :class:`ValueError` naming what is wrong with ``text``.
    """
    if not isinstance(text, str) or not text.startswith("$"):
        raise ValueError(f"a path must be a string that starts with '$' (got {text!r})")
    context = text.startswith("$$")
    if context and not allow_context:
        raise ValueError(f"a path here must not start with '$$' (got {text!r})")
    body = text[2:] if context else text[1:]
    segments = _Parser(text, body).parse()
    path = JsonPath(text, tuple(segments), context)
    if reference and not path.definite:
        raise ValueError(
            f"a reference path must identify a single node: no '*', slices or unions ({text!r})"
        )
    return path


class _Parser:
    __slots__ = ("body", "pos", "text")

    def __init__(self, text: str, body: str) -> None:
        self.text = text
        self.body = body
        self.pos = 0

    def fail(self, why: str) -> ValueError:
        return ValueError(f"invalid path {self.text!r}: {why}")

    def parse(self) -> list[Segment]:
        segments: list[Segment] = []
        body = self.body
        while self.pos < len(body):
            char = body[self.pos]
            if char == ".":
                self.pos += 1
                if self.pos < len(body) and body[self.pos] == ".":
                    raise self.fail("deep scan '..' is not supported")
                if self.pos < len(body) and body[self.pos] == "*":
                    self.pos += 1
                    segments.append(("wildcard",))
                    continue
                segments.append(("field", self.name()))
            elif char == "[":
                segments.append(self.bracket())
            else:
                raise self.fail(f"unexpected {char!r} at position {self.pos + 1}")
        return segments

    def name(self) -> str:
        body = self.body
        chars: list[str] = []
        while self.pos < len(body) and body[self.pos] not in ".[":
            char = body[self.pos]
            if char == "\\":
                self.pos += 1
                if self.pos >= len(body):
                    raise self.fail("a trailing '\\' escapes nothing")
                char = body[self.pos]
            elif char in "]()?@,:'\"":
                raise self.fail(f"{char!r} in a field name must be escaped or bracket-quoted")
            chars.append(char)
            self.pos += 1
        if not chars:
            raise self.fail("a '.' must be followed by a field name")
        return "".join(chars)

    def bracket(self) -> Segment:
        end = self._closing()
        inner = self.body[self.pos + 1 : end].strip()
        self.pos = end + 1
        if not inner:
            raise self.fail("empty brackets")
        if inner == "*":
            return ("wildcard",)
        if inner.startswith("?") or inner.startswith("("):
            raise self.fail("filter and script expressions are not supported")
        parts = _split_top(inner)
        if len(parts) > 1:
            keys = tuple(self._key(part) for part in parts)
            return ("union", keys)
        if ":" in inner and inner[0] not in "'\"":
            return self._slice(inner)
        key = self._key(inner)
        return ("field", key) if isinstance(key, str) else ("index", key)

    def _closing(self) -> int:
        body = self.body
        quote: str | None = None
        index = self.pos + 1
        while index < len(body):
            char = body[index]
            if quote is not None:
                if char == "\\":
                    index += 1
                elif char == quote:
                    quote = None
            elif char in "'\"":
                quote = char
            elif char == "]":
                return index
            index += 1
        raise self.fail("unclosed '['")

    def _key(self, part: str) -> str | int:
        part = part.strip()
        if len(part) >= 2 and part[0] in "'\"" and part[-1] == part[0]:
            raw = part[1:-1]
            out: list[str] = []
            skip = False
            for i, char in enumerate(raw):
                if skip:
                    skip = False
                    continue
                if char == "\\" and i + 1 < len(raw):
                    out.append(raw[i + 1])
                    skip = True
                else:
                    out.append(char)
            return "".join(out)
        try:
            return int(part)
        except ValueError:
            raise self.fail(f"{part!r} is neither a quoted name nor an integer index") from None

    def _slice(self, inner: str) -> Segment:
        pieces = inner.split(":")
        if len(pieces) > 3:
            raise self.fail(f"bad slice [{inner}]")
        try:
            values = [int(p) if p.strip() else None for p in pieces]
        except ValueError:
            raise self.fail(f"bad slice [{inner}]") from None
        while len(values) < 3:
            values.append(None)
        if values[2] == 0:
            raise self.fail("a slice step must not be 0")
        return ("slice", values[0], values[1], values[2])


def _split_top(inner: str) -> list[str]:
    """Split ``inner`` on commas that are outside quotes."""
    parts: list[str] = []
    quote: str | None = None
    start = 0
    index = 0
    while index < len(inner):
        char = inner[index]
        if quote is not None:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == ",":
            parts.append(inner[start:index])
            start = index + 1
        index += 1
    parts.append(inner[start:])
    return parts
