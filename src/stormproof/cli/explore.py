"""``stormproof explore``: search a scenario's interleavings for invariant violations."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from stormproof.cli._app import app
from stormproof.errors import ConfigError

#: Scenarios whose actors can run under the controlled scheduler.
EXPLORABLE = ("dynamodb-dns-2025",)


@app.command("explore")
def explore_scenario(
    scenario_name: Annotated[str, typer.Argument(metavar="SCENARIO", help="Scenario name.")],
    design: Annotated[str, typer.Option(help="Design: original or fenced.")] = "original",
    max_steps: Annotated[int, typer.Option(min=1, help="Steps per interleaving at most.")] = 60,
    samples: Annotated[
        int, typer.Option(min=0, help="Random interleavings to run; 0: exhaustive search.")
    ] = 0,
    seed: Annotated[int, typer.Option(help="Seed of the random sampling.")] = 0,
    invariant: Annotated[
        list[str] | None,
        typer.Option(
            help="Invariant to check (repeatable): empty_record, active_plan_deleted, "
            "generation_regression; default: all."
        ),
    ] = None,
    enactors: Annotated[int, typer.Option(min=1, help="Enactors in the model.")] = 3,
    endpoints: Annotated[int, typer.Option(min=1, help="Endpoints in the model.")] = 2,
    margin: Annotated[int, typer.Option(min=0, help="Clean-up margin (generations).")] = 1,
    generations: Annotated[
        int, typer.Option(min=1, help="Newest plan generation the Planner may make.")
    ] = 4,
    replay_choices: Annotated[
        str | None,
        typer.Option("--replay", metavar="CHOICES", help="Replay a choice list, e.g. P,E0,E0."),
    ] = None,
    budget: Annotated[
        float | None,
        typer.Option(min=0.0, help="Stop the search after this many seconds (then incomplete)."),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Search the interleavings of a scenario's actors for a broken invariant.

    Exhaustive depth-first search by default (a shortest counterexample within --max-steps),
    random sampling with --samples, or one schedule with --replay. Exits 1 when an invariant
    is broken, 0 when none is, 2 on bad input.
    """
    from stormproof.sim import explore
    from stormproof.sim.parts import dns

    err = Console(stderr=True)
    try:
        if scenario_name not in EXPLORABLE:
            raise ConfigError(
                "scenario", f"{scenario_name!r} cannot be explored; valid: {', '.join(EXPLORABLE)}"
            )
        config = explore.ModelConfig(design, enactors, endpoints, margin, generations)
        config.initial()  # validates the design and sizes
        invariants = tuple(invariant) if invariant else dns.INVARIANTS
        if replay_choices is not None:
            replayed = explore.replay(
                config, explore.parse_choices(replay_choices), invariants, stop_at_violation=False
            )
        elif samples:
            result = explore.sample(config, samples, seed, max_steps, invariants, budget=budget)
        else:
            result = explore.exhaustive(config, max_steps, invariants, budget=budget)
    except ConfigError as error:
        err.print("[red]error:[/red]", escape(str(error)))
        raise typer.Exit(2) from None

    if replay_choices is not None:
        _print_replay(replayed, design, json_output)
        raise typer.Exit(1 if replayed.violations else 0)
    if json_output:
        typer.echo(json.dumps(result.to_json()))
    else:
        _print_result(result)
    raise typer.Exit(1 if result.found else 0)


def _print_replay(replayed: object, design: str, json_output: bool) -> None:
    from stormproof.sim.explore import Replay

    assert isinstance(replayed, Replay)
    violations = [{"invariant": n, "endpoints": list(e)} for n, e in replayed.violations]
    if json_output:
        payload = {
            "design": design,
            "choices": ",".join(replayed.choices),
            "steps": list(replayed.steps),
            "first_violation": violations,
            "first_violation_step": replayed.violated_at,
            "final_violations": [
                {"invariant": n, "endpoints": list(e)} for n, e in replayed.final_violations
            ],
            "trace_hash": replayed.trace_hash,
        }
        typer.echo(json.dumps(payload))
        return
    for number, step in enumerate(replayed.steps, 1):
        typer.echo(f"{number:3d}. {step}")
    if replayed.violated_at is not None:
        typer.echo(f"after step {replayed.violated_at}: {_violation_text(replayed.violations)}")
    typer.echo(f"at the end: {_violation_text(replayed.final_violations)}")
    typer.echo(f"trace hash: {replayed.trace_hash}")


def _violation_text(violations: tuple[tuple[str, tuple[int, ...]], ...]) -> str:
    if not violations:
        return "no invariant broken"
    return "broken: " + "; ".join(
        f"{name} at endpoint(s) {', '.join(map(str, endpoints))}" for name, endpoints in violations
    )


def _print_result(result: object) -> None:
    from stormproof.sim.explore import ExploreResult

    assert isinstance(result, ExploreResult)
    states = "states" if result.mode == "exhaustive" else "steps"
    typer.echo(
        f"{result.mode} search, design {result.design}: {result.interleavings} interleavings, "
        f"{result.states} {states}, max {result.max_steps} steps"
        + (" (some cut at the bound)" if result.bounded else " (none reached the bound)")
        + ("" if result.complete else "; stopped by --budget before the search finished")
    )
    example = result.counterexample
    if example is None:
        typer.echo("no invariant broken: " + ", ".join(result.invariants))
        return
    typer.echo(f"counterexample ({len(example.choices)} steps):")
    for number, step in enumerate(example.steps, 1):
        typer.echo(f"{number:3d}. {step}")
    typer.echo(_violation_text(example.violations))
    typer.echo(f"choices: {','.join(example.choices)}")
    typer.echo(f"trace hash: {example.trace_hash}")
