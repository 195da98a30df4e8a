"""Python-native durable workflows: plain functions whose steps are checkpointed.

    app = Workflows()

    @step(retry=presets.step_functions(interval=1.0, max_attempts=3))
    def allocate_seat(flight: dict) -> dict: ...

    @app.workflow("book-trip")
    def book_trip(trip: dict) -> dict:
        flight = reserve_flight(trip)        # a step: runs once, its result is recorded
        sleep(3 * 24 * 3600)                 # a durable timer, not a blocked thread
        return allocate_seat(flight)

    engine = Engine.open("sqlite:///app.db", workflows=app)
    engine.start(book_trip, {"trip": 1}, name="trip-1")
    engine.run("trip-1")

**Replay.** A workflow function is run from its start every time a worker advances the
execution (after a crash, after a timer). Its steps are numbered in call order; a step whose
result is recorded returns it (or raises its recorded :class:`StepError`) *without running
again*, and the first step without a record runs and its outcome is committed before the
workflow goes on. So the workflow code between steps must be **deterministic**: same input and
same step results, same sequence of step calls. Read the time with :func:`now` and draw
randomness inside steps. A step whose name differs from the record at its position raises
:class:`NonDeterministicWorkflow`.

**Guarantees.** A step is run **at least once per attempt**: a process killed while a step
runs (before its result is committed) runs that attempt again on restart; a step whose result
was committed never runs again. :func:`current_step` tells the step its execution, step id,
attempt and run (``runs`` counts claims, so it changes after a crash), which is the key for the
idempotency utility (:mod:`stormproof.events.idempotency`) when a side effect must happen
exactly once.

**Errors.** A step that fails -- after its retry policy gives up -- raises :class:`StepError`
in the workflow, on the first run and on every replay alike (the original exception is only
chained on the first run), so workflow code sees the same thing both times. Results and errors
are stored as JSON, never pickled; a result that JSON cannot encode fails the step.

**Retries** use a :class:`~stormproof.policies.retry.RetryPolicy` per step (default: one
attempt). Each failed attempt and the chosen delay are committed, and the delay is a timer in
the store, so a crash during a 10-minute backoff does not restart the schedule.
"""

from __future__ import annotations

import contextvars
import json
import math
import random
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, ParamSpec, Protocol, TypeVar, cast, overload

from stormproof.errors import ConfigError, StormproofError
from stormproof.policies.retry import GiveUp, RetryPolicy
from stormproof.workflows.store import StepRecord, Update, dumps

__all__ = [
    "NonDeterministicWorkflow",
    "StepDef",
    "StepError",
    "StepInfo",
    "WorkflowDef",
    "Workflows",
    "current_step",
    "now",
    "sleep",
    "step",
]

P = ParamSpec("P")
R = TypeVar("R")

#: One attempt, no retries: the default of a step without a policy (as DBOS and Temporal
#: activities configured without retries).
_NO_RETRY = RetryPolicy(max_attempts=1)


class StepError(StormproofError):
    """A step failed for good (its retry policy gave up); raised inside the workflow.

    Attributes:
        error: the exception class name of the last attempt (``SeatUnavailable``).
        cause: its message.
        step: the step's name.
    """

    def __init__(self, error: str, cause: str, step: str = "") -> None:
        self.error = error
        self.cause = cause
        self.step = step
        super().__init__(f"step {step!r} failed: {error}: {cause}" if step else f"{error}: {cause}")


class NonDeterministicWorkflow(StormproofError):
    """On replay the workflow called another step than the one recorded at that position."""


@dataclass(frozen=True, slots=True)
class StepInfo:
    """What a running step can learn about itself (see :func:`current_step`).

    Attributes:
        execution: the execution name.
        step_id: the step's position in the workflow (0, 1, 2...).
        name: the step's name.
        attempt: the attempt number, 1 for the first.
        run: the execution's run number (claims so far); a restart after a crash increments it.
    """

    execution: str
    step_id: int
    name: str
    attempt: int
    run: int

    @property
    def attempt_id(self) -> str:
        """``execution/step_id/attempt/run``: unique for every time a step body starts."""
        return f"{self.execution}/{self.step_id}/{self.attempt}/{self.run}"

    @property
    def idempotency_key(self) -> str:
        """``execution/step_id``: the same for every attempt of this step (exactly-once key)."""
        return f"{self.execution}/{self.step_id}"


_STEP: contextvars.ContextVar[StepInfo | None] = contextvars.ContextVar(
    "stormproof_workflow_step", default=None
)


def current_step() -> StepInfo | None:
    """The step running in this context, or ``None`` outside a durable step."""
    return _STEP.get()


class StepDef(Generic[P, R]):
    """A function made a durable step by :func:`step`. Call it like the function.

    Inside a running workflow the call is checkpointed; anywhere else it simply calls the
    function (handy in unit tests of the step itself).

    Attributes:
        fn: the function.
        name: the recorded name.
        retry: the retry policy of every call.
        compensation: the saga compensation, or ``None``.
    """

    def __init__(
        self,
        fn: Callable[P, R],
        name: str,
        retry: RetryPolicy = _NO_RETRY,
        compensation: StepDef[..., Any] | None = None,
    ) -> None:
        self.fn = fn
        self.name = name
        self.retry = retry
        self.compensation = compensation
        self.__doc__ = getattr(fn, "__doc__", None)
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"StepDef({self.name!r})"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the step: checkpointed inside a workflow, a plain call anywhere else."""
        run = _RUN.get()
        if run is None:
            return self.fn(*args, **kwargs)
        return cast(R, run.call(self, args, kwargs))

    def compensate(self, fn: Callable[..., Any]) -> StepDef[..., Any]:
        """Decorator: register ``fn`` as this step's compensation (called with its result).

        Returns the compensation as a step; give it its own retry policy by decorating it with
        :func:`step` first.
        """
        comp = fn if isinstance(fn, StepDef) else StepDef(fn, _name_of(fn))
        self.compensation = comp
        return comp


def _name_of(fn: Callable[..., Any]) -> str:
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", repr(fn)))


@overload
def step(fn: Callable[P, R], /) -> StepDef[P, R]: ...


@overload
def step(
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    compensate: Callable[..., Any] | None = None,
) -> Callable[[Callable[P, R]], StepDef[P, R]]: ...


def step(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    compensate: Callable[..., Any] | None = None,
) -> StepDef[P, R] | Callable[[Callable[P, R]], StepDef[P, R]]:
    """Make a function a durable step (``@step`` or ``@step(retry=..., compensate=...)``).

    Args:
        fn: the function, when used as a bare ``@step``.
        name: recorded with the result and checked on replay; default the function's qualname.
        retry: the step's retry policy; default one attempt.
        compensate: the undo action run by a :func:`~stormproof.workflows.saga.saga` with the
            step's result when a later step fails (a plain function or another ``@step``).
    """
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise ConfigError("retry", "must be a stormproof RetryPolicy", retry)

    def wrap(f: Callable[P, R]) -> StepDef[P, R]:
        if isinstance(f, StepDef):
            raise ConfigError("step", "is already a step", f.name)
        comp: StepDef[..., Any] | None = None
        if compensate is not None:
            comp = (
                compensate
                if isinstance(compensate, StepDef)
                else StepDef(compensate, _name_of(compensate))
            )
        return StepDef(f, name or _name_of(f), retry or _NO_RETRY, comp)

    return wrap(fn) if fn is not None else wrap


def sleep(seconds: float) -> None:
    """Sleep durably inside a workflow: a timer in the store, no thread blocked.

    The wake-up time is recorded on the first run, so a replay after a crash waits only for
    what is left. Outside a workflow it raises :class:`~stormproof.errors.ConfigError`.
    """
    if not isinstance(seconds, int | float) or not math.isfinite(seconds) or seconds < 0:
        raise ConfigError("seconds", "must be a finite number >= 0", seconds)
    _require_run("sleep").sleep(float(seconds))


def now() -> float:
    """The workflow's time, recorded on first use so replays see the same value."""
    return cast(float, _require_run("now").record_value("stormproof.now", lambda r: r.clock_now))


def _require_run(what: str) -> _Run:
    run = _RUN.get()
    if run is None:
        raise ConfigError(what, "is only available inside a running durable workflow")
    return run


@dataclass(frozen=True, slots=True)
class WorkflowDef:
    """A registered workflow: a function of one JSON input, run durably by the engine."""

    fn: Callable[[Any], Any]
    name: str

    def __call__(self, input: Any) -> Any:
        """Call the function directly (not durably)."""
        return self.fn(input)


@dataclass(slots=True)
class Workflows:
    """A registry of Python workflows, looked up by name when a worker resumes an execution."""

    _by_name: dict[str, WorkflowDef] = field(default_factory=dict)

    def workflow(self, name: str | None = None) -> Callable[[Callable[[Any], Any]], WorkflowDef]:
        """Decorator: register a function of one JSON input as a workflow called ``name``."""

        def register(fn: Callable[[Any], Any]) -> WorkflowDef:
            made = WorkflowDef(fn, name or _name_of(fn))
            if made.name in self._by_name:
                raise ConfigError(
                    "name", "a workflow of that name is already registered", made.name
                )
            self._by_name[made.name] = made
            return made

        return register

    def get(self, name: str) -> WorkflowDef:
        """The workflow registered as ``name`` (ConfigError if none)."""
        found = self._by_name.get(name)
        if found is None:
            known = ", ".join(sorted(self._by_name)) or "none"
            raise ConfigError("workflow", f"is not registered (known: {known})", name)
        return found

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._by_name)


# -- the replay machinery (used by the engine) -------------------------------------------------


class Suspend(BaseException):
    """Unwinds a workflow function that must wait until ``due``.

    A BaseException, so that user code's ``except Exception`` does not swallow it.
    """

    def __init__(self, due: float) -> None:
        super().__init__(due)
        self.due = due


def _error_doc(error: BaseException) -> dict[str, str]:
    return {"error": type(error).__name__, "cause": str(error)}


class Committer(Protocol):
    """What the replay machinery needs from the engine: the clock and an atomic commit."""

    def now(self) -> float:
        """Current time (epoch seconds)."""
        ...

    def commit(self, update: Update) -> None:
        """Apply ``update`` to the execution atomically (or raise OwnershipLost)."""
        ...


class _Run:
    """One replay of one execution: hands out step ids, replays records, runs new steps."""

    def __init__(
        self,
        execution: str,
        run_number: int,
        records: Mapping[int, StepRecord],
        committer: Committer,
    ) -> None:
        self.execution = execution
        self.run_number = run_number
        self.records = dict(records)
        self.committer = committer
        self.next_id = 0
        #: Compensations of completed saga steps, innermost saga last.
        self.sagas: list[list[tuple[StepDef[..., Any], Any]]] = []
        #: Set by a saga whose compensations all ran (or one of which failed for good).
        self.compensated = False
        self.compensation_failed = False

    @property
    def clock_now(self) -> float:
        return self.committer.now()

    def _take_id(self, name: str) -> tuple[int, StepRecord | None]:
        step_id = self.next_id
        self.next_id += 1
        record = self.records.get(step_id)
        if record is not None and record.name != name:
            raise NonDeterministicWorkflow(
                f"step {step_id} of {self.execution!r} was recorded as {record.name!r} "
                f"but the workflow now calls {name!r}: the workflow code changed under a "
                "running execution"
            )
        return step_id, record

    def _commit(self, record: StepRecord, events: list[tuple[str, dict[str, Any]]]) -> None:
        self.committer.commit(Update(events=events, steps=(record,)))
        self.records[record.step_id] = record

    def record_value(self, name: str, compute: Callable[[_Run], Any]) -> Any:
        """A value computed once and recorded (``now()``, markers)."""
        step_id, record = self._take_id(name)
        if record is not None:
            return json.loads(record.result or "null")
        value = compute(self)
        self._commit(StepRecord(step_id, name, "succeeded", dumps(value)), [])
        return value

    def marker(self, name: str, event: str, details: dict[str, Any]) -> None:
        """A history event written exactly once, at this point of the workflow."""
        step_id, record = self._take_id(name)
        if record is None:
            self._commit(StepRecord(step_id, name, "succeeded", "null"), [(event, details)])

    def sleep(self, seconds: float) -> None:
        step_id, record = self._take_id("stormproof.sleep")
        if record is None:
            due = self.clock_now + seconds
            record = StepRecord(
                step_id, "stormproof.sleep", "sleeping", None, 1, dumps({"due": due})
            )
            event = {"step": step_id, "seconds": seconds, "due": due}
            self._commit(record, [("WaitStarted", event)])
        due = float(json.loads(record.state)["due"])
        if self.clock_now < due:
            raise Suspend(due)

    def call(
        self, definition: StepDef[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        step_id, record = self._take_id(definition.name)
        result = self._run_step(step_id, record, definition, args, kwargs, "Step")
        if self.sagas and definition.compensation is not None:
            self.sagas[-1].append((definition.compensation, result))
        return result

    def _run_step(
        self,
        step_id: int,
        record: StepRecord | None,
        definition: StepDef[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        role: str,
    ) -> Any:
        name = definition.name
        if record is not None and record.status == "succeeded":
            return json.loads(record.result or "null")
        if record is not None and record.status == "failed":
            doc = json.loads(record.result or "{}")
            raise StepError(str(doc.get("error")), str(doc.get("cause")), name)
        policy = definition.retry
        if record is not None and record.status == "retrying":
            state = json.loads(record.state)
            if self.clock_now < float(state["due"]):
                raise Suspend(float(state["due"]))
            attempt, started_at = int(state["attempt"]), float(state["started_at"])
            last_delay = state.get("last_delay")
        else:
            attempt, started_at, last_delay = 1, self.clock_now, None
        while True:
            info = StepInfo(self.execution, step_id, name, attempt, self.run_number)
            token = _STEP.set(info)
            try:
                value = definition.fn(*args, **kwargs)
                text = dumps(value)
            except Exception as error:
                failure: Exception | None = error
            else:
                failure = None
            finally:
                _STEP.reset(token)
            at = self.clock_now
            if failure is None:
                done = StepRecord(step_id, name, "succeeded", text, attempt)
                details = {
                    "step": step_id,
                    "name": name,
                    "attempt": attempt,
                    "run": self.run_number,
                }
                self._commit(done, [(f"{role}Succeeded", details)])
                return json.loads(text)
            # Rebuild the policy's per-call state from what is recorded: the attempt number and
            # the last delay are all that exponential and decorrelated schedules need.
            call = policy.start(started_at, inherit_deadline=False, rng=_step_rng(info))
            call.attempt, call.last_delay = attempt, last_delay
            decision = call.on_failure(at, failure)
            doc = _error_doc(failure)
            failed = {
                "step": step_id,
                "name": name,
                "attempt": attempt,
                "run": self.run_number,
                **doc,
            }
            if isinstance(decision, GiveUp):
                final = StepRecord(step_id, name, "failed", dumps(doc), attempt)
                failed["final"] = True
                self._commit(final, [(f"{role}Failed", failed)])
                raise StepError(doc["error"], doc["cause"], name) from failure
            due = at + decision.delay
            state = {
                "attempt": decision.attempt,
                "due": due,
                "last_delay": decision.delay,
                "started_at": started_at,
            }
            retrying = StepRecord(step_id, name, "retrying", dumps(doc), attempt, dumps(state))
            scheduled = {"step": step_id, "attempt": decision.attempt, "delay": decision.delay}
            self._commit(retrying, [(f"{role}Failed", failed), ("RetryScheduled", scheduled)])
            if decision.delay > 0:
                raise Suspend(due)
            attempt, last_delay = decision.attempt, decision.delay

    def compensate(self, original: BaseException) -> None:
        """Run the innermost saga's compensations in reverse order, each a durable step."""
        pending = self.sagas[-1]
        doc = _error_doc(original)
        if isinstance(original, StepError):
            doc = {"error": original.error, "cause": original.cause}
        self.marker("stormproof.saga.start", "CompensationStarted", dict(doc))
        for compensation, result in reversed(pending):
            step_id, record = self._take_id(compensation.name)
            self._run_step(step_id, record, compensation, (result,), {}, "CompensationStep")
        self.marker("stormproof.saga.end", "CompensationSucceeded", {"steps": len(pending)})


def _step_rng(info: StepInfo) -> random.Random:
    """A jitter source that gives every attempt of a step its own, reproducible draw."""
    return random.Random(f"{info.execution}\x00{info.step_id}\x00{info.attempt}")


_RUN: contextvars.ContextVar[_Run | None] = contextvars.ContextVar(
    "stormproof_workflow_run", default=None
)


@contextmanager
def running(run: _Run) -> Iterator[_Run]:
    """Make ``run`` the current replay for the calls made inside the block."""
    token = _RUN.set(run)
    try:
        yield run
    finally:
        _RUN.reset(token)


def current_run() -> _Run | None:
    """The replay in progress in this context (used by :mod:`stormproof.workflows.saga`)."""
    return _RUN.get()
