"""A small, non-durable reference driver: run a state machine in-process with Python callables.

    tasks = TaskRegistry()

    @tasks.task("arn:aws:lambda:us-east-1:123456789012:function:Allocate-Seat")
    def allocate_seat(event): ...

    result = run_local(machine, {"booking": 1}, tasks, clock=ManualClock(), rng=random.Random(7))
    result.status, result.output, result.history

On a :class:`~stormproof.clock.ManualClock` (the default) waits and retry delays advance the clock
instantly, so a test sees exact delays; Parallel branches and Map iterations run one after
another in index order, each on its own manual clock that starts when a concurrency slot frees,
and the parent clock then moves to the time the last one ended -- the elapsed time a concurrent
run would show. On any other clock they run one after another in real time.

Task timeouts are checked on the clock: a task that moves the clock (``ctx.sleep``) or reports
progress (``ctx.heartbeat()``) past ``TimeoutSeconds``/``HeartbeatSeconds`` fails with
``States.Timeout``/``States.HeartbeatTimeout``. A task that blocks without telling the clock is
not interrupted: this driver starts no threads.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from stormproof.clock import ManualClock, SleepingClock
from stormproof.errors import ConfigError
from stormproof.workflows.asl.errors import HEARTBEAT_TIMEOUT, TIMEOUT, StatesError
from stormproof.workflows.asl.machine import StateMachine
from stormproof.workflows.asl.steps import (
    Context,
    Failed,
    RetryIn,
    RunBranches,
    RunTask,
    Step,
    Succeeded,
    Transition,
    WaitUntil,
)

__all__ = [
    "ExecutionResult",
    "HistoryEvent",
    "TaskContext",
    "TaskExpired",
    "TaskRegistry",
    "run_local",
]

TaskFunction = Callable[..., Any]


class TaskRegistry:
    """Python callables that implement Task ``Resource`` URIs (shared with the durable engine).

    A task is called as ``fn(input)`` or, if it takes two parameters, ``fn(input, ctx)`` with a
    :class:`TaskContext`; ``async def`` functions are run to completion. Raising
    :class:`~stormproof.workflows.asl.errors.StatesError` chooses the error name; any other
    exception is reported with its class name as the error (as Lambda reports ``errorType``) and
    its message as the cause.

    A resource is looked up by its exact text first, then by its last ``:``-separated segment,
    so ``@tasks.task("Allocate-Seat")`` also serves
    ``arn:aws:lambda:us-east-1:123456789012:function:Allocate-Seat``.
    """

    def __init__(self) -> None:
        self._tasks: dict[str, tuple[TaskFunction, bool]] = {}

    def register(self, resource: str, function: TaskFunction) -> None:
        """Register ``function`` for ``resource`` (replacing an earlier registration)."""
        if not isinstance(resource, str) or not resource:
            raise ConfigError("resource", "must be a non-empty string", resource)
        if not callable(function):
            raise ConfigError("function", "must be callable", function)
        self._tasks[resource] = (function, _wants_context(function))

    def task(self, resource: str) -> Callable[[TaskFunction], TaskFunction]:
        """Decorator form of :meth:`register`; returns the function unchanged."""

        def decorate(function: TaskFunction) -> TaskFunction:
            self.register(resource, function)
            return function

        return decorate

    def resolve(self, resource: str) -> tuple[TaskFunction, bool] | None:
        """``(function, wants_context)`` for ``resource``, or ``None`` if nothing serves it."""
        found = self._tasks.get(resource)
        if found is None and ":" in resource:
            found = self._tasks.get(resource.rsplit(":", 1)[1])
        return found

    def missing(self, machine: StateMachine) -> list[str]:
        """The machine's Task resources that no registered task serves."""
        return [r for r in machine.resources() if self.resolve(r) is None]

    def __contains__(self, resource: object) -> bool:
        return isinstance(resource, str) and self.resolve(resource) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._tasks))

    def __len__(self) -> int:
        return len(self._tasks)


def _wants_context(function: TaskFunction) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    return len(positional) >= 2 or any(
        p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters
    )


class _Expired(BaseException):
    """Raised inside a task by ``heartbeat``/``sleep`` once its time is up.

    A BaseException, so that task code's ``except Exception`` does not swallow it.
    """

    def __init__(self, error: str, cause: str) -> None:
        super().__init__(cause)
        self.error = error
        self.cause = cause


#: Public name of the exception ``TaskContext.check`` raises once a task's time is up.
TaskExpired = _Expired


class TaskContext:
    """What a task sees of its execution: the clock, heartbeats and the Context Object."""

    def __init__(
        self,
        clock: SleepingClock,
        state_name: str,
        resource: str,
        attempt: int,
        context_object: Mapping[str, Any],
        timeout_s: float | None,
        heartbeat_s: float | None,
    ) -> None:
        self.clock = clock
        self.state_name = state_name
        self.resource = resource
        #: 1 for the first attempt of the state, 2 for the first retry, ...
        self.attempt = attempt
        #: The Context Object (``$$``) of the state.
        self.context_object = context_object
        self.timeout_s = timeout_s
        self.heartbeat_s = heartbeat_s
        self.started = clock.now()
        self.last_beat = self.started

    def now(self) -> float:
        """The driver's clock."""
        return self.clock.now()

    def sleep(self, seconds: float) -> None:
        """Spend ``seconds`` on the clock (instant on a ManualClock), then check the limits."""
        self.clock.sleep(seconds)
        self.check()

    def heartbeat(self) -> None:
        """Report progress; raises inside the task if the heartbeat or timeout has expired."""
        self.check()
        self.last_beat = self.clock.now()

    def check(self) -> None:
        """Stop the task (raise) if its TimeoutSeconds or HeartbeatSeconds has run out."""
        now = self.clock.now()
        if self.timeout_s is not None and now - self.started > self.timeout_s:
            raise _Expired(TIMEOUT, f"the task ran longer than {self.timeout_s:g} s")
        if self.heartbeat_s is not None and now - self.last_beat > self.heartbeat_s:
            raise _Expired(HEARTBEAT_TIMEOUT, f"no heartbeat for more than {self.heartbeat_s:g} s")


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One event of a local execution (clock time, type, state name, details)."""

    time: float
    type: str
    state: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    """How a local execution ended.

    ``status`` is ``"SUCCEEDED"`` or ``"FAILED"``; ``started_at``/``stopped_at`` are clock times.
    """

    status: str
    output: Any
    error: str | None
    cause: str | None
    history: tuple[HistoryEvent, ...]
    started_at: float
    stopped_at: float

    @property
    def succeeded(self) -> bool:
        """Whether the execution succeeded."""
        return self.status == "SUCCEEDED"

    def events(self, kind: str) -> list[HistoryEvent]:
        """The history events of one type, in order."""
        return [event for event in self.history if event.type == kind]


class _Timeout(Exception):
    """The execution's own TimeoutSeconds ran out."""


@dataclass
class _Run:
    tasks: TaskRegistry
    rng: random.Random
    base: Context
    epoch_offset: float
    deadline: float | None
    max_steps: int
    history: list[HistoryEvent] = field(default_factory=list)
    steps: int = 0

    def log(self, clock: SleepingClock, kind: str, state: str | None, **details: Any) -> None:
        self.history.append(HistoryEvent(clock.now(), kind, state, details))

    def wait(self, clock: SleepingClock, seconds: float) -> None:
        if seconds <= 0:
            return
        if self.deadline is not None and clock.now() + seconds > self.deadline:
            clock.sleep(max(0.0, self.deadline - clock.now()))
            raise _Timeout
        clock.sleep(seconds)

    def execute(
        self, machine: StateMachine, execution_input: Any, clock: SleepingClock
    ) -> Succeeded | Failed:
        name = machine.start_at
        state_input = execution_input
        retry_state: tuple[int, ...] = ()
        entered = clock.now()
        self.log(clock, "StateEntered", name, input=state_input)
        while True:
            self.steps += 1
            if self.steps > self.max_steps:
                raise ConfigError("max_steps", "the execution made too many steps", self.max_steps)
            ctx = self.base.with_changes(
                now=clock.now() + self.epoch_offset,
                state_entered=entered + self.epoch_offset,
                retry_count=sum(retry_state),
            )
            step: Step = machine.enter(name, state_input, ctx, self.rng)
            step = self.resolve(machine, name, state_input, step, retry_state, ctx, clock)
            if isinstance(step, RetryIn):
                self.log(clock, "RetryScheduled", name, delay=step.delay_s, error=step.error)
                self.wait(clock, step.delay_s)
                retry_state = step.retry_state
                continue
            if isinstance(step, Transition):
                self.log(
                    clock,
                    "StateExited",
                    name,
                    output=step.output,
                    next=step.next_state,
                    error=step.error,
                )
                name, state_input, retry_state = step.next_state, step.output, ()
                entered = clock.now()
                self.log(clock, "StateEntered", name, input=state_input)
                continue
            assert isinstance(step, Succeeded | Failed)
            self.log(clock, "StateExited", name, result=type(step).__name__)
            return step

    def resolve(
        self,
        machine: StateMachine,
        name: str,
        state_input: Any,
        step: Step,
        retry_state: tuple[int, ...],
        ctx: Context,
        clock: SleepingClock,
    ) -> Step:
        """Carry out RunTask/RunBranches/WaitUntil until the state decides where to go."""
        if isinstance(step, WaitUntil):
            due = step.due_at(ctx.state_entered if ctx.state_entered is not None else ctx.now)
            self.log(clock, "WaitStarted", name, until=due)
            self.wait(clock, due - (clock.now() + self.epoch_offset))
            return step.then()
        if isinstance(step, RunTask):
            return self.run_task(machine, name, state_input, step, retry_state, ctx, clock)
        if isinstance(step, RunBranches):
            return self.run_branches(machine, name, state_input, step, retry_state, ctx, clock)
        return step

    def run_task(
        self,
        machine: StateMachine,
        name: str,
        state_input: Any,
        step: RunTask,
        retry_state: tuple[int, ...],
        ctx: Context,
        clock: SleepingClock,
    ) -> Step:
        found = self.tasks.resolve(step.resource)
        if found is None:  # pragma: no cover - run_local checks resources up front
            raise ConfigError("tasks", "no task is registered for the resource", step.resource)
        function, wants_context = found
        task_ctx = TaskContext(
            clock,
            name,
            step.resource,
            ctx.retry_count + 1,
            ctx.context_object(name),
            step.timeout_s,
            step.heartbeat_s,
        )
        self.log(clock, "TaskScheduled", name, resource=step.resource, parameters=step.parameters)
        error: tuple[str, str] | None = None
        result: Any = None
        try:
            args = (step.parameters, task_ctx) if wants_context else (step.parameters,)
            result = function(*args)
            if inspect.iscoroutine(result):
                result = asyncio.run(result)
            task_ctx.check()
        except _Expired as expired:
            error = (expired.error, expired.cause)
        except StatesError as exc:
            error = (exc.error, exc.cause)
        except Exception as exc:
            error = (type(exc).__name__, str(exc))
        if self.deadline is not None and clock.now() > self.deadline:
            raise _Timeout
        if error is None:
            self.log(clock, "TaskSucceeded", name, output=result)
            return machine.task_succeeded(name, state_input, result, ctx, self.rng)
        self.log(clock, "TaskFailed", name, error=error[0], cause=error[1])
        return machine.task_failed(
            name, state_input, error[0], error[1], retry_state, ctx, self.rng
        )

    def run_branches(
        self,
        machine: StateMachine,
        name: str,
        state_input: Any,
        step: RunBranches,
        retry_state: tuple[int, ...],
        ctx: Context,
        clock: SleepingClock,
    ) -> Step:
        self.log(clock, f"{step.kind}StateStarted", name, branches=len(step.branches))
        outputs: list[Any] = [None] * len(step.branches)
        manual = isinstance(clock, ManualClock)
        slots = [clock.now()] * (step.max_concurrency or max(1, len(step.branches)))
        latest = clock.now()
        failure: Failed | None = None
        for branch in step.branches:
            slots.sort()
            start = slots.pop(0)
            branch_clock: SleepingClock = ManualClock(start) if manual else clock
            ended = self.execute(branch.machine, branch.input, branch_clock)
            slots.append(branch_clock.now())
            latest = max(latest, branch_clock.now())
            if isinstance(ended, Failed):
                failure = ended
                break
            outputs[branch.index] = ended.output
        if manual and latest > clock.now():
            assert isinstance(clock, ManualClock)
            clock.advance(latest - clock.now())
        if self.deadline is not None and clock.now() > self.deadline:
            raise _Timeout
        if failure is not None:
            self.log(clock, f"{step.kind}StateFailed", name, error=failure.error)
            return machine.branches_failed(
                name, state_input, failure.error, failure.cause, retry_state, ctx, self.rng
            )
        self.log(clock, f"{step.kind}StateSucceeded", name)
        return machine.branches_succeeded(name, state_input, outputs, ctx, self.rng)


def run_local(
    machine: StateMachine,
    execution_input: Any = None,
    tasks: TaskRegistry | None = None,
    *,
    clock: SleepingClock | None = None,
    rng: random.Random | None = None,
    name: str = "local",
    start_epoch: float | None = None,
    max_steps: int = 100_000,
) -> ExecutionResult:
    """Run ``machine`` to its end in this process and return how it ended.

    Args:
        machine: a parsed machine (:func:`~stormproof.workflows.asl.parse`).
        execution_input: the execution's input (default ``{}``, as the spec says).
        tasks: the registry that serves every Task resource; a resource nothing serves raises
            :class:`~stormproof.errors.ConfigError` naming it before anything runs.
        clock: a :class:`ManualClock` (default: a new one at 0) or a real ``SleepingClock``.
        rng: the random source of retry jitter and intrinsic functions (default: a fresh one).
        name: the execution name (``$$.Execution.Name``).
        start_epoch: the epoch seconds the clock's current reading stands for; it maps Wait
            ``Timestamp``s onto the clock. Default: ``0`` on a ManualClock, ``time.time()`` on
            other clocks.
        max_steps: a guard against machines that loop forever.
    """
    registry = tasks if tasks is not None else TaskRegistry()
    missing = registry.missing(machine)
    if missing:
        raise ConfigError("tasks", "no task is registered for resource(s)", missing)
    run_clock: SleepingClock = clock if clock is not None else ManualClock()
    if start_epoch is None:
        start_epoch = 0.0 if isinstance(run_clock, ManualClock) else time.time()
    started = run_clock.now()
    offset = start_epoch - started
    given = {} if execution_input is None else execution_input
    base = Context(
        now=start_epoch,
        execution_name=name,
        execution_input=given,
        execution_start=start_epoch,
    )
    deadline = None if machine.timeout_seconds is None else started + machine.timeout_seconds
    run = _Run(
        registry, rng if rng is not None else random.Random(), base, offset, deadline, max_steps
    )
    run.log(run_clock, "ExecutionStarted", None, input=given)
    try:
        ended = run.execute(machine, given, run_clock)
    except _Timeout:
        ended = Failed(TIMEOUT, f"the execution ran longer than {machine.timeout_seconds} s")
    if isinstance(ended, Succeeded):
        run.log(run_clock, "ExecutionSucceeded", None, output=ended.output)
        return ExecutionResult(
            "SUCCEEDED", ended.output, None, None, tuple(run.history), started, run_clock.now()
        )
    run.log(run_clock, "ExecutionFailed", None, error=ended.error, cause=ended.cause)
    return ExecutionResult(
        "FAILED", None, ended.error, ended.cause, tuple(run.history), started, run_clock.now()
    )
