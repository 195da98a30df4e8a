"""The ``stormproof`` Typer application that every command module adds itself to."""

from __future__ import annotations

from typing import Annotated

import typer

import stormproof

app = typer.Typer(
    name="stormproof",
    help="Resilience policies, outage replays and reliable event processing.",
    no_args_is_help=True,
    add_completion=False,
)


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
