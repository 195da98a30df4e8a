"""Schema validation as a policy: bad events are counted and set aside, never fatal to a batch.

REL 2 (``../shared/seeds/aws-well-architected-serverless-rel2.txt``) asks that events be
validated against a schema and that invalid ones be discarded from processing rather than retried,
since a malformed event fails the same way every time (a poison pill). A
:class:`ValidationPolicy` does that: each event is parsed (when it arrives as text or bytes),
size-checked and validated; a valid one goes on, an invalid one is **counted by reason** and
handed to a **dead-letter** sink with the error attached, and the batch continues.

Schemas are JSON Schema (compiled once with fastjsonschema, the ``validation`` extra) or a
pydantic model class. Reasons are short and stable, for metrics: ``invalid_json``, ``too_large``,
``too_deep``, ``schema:<rule>:<path>`` (for example ``schema:type:data.amount``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from stormproof._validate import int_at_least
from stormproof.errors import ConfigError, StormproofError

__all__ = ["DeadLetterFailed", "Invalid", "ValidationPolicy"]


@dataclass(frozen=True, slots=True)
class Invalid:
    """Why an event was set aside: a short ``reason`` for metrics and a readable ``detail``."""

    event: Any
    reason: str
    detail: str


def _compile_json_schema(schema: Mapping[str, Any]) -> Callable[[Any], Any]:
    try:
        import fastjsonschema
    except ImportError as error:  # pragma: no cover - the extra is part of the dev install
        raise ConfigError(
            "schema", "JSON Schema validation needs the validation extra (fastjsonschema)"
        ) from error
    try:
        validate: Callable[[Any], Any] = fastjsonschema.compile(dict(schema))
    except fastjsonschema.JsonSchemaDefinitionException as error:
        raise ConfigError("schema", f"is not a valid JSON Schema: {error}") from None
    return validate


class ValidationPolicy:
    """Validate events; pass the valid ones on, count and dead-letter the others.

    Args:
        schema: a JSON Schema (a mapping) or a pydantic ``BaseModel`` subclass.
        dead_letter: called with each :class:`Invalid` (for example, a DLQ's send). Without it,
            invalid events are only counted and kept in nothing: give one in production.
        max_bytes: events given as text or bytes larger than this (UTF-8 bytes for text) are
            refused (``too_large``) before parsing, whether or not they are parsed; default
            256 KiB, SQS's and EventBridge's message size limit.
        parse_json: parse ``str``/``bytes`` events as JSON first (default true).

    ``counts`` holds the number of invalid events by reason; ``valid`` the number passed.
    """

    def __init__(
        self,
        schema: Mapping[str, Any] | type[Any],
        *,
        dead_letter: Callable[[Invalid], None] | None = None,
        max_bytes: int = 256 * 1024,
        parse_json: bool = True,
    ) -> None:
        int_at_least("max_bytes", max_bytes, 1)
        if dead_letter is not None and not callable(dead_letter):
            raise ConfigError("dead_letter", "must be callable(invalid)", dead_letter)
        self._check: Callable[[Any], tuple[Any, str | None]]
        if isinstance(schema, Mapping):
            self._check = self._json_schema_check(_compile_json_schema(schema))
        elif isinstance(schema, type) and hasattr(schema, "model_validate"):
            self._check = self._pydantic_check(schema)
        else:
            raise ConfigError("schema", "must be a JSON Schema mapping or a pydantic model", schema)
        self.dead_letter = dead_letter
        self.max_bytes = max_bytes
        self.parse_json = parse_json
        self.counts: Counter[str] = Counter()
        self.valid = 0

    @staticmethod
    def _json_schema_check(
        validate: Callable[[Any], Any],
    ) -> Callable[[Any], tuple[Any, str | None]]:
        import fastjsonschema

        def check(event: Any) -> tuple[Any, str | None]:
            try:
                # fastjsonschema returns the data, with schema defaults filled in.
                return validate(event), None
            except fastjsonschema.JsonSchemaValueException as error:
                return event, f"schema:{error.rule}:{error.name}\t{error.message}"

        return check

    @staticmethod
    def _pydantic_check(model: type[Any]) -> Callable[[Any], tuple[Any, str | None]]:
        def check(event: Any) -> tuple[Any, str | None]:
            try:
                # The model instance goes on: it holds the coerced values ("3" became 3).
                return model.model_validate(event), None
            except Exception as error:
                errors = getattr(error, "errors", None)
                first = errors()[0] if callable(errors) and errors() else {}
                where = "".join(f".{part}" for part in first.get("loc", ()))
                return event, f"schema:{first.get('type', 'invalid')}:data{where}\t{error}"

        return check

    def _size(self, event: str | bytes | bytearray) -> int:
        """The size in bytes (UTF-8 for text), computed only when it could exceed the limit."""
        if isinstance(event, str) and 4 * len(event) > self.max_bytes >= len(event):
            return len(event.encode("utf-8", "surrogatepass"))
        return len(event)

    def check(self, event: Any) -> tuple[Any, Invalid | None]:
        """Parse and validate one event: ``(value, None)`` if valid, else ``(event, Invalid)``.

        The value is the parsed event (for JSON Schema, with defaults filled in) or, for a
        pydantic schema, the model instance.
        """
        parsed = event
        if isinstance(event, str | bytes | bytearray):
            size = self._size(event)
            if size > self.max_bytes:
                return event, Invalid(event, "too_large", f"{size} > {self.max_bytes} bytes")
            if self.parse_json:
                try:
                    parsed = json.loads(event)
                except (ValueError, UnicodeDecodeError) as error:
                    return event, Invalid(event, "invalid_json", str(error))
                except RecursionError:
                    return event, Invalid(event, "too_deep", "nesting exceeds the recursion limit")
        try:
            value, problem = self._check(parsed)
        except RecursionError:
            return event, Invalid(event, "too_deep", "nesting exceeds the recursion limit")
        if problem is None:
            return value, None
        reason, _, detail = problem.partition("\t")
        return event, Invalid(event, reason, detail)

    def filter(self, events: Iterable[Any]) -> list[Any]:
        """The valid events, parsed; each invalid one is counted and dead-lettered.

        If the dead-letter sink raises, the rest of the batch is still processed and then
        :class:`DeadLetterFailed` is raised, carrying the events it could not take and the
        valid ones, so nothing is lost silently.
        """
        passed: list[Any] = []
        undelivered: list[tuple[Invalid, BaseException]] = []
        check = self.check
        for event in events:
            value, invalid = check(event)
            if invalid is None:
                passed.append(value)
                continue
            self.counts[invalid.reason] += 1
            if self.dead_letter is not None:
                try:
                    self.dead_letter(invalid)
                except Exception as error:
                    undelivered.append((invalid, error))
        self.valid += len(passed)
        if undelivered:
            raise DeadLetterFailed(undelivered, passed)
        return passed


class DeadLetterFailed(StormproofError):
    """The dead-letter sink failed for some invalid events; they and the valid ones are here."""

    def __init__(self, undelivered: list[tuple[Invalid, BaseException]], passed: list[Any]) -> None:
        first = undelivered[0][1]
        super().__init__(
            f"dead-letter sink failed for {len(undelivered)} invalid event(s): "
            f"{type(first).__name__}: {first}"
        )
        self.undelivered = undelivered
        self.passed = passed
