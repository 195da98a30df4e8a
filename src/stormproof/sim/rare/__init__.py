"""Rare-event estimation: multilevel splitting with a confidence interval (see docs/rare-events.md).

:func:`estimate_by_splitting` estimates a small probability by cloning runs as they approach the
event; :func:`estimate_by_monte_carlo` is the plain estimator it is checked against;
:class:`CollapseBuilder` makes the simple-collapse scenario splittable.
"""

from __future__ import annotations

from stormproof.sim.rare.collapse import CollapseBuilder, CollapseRun
from stormproof.sim.rare.splitting import (
    RareEstimate,
    SplittableRun,
    SplittingPlan,
    clone_run,
    describe,
    estimate_by_monte_carlo,
    estimate_by_splitting,
    reseed_streams,
    t_quantile_975,
)

__all__ = [
    "CollapseBuilder",
    "CollapseRun",
    "RareEstimate",
    "SplittableRun",
    "SplittingPlan",
    "clone_run",
    "describe",
    "estimate_by_monte_carlo",
    "estimate_by_splitting",
    "reseed_streams",
    "t_quantile_975",
]
