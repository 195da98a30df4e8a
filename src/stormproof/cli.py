"""The ``stormproof`` command line. Requires the ``cli`` extra (typer and rich)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import stormproof
from stormproof.clock import ManualClock
from stormproof.errors import ConfigError
from stormproof.policies import presets
from stormproof.policies.retry import GiveUp, RetryPolicy

app = typer.Typer(
    name="stormproof",
    help="Resilience policies, outage replays and reliable event processing.",
    no_args_is_help=True,
    add_completion=False,
)

_PRESETS = ("default", "aws-standard", "aws-2026", "aws-legacy", "step-functions")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"stormproof {stormproof.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Resilience policies, outage replays and reliable event processing."""


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


def _parse_sets(values: list[str]) -> dict[str, str]:
    overrides: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected key=value, got {item!r}", param_hint="--set")
        overrides[key.strip()] = value.strip()
    return overrides


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
) -> None:
    """Run a scenario over seeds for each policy, with common random numbers."""
    from rich.progress import Progress

    from stormproof.report import experiment_report
    from stormproof.sim import SimulationLimitExceeded, scenarios
    from stormproof.sim.experiment import run_experiment

    err = Console(stderr=True)
    try:
        scenario = scenarios.get(scenario_name)
        params = scenario.resolve(_parse_sets(set_ or []))
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
                series=report is not None,
                progress=lambda done, total: bar.update(task, completed=done),
            )
        except SimulationLimitExceeded as error:
            err.print(
                "[red]error:[/red]", escape(f"{error}; try a shorter horizon or smaller scale")
            )
            raise typer.Exit(3) from None
    if report is not None:
        report.write_text(experiment_report(scenario, result), encoding="utf-8")
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


stores_app = typer.Typer(
    help="Durable stores: create schemas, check versions.", no_args_is_help=True
)
app.add_typer(stores_app, name="stores")


@stores_app.command("init")
def stores_init(
    url: Annotated[
        str, typer.Argument(help="Store URL, e.g. sqlite:///app.db or postgresql://...")
    ],
) -> None:
    """Create the store's tables or keys if missing (safe to run again) and show the version."""
    from stormproof import stores

    err = Console(stderr=True)
    try:
        store = stores.open(url)
    except ConfigError as error:
        err.print("[red]error:[/red]", escape(str(error)))
        raise typer.Exit(2) from None
    try:
        store.init()
        version = store.schema_version()
    except Exception as error:
        err.print("[red]error:[/red]", escape(f"{type(error).__name__}: {error}"))
        raise typer.Exit(1) from None
    finally:
        store.close()
    Console().print(f"{escape(_redacted(url))}: schema version {version}")


def _redacted(url: str) -> str:
    """``url`` with any password replaced by ``***``, for printing."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


dlq_app = typer.Typer(help="Dead-letter queues: inspect, redrive, purge.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")


def _open_queue(url: str) -> Any:
    from stormproof.events.queue import open_queue

    try:
        return open_queue(url)
    except ConfigError as error:
        Console(stderr=True).print("[red]error:[/red]", escape(str(error)))
        raise typer.Exit(2) from None


@dlq_app.command("inspect")
def dlq_inspect(
    url: Annotated[
        str, typer.Argument(help="Queue store URL (sqlite:///... or postgresql://...).")
    ],
    queue: Annotated[str, typer.Argument(help="Queue name, e.g. orders-dlq.")],
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Messages to show.")] = 10,
) -> None:
    """Show a queue's depth, its oldest message's age, and its first messages."""
    import time

    store = _open_queue(url)
    try:
        now = time.time()
        visible, in_flight = store.depth(queue, now)
        age = store.oldest_age(queue, now)
        messages = store.peek(queue, limit)
    finally:
        store.close()
    console = Console()
    oldest = "none" if age is None else f"{age:,.0f} s"
    console.print(
        f"{escape(queue)}: {visible} visible, {in_flight} in flight; oldest message {oldest}"
    )
    table = Table()
    for column in ("id", "receives", "reason", "body"):
        table.add_column(column, overflow="fold")
    for message in messages:
        reason = message.attributes.get("dlq_reason", "")
        body = message.body if len(message.body) <= 80 else message.body[:77] + "..."
        table.add_row(message.message_id, str(message.receive_count), reason, escape(body))
    console.print(table)


@dlq_app.command("redrive")
def dlq_redrive(
    url: Annotated[str, typer.Argument(help="Queue store URL.")],
    dlq: Annotated[str, typer.Argument(help="The dead-letter queue to empty.")],
    target: Annotated[str, typer.Argument(help="Where its messages go back to.")],
    rate: Annotated[
        float, typer.Option(min=0.1, max=500.0, help="Messages per second (SQS allows 500).")
    ] = 10.0,
) -> None:
    """Move messages from a dead-letter queue back, oldest first, at a bounded rate.

    Interrupting it (Ctrl-C) loses nothing: every batch moves atomically, and running the
    command again continues where it stopped.
    """
    import time

    from rich.progress import Progress

    from stormproof.events.redrive import Redrive

    store = _open_queue(url)
    try:
        total, _ = store.depth(dlq, time.time())
        with Progress(console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task(f"{dlq} -> {target}", total=total)
            progress = Redrive(store, dlq, target, rate_per_s=rate).run(
                time.time,
                time.sleep,
                on_batch=lambda ids: bar.advance(task, len(ids)),
            )
    finally:
        store.close()
    Console().print(f"moved {progress.moved} message(s) from {escape(dlq)} to {escape(target)}")


@dlq_app.command("purge")
def dlq_purge(
    url: Annotated[str, typer.Argument(help="Queue store URL.")],
    queue: Annotated[str, typer.Argument(help="The queue to empty.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do it without asking.")] = False,
) -> None:
    """Delete every visible message of a queue (asks first unless --yes)."""
    import time

    store = _open_queue(url)
    try:
        visible, _ = store.depth(queue, time.time())
        if not yes and not typer.confirm(f"delete {visible} message(s) from {queue}?"):
            raise typer.Exit(1)
        deleted = 0
        while True:
            batch = store.receive(queue, 10, 30.0, time.time())
            if not batch:
                break
            deleted += sum(store.delete(queue, m.receipt) for m in batch)
    finally:
        store.close()
    Console().print(f"deleted {deleted} message(s) from {escape(queue)}")


def main() -> None:
    """Entry point of the ``stormproof`` script."""
    app()
