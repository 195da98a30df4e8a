"""The parsed form of one state: every field already validated and compiled."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stormproof.workflows.asl.choice import Rule
from stormproof.workflows.asl.intrinsics import Intrinsic
from stormproof.workflows.asl.jsonpath import JsonPath, parse_path
from stormproof.workflows.asl.payload import Template
from stormproof.workflows.asl.retry import Catcher, Retrier

if TYPE_CHECKING:
    from stormproof.workflows.asl.machine import StateMachine

__all__ = ["ROOT", "State"]

#: The path ``$``: the default InputPath, OutputPath and ResultPath.
ROOT = parse_path("$")


@dataclass(frozen=True, slots=True)
class State:
    """One state of a machine. Fields that do not apply to the state's ``type`` keep defaults.

    Paths that may be ``null`` in the definition are ``None`` here when they were ``null``; an
    absent InputPath/OutputPath/ResultPath is :data:`ROOT`.
    """

    name: str
    type: str
    next: str | None = None
    end: bool = False
    input_path: JsonPath | None = ROOT
    output_path: JsonPath | None = ROOT
    result_path: JsonPath | None = ROOT
    parameters: Template | None = None
    result_selector: Template | None = None
    # Pass
    result: Any = None
    has_result: bool = False
    # Task
    resource: str = ""
    timeout_seconds: int | None = None
    timeout_seconds_path: JsonPath | None = None
    heartbeat_seconds: int | None = None
    heartbeat_seconds_path: JsonPath | None = None
    retriers: tuple[Retrier, ...] = ()
    catchers: tuple[Catcher, ...] = ()
    # Choice
    choices: tuple[Rule, ...] = ()
    default: str | None = None
    # Wait
    seconds: int | None = None
    seconds_path: JsonPath | None = None
    timestamp: str | None = None
    timestamp_path: JsonPath | None = None
    # Fail
    error: str | None = None
    error_path: JsonPath | Intrinsic | None = None
    cause: str | None = None
    cause_path: JsonPath | Intrinsic | None = None
    # Parallel and Map
    branches: tuple[StateMachine, ...] = ()
    iterator: StateMachine | None = None
    items_path: JsonPath = ROOT
    item_selector: Template | None = None
    max_concurrency: int = 0
    max_concurrency_path: JsonPath | None = None

    def targets(self) -> list[str]:
        """Every state name this state can transition to (Next, Default, Choices, Catch)."""
        out: list[str] = []
        if self.next is not None:
            out.append(self.next)
        out.extend(rule.next for rule in self.choices if rule.next is not None)
        if self.default is not None:
            out.append(self.default)
        out.extend(catcher.next for catcher in self.catchers)
        return out
