"""The Amazon States Language: parsing, validation and a pure, clock-free interpreter.

    machine = parse(definition_json)               # raises AslValidationError(problems)
    step = machine.start(input, Context(now=...))  # -> RunTask | Transition | ... (steps.py)

:func:`~stormproof.workflows.asl.local.run_local` is a small, non-durable reference driver;
the durable engine drives the same interpreter and checkpoints every step.
"""

from stormproof.workflows.asl.errors import AslValidationError, Problem, StatesError
from stormproof.workflows.asl.machine import StateMachine
from stormproof.workflows.asl.parser import load_definition, parse, validate
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
    step_from_json,
    step_to_json,
)

__all__ = [
    "AslValidationError",
    "Branch",
    "Context",
    "Failed",
    "Problem",
    "RetryIn",
    "RunBranches",
    "RunTask",
    "StateMachine",
    "StatesError",
    "Step",
    "Succeeded",
    "Transition",
    "WaitUntil",
    "load_definition",
    "parse",
    "step_from_json",
    "step_to_json",
    "validate",
]
