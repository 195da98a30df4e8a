"""``stormproof stores init|purge-expired``: create a store's schema, delete expired records."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from stormproof.cli._app import app
from stormproof.errors import ConfigError

if TYPE_CHECKING:
    from stormproof.stores.base import IdempotencyStore

_T = TypeVar("_T")

stores_app = typer.Typer(
    help="Durable stores: create schemas, check versions.", no_args_is_help=True
)
app.add_typer(stores_app, name="stores")


def _with_store(url: str, action: Callable[[IdempotencyStore], _T]) -> _T:
    """Open the store at ``url``, run ``action`` on it and close it; errors exit the command.

    A bad URL exits with 2 (the user's input), a failure of the store itself with 1.
    """
    from stormproof import stores

    err = Console(stderr=True)
    try:
        store = stores.open(url)
    except ConfigError as error:
        err.print("[red]error:[/red]", escape(str(error)))
        raise typer.Exit(2) from None
    try:
        return action(store)
    except Exception as error:
        err.print("[red]error:[/red]", escape(f"{type(error).__name__}: {error}"))
        raise typer.Exit(1) from None
    finally:
        store.close()


@stores_app.command("init")
def stores_init(
    url: Annotated[
        str, typer.Argument(help="Store URL, e.g. sqlite:///app.db or postgresql://...")
    ],
) -> None:
    """Create the store's tables or keys if missing (safe to run again) and show the version."""

    def init(store: IdempotencyStore) -> int | None:
        store.init()
        return store.schema_version()

    version = _with_store(url, init)
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

    def purge(store: IdempotencyStore) -> int:
        cutoff = time.time() - skew
        total = 0
        while True:
            deleted = store.purge_expired(cutoff, limit=batch)
            total += deleted
            if deleted < batch:
                return total

    total = _with_store(url, purge)
    Console().print(f"{escape(_redacted(url))}: {total} expired records deleted")


def _redacted(url: str) -> str:
    """``url`` with any password replaced by ``***``, for printing."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
