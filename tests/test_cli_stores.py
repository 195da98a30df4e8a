from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from stormproof.cli import app

runner = CliRunner()


def test_stores_init_reports_the_schema_version(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    first = runner.invoke(app, ["stores", "init", url])
    again = runner.invoke(app, ["stores", "init", url])
    assert first.exit_code == 0 and again.exit_code == 0, first.output
    assert "schema version 1" in again.output
    assert (tmp_path / "app.db").exists()


def test_stores_init_rejects_an_unknown_scheme() -> None:
    result = runner.invoke(app, ["stores", "init", "mysql://localhost/db"])
    assert result.exit_code == 2
    assert "sqlite" in result.output
