"""Test doubles for the sweep tests: a scenario whose stuck probability is known exactly."""

from __future__ import annotations

import math
from collections.abc import Mapping

from stormproof.errors import ConfigError
from stormproof.sim.scenario import Param, RunResult, Scenario

SEEDS = list(range(10))


class Ramp(Scenario):
    """Stuck exactly when ``seed < x * y`` (``invert``: when not), so over seeds 0..9 the stuck
    probability is ``min(x * y, 10) / 10`` -- a surface whose 50 % crossings are known."""

    name = "ramp"
    description = "a known stuck-probability surface"
    policies = ("plain", "never")
    stuck_rule = "seed < x * y"
    params = (
        Param("x", 1, "first axis", "assumed: test", 0),
        Param("y", 1, "second axis", "assumed: test", 0),
        Param("z", 0, "third axis, no effect", "assumed: test", 0),
        Param("invert", 0, "1 flips stuck", "assumed: test", 0, 1, integer=True),
        Param("cap", 100, "x * y must stay below it", "assumed: test", 0),
    )

    def check(self, params: Mapping[str, float]) -> None:
        if params["x"] * params["y"] >= params["cap"]:
            raise ConfigError("cap", "x * y must be below cap", params["cap"])

    def run(
        self, params: Mapping[str, float], policy: str, seed: int, *, series: bool = False
    ) -> RunResult:
        stuck = policy == "plain" and seed < params["x"] * params["y"]
        if params["invert"]:
            stuck = not stuck
        return RunResult(
            scenario=self.name,
            policy=policy,
            seed=seed,
            stuck=stuck,
            metrics={"time_to_recover_s": math.nan if stuck else float(seed), "x": params["x"]},
            trace_hash=f"{seed:016x}{int(params['x'] * 1000):016x}",
        )
