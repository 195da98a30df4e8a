"""The durable engine: advances executions one checkpointed step at a time.

    engine = Engine.open("sqlite:///app.db", tasks=registry, workflows=app)
    engine.start_machine(definition, {"trip": 1}, name="trip-1")   # an ASL state machine
    engine.start(book_trip, {"trip": 2}, name="trip-2")             # a Python workflow
    engine.run("trip-1")          # drive it to its end on the engine's clock
    engine.history("trip-1")      # StateEntered, TaskScheduled, TaskFailed, RetryScheduled...
    engine.redrive("trip-1")      # a FAILED execution resumes from the state that failed

**How an execution advances.** A worker *claims* a due execution (a lease in the store),
loads its checkpoint and drives it -- through the pure ASL interpreter
(:mod:`stormproof.workflows.asl`) or by replaying a Python workflow
(:mod:`stormproof.workflows.durable`) -- until it finishes or must wait. Each transition is
committed atomically with its history events (:class:`~stormproof.workflows.store.Update`);
a Wait, a retry delay or a durable sleep becomes a **timer** in the store, and the worker
releases the execution. Whoever runs :meth:`Engine.run_due` when the timer is due continues it:
the same process, another worker (``stormproof worker``), or a restarted one after a crash.

**Clock.** Timers are absolute times from the engine's clock, so they survive restarts: the
default :class:`EpochClock` reads ``time.time()``. In tests, a
:class:`~stormproof.clock.ManualClock` (started at an epoch-like time) makes :meth:`Engine.run`
skip a 3-day Wait instantly: it sleeps on the clock, which only moves the manual time.

**Crash semantics.** A process killed at any point loses at most the transition in progress:
the next worker to claim the execution (after the lease of the dead one, ``lease`` seconds)
resumes from the last committed checkpoint. A task or step that was running when the process
died runs again, so side effects are **at least once per attempt**; use
:mod:`stormproof.events.idempotency` with :attr:`StepInfo.idempotency_key
<stormproof.workflows.durable.StepInfo.idempotency_key>` (or the ASL task's
:attr:`TaskInfo.idempotency_key`) to make them exactly once.

**Failures.** A FAILED top-level execution is sent to the dead-letter queue (an
:mod:`stormproof.events.queue` queue, ``stormproof-workflows-dlq`` by default) with its error,
cause and history, *before* its final commit -- so a crash in between sends it again rather
than never (at-least-once; the ``execution_version`` attribute tells duplicates apart).
:meth:`Engine.redrive` (or a message naming the execution in the ``stormproof-workflows``
queue, processed by :meth:`Engine.process_redrive_requests`) restarts it from the failed state.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from stormproof._validate import finite_above, int_at_least
from stormproof.errors import ConfigError
from stormproof.events.queue import QueueStore, check_queue_name, open_queue
from stormproof.workflows.durable import (
    NonDeterministicWorkflow,
    StepError,
    Suspend,
    WorkflowDef,
    Workflows,
    _Run,
    running,
)
from stormproof.workflows.saga import CompensationFailed
from stormproof.workflows.store import (
    Execution,
    ExecutionAlreadyExists,
    ExecutionNotFound,
    ExecutionStatus,
    HistoryEvent,
    NewExecution,
    OwnershipLost,
    Update,
    WorkflowStore,
    dumps,
    open_store,
)

if TYPE_CHECKING:
    from stormproof.workflows.asl.local import TaskRegistry

__all__ = ["Engine", "EngineClock", "EngineConfig", "EpochClock"]


class EngineClock(Protocol):
    """What the engine needs from a clock: epoch-like ``now`` and ``sleep``."""

    def now(self) -> float:
        """Current time in seconds (shared by every process using the store)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a manual clock just moves)."""
        ...


class EpochClock:
    """Wall-clock epoch seconds (``time.time``) and real sleeps: the engine's default.

    The engine stores absolute times (timers, leases), so its clock must mean the same thing in
    every process and after a restart: ``time.monotonic`` would not.
    """

    __slots__ = ()

    def now(self) -> float:
        """``time.time()``."""
        return time.time()

    def sleep(self, seconds: float) -> None:
        """``time.sleep(seconds)``."""
        time.sleep(seconds)

    def __repr__(self) -> str:
        return "EpochClock()"


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """How an engine drives executions.

    Args:
        lease: seconds a worker owns an execution it claimed, renewed by every commit. A task or
            step must finish within it, or another worker may take the execution over (and run
            the attempt again). Also how long a crashed worker's executions wait to be resumed.
        dlq_queue: the dead-letter queue failed executions are sent to.
        redrive_queue: the queue whose messages (``{"execution": NAME}``) request a redrive;
            point ``stormproof dlq redrive`` at it to redrive a DLQ in bulk.
        branch_poll: seconds after which a parent waiting on Parallel/Map branches re-checks
            them even if no branch woke it (a safety net after a crash).
        idle_poll: seconds :meth:`Engine.run` sleeps when nothing is due but an execution is
            held by another worker's lease.
        max_dlq_history: history events included in a DLQ message (the most recent ones).
    """

    lease: float = 60.0
    dlq_queue: str = "stormproof-workflows-dlq"
    redrive_queue: str = "stormproof-workflows"
    branch_poll: float = 60.0
    idle_poll: float = 0.05
    max_dlq_history: int = 500

    def __post_init__(self) -> None:
        finite_above("lease", self.lease, 0.0)
        finite_above("branch_poll", self.branch_poll, 0.0)
        finite_above("idle_poll", self.idle_poll, 0.0)
        int_at_least("max_dlq_history", self.max_dlq_history, 0)
        check_queue_name(self.dlq_queue, "dlq_queue")
        check_queue_name(self.redrive_queue, "redrive_queue")
        if self.dlq_queue == self.redrive_queue:
            raise ConfigError("redrive_queue", "must differ from dlq_queue", self.redrive_queue)


@dataclass(slots=True)
class Session:
    """One claim of one execution: commits under the claim's owner token."""

    engine: Engine
    execution: Execution
    owner: str
    commits: int = field(default=0)

    def now(self) -> float:
        """The engine's time."""
        return self.engine.clock.now()

    def commit(self, update: Update) -> None:
        """Apply ``update`` atomically, renewing the lease (OwnershipLost if taken over)."""
        at = self.engine.clock.now()
        engine = self.engine
        execution = self.execution
        version = engine.store.commit(
            execution.name, self.owner, update, at, at + engine.config.lease
        )
        self.commits += 1
        # The session's copy follows the commit, so no read-back is needed.
        self.execution = replace(
            execution,
            version=version,
            updated_at=at,
            checkpoint=execution.checkpoint if update.checkpoint is None else update.checkpoint,
            status=execution.status if update.status is None else update.status,
            output=execution.output if update.output is None else update.output,
            error=execution.error if update.error is None else update.error,
            cause=execution.cause if update.cause is None else update.cause,
            owner=None if update.release else execution.owner,
            wake_at=None if update.clear_timer else (update.wake_at or execution.wake_at),
        )


def _classify(error: BaseException) -> tuple[str, str]:
    if isinstance(error, StepError):
        return error.error, error.cause
    if isinstance(error, CompensationFailed):
        return error.error, error.cause
    if isinstance(error, NonDeterministicWorkflow):
        return "NonDeterministicWorkflow", str(error)
    return type(error).__name__, str(error)


class Engine:
    """Starts, advances, inspects and redrives durable executions; see the module docstring.

    Args:
        store: a :class:`~stormproof.workflows.store.WorkflowStore` (initialised) or its URL.
        tasks: what runs the Task states of state machines: a
            :class:`~stormproof.workflows.asl.local.TaskRegistry`, or a mapping of resource
            (or its last ``:`` segment) to a function of the effective input.
        workflows: the registry of Python workflows.
        clock: epoch-like clock with ``sleep``; default :class:`EpochClock`.
        config: :class:`EngineConfig`.
        dlq: where failed executions go (a queue store), or ``None`` for nowhere.
    """

    def __init__(
        self,
        store: WorkflowStore | str,
        *,
        tasks: TaskRegistry | Mapping[str, Callable[..., Any]] | None = None,
        workflows: Workflows | None = None,
        clock: EngineClock | None = None,
        config: EngineConfig | None = None,
        dlq: QueueStore | None = None,
    ) -> None:
        self.store = open_store(store) if isinstance(store, str) else store
        self.tasks = tasks
        self.workflows = workflows if workflows is not None else Workflows()
        self.clock: EngineClock = clock if clock is not None else EpochClock()
        self.config = config if config is not None else EngineConfig()
        self.dlq = dlq
        self._asl: Any = None  # the ASL driver, created on first use (imports the interpreter)

    @classmethod
    def open(
        cls,
        url: str,
        *,
        tasks: TaskRegistry | Mapping[str, Callable[..., Any]] | None = None,
        workflows: Workflows | None = None,
        clock: EngineClock | None = None,
        config: EngineConfig | None = None,
        dlq: bool = True,
    ) -> Engine:
        """Open (and ``init``) the store at ``url`` and, with ``dlq``, the queue store there too.

        The DLQ lives in the same database, in the queue table (``stormproof_queue``); a
        ``table`` parameter of ``url`` names the workflow tables only.
        """
        store = open_store(url)
        store.init()
        queue: QueueStore | None = None
        if dlq:
            queue = open_queue(_without_table(url))
            queue.init()
        return cls(store, tasks=tasks, workflows=workflows, clock=clock, config=config, dlq=queue)

    def close(self) -> None:
        """Close the store and the DLQ's connections."""
        self.store.close()
        if self.dlq is not None:
            self.dlq.close()

    # -- starting ---------------------------------------------------------------------------------

    def start(
        self, workflow: WorkflowDef | str, input: Any = None, *, name: str | None = None
    ) -> Execution:
        """Start a registered Python workflow (or return the execution already called ``name``).

        Raises :class:`~stormproof.workflows.store.ExecutionAlreadyExists` when ``name`` exists
        with another workflow or input.
        """
        key = workflow.name if isinstance(workflow, WorkflowDef) else str(workflow)
        self.workflows.get(key)  # refuse unknown workflows now, not in a worker later
        new = NewExecution(name or uuid.uuid4().hex, "python", key, dumps(input), dumps({}))
        return self._start(new)

    def start_machine(
        self, definition: str | Mapping[str, Any], input: Any = None, *, name: str | None = None
    ) -> Execution:
        """Validate and start an ASL state machine (idempotent by ``name`` like :meth:`start`)."""
        text = definition if isinstance(definition, str) else dumps(definition)
        driver = self._asl_driver()
        driver.machine(text)  # validation errors surface here, naming the state and rule
        new = NewExecution(
            name or uuid.uuid4().hex, "asl", text, dumps(input), dumps(driver.initial(text, input))
        )
        return self._start(new)

    def _start(self, new: NewExecution) -> Execution:
        execution, created = self.store.start(new, self.clock.now())
        if not created and (
            execution.definition != new.definition
            or json.loads(execution.input) != json.loads(new.input)
            or execution.kind != new.kind
        ):
            raise ExecutionAlreadyExists(
                f"execution {new.name!r} already exists with another definition or input"
            )
        return execution

    # -- advancing --------------------------------------------------------------------------------

    def advance(self, name: str) -> Execution | None:
        """Claim ``name`` and drive it until it waits or ends; ``None`` if it was not claimable.

        Returns the execution as last committed. A takeover by another worker mid-way
        (:class:`~stormproof.workflows.store.OwnershipLost`) ends this advance quietly.
        """
        now = self.clock.now()
        execution = self.store.claim(name, uuid.uuid4().hex, now, self.config.lease)
        if execution is None:
            return None
        assert execution.owner is not None
        session = Session(self, execution, execution.owner)
        try:
            if execution.kind == "python":
                self._advance_python(session)
            else:
                self._asl_driver().advance(session)
        except OwnershipLost:
            return None
        return session.execution

    def run_due(self, limit: int = 100) -> int:
        """Advance every execution whose timer is due (up to ``limit``); how many advanced."""
        advanced = 0
        for name in self.store.due(self.clock.now(), limit):
            if self.advance(name) is not None:
                advanced += 1
        return advanced

    def run(self, name: str, *, max_idle: int = 1_000_000) -> Execution:
        """Drive the store's due executions until ``name`` has finished; returns it.

        Sleeps on the engine's clock until the next timer when nothing is due, so on a
        :class:`~stormproof.clock.ManualClock` waits and retry delays take no real time.
        ``max_idle`` bounds the sleeps (a guard against an execution no worker can advance).
        """
        idle = 0
        while True:
            execution = self.describe(name)
            if execution.status.finished:
                return execution
            if self.run_due() > 0:
                continue
            idle += 1
            if idle > max_idle:
                raise ConfigError("max_idle", "reached before the execution finished", max_idle)
            now = self.clock.now()
            wake = self.store.next_wake()
            if wake is not None and wake > now:
                self.clock.sleep(wake - now)
            else:
                # Due but leased by another worker (alive or dead): wait for its lease.
                self.clock.sleep(self.config.idle_poll)

    def run_until_idle(self, *, max_sleep: float | None = None) -> int:
        """Advance due executions, sleeping to each next timer, until none is left running.

        ``max_sleep`` stops instead of sleeping longer than that. Returns how many advances ran.
        """
        total = 0
        while True:
            count = self.run_due()
            total += count
            if count:
                continue
            wake = self.store.next_wake()
            if wake is None:
                return total
            delay = max(wake - self.clock.now(), self.config.idle_poll)
            if max_sleep is not None and delay > max_sleep:
                return total
            self.clock.sleep(delay)

    # -- Python workflows -------------------------------------------------------------------------

    def _advance_python(self, session: Session) -> None:
        execution = session.execution
        workflow = self.workflows.get(execution.definition)
        records = {r.step_id: r for r in self.store.steps(execution.name)}
        run = _Run(execution.name, execution.runs, records, session)
        try:
            with running(run):
                output = workflow.fn(json.loads(execution.input))
            text = dumps(output)
        except Suspend as suspended:
            session.commit(Update(wake_at=suspended.due, release=True))
            return
        except OwnershipLost:
            raise
        except Exception as error:
            name, cause = _classify(error)
            checkpoint = {"compensated": run.compensated and not run.compensation_failed}
            self.fail(session, name, cause, checkpoint=dumps(checkpoint))
            return
        self.succeed(session, text)

    # -- endings (shared with the ASL driver) ----------------------------------------------------

    def succeed(
        self, session: Session, output: str, events: tuple[tuple[str, dict[str, Any]], ...] = ()
    ) -> None:
        """Commit the SUCCEEDED ending (with ``events`` before ``ExecutionSucceeded``)."""
        done = (*events, ("ExecutionSucceeded", {"output": json.loads(output)}))
        self._end(session, Update(events=done, status=ExecutionStatus.SUCCEEDED, output=output))

    def fail(
        self,
        session: Session,
        error: str,
        cause: str,
        *,
        checkpoint: str | None = None,
        events: tuple[tuple[str, dict[str, Any]], ...] = (),
    ) -> None:
        """Send the execution to the DLQ, then commit the FAILED ending."""
        execution = session.execution
        final = (*events, ("ExecutionFailed", {"error": error, "cause": cause}))
        if execution.parent is None:
            self._dead_letter(execution, error, cause, final)
        self._end(
            session,
            Update(
                events=final,
                status=ExecutionStatus.FAILED,
                error=error,
                cause=cause,
                checkpoint=checkpoint,
            ),
        )

    def _end(self, session: Session, ending: Update) -> None:
        # Every ending clears the timer and gives up the lease, then lets a waiting parent on.
        session.commit(replace(ending, clear_timer=True, release=True))
        self._wake_parent(session.execution)

    def _dead_letter(
        self,
        execution: Execution,
        error: str,
        cause: str,
        final: tuple[tuple[str, Mapping[str, Any]], ...],
    ) -> None:
        if self.dlq is None:
            return
        now = self.clock.now()
        limit = self.config.max_dlq_history
        history = [
            {"seq": e.seq, "type": e.type, "timestamp": e.timestamp, "details": dict(e.details)}
            for e in self.store.history(execution.name)
        ]
        history += [
            {"seq": None, "type": kind, "timestamp": now, "details": dict(details)}
            for kind, details in final
        ]
        body = {
            "execution": execution.name,
            "kind": execution.kind,
            "status": ExecutionStatus.FAILED.value,
            "error": error,
            "cause": cause,
            "input": json.loads(execution.input),
            "history": history[-limit:] if limit else [],
        }
        attributes = {
            "execution": execution.name,
            "error": error,
            "execution_version": str(execution.version),
        }
        self.dlq.send(self.config.dlq_queue, dumps(body), attributes, now)

    def _wake_parent(self, execution: Execution) -> None:
        if execution.parent is not None:
            self._asl_driver().wake(execution.parent)

    # -- inspection -------------------------------------------------------------------------------

    def describe(self, name: str) -> Execution:
        """The execution called ``name`` (ExecutionNotFound if none)."""
        execution = self.store.get(name)
        if execution is None:
            raise ExecutionNotFound(f"no execution called {name!r}")
        return execution

    def history(self, name: str) -> list[HistoryEvent]:
        """Its events in order, like Step Functions' ``GetExecutionHistory``."""
        self.describe(name)
        return self.store.history(name)

    def output(self, name: str) -> Any:
        """The decoded output of a SUCCEEDED execution (``None`` otherwise)."""
        execution = self.describe(name)
        return None if execution.output is None else json.loads(execution.output)

    # -- redrive ----------------------------------------------------------------------------------

    def redrive(self, name: str) -> Execution:
        """Restart a FAILED execution from where it failed; returns it (RUNNING, due now).

        ASL: the failed state is entered again with its input and fresh retry counters (Step
        Functions' RedriveExecution). Python: the step that failed last runs again, steps
        recorded before it are replayed. A saga that compensated completely cannot be
        redriven (its earlier steps were undone): start a new execution instead.
        """
        execution = self.describe(name)
        if execution.status is not ExecutionStatus.FAILED:
            raise ConfigError(
                "name", f"is {execution.status.value}; only FAILED can be redriven", name
            )
        if execution.kind == "python":
            update = self._python_redrive(execution)
        else:
            update = self._asl_driver().redrive_update(execution)
        if not self.store.reopen(name, update, self.clock.now()):
            raise ConfigError("name", "changed while being redriven; try again", name)
        return self.describe(name)

    def _python_redrive(self, execution: Execution) -> Update:
        if json.loads(execution.checkpoint).get("compensated"):
            raise ConfigError(
                "name",
                "was compensated (its steps were undone); start a new execution",
                execution.name,
            )
        failed = [r.step_id for r in self.store.steps(execution.name) if r.status == "failed"]
        redrives = int(json.loads(execution.checkpoint).get("redrives", 0)) + 1
        details: dict[str, Any] = {"redrive": redrives}
        if failed:
            details["step"] = failed[-1]
        return Update(
            events=(("ExecutionRedriven", details),),
            checkpoint=dumps({"redrives": redrives}),
            delete_steps=failed[-1:],
        )

    def process_redrive_requests(self, limit: int = 10) -> int:
        """Redrive the executions named by messages in ``config.redrive_queue``; how many.

        A message body is ``{"execution": NAME}`` (a DLQ message moved back by
        ``stormproof dlq redrive`` qualifies). Requests for executions that are not FAILED
        are dropped. Does nothing without a DLQ queue store.
        """
        if self.dlq is None:
            return 0
        queue = self.config.redrive_queue
        done = 0
        for message in self.dlq.receive(queue, limit, self.config.lease, self.clock.now()):
            try:
                name = str(json.loads(message.body)["execution"])
            except (ValueError, KeyError, TypeError):
                self.dlq.dead_letter(queue, message.receipt or "", "malformed", self.clock.now())
                continue
            execution = self.store.get(name)
            if execution is not None and execution.status is ExecutionStatus.FAILED:
                self.redrive(name)
                done += 1
            self.dlq.delete(queue, message.receipt or "")
        return done

    # -- ASL --------------------------------------------------------------------------------------

    def _asl_driver(self) -> Any:
        if self._asl is None:
            from stormproof.workflows.asl_driver import AslDriver

            self._asl = AslDriver(self)
        return self._asl


def _without_table(url: str) -> str:
    from urllib.parse import parse_qsl, urlencode, urlsplit

    parts = urlsplit(url)
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "table"]
    base = url.split("?", 1)[0].split("#", 1)[0]
    return f"{base}?{urlencode(kept)}" if kept else base
