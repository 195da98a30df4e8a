"""The workflow store: executions, their history, step records and timers, opened by URL.

    store = open_store("sqlite:////var/lib/app/workflows.db")   # embedded default
    store = open_store("postgresql://user@host/db")             # psycopg 3, pooled
    store.init()                                                # explicit, idempotent

The URL is a store URL (:mod:`stormproof.stores`); its ``table`` parameter is the *prefix* of
the four tables, default ``stormproof_wf``:

* ``<prefix>_executions`` -- one row per execution name (the primary key, so names are
  idempotent): kind, definition, input, status, output/error/cause, and the **checkpoint** (a
  JSON document: where the execution stands -- current state, its effective input, retry
  counters). The row also holds the ownership lease that keeps two workers off one execution,
  a fencing ``version``, the number of ``runs`` (claims) and the next history sequence id.
* ``<prefix>_history`` -- the execution history, ``(execution, seq)`` ordered, each event with
  a type (``ExecutionStarted``, ``StateEntered``, ``TaskSucceeded``, ...), a timestamp and JSON
  details, like Step Functions' ``GetExecutionHistory``.
* ``<prefix>_steps`` -- recorded step results of Python-native workflows (and their retry
  state), keyed by ``(execution, step_id)``.
* ``<prefix>_timers`` -- when an execution is next due (a Wait, a retry delay, a sleep, or
  "now" for a queued one); workers take due timers.

**Atomicity.** Every change an engine makes to an execution -- new checkpoint, history events,
step records, timer, status -- goes through :meth:`WorkflowStore.commit` as one
:class:`Update`, applied in a single database transaction. A process killed at any point leaves
the execution at its previous commit or its new one, never in between.

**Ownership.** A worker claims an execution (:meth:`~WorkflowStore.claim`: a lease with a random
owner token) before advancing it, and each commit checks the token: a worker that stalled past
its lease and was replaced gets :class:`OwnershipLost` instead of overwriting the new owner's
progress (the fencing rule of :mod:`stormproof.policies.fencing`).

Times are epoch seconds from the engine's clock, passed in by the caller.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from stormproof.errors import ConfigError, StormproofError

__all__ = [
    "DEFAULT_PREFIX",
    "WORKFLOW_SCHEMA_VERSION",
    "Execution",
    "ExecutionAlreadyExists",
    "ExecutionNotFound",
    "ExecutionStatus",
    "HistoryEvent",
    "NewExecution",
    "OwnershipLost",
    "StepRecord",
    "Update",
    "WorkflowStore",
    "dumps",
    "open_store",
]

#: The schema version ``init`` records in ``stormproof_schema`` under the table prefix.
WORKFLOW_SCHEMA_VERSION = 1
#: The table prefix used when the URL has no ``table`` parameter.
DEFAULT_PREFIX = "stormproof_wf"


class ExecutionStatus(enum.StrEnum):
    """Where an execution stands (the Step Functions names)."""

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    @property
    def finished(self) -> bool:
        """Whether no worker will advance it any more (until a redrive)."""
        return self is not ExecutionStatus.RUNNING


class OwnershipLost(StormproofError):
    """A commit or release was refused: another worker took the execution over."""


class ExecutionNotFound(StormproofError, KeyError):
    """No execution has that name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "execution not found"


class ExecutionAlreadyExists(StormproofError):
    """An execution of that name exists with another definition or input (AWS's rule)."""


def dumps(value: Any) -> str:
    """Compact, key-sorted JSON (never pickle); NaN and infinities are refused."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True, slots=True)
class NewExecution:
    """What :meth:`WorkflowStore.start` creates.

    Attributes:
        name: unique execution name (1 to 200 characters, no NUL).
        kind: ``"asl"`` or ``"python"`` (which driver advances it).
        definition: the ASL JSON text, or the registered name of a Python workflow.
        input: JSON text.
        checkpoint: the initial checkpoint (JSON text).
        parent: the parent execution of a Parallel/Map branch, or ``None``.
    """

    name: str
    kind: str
    definition: str
    input: str
    checkpoint: str
    parent: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not 0 < len(self.name) <= 200 or "\x00" in self.name:
            raise ConfigError("name", "must be 1 to 200 characters without NUL", self.name)
        if self.kind not in ("asl", "python"):
            raise ConfigError("kind", 'must be "asl" or "python"', self.kind)


@dataclass(frozen=True, slots=True)
class Execution:
    """One execution as stored.

    Attributes:
        name: its unique name.
        kind: ``"asl"`` or ``"python"``.
        definition: ASL JSON text, or the Python workflow's registered name.
        input: the execution input (JSON text).
        status: RUNNING, SUCCEEDED or FAILED.
        output: the output (JSON text) once SUCCEEDED.
        error: the error name once FAILED (``States.TaskFailed``, an exception class name...).
        cause: the human-readable cause once FAILED.
        checkpoint: the engine's position (JSON text).
        version: bumped by every commit.
        owner: the token of the worker holding the lease, or ``None``.
        lease_until: until when that lease holds (epoch seconds).
        runs: how many times a worker claimed it (a crash and restart adds one).
        started_at: when it was started.
        updated_at: its last commit.
        parent: the parent execution of a branch, or ``None``.
        wake_at: when it is next due (its timer), or ``None``.
    """

    name: str
    kind: str
    definition: str
    input: str
    status: ExecutionStatus
    output: str | None
    error: str | None
    cause: str | None
    checkpoint: str
    version: int
    owner: str | None
    lease_until: float
    runs: int
    started_at: float
    updated_at: float
    parent: str | None = None
    wake_at: float | None = None


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One event of an execution's history.

    Attributes:
        execution: the execution name.
        seq: its sequence id, 1, 2, 3... within the execution.
        type: ``ExecutionStarted``, ``StateEntered``, ``TaskFailed``...
        timestamp: when it was recorded (epoch seconds, the engine's clock).
        details: event-specific fields (``state``, ``attempt``, ``error``, ``cause``...).
    """

    execution: str
    seq: int
    type: str
    timestamp: float
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StepRecord:
    """The recorded outcome of one step of a Python-native workflow.

    Attributes:
        step_id: the step's position in the workflow's sequence of steps (0, 1, 2...).
        name: the step function's name (checked on replay: a different name means the workflow
            code changed under a running execution).
        status: ``succeeded``, ``failed`` (final), ``retrying`` (a retry is scheduled) or
            ``sleeping`` (a durable sleep).
        result: the JSON result (succeeded) or the error document (failed, retrying).
        attempt: the attempt number the record is about (1-based).
        state: JSON text of the driver's extra state (retry counters, wake-up time).
    """

    step_id: int
    name: str
    status: str
    result: str | None
    attempt: int = 1
    state: str = "{}"


@dataclass(frozen=True, slots=True)
class Update:
    """Everything one engine step changes, applied atomically by :meth:`WorkflowStore.commit`.

    Attributes:
        events: ``(type, details)`` pairs appended to the history, in order.
        checkpoint: the new checkpoint (JSON text), or ``None`` to keep it.
        status: the new status, or ``None`` to keep it.
        output: set on success.
        error: set on failure.
        cause: set on failure.
        steps: step records to insert or replace.
        delete_steps: step ids whose records are removed (a redrive retrying a failed step).
        wake_at: set the timer to this time; ``None`` leaves it unless ``clear_timer``.
        clear_timer: remove the timer (the execution finished or waits on its branches).
        release: give up ownership after the commit (the execution blocked or finished).
    """

    events: Sequence[tuple[str, Mapping[str, Any]]] = ()
    checkpoint: str | None = None
    status: ExecutionStatus | None = None
    output: str | None = None
    error: str | None = None
    cause: str | None = None
    steps: Sequence[StepRecord] = ()
    delete_steps: Sequence[int] = ()
    wake_at: float | None = None
    clear_timer: bool = False
    release: bool = False


@runtime_checkable
class WorkflowStore(Protocol):
    """What a workflow back end provides; see the module docstring for the semantics."""

    url: str

    def init(self) -> None:
        """Create the tables if missing and record ``WORKFLOW_SCHEMA_VERSION`` (idempotent)."""
        ...

    def schema_version(self) -> int | None:
        """The version ``init`` recorded for this prefix, or ``None`` before it."""
        ...

    def start(self, new: NewExecution, now: float) -> tuple[Execution, bool]:
        """Create the execution, its ``ExecutionStarted`` event and a timer due ``now``.

        Returns ``(execution, created)``. An existing execution of the same name is returned
        unchanged with ``created=False``, in one atomic statement (so two processes starting
        the same name get one execution).
        """
        ...

    def get(self, name: str) -> Execution | None:
        """The execution called ``name``, or ``None``."""
        ...

    def claim(self, name: str, owner: str, now: float, lease: float) -> Execution | None:
        """Take a RUNNING execution whose lease is free or expired; ``None`` if not possible."""
        ...

    def commit(self, name: str, owner: str, update: Update, now: float, lease_until: float) -> int:
        """Apply ``update`` in one transaction if ``owner`` holds the lease (else OwnershipLost).

        The lease is extended to ``lease_until`` (or released with ``update.release``). Returns
        the execution's new ``version``.
        """
        ...

    def reopen(self, name: str, update: Update, now: float) -> bool:
        """Set a FAILED execution RUNNING again, apply ``update`` and make it due ``now``.

        Clears output/error/cause; returns ``False`` if it was not FAILED (nothing changes).
        """
        ...

    def wake(self, name: str, at: float) -> None:
        """Set the timer of a RUNNING execution to ``at`` (no ownership needed: a hint)."""
        ...

    def history(self, name: str, after: int = 0) -> list[HistoryEvent]:
        """Events with ``seq > after``, in order."""
        ...

    def steps(self, name: str) -> list[StepRecord]:
        """The recorded steps of a Python-native execution, by ``step_id``."""
        ...

    def due(self, now: float, limit: int) -> list[str]:
        """Names of executions whose timer is due and whose lease is free, soonest first."""
        ...

    def next_wake(self) -> float | None:
        """The earliest timer of any RUNNING execution, or ``None``."""
        ...

    def executions(
        self, status: ExecutionStatus | None = None, *, parent: str | None = None, limit: int = 100
    ) -> list[Execution]:
        """Executions (optionally of one status or one parent), oldest first."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...

    def drop(self) -> None:
        """Drop the tables and the version row (tests and tear-down only)."""
        ...


def with_default_prefix(url: str) -> str:
    """``url`` with ``table=stormproof_wf`` appended when it names none."""
    from stormproof.events.queue import with_default_table

    return with_default_table(url, DEFAULT_PREFIX)


def open_store(url: str) -> WorkflowStore:
    """Open the workflow store at ``url`` (``sqlite:///...`` or ``postgresql://...``).

    Opening creates nothing: call ``init()``.
    """
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from stormproof.workflows.store_sqlite import SQLiteWorkflowStore

        return SQLiteWorkflowStore(url)
    if scheme in ("postgresql", "postgres"):
        from stormproof.workflows.store_postgres import PostgresWorkflowStore

        return PostgresWorkflowStore(url)
    raise ConfigError("url", f"scheme {scheme!r} is not supported; use sqlite or postgresql", url)
