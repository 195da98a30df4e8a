"""``stormproof scenarios`` and ``stormproof run``: the simulator from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from stormproof.cli._app import app
from stormproof.errors import ConfigError


@app.command("scenarios")
def list_scenarios() -> None:
    """List the simulation scenarios with a one-line description."""
    from stormproof.sim import scenarios

    table = Table(title="scenarios")
    for column in ("name", "policies", "description"):
        table.add_column(column)
    for name in scenarios.names():
        scenario = scenarios.get(name)
        table.add_row(name, ", ".join(scenario.policies), scenario.description)
    Console().print(table)


def parse_sets(values: list[str]) -> dict[str, str]:
    """``--set key=value`` options as a dict (a BadParameter names the malformed one)."""
    overrides: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected key=value, got {item!r}", param_hint="--set")
        overrides[key.strip()] = value.strip()
    return overrides


_parse_sets = parse_sets  # the name it had before it was public


@app.command("run")
def run_scenario(
    scenario_name: Annotated[str, typer.Argument(metavar="SCENARIO", help="Scenario name.")],
    seeds: Annotated[int, typer.Option(min=1, help="Number of seeds per policy.")] = 20,
    seed: Annotated[int, typer.Option(help="First seed; runs use seed .. seed+seeds-1.")] = 0,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a parameter: key=value (repeatable)."),
    ] = None,
    policy: Annotated[
        list[str] | None,
        typer.Option(help="Policy to run (repeatable); default: all of the scenario's."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Worker processes (default: CPU count).")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    report: Annotated[
        Path | None, typer.Option(help="Write a self-contained HTML report to this file.")
    ] = None,
    svg_dir: Annotated[
        Path | None,
        typer.Option(help="Also write each time-series chart as DIR/<series>.svg (for docs)."),
    ] = None,
) -> None:
    """Run a scenario over seeds for each policy, with common random numbers."""
    from rich.progress import Progress

    from stormproof.report import experiment_report, series_charts
    from stormproof.sim import SimulationLimitExceeded, scenarios
    from stormproof.sim.experiment import run_experiment

    err = Console(stderr=True)
    try:
        scenario = scenarios.get(scenario_name)
        params = scenario.resolve(parse_sets(set_ or []))
        chosen = list(policy) if policy else list(scenario.policies)
        for name in chosen:
            scenario.check_policy(name)
    except ConfigError as error:
        err.print("[red]error:[/red]", escape(str(error)))
        raise typer.Exit(2) from None
    seed_list = list(range(seed, seed + seeds))
    with Progress(console=err, transient=True, disable=len(seed_list) * len(chosen) < 2) as bar:
        task = bar.add_task(f"{scenario.name}", total=len(seed_list) * len(chosen))
        try:
            result = run_experiment(
                scenario,
                params,
                chosen,
                seed_list,
                workers=workers,
                series=report is not None or svg_dir is not None,
                progress=lambda done, total: bar.update(task, completed=done),
            )
        except SimulationLimitExceeded as error:
            err.print(
                "[red]error:[/red]", escape(f"{error}; try a shorter horizon or smaller scale")
            )
            raise typer.Exit(3) from None
    if report is not None:
        report.write_text(experiment_report(scenario, result), encoding="utf-8")
    if svg_dir is not None:
        svg_dir.mkdir(parents=True, exist_ok=True)
        for name, chart in series_charts(scenario, result).items():
            (svg_dir / f"{name}.svg").write_text(chart, encoding="utf-8")
    if json_output:
        typer.echo(json.dumps(result.to_json()))
        return
    table = Table(title=f"{scenario.name}: {len(seed_list)} seed(s) per policy, same seeds")
    table.add_column("", no_wrap=True)
    for name in result.policies:
        table.add_column(name, justify="right")
    summaries = list(result.policies.values())
    table.add_row("stuck runs", *(f"{s.stuck_runs}/{s.runs}" for s in summaries))
    table.add_row(
        "P(stuck) [95% CI]",
        *(f"{s.stuck_probability:.0%} [{s.ci95[0]:.0%}, {s.ci95[1]:.0%}]" for s in summaries),
    )
    for metric in sorted({m for s in summaries for m in s.metrics}):
        table.add_row(metric, *(_cell(s.metrics.get(metric)) for s in summaries))
    console = Console()
    if not console.is_terminal:
        # Piped or captured output gets 80 columns by default, too narrow for metric names.
        console = Console(width=120)
    console.print(table)
    if report is not None:
        console.print(f"report written to {report}")


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"
