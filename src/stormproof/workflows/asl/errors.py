"""Error names of the States Language and the exceptions of the ASL package.

Error names follow Appendix A of the States Language specification and the Step Functions
developer guide ("Handling errors in Step Functions workflows").
"""

from __future__ import annotations

from dataclasses import dataclass

from stormproof.errors import ConfigError, StormproofError

__all__ = [
    "ALL",
    "BRANCH_FAILED",
    "HEARTBEAT_TIMEOUT",
    "INTRINSIC_FAILURE",
    "KNOWN_ERRORS",
    "NO_CHOICE_MATCHED",
    "PARAMETER_PATH_FAILURE",
    "PERMISSIONS",
    "RESULT_PATH_MATCH_FAILURE",
    "RUNTIME",
    "TASK_FAILED",
    "TIMEOUT",
    "AslValidationError",
    "Problem",
    "StatesError",
]

ALL = "States.ALL"
TIMEOUT = "States.Timeout"
HEARTBEAT_TIMEOUT = "States.HeartbeatTimeout"
TASK_FAILED = "States.TaskFailed"
PERMISSIONS = "States.Permissions"
RESULT_PATH_MATCH_FAILURE = "States.ResultPathMatchFailure"
PARAMETER_PATH_FAILURE = "States.ParameterPathFailure"
BRANCH_FAILED = "States.BranchFailed"
NO_CHOICE_MATCHED = "States.NoChoiceMatched"
INTRINSIC_FAILURE = "States.IntrinsicFailure"
RUNTIME = "States.Runtime"

#: Every ``States.`` error name a Retrier or Catcher may list. Names of the distributed Map and
#: JSONata (not supported here) are accepted so that definitions written for AWS still validate.
KNOWN_ERRORS = frozenset(
    {
        ALL,
        TIMEOUT,
        HEARTBEAT_TIMEOUT,
        TASK_FAILED,
        PERMISSIONS,
        RESULT_PATH_MATCH_FAILURE,
        PARAMETER_PATH_FAILURE,
        BRANCH_FAILED,
        NO_CHOICE_MATCHED,
        INTRINSIC_FAILURE,
        RUNTIME,
        "States.DataLimitExceeded",
        "States.QueryEvaluationError",
        "States.ExceedToleratedFailureThreshold",
        "States.ItemReaderFailed",
        "States.ResultWriterFailed",
    }
)


class StatesError(StormproofError):
    """An error a state reports at run time, named by an ASL error name.

    The interpreter raises it internally and turns it into Retry/Catch handling or a
    :class:`~stormproof.workflows.asl.steps.Failed` step. Task code run by
    :func:`~stormproof.workflows.asl.local.run_local` may raise it to choose the error name.
    """

    def __init__(self, error: str, cause: str = "") -> None:
        self.error = error
        self.cause = cause
        super().__init__(f"{error}: {cause}" if cause else error)


@dataclass(frozen=True, slots=True)
class Problem:
    """One rule a state machine definition breaks.

    ``state`` is the state's name (``None`` for a top-level problem), ``field`` the field at
    fault (``"Retry[0].BackoffRate"``) and ``rule`` what it must satisfy.
    """

    state: str | None
    field: str
    rule: str

    def __str__(self) -> str:
        where = "state machine" if self.state is None else f"state {self.state!r}"
        return f"{where}: {self.field}: {self.rule}"


class AslValidationError(ConfigError):
    """A state machine definition is invalid; :attr:`problems` lists every rule it breaks."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        summary = "; ".join(str(p) for p in self.problems[:20])
        if len(self.problems) > 20:
            summary += f"; ... ({len(self.problems) - 20} more)"
        super().__init__("definition", f"{len(self.problems)} problem(s): {summary}")


class FieldProblem(ValueError):
    """Raised while compiling one field of a state; the parser turns it into a :class:`Problem`."""

    def __init__(self, field: str, rule: str) -> None:
        self.field = field
        self.rule = rule
        super().__init__(f"{field}: {rule}")
