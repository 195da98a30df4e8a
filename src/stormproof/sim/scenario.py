"""What a scenario is: named parameters with provenance, policies to compare, a stuck rule.

A scenario is a model (built from :mod:`stormproof.sim.parts`) that can be run for one parameter
set, one policy configuration and one seed, and returns a :class:`RunResult`. Every parameter
carries where its value comes from -- a quotation of an incident report, a golden model, a public
default, or "assumed" with a reason -- and reports show it.
"""

from __future__ import annotations

import math
import statistics
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from stormproof.errors import ConfigError

__all__ = ["Param", "RunResult", "Scenario"]


@dataclass(frozen=True, slots=True)
class Param:
    """One scenario parameter: default, meaning, provenance and valid range."""

    name: str
    default: float
    description: str
    source: str
    minimum: float | None = None
    maximum: float | None = None
    integer: bool = False

    def parse(self, value: str | float) -> float:
        """Convert and range-check a value given by a user; raises ConfigError naming it."""
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                raise ConfigError(self.name, "must be a number", value) from None
        else:
            number = float(value)
        if math.isnan(number) or math.isinf(number):
            raise ConfigError(self.name, "must be finite", value)
        if self.integer:
            if number != int(number):
                raise ConfigError(self.name, "must be a whole number", value)
            number = int(number)
        if self.minimum is not None and number < self.minimum:
            raise ConfigError(self.name, f"must be >= {self.minimum:g}", value)
        if self.maximum is not None and number > self.maximum:
            raise ConfigError(self.name, f"must be <= {self.maximum:g}", value)
        return number


@dataclass(frozen=True, slots=True)
class RunResult:
    """The outcome of one run: metrics, whether it got stuck, and the trace hash."""

    scenario: str
    policy: str
    seed: int
    stuck: bool
    metrics: dict[str, float]
    trace_hash: str
    series: dict[str, list[float]] = field(default_factory=dict)


class Scenario(ABC):
    """Base class of every scenario; subclasses set the class attributes and :meth:`run`."""

    name: ClassVar[str]
    description: ClassVar[str]
    params: ClassVar[tuple[Param, ...]]
    policies: ClassVar[tuple[str, ...]]
    stuck_rule: ClassVar[str]
    #: Width in seconds of the buckets of the time series a run returns (reports plot with it).
    series_bucket_s: ClassVar[float] = 1.0
    #: A run that executes more events than this stops with SimulationLimitExceeded instead of
    #: running away (about a minute of CPU); scenarios whose normal runs need more raise it.
    max_events: ClassVar[int] = 20_000_000

    def resolve(self, overrides: Mapping[str, str | float] | None = None) -> dict[str, float]:
        """Defaults overlaid with ``overrides``; unknown names list the valid ones."""
        values = {param.name: param.default for param in self.params}
        by_name = {param.name: param for param in self.params}
        for key, value in (overrides or {}).items():
            param = by_name.get(key)
            if param is None:
                raise ConfigError(
                    key, f"is not a parameter of {self.name}; valid: {', '.join(sorted(by_name))}"
                )
            values[key] = param.parse(value)
        self.check(values)
        return values

    def milestones(self, params: Mapping[str, float]) -> list[tuple[float, str]]:
        """The incident report's timeline as ``(seconds after time 0, what happened)``.

        Reports draw them on every time series so the simulated timeline sits beside the
        real one. Default: none (a model that replays no incident).
        """
        return []

    def check(self, params: Mapping[str, float]) -> None:  # noqa: B027 - optional hook
        """Cross-parameter validation; subclasses raise ConfigError. Default: nothing."""

    def check_policy(self, policy: str) -> None:
        """Raise ConfigError listing the valid policies if ``policy`` is not one."""
        if policy not in self.policies:
            raise ConfigError(
                "policy",
                f"{policy!r} is not a policy of {self.name}; valid: " + ", ".join(self.policies),
            )

    @abstractmethod
    def run(
        self, params: Mapping[str, float], policy: str, seed: int, *, series: bool = False
    ) -> RunResult:
        """Run once; ``series=True`` also returns per-bucket time series for reports."""

    def summarize(self, runs: Sequence[RunResult]) -> dict[str, float | None]:
        """Aggregate metrics over runs (default: the mean of each, ignoring NaN).

        NaN marks a value that does not exist for a run (a time to recover of a run that never
        recovered), so the mean is over the runs that have one; scenarios report alongside it
        how many runs that was (simple-collapse: ``recovered``, the fraction of runs).
        """
        names = sorted({name for run in runs for name in run.metrics})
        summary: dict[str, float | None] = {}
        for name in names:
            values = [run.metrics[name] for run in runs if not math.isnan(run.metrics[name])]
            summary[name] = statistics.fmean(values) if values else None
        return summary
