"""``stormproof stores init|purge-expired``: create a store's schema, delete expired records."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from stormproof.cli._app import app
from stormproof.errors import ConfigError

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


@stores_app.command("purge-expired")
def stores_purge_expired(
    url: Annotated[str, typer.Argument(help="Store URL, e.g. sqlite:///app.db")],
    skew: Annotated[
        float,
        typer.Option(min=0.0, help="Seconds of clock skew to allow: purge what expired before."),
    ] = 300.0,
    batch: Annotated[int, typer.Option(min=1, help="Records deleted per statement.")] = 10_000,
) -> None:
    """Delete expired idempotency records in batches (run it from a periodic job)."""
    import time

    from stormproof import stores

    err = Console(stderr=True)
    try:
        store = stores.open(url)
    except ConfigError as error:
        err.print("[red]error:[/red]", escape(str(error)))
        raise typer.Exit(2) from None
    total = 0
    try:
        cutoff = time.time() - skew
        while True:
            deleted = store.purge_expired(cutoff, limit=batch)
            total += deleted
            if deleted < batch:
                break
    except Exception as error:
        err.print("[red]error:[/red]", escape(f"{type(error).__name__}: {error}"))
        raise typer.Exit(1) from None
    finally:
        store.close()
    Console().print(f"{escape(_redacted(url))}: {total} expired records deleted")


def _redacted(url: str) -> str:
    """``url`` with any password replaced by ``***``, for printing."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
