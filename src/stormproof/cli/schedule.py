"""``stormproof schedule``: the retry schedule a preset follows, on a manual clock."""

from __future__ import annotations

import random
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from stormproof.cli._app import app
from stormproof.clock import ManualClock
from stormproof.policies import presets
from stormproof.policies.retry import GiveUp, RetryPolicy

_PRESETS = ("default", "aws-standard", "aws-2026", "aws-legacy", "step-functions")


def _preset(name: str, seed: int) -> RetryPolicy:
    rng = random.Random(seed)
    if name == "default":
        return presets.default(rng)
    if name == "aws-standard":
        return presets.aws_sdk_standard(rng=rng)
    if name == "aws-2026":
        return presets.aws_sdk_standard("2026", rng=rng)
    if name == "aws-legacy":
        return presets.aws_sdk_legacy(rng=rng)
    if name == "step-functions":
        return presets.step_functions(rng=rng)
    raise typer.BadParameter(f"must be one of {', '.join(_PRESETS)}", param_hint="--preset")


@app.command()
def schedule(
    preset: Annotated[str, typer.Option(help=f"Retry preset: {', '.join(_PRESETS)}.")] = "default",
    seed: Annotated[int, typer.Option(help="Seed of the jitter's random stream.")] = 7,
    failures: Annotated[
        int, typer.Option(min=1, help="How many attempts fail before one succeeds.")
    ] = 10,
) -> None:
    """Print the retry schedule a preset produces when a call keeps failing (on a manual clock)."""
    policy = _preset(preset, seed)
    clock = ManualClock()
    call = policy.start(clock.now())
    table = Table(title=f"retry schedule: {preset} (seed {seed})")
    for column in ("attempt", "starts at (s)", "outcome", "decision"):
        table.add_column(column)
    for _ in range(failures):
        started = clock.now()
        decision = call.on_failure(clock.now(), ConnectionError("connection reset"))
        if isinstance(decision, GiveUp):
            table.add_row(
                str(decision.attempts), f"{started:.3f}", "ConnectionError", decision.reason.value
            )
            break
        table.add_row(
            str(decision.attempt - 1),
            f"{started:.3f}",
            "ConnectionError",
            f"wait {decision.delay:.3f} s",
        )
        clock.sleep(decision.delay)
    else:
        table.add_row(str(call.attempt), f"{clock.now():.3f}", "ok", "done")
        call.on_success(clock.now())
    Console().print(table)
