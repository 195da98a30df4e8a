"""Parse and validate a state machine definition; every broken rule becomes a :class:`Problem`.

The rules are the MUSTs of the States Language specification (https://states-language.net/) plus
the checks of AWS's own validator (unreachable states, a missing terminal state). Validation
collects every problem it can find before raising :class:`AslValidationError`, so one run of
``stormproof workflow validate`` shows them all.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from typing import Any

from stormproof.workflows.asl.choice import Rule, compile_rule
from stormproof.workflows.asl.errors import (
    ALL,
    KNOWN_ERRORS,
    AslValidationError,
    FieldProblem,
    Problem,
)
from stormproof.workflows.asl.intrinsics import Intrinsic, parse_intrinsic
from stormproof.workflows.asl.jsonpath import JsonPath, parse_path
from stormproof.workflows.asl.machine import StateMachine
from stormproof.workflows.asl.payload import Template, compile_template
from stormproof.workflows.asl.retry import Catcher, Retrier
from stormproof.workflows.asl.states import ROOT, State
from stormproof.workflows.asl.steps import timestamp_to_epoch

__all__ = ["load_definition", "parse", "validate"]

_COMMON = {"Type", "Comment", "QueryLanguage"}
_IO = {"InputPath", "OutputPath"}
_FLOW = {"Next", "End"}
_RESULT = {"Parameters", "ResultSelector", "ResultPath"}
_ERRORS = {"Retry", "Catch"}
_FIELDS: dict[str, set[str]] = {
    "Task": _COMMON
    | _IO
    | _FLOW
    | _RESULT
    | _ERRORS
    | {
        "Resource",
        "TimeoutSeconds",
        "TimeoutSecondsPath",
        "HeartbeatSeconds",
        "HeartbeatSecondsPath",
        "Credentials",
    },
    "Pass": _COMMON | _IO | _FLOW | {"Parameters", "ResultPath", "Result"},
    "Choice": _COMMON | _IO | {"Choices", "Default"},
    "Wait": _COMMON | _IO | _FLOW | {"Seconds", "SecondsPath", "Timestamp", "TimestampPath"},
    "Succeed": _COMMON | _IO,
    "Fail": _COMMON | {"Error", "ErrorPath", "Cause", "CausePath"},
    "Parallel": _COMMON | _IO | _FLOW | _RESULT | _ERRORS | {"Branches"},
    "Map": _COMMON
    | _IO
    | _FLOW
    | _RESULT
    | _ERRORS
    | {
        "ItemProcessor",
        "Iterator",
        "ItemsPath",
        "ItemSelector",
        "MaxConcurrency",
        "MaxConcurrencyPath",
    },
}
# Fields of the States Language that stormproof recognises but does not run.
_UNSUPPORTED = {
    "Assign": "state machine variables (Assign) are not supported",
    "Arguments": "JSONata fields (Arguments) are not supported; use JSONPath",
    "Output": "JSONata fields (Output) are not supported; use JSONPath",
    "Items": "JSONata fields (Items) are not supported; use ItemsPath",
    "Condition": "JSONata fields (Condition) are not supported",
    "ItemReader": "the distributed Map (ItemReader) is not supported",
    "ItemBatcher": "the distributed Map (ItemBatcher) is not supported",
    "ResultWriter": "the distributed Map (ResultWriter) is not supported",
    "ToleratedFailurePercentage": "the distributed Map (failure tolerance) is not supported",
    "ToleratedFailurePercentagePath": "the distributed Map (failure tolerance) is not supported",
    "ToleratedFailureCount": "the distributed Map (failure tolerance) is not supported",
    "ToleratedFailureCountPath": "the distributed Map (failure tolerance) is not supported",
    "Label": "the distributed Map (Label) is not supported",
}
_MAX_SECONDS = 99_999_999
_TOP_FIELDS = {"StartAt", "States", "Comment", "Version", "TimeoutSeconds", "QueryLanguage"}


def load_definition(definition: str | bytes | Mapping[str, Any]) -> dict[str, Any]:
    """Read a definition given as JSON text, YAML text (if PyYAML is installed) or a mapping."""
    if isinstance(definition, Mapping):
        return dict(definition)
    text = definition.decode() if isinstance(definition, bytes) else definition
    try:
        data = json.loads(text)
    except json.JSONDecodeError as json_error:
        data = _yaml(text, json_error)
    if not isinstance(data, dict):
        raise AslValidationError([Problem(None, "definition", "must be a JSON object")])
    return data


def _yaml(text: str, json_error: json.JSONDecodeError) -> Any:
    try:
        # PyYAML is optional (JSON needs nothing); imported by name so no stubs are needed.
        yaml: Any = importlib.import_module("yaml")
    except ImportError:
        raise AslValidationError(
            [Problem(None, "definition", f"is not valid JSON: {json_error}")]
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AslValidationError(
            [Problem(None, "definition", f"is neither valid JSON nor YAML: {exc}")]
        ) from None


def parse(definition: str | bytes | Mapping[str, Any]) -> StateMachine:
    """Parse and validate a definition; raises :class:`AslValidationError` listing problems."""
    data = load_definition(definition)
    builder = _Builder()
    machine = builder.machine(data, top=True)
    if builder.problems or machine is None:
        raise AslValidationError(builder.problems)
    return machine


def validate(definition: str | bytes | Mapping[str, Any]) -> list[Problem]:
    """The problems of a definition (an empty list when it is valid)."""
    try:
        parse(definition)
    except AslValidationError as exc:
        return exc.problems
    return []


class _Builder:
    """Builds a machine while collecting problems; state names are unique machine-wide."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.names: set[str] = set()

    def add(self, state: str | None, field: str, rule: str) -> None:
        self.problems.append(Problem(state, field, rule))

    # ------------------------------------------------------------------ machines and scopes

    def machine(
        self, data: Any, *, top: bool, owner: str | None = None, scope: str = ""
    ) -> StateMachine | None:
        """Build a machine; a branch's own problems name its state ``owner`` and ``scope``."""
        prefix = f"{scope}." if scope else ""
        count = len(self.problems)
        if not isinstance(data, dict):
            self.add(owner, scope or "definition", "must be a JSON object")
            return None
        if top:
            for key in data:
                if key not in _TOP_FIELDS:
                    self.add(None, key, "is not a top-level field of a state machine")
            language = data.get("QueryLanguage", "JSONPath")
            if language != "JSONPath":
                self.add(None, "QueryLanguage", "only JSONPath is supported")
            timeout = data.get("TimeoutSeconds")
            if timeout is not None and not _positive_int(timeout):
                self.add(None, "TimeoutSeconds", "must be a positive integer")
            version = data.get("Version", "1.0")
            if version != "1.0":
                self.add(None, "Version", 'must be "1.0"')
        states_data = data.get("States")
        start_at = data.get("StartAt")
        if not isinstance(states_data, dict) or not states_data:
            self.add(owner, f"{prefix}States", "must be a non-empty JSON object of states")
            return None
        if not isinstance(start_at, str):
            self.add(owner, f"{prefix}StartAt", "is required and must be a state name")
        elif start_at not in states_data:
            self.add(owner, f"{prefix}StartAt", f"names no state in this scope ({start_at!r})")
        states: dict[str, State] = {}
        for name, body in states_data.items():
            if name in self.names:
                self.add(name, "name", "state names must be unique in the whole state machine")
            self.names.add(name)
            if len(name) > 80 or not name:
                self.add(name, "name", "a state name must have 1 to 80 characters")
            state = self.state(name, body)
            if state is not None:
                states[name] = state
        self.check_graph(states_data, states, start_at if isinstance(start_at, str) else None)
        if not isinstance(start_at, str) or start_at not in states_data:
            return None
        if not top and len(self.problems) != count:
            return None
        timeout = data.get("TimeoutSeconds") if top else None
        return StateMachine(
            start_at=start_at,
            states=states,
            definition=data,
            timeout_seconds=timeout if _positive_int(timeout) else None,
        )

    def check_graph(
        self, raw: dict[str, Any], states: dict[str, State], start_at: str | None
    ) -> None:
        for state in states.values():
            for target in state.targets():
                if target not in raw:
                    self.add(
                        state.name,
                        "Next",
                        f"{target!r} is not a state in this scope (a branch can only "
                        "transition to states of the same branch)",
                    )
        if start_at is None or start_at not in raw or len(states) != len(raw):
            return
        seen = {start_at}
        todo = [start_at]
        while todo:
            for target in states[todo.pop()].targets():
                if target in states and target not in seen:
                    seen.add(target)
                    todo.append(target)
        for name in raw:
            if name not in seen:
                self.add(name, "name", "the state is unreachable from StartAt")
        if not any(states[name].end or states[name].type in ("Succeed", "Fail") for name in seen):
            self.add(None, "States", "no terminal state: some state must have End, Succeed or Fail")

    # ------------------------------------------------------------------------------- states

    def state(self, name: str, body: Any) -> State | None:
        if not isinstance(body, dict):
            self.add(name, "state", "must be a JSON object")
            return None
        kind = body.get("Type")
        if kind not in _FIELDS:
            self.add(name, "Type", f"must be one of {', '.join(sorted(_FIELDS))} (got {kind!r})")
            return None
        allowed = _FIELDS[kind]
        for key in body:
            if key in allowed:
                continue
            if key in _UNSUPPORTED:
                self.add(name, key, _UNSUPPORTED[key])
            elif key in _ERRORS:
                self.add(name, key, f"{key} is allowed only in Task, Parallel and Map states")
            elif key in ("Next", "End"):
                self.add(name, key, f"a {kind} state must not have {key}")
            else:
                self.add(name, key, f"is not a field of a {kind} state")
        if body.get("QueryLanguage", "JSONPath") != "JSONPath":
            self.add(name, "QueryLanguage", "only JSONPath is supported")
        count = len(self.problems)
        fields: dict[str, Any] = {"name": name, "type": kind}
        try:
            self.flow(name, kind, body, fields)
            self.io(name, kind, body, fields)
            getattr(self, f"state_{kind.lower()}")(name, body, fields)
        except FieldProblem as exc:
            self.add(name, exc.field, exc.rule)
        if len(self.problems) != count:
            return None
        return State(**fields)

    def flow(self, name: str, kind: str, body: dict[str, Any], fields: dict[str, Any]) -> None:
        if kind in ("Choice", "Succeed", "Fail"):
            return
        has_next = "Next" in body
        end = body.get("End", False)
        if "End" in body and not isinstance(end, bool):
            self.add(name, "End", "must be a boolean")
        if has_next and end is True:
            self.add(name, "Next", "a state must not have both Next and End: true")
        elif not has_next and end is not True:
            self.add(name, "Next", "a non-terminal state must have Next (or End: true)")
        if has_next and not (isinstance(body["Next"], str) and body["Next"]):
            self.add(name, "Next", "must be a state name")
        elif has_next:
            fields["next"] = body["Next"]
        fields["end"] = end is True

    def io(self, name: str, kind: str, body: dict[str, Any], fields: dict[str, Any]) -> None:
        for key, attr in (("InputPath", "input_path"), ("OutputPath", "output_path")):
            if key in body:
                fields[attr] = _nullable_path(body[key], key)
        if "ResultPath" in body:
            value = body["ResultPath"]
            fields["result_path"] = (
                None if value is None else _path(value, "ResultPath", reference=True, ctx=False)
            )
        if "Parameters" in body and kind != "Map":
            fields["parameters"] = _template(body["Parameters"], "Parameters")
        if "ResultSelector" in body:
            fields["result_selector"] = _template(body["ResultSelector"], "ResultSelector")
        for key in ("Retry", "Catch"):
            if key in body and kind in ("Task", "Parallel", "Map"):
                getattr(self, key.lower())(name, body[key], fields)

    def retry(self, name: str, value: Any, fields: dict[str, Any]) -> None:
        if not isinstance(value, list):
            raise FieldProblem("Retry", "must be an array of retriers")
        retriers: list[Retrier] = []
        for i, item in enumerate(value):
            where = f"Retry[{i}]"
            if not isinstance(item, dict):
                self.add(name, where, "a retrier must be a JSON object")
                continue
            known = {
                "ErrorEquals",
                "IntervalSeconds",
                "MaxAttempts",
                "BackoffRate",
                "MaxDelaySeconds",
                "JitterStrategy",
                "Comment",
            }
            for key in item:
                if key not in known:
                    self.add(name, f"{where}.{key}", "is not a field of a retrier")
            errors = self.error_equals(name, item, where, last=i == len(value) - 1, kind="retrier")
            interval = item.get("IntervalSeconds", 1)
            attempts = item.get("MaxAttempts", 3)
            rate = item.get("BackoffRate", 2.0)
            max_delay = item.get("MaxDelaySeconds")
            jitter = item.get("JitterStrategy", "NONE")
            ok = errors is not None
            if not _positive_int(interval) or interval > _MAX_SECONDS:
                self.add(name, f"{where}.IntervalSeconds", "must be a positive integer")
                ok = False
            if not _int(attempts) or attempts < 0 or attempts > _MAX_SECONDS:
                self.add(name, f"{where}.MaxAttempts", "must be a non-negative integer")
                ok = False
            if not _number(rate) or rate < 1.0:
                self.add(name, f"{where}.BackoffRate", "must be a number >= 1.0")
                ok = False
            if max_delay is not None and (not _positive_int(max_delay) or max_delay > 31622400):
                self.add(
                    name,
                    f"{where}.MaxDelaySeconds",
                    "must be a positive integer (at most 31622400)",
                )
                ok = False
            if jitter not in ("FULL", "NONE"):
                self.add(name, f"{where}.JitterStrategy", 'must be "FULL" or "NONE"')
                ok = False
            if ok and errors is not None:
                retriers.append(Retrier(errors, interval, attempts, float(rate), max_delay, jitter))
        fields["retriers"] = tuple(retriers)

    def catch(self, name: str, value: Any, fields: dict[str, Any]) -> None:
        if not isinstance(value, list):
            raise FieldProblem("Catch", "must be an array of catchers")
        catchers: list[Catcher] = []
        for i, item in enumerate(value):
            where = f"Catch[{i}]"
            if not isinstance(item, dict):
                self.add(name, where, "a catcher must be a JSON object")
                continue
            for key in item:
                if key == "Assign":
                    self.add(name, f"{where}.Assign", _UNSUPPORTED["Assign"])
                elif key not in ("ErrorEquals", "Next", "ResultPath", "Comment"):
                    self.add(name, f"{where}.{key}", "is not a field of a catcher")
            errors = self.error_equals(name, item, where, last=i == len(value) - 1, kind="catcher")
            target = item.get("Next")
            if not isinstance(target, str) or not target:
                self.add(name, f"{where}.Next", "a catcher must have a Next state name")
                continue
            result_path: JsonPath | None = ROOT
            if "ResultPath" in item:
                try:
                    result_path = (
                        None
                        if item["ResultPath"] is None
                        else _path(item["ResultPath"], "", reference=True, ctx=False)
                    )
                except FieldProblem as exc:
                    self.add(name, f"{where}.ResultPath", exc.rule)
                    continue
            if errors is not None:
                catchers.append(Catcher(errors, target, result_path))
        fields["catchers"] = tuple(catchers)

    def error_equals(
        self, name: str, item: dict[str, Any], where: str, *, last: bool, kind: str
    ) -> tuple[str, ...] | None:
        errors = item.get("ErrorEquals")
        if (
            not isinstance(errors, list)
            or not errors
            or not all(isinstance(e, str) and e for e in errors)
        ):
            self.add(name, f"{where}.ErrorEquals", "must be a non-empty array of error names")
            return None
        ok = True
        for error in errors:
            if error.startswith("States.") and error not in KNOWN_ERRORS:
                self.add(name, f"{where}.ErrorEquals", f"{error!r} is not a States error name")
                ok = False
        if ALL in errors and len(errors) > 1:
            self.add(name, f"{where}.ErrorEquals", "States.ALL must appear alone in ErrorEquals")
            ok = False
        if ALL in errors and not last:
            self.add(
                name,
                f"{where}.ErrorEquals",
                f"States.ALL must appear only in the last {kind}",
            )
            ok = False
        return tuple(errors) if ok else None

    # --------------------------------------------------------------------- per-type fields

    def state_pass(self, name: str, body: dict[str, Any], fields: dict[str, Any]) -> None:
        if "Result" in body:
            fields["result"] = body["Result"]
            fields["has_result"] = True

    def state_task(self, name: str, body: dict[str, Any], fields: dict[str, Any]) -> None:
        resource = body.get("Resource")
        if not isinstance(resource, str) or not resource:
            raise FieldProblem("Resource", "a Task state must have a Resource (a URI or name)")
        fields["resource"] = resource
        for key, attr in (
            ("TimeoutSeconds", "timeout_seconds"),
            ("HeartbeatSeconds", "heartbeat_seconds"),
        ):
            path_key = f"{key}Path"
            if key in body and path_key in body:
                self.add(name, key, f"must not be given together with {path_key}")
            if key in body:
                if not _positive_int(body[key]) or body[key] > _MAX_SECONDS:
                    self.add(name, key, "must be a positive integer")
                else:
                    fields[attr] = body[key]
            if path_key in body:
                fields[f"{attr}_path"] = _path(body[path_key], path_key, reference=True)
        timeout = fields.get("timeout_seconds")
        heartbeat = fields.get("heartbeat_seconds")
        if timeout is not None and heartbeat is not None and heartbeat >= timeout:
            self.add(name, "HeartbeatSeconds", "must be smaller than TimeoutSeconds")

    def state_choice(self, name: str, body: dict[str, Any], fields: dict[str, Any]) -> None:
        choices = body.get("Choices")
        if not isinstance(choices, list) or not choices:
            raise FieldProblem("Choices", "a Choice state must have a non-empty Choices array")
        rules: list[Rule] = []
        for i, item in enumerate(choices):
            try:
                rules.append(compile_rule(item, f"Choices[{i}]", top=True))
            except FieldProblem as exc:
                self.add(name, exc.field, exc.rule)
        fields["choices"] = tuple(rules)
        if "Default" in body:
            if not isinstance(body["Default"], str) or not body["Default"]:
                raise FieldProblem("Default", "must be a state name")
            fields["default"] = body["Default"]

    def state_wait(self, name: str, body: dict[str, Any], fields: dict[str, Any]) -> None:
        given = [k for k in ("Seconds", "SecondsPath", "Timestamp", "TimestampPath") if k in body]
        if len(given) != 1:
            raise FieldProblem(
                "Seconds",
                "a Wait state needs exactly one of Seconds, SecondsPath, Timestamp, TimestampPath",
            )
        key = given[0]
        value = body[key]
        if key == "Seconds":
            if not _int(value) or value < 0 or value > _MAX_SECONDS:
                raise FieldProblem("Seconds", "must be a non-negative integer")
            fields["seconds"] = value
        elif key == "Timestamp":
            if not _timestamp(value):
                raise FieldProblem("Timestamp", "must be an RFC 3339 timestamp")
            fields["timestamp"] = value
        elif key == "SecondsPath":
            fields["seconds_path"] = _path(value, key, reference=True)
        else:
            fields["timestamp_path"] = _path(value, key, reference=True)

    def state_succeed(self, name: str, body: dict[str, Any], fields: dict[str, Any]) -> None:
        """Succeed has no fields of its own."""

    def state_fail(self, name: str, body: dict[str, Any], fields: dict[str, Any]) -> None:
        for key, attr in (("Error", "error"), ("Cause", "cause")):
            path_key = f"{key}Path"
            if key in body and path_key in body:
                raise FieldProblem(key, f"must not be given together with {path_key}")
            if key in body:
                if not isinstance(body[key], str):
                    raise FieldProblem(key, "must be a string")
                fields[attr] = body[key]
            if path_key in body:
                fields[f"{attr}_path"] = _path_or_intrinsic(body[path_key], path_key)

    def state_parallel(self, name: str, body: dict[str, Any], fields: dict[str, Any]) -> None:
        branches = body.get("Branches")
        if not isinstance(branches, list) or not branches:
            raise FieldProblem("Branches", "a Parallel state must have a non-empty Branches array")
        machines: list[StateMachine] = []
        for i, branch in enumerate(branches):
            sub = self.machine(branch, top=False, owner=name, scope=f"Branches[{i}]")
            if sub is not None:
                machines.append(sub)
        if len(machines) != len(branches):
            raise FieldProblem("Branches", "has invalid branches (see the other problems)")
        fields["branches"] = tuple(machines)

    def state_map(self, name: str, body: dict[str, Any], fields: dict[str, Any]) -> None:
        if "ItemProcessor" in body and "Iterator" in body:
            raise FieldProblem("ItemProcessor", "must not be given together with Iterator")
        if "ItemSelector" in body and "Parameters" in body:
            raise FieldProblem("ItemSelector", "must not be given together with Parameters")
        key = "ItemProcessor" if "ItemProcessor" in body else "Iterator"
        processor = body.get(key)
        if not isinstance(processor, dict):
            raise FieldProblem("ItemProcessor", "a Map state must have an ItemProcessor object")
        config = processor.get("ProcessorConfig", {})
        if isinstance(config, dict) and config.get("Mode", "INLINE") != "INLINE":
            raise FieldProblem(
                f"{key}.ProcessorConfig.Mode", "only INLINE Map states are supported"
            )
        sub_data = {k: v for k, v in processor.items() if k != "ProcessorConfig"}
        sub = self.machine(sub_data, top=False, owner=name, scope=key)
        if sub is None:
            raise FieldProblem(key, "is not a valid state machine (see the other problems)")
        fields["iterator"] = sub
        if "ItemsPath" in body:
            fields["items_path"] = _path(body["ItemsPath"], "ItemsPath", reference=True)
        selector_key = "ItemSelector" if "ItemSelector" in body else "Parameters"
        if selector_key in body:
            fields["item_selector"] = _template(body[selector_key], selector_key)
        if "MaxConcurrency" in body and "MaxConcurrencyPath" in body:
            raise FieldProblem(
                "MaxConcurrency", "must not be given together with MaxConcurrencyPath"
            )
        if "MaxConcurrency" in body:
            value = body["MaxConcurrency"]
            if not _int(value) or value < 0:
                raise FieldProblem("MaxConcurrency", "must be a non-negative integer")
            fields["max_concurrency"] = value
        if "MaxConcurrencyPath" in body:
            fields["max_concurrency_path"] = _path(
                body["MaxConcurrencyPath"], "MaxConcurrencyPath", reference=True
            )


# ------------------------------------------------------------------------------ field helpers


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(value: Any) -> bool:
    return _int(value) and value > 0


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _timestamp(value: Any) -> bool:
    try:
        timestamp_to_epoch(value)
    except (ValueError, TypeError):
        return False
    return True


def _path(value: Any, field: str, *, reference: bool = False, ctx: bool = True) -> JsonPath:
    try:
        return parse_path(value, reference=reference, allow_context=ctx)
    except ValueError as exc:
        kind = "a reference path" if reference else "a path"
        raise FieldProblem(field, f"must be {kind}: {exc}") from None


def _nullable_path(value: Any, field: str) -> JsonPath | None:
    return None if value is None else _path(value, field)


def _path_or_intrinsic(value: Any, field: str) -> JsonPath | Intrinsic:
    if isinstance(value, str) and not value.startswith("$"):
        try:
            return parse_intrinsic(value)
        except ValueError as exc:
            raise FieldProblem(field, str(exc)) from None
    return _path(value, field, reference=True)


def _template(value: Any, field: str) -> Template:
    try:
        return compile_template(value)
    except ValueError as exc:
        raise FieldProblem(field, str(exc)) from None
