"""Durable state machines: an offline Amazon States Language engine and Python-native sagas.

    from stormproof.workflows import Engine, Workflows, saga, sleep, step

    engine = Engine.open("sqlite:///app.db", tasks=registry, workflows=app)
    engine.start_machine(definition, {"trip": 1}, name="trip-1")  # ASL (workflows.asl)
    engine.start(book_trip, {"trip": 2}, name="trip-2")            # a Python workflow
    engine.run("trip-1")

See :mod:`stormproof.workflows.engine` (durability, crash semantics, DLQ and redrive),
:mod:`stormproof.workflows.durable` (Python workflows) and :mod:`stormproof.workflows.saga`.
"""

from stormproof.workflows.durable import (
    NonDeterministicWorkflow,
    StepDef,
    StepError,
    StepInfo,
    WorkflowDef,
    Workflows,
    current_step,
    now,
    sleep,
    step,
)
from stormproof.workflows.engine import Engine, EngineConfig, EpochClock
from stormproof.workflows.saga import CompensationFailed, add_compensation, saga
from stormproof.workflows.store import (
    Execution,
    ExecutionAlreadyExists,
    ExecutionNotFound,
    ExecutionStatus,
    HistoryEvent,
    OwnershipLost,
    WorkflowStore,
    open_store,
)

__all__ = [
    "CompensationFailed",
    "Engine",
    "EngineConfig",
    "EpochClock",
    "Execution",
    "ExecutionAlreadyExists",
    "ExecutionNotFound",
    "ExecutionStatus",
    "HistoryEvent",
    "NonDeterministicWorkflow",
    "OwnershipLost",
    "StepDef",
    "StepError",
    "StepInfo",
    "WorkflowDef",
    "WorkflowStore",
    "Workflows",
    "add_compensation",
    "current_step",
    "now",
    "open_store",
    "saga",
    "sleep",
    "step",
]
