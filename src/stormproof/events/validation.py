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
from stormproof.errors import ConfigError

__all__ = ["Invalid", "ValidationPolicy"]


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
        max_bytes: events given as text or bytes larger than this are refused (``too_large``)
            before parsing; default 256 KiB, SQS's and EventBridge's message size limit.
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
        self._check: Callable[[Any], str | None]
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
    def _json_schema_check(validate: Callable[[Any], Any]) -> Callable[[Any], str | None]:
        import fastjsonschema

        def check(event: Any) -> str | None:
            try:
                validate(event)
            except fastjsonschema.JsonSchemaValueException as error:
                return f"schema:{error.rule}:{error.name}\t{error.message}"
            return None

        return check

    @staticmethod
    def _pydantic_check(model: type[Any]) -> Callable[[Any], str | None]:
        def check(event: Any) -> str | None:
            try:
                model.model_validate(event)
            except Exception as error:
                errors = getattr(error, "errors", None)
                first = errors()[0] if callable(errors) and errors() else {}
                where = ".".join(str(part) for part in first.get("loc", ())) or "data"
                return f"schema:{first.get('type', 'invalid')}:data.{where}\t{error}"
            return None

        return check

    def check(self, event: Any) -> tuple[Any, Invalid | None]:
        """Parse and validate one event: ``(parsed, None)`` if valid, else ``(event, Invalid)``."""
        parsed = event
        if self.parse_json and isinstance(event, str | bytes | bytearray):
            if len(event) > self.max_bytes:
                return event, Invalid(event, "too_large", f"{len(event)} > {self.max_bytes} bytes")
            try:
                parsed = json.loads(event)
            except (ValueError, UnicodeDecodeError) as error:
                return event, Invalid(event, "invalid_json", str(error))
            except RecursionError:
                return event, Invalid(event, "too_deep", "nesting exceeds the recursion limit")
        try:
            problem = self._check(parsed)
        except RecursionError:
            return event, Invalid(event, "too_deep", "nesting exceeds the recursion limit")
        if problem is None:
            return parsed, None
        reason, _, detail = problem.partition("\t")
        return event, Invalid(event, reason, detail)

    def filter(self, events: Iterable[Any]) -> list[Any]:
        """The valid events, parsed; each invalid one is counted and dead-lettered."""
        passed: list[Any] = []
        check = self.check
        for event in events:
            parsed, invalid = check(event)
            if invalid is None:
                passed.append(parsed)
            else:
                self.counts[invalid.reason] += 1
                if self.dead_letter is not None:
                    self.dead_letter(invalid)
        self.valid += len(passed)
        return passed
