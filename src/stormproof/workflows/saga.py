"""Sagas: each completed step registers its compensation; a failure runs them in reverse.

    @step(retry=presets.step_functions(interval=1.0, max_attempts=3))
    def allocate_seat(flight: dict) -> dict: ...

    @step(compensate=refund_flight)          # refund_flight(result) undoes it
    def reserve_flight(trip: dict) -> dict: ...

    @app.workflow("book-trip")
    def book_trip(trip: dict) -> dict:
        with saga():
            flight = reserve_flight(trip)
            seat = allocate_seat(flight)     # fails 4 times -> refund_flight(flight) runs
        return {"flight": flight, "seat": seat}

Inside a :func:`saga` block, every step that completes and has a compensation pushes
``(compensation, its result)``. When the block raises, the compensations of the steps that
completed run in **reverse order**, each as a durable step with its own retry policy (decorate
the compensation with :func:`~stormproof.workflows.durable.step` to give it one); then the
original error propagates and the execution fails with it, its history showing
``CompensationStarted``, one ``CompensationStepSucceeded`` per undo and
``CompensationSucceeded``.

**Durability.** Compensations are ordinary recorded steps, so a crash during compensation
resumes it: the replay raises the same recorded failure, re-enters the compensation path, skips
the compensations already recorded and runs the rest. A compensation that fails after its
retries raises :class:`CompensationFailed`; the execution fails with that error and goes to the
DLQ, and a redrive retries exactly that compensation (the steps and compensations before it
are not repeated). Compensations must therefore be idempotent per attempt, like steps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from stormproof.errors import ConfigError, StormproofError
from stormproof.workflows.durable import (
    NonDeterministicWorkflow,
    StepDef,
    StepError,
    Suspend,
    current_run,
)
from stormproof.workflows.store import OwnershipLost

__all__ = ["CompensationFailed", "add_compensation", "saga"]


class CompensationFailed(StormproofError):
    """A compensation failed after its retries; ``original`` is what triggered the saga."""

    def __init__(self, compensation: StepError, original: BaseException) -> None:
        self.compensation = compensation
        self.original = original
        self.error = "CompensationFailed"
        self.cause = f"{compensation} (while compensating {type(original).__name__}: {original})"
        super().__init__(self.cause)


@contextmanager
def saga() -> Iterator[None]:
    """A saga block inside a durable workflow (see the module docstring).

    Nested blocks compensate their own steps first; the outer block then compensates its own
    when the error reaches it.
    """
    run = current_run()
    if run is None:
        raise ConfigError("saga", "is only available inside a running durable workflow")
    run.sagas.append([])
    try:
        yield
    except (Suspend, NonDeterministicWorkflow, OwnershipLost):
        # Not failures of the transaction: a timer, changed code, or another worker's turn.
        raise
    except Exception as error:
        try:
            run.compensate(error)
        except StepError as failed:
            run.compensation_failed = True
            raise CompensationFailed(failed, error) from error
        run.compensated = True
        raise
    finally:
        run.sagas.pop()


def add_compensation(compensation: StepDef[..., Any] | Callable[..., Any], value: Any) -> None:
    """Register an undo action by hand: ``compensation(value)`` runs if the saga fails.

    For steps that need a compensation only in some cases. Call it at the same point on every
    replay (right after the step it undoes), like any workflow code.
    """
    run = current_run()
    if run is None or not run.sagas:
        raise ConfigError("add_compensation", "is only available inside a saga() block")
    comp = (
        compensation
        if isinstance(compensation, StepDef)
        else StepDef(compensation, str(getattr(compensation, "__qualname__", repr(compensation))))
    )
    run.sagas[-1].append((comp, value))
