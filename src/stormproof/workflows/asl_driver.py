"""The durable driver of ASL state machines: the pure interpreter's steps, checkpointed.

The interpreter (:mod:`stormproof.workflows.asl`) answers "what next?" with a
:data:`~stormproof.workflows.asl.steps.Step`; this driver carries the answer out and records
it. The checkpoint of an execution is the interpreter's whole position -- current state name,
its raw input, the retry counters, when it was entered, a visit counter, and the pending step
(a task to run, a wait or retry timer, branches to await) -- which is all the interpreter needs
to go on (the contract of :mod:`stormproof.workflows.asl.steps`).

**Commits.** Pure states (Pass, Choice, Succeed, Fail, a Wait already due) have no side effect,
so the transitions between two side effects are committed together: one transaction holds the
result of a task, every transition up to the next Task, and that task's ``TaskScheduled``
event -- committed *before* the next task starts. Every transition still appears in the history,
and a crash anywhere resumes from a state whose predecessors' results are all recorded.

**Tasks** run at least once per attempt (see :mod:`stormproof.workflows.engine`); a task reads
its :class:`~stormproof.workflows.durable.StepInfo` with
:func:`~stormproof.workflows.durable.current_step` (``step_id`` is the state visit,
``attempt`` the retry count + 1, ``run`` the claim). ``TimeoutSeconds`` and
``HeartbeatSeconds`` are checked when the task returns (tasks are plain synchronous calls: a
late result is discarded and reported as ``States.Timeout``; a task is not interrupted).

**Parallel and Map** branches run as **child executions** (``<parent>#<visit>.<try>.<index>``),
each durable on its own, advanced by the same workers; a child that ends wakes its parent,
which collects the outputs in index order (``MaxConcurrency`` children at a time). When one
branch fails, the parent reports the failure at once; siblings still running are left to
finish and their results are ignored (they are not cancelled).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import random
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

from stormproof.clock import SleepingClock
from stormproof.errors import ConfigError
from stormproof.workflows.asl import parser
from stormproof.workflows.asl.errors import TASK_FAILED, TIMEOUT, StatesError
from stormproof.workflows.asl.local import TaskContext, TaskRegistry, _Expired
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
    step_from_json,
    step_to_json,
)
from stormproof.workflows.durable import _STEP, StepInfo
from stormproof.workflows.store import (
    Execution,
    ExecutionStatus,
    NewExecution,
    Update,
    dumps,
)

if TYPE_CHECKING:
    from stormproof.workflows.engine import Engine, Session

__all__ = ["AslDriver"]

_Events = list[tuple[str, dict[str, Any]]]


def _rng(name: str, visit: int, retries: int) -> random.Random:
    """Jitter for a retry decision, reproducible on replay."""
    return random.Random(f"{name}\x00{visit}\x00{retries}")


def _child_name(parent: str, visit: int, attempt: int, index: int) -> str:
    name = f"{parent}#{visit}.{attempt}.{index}"
    if len(name) <= 200:
        return name
    digest = hashlib.sha256(parent.encode()).hexdigest()[:24]
    return f"{digest}#{visit}.{attempt}.{index}"


class AslDriver:
    """Advances ASL executions for an :class:`~stormproof.workflows.engine.Engine`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._machines: dict[str, StateMachine] = {}

    # -- definitions ------------------------------------------------------------------------------

    def machine(self, definition: str) -> StateMachine:
        """The parsed machine of a stored definition (a branch reference is resolved)."""
        found = self._machines.get(definition)
        if found is not None:
            return found
        data = json.loads(definition) if definition.lstrip().startswith("{") else None
        if isinstance(data, dict) and set(data) == {"$branch"}:
            ref = data["$branch"]
            parent = self.engine.store.get(str(ref["parent"]))
            if parent is None:
                raise ConfigError("definition", "names a parent execution that does not exist", ref)
            found = self.machine(parent.definition).branch_machine(
                str(ref["state"]), int(ref["index"])
            )
        else:
            found = parser.parse(definition)
        self._machines[definition] = found
        return found

    def initial(self, definition: str, input: Any) -> dict[str, Any]:
        """The checkpoint of a new execution: enter the start state with the input."""
        machine = self.machine(definition)
        return {"state": machine.start_at, "input": input, "retry": [], "visit": 0, "pending": None}

    def wake(self, name: str) -> None:
        """Make a parent waiting on branches due now."""
        self.engine.store.wake(name, self.engine.clock.now())

    # -- advancing --------------------------------------------------------------------------------

    def advance(self, session: Session) -> None:
        """Drive the claimed execution until it waits, blocks on branches or ends."""
        engine = self.engine
        execution = session.execution
        machine = self.machine(execution.definition)
        cp = json.loads(execution.checkpoint)
        execution_input = json.loads(execution.input)
        events: _Events = []
        now = engine.clock.now()
        timeout = machine.timeout_seconds
        deadline = None if timeout is None or execution.parent else execution.started_at + timeout

        def context() -> Context:
            return Context(
                now=engine.clock.now(),
                execution_name=execution.name,
                execution_input=execution_input,
                execution_start=execution.started_at,
                state_entered=cp.get("entered"),
                retry_count=sum(cp["retry"]),
            )

        pending = cp.get("pending")
        expired = deadline is not None and now >= deadline
        if pending is None:
            cp["entered"] = now
            events.append(("StateEntered", {"state": cp["state"], "input": cp["input"]}))
            step: Step = (
                Failed(TIMEOUT, "")
                if expired
                else machine.enter(cp["state"], cp["input"], context())
            )
        else:
            step = step_from_json(pending, machine)
            timed = isinstance(step, RetryIn | WaitUntil)
            if timed and not expired and now < float(cp["due"]):
                # Woken early (a branch, a redrive request, a manual advance): wait on.
                session.commit(self._block(cp, [], float(cp["due"]), deadline))
                return
            if isinstance(step, RetryIn) and not expired:
                step = machine.enter(cp["state"], cp["input"], context())
            elif isinstance(step, WaitUntil) and not expired:
                events.append(("WaitEnded", {"state": step.state}))
                step = step.then()
            elif isinstance(step, RunTask):
                events.append(("TaskResumed", {"state": step.state, "run": execution.runs}))

        while True:
            now = engine.clock.now()
            if deadline is not None and now >= deadline:
                step = Failed(TIMEOUT, f"the execution ran longer than {timeout} s")
            if isinstance(step, Transition):
                exited: dict[str, Any] = {"state": cp["state"], "output": step.output}
                if step.error is not None:
                    exited["error"], exited["cause"] = step.error, step.cause
                events.append(("StateExited", exited))
                cp.update(
                    state=step.next_state,
                    input=step.output,
                    retry=[],
                    visit=cp["visit"] + 1,
                    entered=now,
                    pending=None,
                )
                events.append(("StateEntered", {"state": step.next_state, "input": step.output}))
                step = machine.enter(step.next_state, step.output, context())
            elif isinstance(step, Succeeded):
                events.append(("StateExited", {"state": cp["state"], "output": step.output}))
                cp["pending"] = None
                engine.succeed(session, dumps(step.output), tuple(events))
                return
            elif isinstance(step, Failed):
                failed = {"state": cp["state"], "input": cp["input"], "visit": cp["visit"]}
                cp.update(pending=None, failed=failed)
                engine.fail(
                    session, step.error, step.cause, checkpoint=dumps(cp), events=tuple(events)
                )
                return
            elif isinstance(step, RunTask):
                step = self._run_task(session, machine, cp, step, events, context)
            elif isinstance(step, RetryIn):
                due = now + step.delay_s
                cp.update(pending=step_to_json(step), retry=list(step.retry_state), due=due)
                events.append(
                    (
                        "RetryScheduled",
                        {
                            "state": step.state,
                            "delay": step.delay_s,
                            "due": due,
                            "error": step.error,
                            "retrier": step.retrier,
                            "retry_count": sum(step.retry_state),
                        },
                    )
                )
                if step.delay_s > 0:
                    session.commit(self._block(cp, events, due, deadline))
                    return
                step = machine.enter(cp["state"], cp["input"], context())
            elif isinstance(step, WaitUntil):
                due = step.due_at(float(cp.get("entered") or now))
                events.append(("WaitStarted", {"state": step.state, "due": due}))
                if due > now:
                    cp.update(pending=step_to_json(step), due=due)
                    session.commit(self._block(cp, events, due, deadline))
                    return
                events.append(("WaitEnded", {"state": step.state}))
                step = step.then()
            else:
                outcome = self._branches(session, machine, cp, step, events, context, deadline)
                if outcome is None:
                    return
                step = outcome

    def _block(
        self, cp: dict[str, Any], events: _Events, due: float, deadline: float | None
    ) -> Update:
        wake = due if deadline is None else min(due, deadline)
        return Update(events=tuple(events), checkpoint=dumps(cp), wake_at=wake, release=True)

    def _run_task(
        self,
        session: Session,
        machine: StateMachine,
        cp: dict[str, Any],
        task: RunTask,
        events: _Events,
        context: Any,
    ) -> Step:
        engine = self.engine
        attempt = sum(cp["retry"]) + 1
        resumed = cp.get("pending") is not None and cp["pending"].get("type") == "RunTask"
        cp["pending"] = step_to_json(task)
        if not resumed:
            events.append(
                (
                    "TaskScheduled",
                    {
                        "state": task.state,
                        "resource": task.resource,
                        "parameters": task.parameters,
                        "attempt": attempt,
                    },
                )
            )
        if events or not resumed:
            # The checkpoint (with every transition since the last task) is durable before the
            # task's side effects start.
            session.commit(Update(events=tuple(events), checkpoint=dumps(cp)))
        info = StepInfo(
            session.execution.name, int(cp["visit"]), task.state, attempt, session.execution.runs
        )
        started = engine.clock.now()
        token = _STEP.set(info)
        try:
            function, wants_context = self._resolve(task.resource)
            if wants_context:
                ctx_obj = context().context_object(task.state)
                task_ctx = TaskContext(
                    cast(SleepingClock, engine.clock),
                    task.state,
                    task.resource,
                    attempt,
                    ctx_obj,
                    task.timeout_s,
                    task.heartbeat_s,
                )
                result: Any = function(task.parameters, task_ctx)
            else:
                result = function(task.parameters)
            if inspect.iscoroutine(result):
                result = asyncio.run(result)
            dumps(result)
        except StatesError as error:
            name, cause = error.error, error.cause
        except _Expired as expired:
            name, cause = expired.error, expired.cause
        except Exception as error:
            name, cause = type(error).__name__, str(error)
        else:
            name = cause = ""
        finally:
            _STEP.reset(token)
        elapsed = engine.clock.now() - started
        limit = min(x for x in (task.timeout_s, task.heartbeat_s, float("inf")) if x is not None)
        if not name and elapsed > limit:
            error_name = TIMEOUT if task.timeout_s == limit else "States.HeartbeatTimeout"
            name, cause = error_name, f"the task took {elapsed:.3f} s (limit {limit:g} s)"
        ctx = context()
        after: _Events = []
        if not name:
            after.append(
                (
                    "TaskSucceeded",
                    {"state": task.state, "output": result, "attempt": attempt, "run": info.run},
                )
            )
            step = machine.task_succeeded(task.state, cp["input"], result, ctx)
        else:
            after.append(
                (
                    "TaskFailed",
                    {
                        "state": task.state,
                        "error": name,
                        "cause": cause,
                        "attempt": attempt,
                        "run": info.run,
                    },
                )
            )
            step = machine.task_failed(
                task.state,
                cp["input"],
                name,
                cause,
                cp["retry"],
                ctx,
                _rng(session.execution.name, int(cp["visit"]), attempt),
            )
        cp["pending"] = None
        # The outcome is committed together with whatever follows (the next flush).
        events.clear()
        events.extend(after)
        return step

    def _resolve(self, resource: str) -> tuple[Callable[..., Any], bool]:
        tasks = self.engine.tasks
        found: tuple[Callable[..., Any], bool] | None = None
        if isinstance(tasks, TaskRegistry):
            found = tasks.resolve(resource)
        elif isinstance(tasks, Mapping):
            function = tasks.get(resource)
            if function is None and ":" in resource:
                function = tasks.get(resource.rsplit(":", 1)[1])
            if function is not None:
                found = (function, False)
        if found is None:
            raise StatesError(TASK_FAILED, f"no task is registered for {resource!r}")
        return found

    # -- Parallel / Map ---------------------------------------------------------------------------

    def _branches(
        self,
        session: Session,
        machine: StateMachine,
        cp: dict[str, Any],
        step: RunBranches,
        events: _Events,
        context: Any,
        deadline: float | None,
    ) -> Step | None:
        engine = self.engine
        store = engine.store
        parent = session.execution.name
        attempt = sum(cp["retry"])
        first = cp.get("pending") is None or cp["pending"].get("type") != "RunBranches"
        cp["pending"] = step_to_json(step)
        if first:
            events.append(
                (
                    "BranchesStarted",
                    {"state": step.state, "kind": step.kind, "branches": len(step.branches)},
                )
            )
        if events:
            session.commit(Update(events=tuple(events), checkpoint=dumps(cp)))
            events.clear()
        names = [_child_name(parent, int(cp["visit"]), attempt, b.index) for b in step.branches]
        children = {c.name: c for c in store.executions(parent=parent, limit=1_000_000)}
        outputs: list[Any] = []
        failure: Execution | None = None
        running = 0
        missing: list[int] = []
        for i, child_name in enumerate(names):
            child = children.get(child_name)
            if child is None:
                missing.append(i)
            elif child.status is ExecutionStatus.FAILED and failure is None:
                failure = child
            elif child.status is ExecutionStatus.RUNNING:
                running += 1
            elif child.status is ExecutionStatus.SUCCEEDED:
                outputs.append(json.loads(child.output or "null"))
        ctx = context()
        if failure is not None:
            after: _Events = [
                (
                    "BranchFailed",
                    {
                        "state": step.state,
                        "execution": failure.name,
                        "error": failure.error,
                        "cause": failure.cause,
                    },
                )
            ]
            events.extend(after)
            cp["pending"] = None
            return machine.branches_failed(
                step.state,
                cp["input"],
                failure.error or "States.BranchFailed",
                failure.cause or "",
                cp["retry"],
                ctx,
                _rng(parent, int(cp["visit"]), attempt + 1),
            )
        if not missing and running == 0:
            events.append(("BranchesSucceeded", {"state": step.state, "count": len(names)}))
            cp["pending"] = None
            return machine.branches_succeeded(step.state, cp["input"], outputs, ctx)
        limit = step.max_concurrency or len(names)
        free = max(0, limit - running)
        now = engine.clock.now()
        for i in missing[:free]:
            branch = step.branches[i]
            ref = {"$branch": {"parent": parent, "state": step.state, "index": branch.index}}
            definition = dumps(ref)
            self._machines.setdefault(definition, branch.machine)
            store.start(
                NewExecution(
                    names[i],
                    "asl",
                    definition,
                    dumps(branch.input),
                    dumps(
                        {
                            "state": branch.machine.start_at,
                            "input": branch.input,
                            "retry": [],
                            "visit": 0,
                            "pending": None,
                        }
                    ),
                    parent=parent,
                ),
                now,
            )
        wake = now + engine.config.branch_poll
        session.commit(self._block(cp, [], wake, deadline))
        return None

    # -- redrive ----------------------------------------------------------------------------------

    def redrive_update(self, execution: Execution) -> Update:
        """The update that re-enters the failed state with its input and fresh retry counters."""
        cp = json.loads(execution.checkpoint)
        failed = cp.get("failed")
        if failed is None:
            raise ConfigError("name", "has no failed state to redrive from", execution.name)
        machine = self.machine(execution.definition)
        if machine.state(failed["state"]).type == "Fail":
            raise ConfigError(
                "name",
                f"ended in the Fail state {failed['state']!r}; a redrive would fail again",
                execution.name,
            )
        redrives = int(cp.get("redrives", 0)) + 1
        new = {
            "state": failed["state"],
            "input": failed["input"],
            "retry": [],
            "visit": int(failed["visit"]) + 1,
            "pending": None,
            "redrives": redrives,
        }
        return Update(
            events=(("ExecutionRedriven", {"state": failed["state"], "redrive": redrives}),),
            checkpoint=dumps(new),
        )
