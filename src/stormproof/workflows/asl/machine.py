"""The pure interpreter: a parsed state machine that answers "what next?" with a Step.

See :mod:`stormproof.workflows.asl.steps` for the contract. Input and output processing follows
the States Language order (spec, "Input and Output Processing with JSONPath")::

    raw input -> InputPath -> Parameters -> [task / branches / Pass Result]
              -> ResultSelector -> ResultPath (merged into the raw input) -> OutputPath

Which errors go through which handling:

* errors of the work itself (a task's error, a timeout, a failed branch) go through ``Retry``,
  then ``Catch``;
* errors of input/output processing (``States.ParameterPathFailure``,
  ``States.IntrinsicFailure``, ``States.ResultPathMatchFailure``) go through ``Catch`` only: the
  processing is a pure function of the same input, so a retry would fail the same way;
* ``States.Runtime`` (an InputPath/OutputPath/ItemsPath/Variable that selects nothing, a bad
  SecondsPath value, ...) fails the execution; nothing catches it.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stormproof.errors import ConfigError
from stormproof.workflows.asl.errors import (
    HEARTBEAT_TIMEOUT,
    NO_CHOICE_MATCHED,
    RESULT_PATH_MATCH_FAILURE,
    RUNTIME,
    TIMEOUT,
    StatesError,
)
from stormproof.workflows.asl.intrinsics import Intrinsic
from stormproof.workflows.asl.jsonpath import JsonPath, PathNotFound
from stormproof.workflows.asl.payload import Template
from stormproof.workflows.asl.retry import ErrorOrigin, find_catcher, next_retry
from stormproof.workflows.asl.states import State
from stormproof.workflows.asl.steps import (
    Branch,
    Context,
    Failed,
    RetryIn,
    RunBranches,
    RunTask,
    Step,
    Succeeded,
    Transition,
    WaitUntil,
    as_retry_state,
    timestamp_to_epoch,
)

__all__ = ["StateMachine"]

_TASK = ErrorOrigin(task=True)
_BRANCH = ErrorOrigin(branch=True)
_NONE = ErrorOrigin()


@dataclass(frozen=True, slots=True, eq=False)
class StateMachine:
    """A parsed, validated state machine (or a Parallel branch / Map item processor).

    Build one with :func:`stormproof.workflows.asl.parse`. Immutable and safe to share.

    Attributes:
        start_at: the first state.
        states: every state of this scope by name (states of branches live in the branches).
        definition: the definition as a JSON object.
        timeout_seconds: the top-level ``TimeoutSeconds`` (the driver enforces it), or ``None``.
    """

    start_at: str
    states: Mapping[str, State]
    definition: Mapping[str, Any] = field(repr=False)
    timeout_seconds: int | None = None

    # ------------------------------------------------------------------------- inspection

    def state(self, name: str) -> State:
        """The state called ``name``; raises :class:`ConfigError` if there is none."""
        try:
            return self.states[name]
        except KeyError:
            raise ConfigError("state_name", "names no state of this machine", name) from None

    def branch_machine(self, state_name: str, index: int) -> StateMachine:
        """The sub-machine of branch ``index`` of a Parallel state, or a Map's item processor."""
        state = self.state(state_name)
        if state.type == "Parallel":
            return state.branches[index]
        if state.type == "Map" and state.iterator is not None:
            return state.iterator
        raise ConfigError("state_name", "is not a Parallel or Map state", state_name)

    def resources(self) -> list[str]:
        """Every Task ``Resource`` of the machine and its branches, sorted, without repeats."""
        found: set[str] = set()
        for state in self.states.values():
            if state.type == "Task":
                found.add(state.resource)
            for sub in (*state.branches, *((state.iterator,) if state.iterator else ())):
                found.update(sub.resources())
        return sorted(found)

    # ------------------------------------------------------------------------ transitions

    def start(self, execution_input: Any, ctx: Context, rng: random.Random | None = None) -> Step:
        """Enter the start state with the execution's input."""
        return self.enter(self.start_at, execution_input, ctx, rng)

    def enter(
        self, state_name: str, state_input: Any, ctx: Context, rng: random.Random | None = None
    ) -> Step:
        """Enter ``state_name`` with its raw input; call it again, unchanged, after a RetryIn.

        ``rng`` feeds ``States.UUID``/``States.MathRandom``; without one a deterministic source
        derived from ``ctx`` is used (:meth:`Context.rng_for`).
        """
        state = self.state(state_name)
        try:
            return self._enter(state, state_input, ctx, rng)
        except StatesError as exc:
            return self._handle(state, state_input, exc.error, exc.cause, (), None, _NONE)

    def task_succeeded(
        self,
        state_name: str,
        state_input: Any,
        result: Any,
        ctx: Context,
        rng: random.Random | None = None,
    ) -> Step:
        """The task of Task state ``state_name`` returned ``result``."""
        state = self._expect(state_name, "Task")
        return self._complete(state, state_input, result, ctx, rng)

    def task_failed(
        self,
        state_name: str,
        state_input: Any,
        error: str,
        cause: str,
        retry_state: Sequence[int] | None,
        ctx: Context,
        rng: random.Random,
    ) -> Step:
        """The task failed with ``error``: retry (RetryIn), catch (Transition) or Failed.

        Report a timeout as ``States.Timeout`` and a missed heartbeat as
        ``States.HeartbeatTimeout``; the latter surfaces as ``States.Timeout`` in the Error
        Output and in ``Failed``, and matches retriers/catchers for either name.
        """
        state = self._expect(state_name, "Task")
        return self._handle(state, state_input, error, cause, retry_state, rng, _TASK)

    def branches_succeeded(
        self,
        state_name: str,
        state_input: Any,
        outputs: Sequence[Any],
        ctx: Context,
        rng: random.Random | None = None,
    ) -> Step:
        """Every branch/iteration of a Parallel or Map state ended; ``outputs`` in index order."""
        state = self._expect(state_name, "Parallel", "Map")
        return self._complete(state, state_input, list(outputs), ctx, rng)

    def branches_failed(
        self,
        state_name: str,
        state_input: Any,
        error: str,
        cause: str,
        retry_state: Sequence[int] | None,
        ctx: Context,
        rng: random.Random,
    ) -> Step:
        """A branch/iteration failed with ``error``; ``States.BranchFailed`` also matches it."""
        state = self._expect(state_name, "Parallel", "Map")
        return self._handle(state, state_input, error, cause, retry_state, rng, _BRANCH)

    # ------------------------------------------------------------------------ internals

    def _expect(self, state_name: str, *types: str) -> State:
        state = self.state(state_name)
        if state.type not in types:
            raise ConfigError("state_name", f"is a {state.type} state, not {'/'.join(types)}")
        return state

    def _enter(self, state: State, raw: Any, ctx: Context, rng: random.Random | None) -> Step:
        kind = state.type
        if kind == "Fail":
            return Failed(
                self._fail_text(state.error, state.error_path, raw, ctx, state.name, ""),
                self._fail_text(state.cause, state.cause_path, raw, ctx, state.name, ""),
            )
        effective = _select(state.input_path, raw, "InputPath")
        if kind == "Succeed":
            return Succeeded(_select(state.output_path, effective, "OutputPath"))
        if kind == "Choice":
            return self._choose(state, effective, ctx)
        if kind == "Wait":
            return self._wait(state, effective)
        if kind == "Pass":
            if state.parameters is not None:
                effective = _render(state.parameters, effective, ctx, state.name, rng)
            result = state.result if state.has_result else effective
            return self._finish(state, raw, result)
        if state.parameters is not None:
            effective = _render(state.parameters, effective, ctx, state.name, rng)
        if kind == "Task":
            return RunTask(
                state.name,
                state.resource,
                effective,
                _seconds(state.timeout_seconds, state.timeout_seconds_path, effective),
                _seconds(state.heartbeat_seconds, state.heartbeat_seconds_path, effective),
            )
        if kind == "Parallel":
            branches = tuple(Branch(i, effective, sub) for i, sub in enumerate(state.branches))
            return RunBranches(state.name, "Parallel", branches, 0)
        return self._map(state, effective, ctx, rng)

    def _map(
        self, state: State, effective: Any, ctx: Context, rng: random.Random | None
    ) -> RunBranches:
        try:
            items = state.items_path.get(effective)
        except PathNotFound as exc:
            raise StatesError(RUNTIME, f"ItemsPath: {exc}") from exc
        if not isinstance(items, list):
            raise StatesError(RUNTIME, f"ItemsPath {state.items_path.text!r} is not an array")
        concurrency = state.max_concurrency
        if state.max_concurrency_path is not None:
            value = _read(state.max_concurrency_path, effective, "MaxConcurrencyPath")
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise StatesError(RUNTIME, "MaxConcurrencyPath must select an integer >= 0")
            concurrency = value
        assert state.iterator is not None
        selector = state.item_selector
        inputs: list[Any] = list(items)
        if selector is not None:
            source = rng if rng is not None else ctx.rng_for(state.name)
            inputs = [
                selector.render(
                    effective,
                    ctx.with_changes(map_item=(i, item)).context_object(state.name),
                    source,
                )
                for i, item in enumerate(items)
            ]
        branches = tuple(Branch(i, item, state.iterator) for i, item in enumerate(inputs))
        return RunBranches(state.name, "Map", branches, concurrency)

    def _choose(self, state: State, effective: Any, ctx: Context) -> Step:
        context = ctx.context_object(state.name)
        output = None
        for rule in state.choices:
            if rule.evaluate(effective, context):
                output = _select(state.output_path, effective, "OutputPath")
                assert rule.next is not None
                return Transition(rule.next, output)
        if state.default is not None:
            return Transition(state.default, _select(state.output_path, effective, "OutputPath"))
        return Failed(NO_CHOICE_MATCHED, f"no choice rule of {state.name!r} matched its input")

    def _wait(self, state: State, effective: Any) -> WaitUntil:
        seconds: float | None = None
        timestamp: str | None = None
        if state.timestamp is not None:
            timestamp = state.timestamp
        elif state.timestamp_path is not None:
            value = _read(state.timestamp_path, effective, "TimestampPath")
            try:
                timestamp_to_epoch(value)
            except (ValueError, TypeError):
                raise StatesError(
                    RUNTIME, f"TimestampPath selected {value!r}, not an RFC 3339 timestamp"
                ) from None
            timestamp = value
        elif state.seconds_path is not None:
            value = _read(state.seconds_path, effective, "SecondsPath")
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise StatesError(
                    RUNTIME, f"SecondsPath selected {value!r}, not a non-negative integer"
                )
            seconds = float(value)
        else:
            seconds = float(state.seconds or 0)
        output = _select(state.output_path, effective, "OutputPath")
        return WaitUntil(state.name, seconds, timestamp, None if state.end else state.next, output)

    def _fail_text(
        self,
        fixed: str | None,
        source: JsonPath | Intrinsic | None,
        raw: Any,
        ctx: Context,
        name: str,
        default: str,
    ) -> str:
        if fixed is not None:
            return fixed
        if source is None:
            return default
        try:
            if isinstance(source, Intrinsic):
                value = source.evaluate(raw, ctx.context_object(name), ctx.rng_for(name))
            else:
                value = source.get(ctx.context_object(name) if source.context else raw)
        except (PathNotFound, StatesError) as exc:
            raise StatesError(RUNTIME, f"Fail state {name!r}: {exc}") from exc
        if not isinstance(value, str):
            raise StatesError(RUNTIME, f"Fail state {name!r}: ErrorPath/CausePath must be a string")
        return value

    def _complete(
        self, state: State, raw: Any, result: Any, ctx: Context, rng: random.Random | None
    ) -> Step:
        try:
            if state.result_selector is not None:
                result = _render(state.result_selector, result, ctx, state.name, rng)
            return self._finish(state, raw, result)
        except StatesError as exc:
            return self._handle(state, raw, exc.error, exc.cause, (), None, _NONE)

    def _finish(self, state: State, raw: Any, result: Any) -> Step:
        output = _place(state.result_path, raw, result)
        output = _select(state.output_path, output, "OutputPath")
        if state.end:
            return Succeeded(output)
        assert state.next is not None
        return Transition(state.next, output)

    def _handle(
        self,
        state: State,
        raw: Any,
        error: str,
        cause: str,
        retry_state: Sequence[int] | None,
        rng: random.Random | None,
        origin: ErrorOrigin,
    ) -> Step:
        reported = TIMEOUT if error == HEARTBEAT_TIMEOUT else error
        if error == RUNTIME:
            return Failed(RUNTIME, cause)
        if rng is not None and state.retriers:
            decision = next_retry(state.retriers, error, origin, as_retry_state(retry_state), rng)
            if decision is not None:
                return RetryIn(
                    state.name,
                    decision.delay,
                    decision.retry_state,
                    reported,
                    cause,
                    decision.retrier,
                )
        catcher = find_catcher(state.catchers, error, origin)
        if catcher is None:
            return Failed(reported, cause)
        error_output = {"Error": reported, "Cause": cause}
        try:
            output = _place(catcher.result_path, raw, error_output)
        except StatesError as exc:
            return Failed(exc.error, exc.cause)
        return Transition(catcher.next, output, reported, cause)


def _select(path: JsonPath | None, data: Any, field_name: str) -> Any:
    if path is None:
        return {}
    if not path.segments:
        return data
    try:
        return path.get(data)
    except PathNotFound as exc:
        raise StatesError(RUNTIME, f"{field_name}: {exc}") from exc


def _read(path: JsonPath, data: Any, field_name: str) -> Any:
    try:
        return path.get(data)
    except PathNotFound as exc:
        raise StatesError(RUNTIME, f"{field_name}: {exc}") from exc


def _place(path: JsonPath | None, raw: Any, result: Any) -> Any:
    if path is None:
        return raw
    try:
        return path.set(raw, result)
    except PathNotFound as exc:
        raise StatesError(RESULT_PATH_MATCH_FAILURE, f"ResultPath: {exc}") from exc


def _render(
    template: Template, data: Any, ctx: Context, name: str, rng: random.Random | None
) -> Any:
    source = rng if rng is not None else ctx.rng_for(name)
    return template.render(data, ctx.context_object(name), source)


def _seconds(fixed: int | None, path: JsonPath | None, effective: Any) -> float | None:
    if fixed is not None:
        return float(fixed)
    if path is None:
        return None
    value = _read(path, effective, "TimeoutSecondsPath/HeartbeatSecondsPath")
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise StatesError(RUNTIME, f"a timeout path selected {value!r}, not a positive integer")
    return float(value)
