"""``stormproof workflow validate|run|history|redrive`` and ``stormproof worker``.

Task resources and Python workflows are Python objects, so the commands that advance
executions import them: ``--tasks mypkg.tasks:registry`` names a task registry (or a dict of
resource -> callable) and ``--workflows mypkg.flows:app`` a
:class:`~stormproof.workflows.durable.Workflows` registry.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from stormproof.cli._app import app
from stormproof.errors import ConfigError, StormproofError

workflow_app = typer.Typer(
    help="Durable state machines: validate, run, inspect and redrive executions.",
    no_args_is_help=True,
)
app.add_typer(workflow_app, name="workflow")

DEFAULT_STORE = "sqlite:///stormproof-workflows.db"
_STORE_HELP = "Workflow store URL (sqlite:///... or postgresql://...)."
_TASKS_HELP = "module:attribute of the task registry (or dict of resource -> callable)."
_WORKFLOWS_HELP = "module:attribute of a Workflows registry of Python workflows."


def _fail(message: str, code: int = 2) -> typer.Exit:
    Console(stderr=True).print("[red]error:[/red]", escape(message))
    return typer.Exit(code)


def _load(spec: str | None) -> Any:
    """Import ``module:attribute`` (the current directory is importable, as with ``python``)."""
    if spec is None:
        return None
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise _fail(f"{spec!r} must be module:attribute")
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attribute)
    except (ImportError, AttributeError) as error:
        raise _fail(f"cannot load {spec!r}: {error}") from None


def _engine(store: str, tasks: str | None = None, workflows: str | None = None) -> Any:
    from stormproof.workflows.engine import Engine

    try:
        return Engine.open(store, tasks=_load(tasks), workflows=_load(workflows))
    except ConfigError as error:
        raise _fail(str(error)) from None


@workflow_app.command("validate")
def validate(
    file: Annotated[Path, typer.Argument(help="State machine definition (JSON or YAML).")],
) -> None:
    """Check an ASL definition; list every problem (state, field, rule) and exit 1 if any."""
    from stormproof.workflows.asl.parser import validate as check

    try:
        text = file.read_text()
    except OSError as error:
        raise _fail(str(error)) from None
    try:
        problems = check(text)
    except ConfigError as error:
        raise _fail(str(error), 1) from None
    console = Console()
    if not problems:
        console.print(f"{escape(str(file))}: valid")
        return
    for problem in problems:
        console.print(f"{escape(str(file))}: {escape(str(problem))}")
    raise typer.Exit(1)


@workflow_app.command("run")
def run(
    file: Annotated[Path, typer.Argument(help="State machine definition (JSON or YAML).")],
    input: Annotated[str, typer.Option("--input", help="Execution input (JSON).")] = "{}",
    store: Annotated[str, typer.Option(help=_STORE_HELP)] = DEFAULT_STORE,
    name: Annotated[str | None, typer.Option(help="Execution name (idempotent).")] = None,
    tasks: Annotated[str | None, typer.Option(help=_TASKS_HELP)] = None,
) -> None:
    """Start an execution (or find the one called NAME) and drive it to its end here.

    Waits and retry delays are slept on the wall clock; interrupt it and run ``stormproof
    worker`` (or this command with the same --name) to continue where it stopped.
    """
    try:
        payload = json.loads(input)
        text = file.read_text()
    except (ValueError, OSError) as error:
        raise _fail(f"--input/FILE: {error}") from None
    engine = _engine(store, tasks)
    try:
        execution = engine.start_machine(text, payload, name=name)
        execution = engine.run(execution.name)
    except StormproofError as error:
        raise _fail(str(error)) from None
    finally:
        engine.close()
    console = Console()
    console.print(f"{escape(execution.name)}: {execution.status.value}")
    if execution.output is not None:
        console.print(escape(execution.output))
    if execution.error is not None:
        console.print(f"{escape(execution.error)}: {escape(execution.cause or '')}")
        raise typer.Exit(1)


@workflow_app.command("history")
def history(
    name: Annotated[str, typer.Argument(help="Execution name.")],
    store: Annotated[str, typer.Option(help=_STORE_HELP)] = DEFAULT_STORE,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON event per line.")] = False,
) -> None:
    """Show an execution's history (ExecutionStarted, StateEntered, TaskFailed, ...)."""
    from stormproof.workflows.store import ExecutionNotFound

    engine = _engine(store)
    try:
        execution = engine.describe(name)
        events = engine.history(name)
    except ExecutionNotFound as error:
        raise _fail(str(error), 1) from None
    finally:
        engine.close()
    if as_json:
        for event in events:
            line = {"seq": event.seq, "type": event.type, "timestamp": event.timestamp}
            typer.echo(json.dumps({**line, "details": dict(event.details)}, sort_keys=True))
        return
    console = Console()
    console.print(f"{escape(name)}: {execution.status.value}")
    table = Table()
    for column in ("seq", "time", "type", "details"):
        table.add_column(column, overflow="fold")
    started = execution.started_at
    for event in events:
        details = json.dumps(dict(event.details), sort_keys=True)
        if len(details) > 120:
            details = details[:117] + "..."
        table.add_row(
            str(event.seq), f"+{event.timestamp - started:.3f}s", event.type, escape(details)
        )
    console.print(table)


@workflow_app.command("redrive")
def redrive(
    name: Annotated[str, typer.Argument(help="A FAILED execution.")],
    store: Annotated[str, typer.Option(help=_STORE_HELP)] = DEFAULT_STORE,
) -> None:
    """Restart a FAILED execution from the state (or step) that failed.

    It becomes RUNNING and due now; ``stormproof worker`` (or ``workflow run`` with its name)
    advances it.
    """
    from stormproof.workflows.store import ExecutionNotFound

    engine = _engine(store)
    try:
        execution = engine.redrive(name)
    except ExecutionNotFound as error:
        raise _fail(str(error), 1) from None
    except ConfigError as error:
        raise _fail(str(error), 1) from None
    finally:
        engine.close()
    Console().print(f"{escape(execution.name)}: {execution.status.value} (redriven)")


@app.command("worker")
def worker(
    store: Annotated[str, typer.Option(help=_STORE_HELP)] = DEFAULT_STORE,
    tasks: Annotated[str | None, typer.Option(help=_TASKS_HELP)] = None,
    workflows: Annotated[str | None, typer.Option(help=_WORKFLOWS_HELP)] = None,
    poll: Annotated[
        float, typer.Option(min=0.01, max=60.0, help="Longest sleep between checks (s).")
    ] = 1.0,
    once: Annotated[
        bool, typer.Option("--once", help="Stop when nothing is due (no waiting).")
    ] = False,
) -> None:
    """Advance due executions (timers, queued starts, redrive requests) on the wall clock.

    Runs until interrupted (Ctrl-C). Several workers may share one store: each execution is
    leased to one worker at a time.
    """
    engine = _engine(store, tasks, workflows)
    console = Console(stderr=True)
    advanced = 0
    try:
        while True:
            count = engine.run_due() + engine.process_redrive_requests()
            advanced += count
            if count:
                continue
            if once:
                break
            wake = engine.store.next_wake()
            delay = poll if wake is None else min(poll, max(0.0, wake - engine.clock.now()))
            engine.clock.sleep(max(delay, 0.01))
    except KeyboardInterrupt:
        pass
    finally:
        engine.close()
    console.print(f"worker: {advanced} advance(s)")
