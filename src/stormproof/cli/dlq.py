"""``stormproof dlq inspect|redrive|purge``: dead-letter queues from the shell."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from stormproof.cli._app import app
from stormproof.errors import ConfigError

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
