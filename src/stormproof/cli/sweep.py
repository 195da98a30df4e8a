"""``stormproof sweep``: a scenario over a parameter grid, policies and seeds, locally or on Ray."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from stormproof.cli._app import app
from stormproof.cli.sim import parse_sets
from stormproof.errors import ConfigError

_GRID_HELP = (
    "Swept parameter: name=start:stop:step (stop included) or name=a,b,c (repeatable; "
    "the first is the map's x axis, the second its y axis)."
)


@app.command("sweep")
def sweep(
    scenario_name: Annotated[str, typer.Argument(metavar="SCENARIO", help="Scenario name.")],
    grid: Annotated[list[str] | None, typer.Option(help=_GRID_HELP)] = None,
    policy: Annotated[
        list[str] | None,
        typer.Option(help="Policy to run (repeatable); default: all of the scenario's."),
    ] = None,
    seeds: Annotated[
        int, typer.Option(min=1, help="Seeds per grid point and policy (the same everywhere).")
    ] = 20,
    seed: Annotated[
        int, typer.Option(min=0, help="First seed; runs use seed .. seed+seeds-1.")
    ] = 0,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Fix a parameter that is not swept: key=value (repeatable)."),
    ] = None,
    backend: Annotated[str, typer.Option(help="Where to run: local or ray.")] = "local",
    address: Annotated[
        str | None,
        typer.Option(help="Ray cluster to use (ray://head:10001, or auto); default: start one."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Worker processes, or CPUs of a local Ray (default: all)."),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Runs per task (default: about 4 tasks per worker).")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    report: Annotated[
        Path | None, typer.Option(help="Write a self-contained HTML report to this file.")
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(help="Append finished runs to this JSON-lines file and skip those in it."),
    ] = None,
) -> None:
    """Sweep a scenario over a grid of parameters for each policy, with common random numbers."""
    from rich.progress import Progress

    from stormproof.report.sweep import sweep_report
    from stormproof.sim import SimulationLimitExceeded, scenarios
    from stormproof.sim.backends import get_backend
    from stormproof.sim.sweep import parse_axis, plan_sweep, run_sweep

    err = Console(stderr=True)
    try:
        scenario = scenarios.get(scenario_name)
        axes = [parse_axis(item) for item in grid or []]
        plan = plan_sweep(
            scenario, axes, policy, list(range(seed, seed + seeds)), parse_sets(set_ or [])
        )
        runner = get_backend(backend, workers=workers, address=address)
    except ConfigError as error:
        err.print("[red]error:[/red]", escape(str(error)))
        raise typer.Exit(2) from None
    saved = 0
    with Progress(console=err, transient=True, disable=plan.total_runs < 2) as bar:
        task = bar.add_task(f"{scenario.name} on {runner.name}", total=plan.total_runs)

        def advance(done: int, total: int) -> None:
            nonlocal saved
            saved = done
            bar.update(task, completed=done)

        try:
            result = run_sweep(plan, runner, batch_size=batch_size, resume=resume, progress=advance)
        except ConfigError as error:
            err.print("[red]error:[/red]", escape(str(error)))
            raise typer.Exit(2) from None
        except ImportError as error:
            err.print("[red]error:[/red]", escape(str(error)))
            raise typer.Exit(2) from None
        except SimulationLimitExceeded as error:
            err.print(
                "[red]error:[/red]", escape(f"{error}; try a shorter horizon or smaller scale")
            )
            raise typer.Exit(3) from None
        except KeyboardInterrupt:
            where = (
                f"{saved} of {plan.total_runs} runs are in {resume}; run the same command to "
                "continue"
                if resume is not None
                else "nothing was saved (use --resume FILE to keep partial results)"
            )
            err.print("[yellow]interrupted:[/yellow]", escape(where))
            raise typer.Exit(130) from None
    if report is not None:
        report.write_text(sweep_report(scenario, result), encoding="utf-8")
    if json_output:
        typer.echo(json.dumps(result.to_json(), allow_nan=False))
        return
    console = Console()
    if not console.is_terminal:
        # Piped or captured output gets 80 columns by default, too narrow for the table.
        console = Console(width=160)
    names = [axis.name for axis in result.axes]
    table = Table(
        title=f"{scenario.name}: P(stuck) [95% CI], {len(result.seeds)} seed(s) per cell, "
        "same seeds everywhere"
    )
    for name in names or ["point"]:
        table.add_column(name, justify="right")
    for name in result.policies:
        table.add_column(name, justify="right")
    for index, point in enumerate(result.points):
        cells = [result.cells[p][index] for p in result.policies]
        table.add_row(
            *([f"{point[n]:g}" for n in names] or ["-"]),
            *(
                f"{c.stuck_runs}/{c.runs} {c.stuck_probability:.0%} "
                f"[{c.ci95[0]:.0%}, {c.ci95[1]:.0%}]"
                for c in cells
            ),
        )
    console.print(table)
    for name in result.policies:
        for line in result.boundary(name):
            at = ", ".join(f"{k}={v:g}" for k, v in line.at.items())
            where = ", ".join(
                f"{c.value:.3g} ({'rising' if c.rising else 'falling'})" for c in line.crossings
            ) or ("never (below)" if line.high < 0.5 else "never (at or above)")
            console.print(
                f"50% boundary of {escape(name)} along {escape(line.axis)}"
                f"{' at ' + escape(at) if at else ''}: {escape(where)}"
            )
    if report is not None:
        console.print(f"report written to {report}")
