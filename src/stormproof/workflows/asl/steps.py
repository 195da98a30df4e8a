"""The contract between the pure ASL interpreter and whatever drives it.

The interpreter (:class:`~stormproof.workflows.asl.machine.StateMachine`) never sleeps, reads a
clock, does I/O or draws randomness it was not handed. A *driver* (the reference
:func:`~stormproof.workflows.asl.local.run_local`, or the durable engine) asks it what to do
next and carries the answer out::

    step = machine.enter(state_name, state_input, ctx)          # on every entry into a state
    # RunTask      -> run the task, then
    step = machine.task_succeeded(state_name, state_input, result, ctx)
    step = machine.task_failed(state_name, state_input, error, cause, retry_state, ctx, rng)
    # RunBranches  -> run every branch (sub-machine) to its end, then
    step = machine.branches_succeeded(state_name, state_input, outputs, ctx)
    step = machine.branches_failed(state_name, state_input, error, cause, retry_state, ctx, rng)
    # WaitUntil    -> wait until step.due_at(entered_at), then follow step.then()
    # RetryIn      -> wait step.delay_s, then call machine.enter(...) again with the SAME state
    #                 input, and keep step.retry_state for the next *_failed call
    # Transition   -> enter step.next_state with step.output (and a fresh, empty retry state)
    # Succeeded / Failed -> the (sub-)machine has ended

``state_input`` is always the state's *raw* input (what the previous state output); the
interpreter re-derives everything else from it, so a driver only has to checkpoint the state name,
the raw input, the retry state and the last :data:`Step`.

Every field of every step is plain JSON data (dicts, lists, strings, numbers, booleans, ``None``),
except :attr:`Branch.machine`, which :func:`step_to_json` leaves out and :func:`step_from_json`
recovers from the parent machine. Retry state is a tuple of per-retrier counters; JSON turns it
into a list, and every method accepts either.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from stormproof.errors import ConfigError

if TYPE_CHECKING:
    from stormproof.workflows.asl.machine import StateMachine

__all__ = [
    "Branch",
    "Context",
    "Failed",
    "RetryIn",
    "RetryState",
    "RunBranches",
    "RunTask",
    "Step",
    "Succeeded",
    "Transition",
    "WaitUntil",
    "empty_retry_state",
    "epoch_to_timestamp",
    "step_from_json",
    "step_to_json",
    "timestamp_to_epoch",
]

#: Per-retrier attempt counters of one state execution: ``retry_state[i]`` is how many retries
#: retrier ``i`` of the state's ``Retry`` array has granted since the state was entered.
RetryState = tuple[int, ...]


def empty_retry_state() -> RetryState:
    """The retry state of a state that was just entered (no retries made yet)."""
    return ()


def epoch_to_timestamp(epoch: float) -> str:
    """Format epoch seconds as the RFC 3339 UTC timestamp Step Functions uses (ms precision)."""
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def timestamp_to_epoch(text: str) -> float:
    """Parse an ASL timestamp (RFC 3339, uppercase ``T``, ``Z`` or a numeric offset).

    Raises :class:`ValueError` when ``text`` is not such a timestamp.
    """
    if not isinstance(text, str) or "T" not in text:
        raise ValueError(f"not an RFC 3339 timestamp with an uppercase 'T': {text!r}")
    date_part, _, time_part = text.partition("T")
    if not (time_part.endswith("Z") or "+" in time_part or "-" in time_part):
        raise ValueError(f"timestamp has neither 'Z' nor a numeric offset: {text!r}")
    if len(date_part) != 10:
        raise ValueError(f"not an RFC 3339 date: {text!r}")
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:  # pragma: no cover - guarded by the offset check above
        raise ValueError(f"timestamp has no time zone: {text!r}")
    return moment.timestamp()


@dataclass(frozen=True, slots=True)
class Context:
    """What the driver tells the interpreter about the execution: the Context Object (``$$``).

    Attributes:
        now: the current time as epoch seconds (UTC), read by the driver from its clock.
        execution_name: ``$$.Execution.Name`` (and the last part of ``$$.Execution.Id``).
        execution_input: ``$$.Execution.Input``, the input the execution started with.
        execution_start: ``$$.Execution.StartTime`` as epoch seconds.
        state_entered: ``$$.State.EnteredTime`` as epoch seconds; ``None`` means ``now``.
        retry_count: ``$$.State.RetryCount``, retries made in the current state so far.
        state_machine_name: ``$$.StateMachine.Name``.
        map_item: ``(index, value)`` for ``$$.Map.Item`` -- set by the interpreter itself while it
            evaluates a Map state's ``ItemSelector``; drivers leave it ``None``.
    """

    now: float = 0.0
    execution_name: str = "local"
    execution_input: Any = None
    execution_start: float = 0.0
    state_entered: float | None = None
    retry_count: int = 0
    state_machine_name: str = "stormproof"
    map_item: tuple[int, Any] | None = None

    def with_changes(self, **changes: Any) -> Context:
        """A copy with some fields replaced (``dataclasses.replace``)."""
        return replace(self, **changes)

    def context_object(self, state_name: str) -> dict[str, Any]:
        """The Context Object a ``$$.`` path reads, for the state named ``state_name``."""
        entered = self.now if self.state_entered is None else self.state_entered
        machine_id = f"arn:stormproof:states:::stateMachine:{self.state_machine_name}"
        obj: dict[str, Any] = {
            "Execution": {
                "Id": f"arn:stormproof:states:::execution:{self.state_machine_name}:"
                f"{self.execution_name}",
                "Input": self.execution_input,
                "Name": self.execution_name,
                "StartTime": epoch_to_timestamp(self.execution_start),
            },
            "State": {
                "EnteredTime": epoch_to_timestamp(entered),
                "Name": state_name,
                "RetryCount": self.retry_count,
            },
            "StateMachine": {"Id": machine_id, "Name": self.state_machine_name},
        }
        if self.map_item is not None:
            obj["Map"] = {"Item": {"Index": self.map_item[0], "Value": self.map_item[1]}}
        return obj

    def rng_for(self, state_name: str) -> random.Random:
        """A deterministic random source for intrinsic functions (``States.UUID``, ...).

        Used when a method is not handed an ``rng``: seeded from the execution name, the state,
        its entry time and the retry count only, so a replay computes the same values.
        """
        entered = self.now if self.state_entered is None else self.state_entered
        key = f"{self.execution_name}\x00{state_name}\x00{entered!r}\x00{self.retry_count}"
        seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
        return random.Random(seed)


@dataclass(frozen=True, slots=True)
class RunTask:
    """Run the task ``resource`` with ``parameters`` (the effective input) for state ``state``.

    ``timeout_s``/``heartbeat_s`` are the state's TimeoutSeconds/HeartbeatSeconds (resolved from
    the ...Path variants), or ``None`` for no limit. The driver enforces them and reports a breach
    with ``task_failed(error="States.Timeout")`` or ``error="States.HeartbeatTimeout"``.
    """

    state: str
    resource: str
    parameters: Any
    timeout_s: float | None = None
    heartbeat_s: float | None = None


@dataclass(frozen=True, slots=True)
class Branch:
    """One branch of a Parallel state or one iteration of a Map state.

    ``machine`` is the sub-machine to run from its ``start_at`` with ``input``; all iterations of
    a Map share one sub-machine. ``index`` is the position of the result in the outputs list.
    """

    index: int
    input: Any
    machine: StateMachine = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class RunBranches:
    """Run every branch to its end, at most ``max_concurrency`` at a time (0 = no limit).

    ``kind`` is ``"Parallel"`` or ``"Map"``. Report the outputs, in ``index`` order, with
    ``branches_succeeded``; report the first failure with ``branches_failed`` (and stop the rest).
    """

    state: str
    kind: str
    branches: tuple[Branch, ...]
    max_concurrency: int = 0


@dataclass(frozen=True, slots=True)
class WaitUntil:
    """Wait, then follow :meth:`then`: either ``seconds`` after entry or until ``timestamp``.

    Exactly one of ``seconds`` and ``timestamp`` (RFC 3339) is set. ``next_state`` is ``None``
    when the Wait state is an End state.
    """

    state: str
    seconds: float | None
    timestamp: str | None
    next_state: str | None
    output: Any

    def due_at(self, entered_at: float) -> float:
        """When the wait ends, in epoch seconds, for a state entered at ``entered_at``."""
        if self.timestamp is not None:
            return timestamp_to_epoch(self.timestamp)
        return entered_at + (self.seconds or 0.0)

    def then(self) -> Transition | Succeeded:
        """The step to take once the wait is over."""
        if self.next_state is None:
            return Succeeded(self.output)
        return Transition(self.next_state, self.output)


@dataclass(frozen=True, slots=True)
class RetryIn:
    """Retry state ``state`` after ``delay_s`` seconds; pass ``retry_state`` to the next failure.

    ``error``/``cause`` are the error being retried and ``retrier`` the index of the retrier that
    matched, for the execution history.
    """

    state: str
    delay_s: float
    retry_state: RetryState
    error: str = ""
    cause: str = ""
    retrier: int = 0


@dataclass(frozen=True, slots=True)
class Transition:
    """Enter ``next_state`` with ``output`` as its raw input.

    When a Catcher caused the transition, ``error``/``cause`` name the caught error.
    """

    next_state: str
    output: Any
    error: str | None = None
    cause: str | None = None


@dataclass(frozen=True, slots=True)
class Succeeded:
    """The (sub-)machine ended successfully with ``output``."""

    output: Any


@dataclass(frozen=True, slots=True)
class Failed:
    """The (sub-)machine failed with the error name ``error`` and a human-readable ``cause``."""

    error: str
    cause: str


Step = RunTask | RunBranches | WaitUntil | RetryIn | Transition | Succeeded | Failed


def step_to_json(step: Step) -> dict[str, Any]:
    """A JSON-serialisable dict for ``step`` (``{"type": ..., fields...}``) for checkpoints."""
    if isinstance(step, RunBranches):
        return {
            "type": "RunBranches",
            "state": step.state,
            "kind": step.kind,
            "branches": [{"index": b.index, "input": b.input} for b in step.branches],
            "max_concurrency": step.max_concurrency,
        }
    data: dict[str, Any] = {"type": type(step).__name__}
    for name in step.__slots__:
        value = getattr(step, name)
        data[name] = list(value) if isinstance(value, tuple) else value
    return data


_SIMPLE_STEPS: Mapping[str, type[Any]] = {
    "RunTask": RunTask,
    "WaitUntil": WaitUntil,
    "RetryIn": RetryIn,
    "Transition": Transition,
    "Succeeded": Succeeded,
    "Failed": Failed,
}


def step_from_json(data: Mapping[str, Any], machine: StateMachine | None = None) -> Step:
    """Rebuild a step saved by :func:`step_to_json`.

    ``machine`` is the machine whose state produced the step; it is needed only for
    ``RunBranches``, whose sub-machines are looked up with ``machine.branch_machine``.
    """
    kind = data.get("type")
    if kind == "RunBranches":
        if machine is None:
            raise ConfigError("machine", "is required to rebuild a RunBranches step")
        state = str(data["state"])
        branches = tuple(
            Branch(int(b["index"]), b["input"], machine.branch_machine(state, int(b["index"])))
            for b in data["branches"]
        )
        return RunBranches(state, str(data["kind"]), branches, int(data["max_concurrency"]))
    cls = _SIMPLE_STEPS.get(str(kind))
    if cls is None:
        raise ConfigError("type", "is not a known step type", kind)
    values = {name: data[name] for name in cls.__slots__ if name in data}
    if cls is RetryIn:
        values["retry_state"] = tuple(int(n) for n in values["retry_state"])
    return cls(**values)  # type: ignore[no-any-return]


def as_retry_state(value: Sequence[int] | None) -> RetryState:
    """Normalise a retry state read back from JSON (a list, or ``None`` for a fresh entry)."""
    if value is None:
        return ()
    return tuple(int(n) for n in value)
