"""The ``stormproof`` command line. Requires the ``cli`` extra (typer and rich).

One module per group of commands, each adding itself to :data:`app` when imported:
:mod:`.schedule` (``schedule``), :mod:`.sim` (``scenarios``, ``run``), :mod:`.sweep`
(``sweep``), :mod:`.explore` (``explore``), :mod:`.stores` (``stores init|purge-expired``),
:mod:`.dlq` (``dlq inspect|redrive|purge``), :mod:`.model` (``model check|lint|run``),
:mod:`.workflow` (``workflow validate|run|history|redrive``, ``worker``), :mod:`.load`
(``load run|export|plan``).
"""

from __future__ import annotations

from stormproof.cli import dlq, explore, load, model, schedule, sim, stores, sweep, workflow
from stormproof.cli._app import app
from stormproof.cli.stores import _redacted

__all__ = [
    "_redacted",
    "app",
    "dlq",
    "explore",
    "load",
    "main",
    "model",
    "schedule",
    "sim",
    "stores",
    "sweep",
    "workflow",
]


def main() -> None:
    """Entry point of the ``stormproof`` script."""
    app()
