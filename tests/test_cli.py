"""Tests of the stormproof command line (typer), run in-process with CliRunner."""

import random
import re

import pytest
from typer.testing import CliRunner

import stormproof
from stormproof.cli import app

runner = CliRunner()


def _rows(output: str) -> list[list[str]]:
    """The body rows of the rich table, as lists of stripped cells."""
    rows = []
    for line in output.splitlines():
        if line.startswith("│"):
            rows.append([cell.strip() for cell in line.strip("│").split("│")])
    return rows


def test_version_prints_the_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"stormproof {stormproof.__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", stormproof.__version__)


def test_help_lists_the_schedule_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "schedule" in result.output
    assert "--version" in result.output


def test_schedule_help_lists_the_options() -> None:
    result = runner.invoke(app, ["schedule", "--help"])
    assert result.exit_code == 0
    for option in ("--preset", "--seed", "--failures"):
        assert option in result.output


def test_schedule_aws_legacy_shows_five_attempts_then_gives_up() -> None:
    result = runner.invoke(app, ["schedule", "--preset", "aws-legacy", "--seed", "7"])
    assert result.exit_code == 0, result.output
    assert "aws-legacy (seed 7)" in result.output
    rows = _rows(result.output)
    assert [row[0] for row in rows] == ["1", "2", "3", "4", "5"]
    assert [row[2] for row in rows] == ["ConnectionError"] * 5
    assert rows[-1][3] == "attempts_exhausted"

    # aws-legacy: delay before retry n is U(0, 1) * 2 ** (n - 1), no cap.
    rng = random.Random(7)
    delays = [rng.random() * 2.0 ** (n - 1) for n in range(1, 5)]
    assert [row[3] for row in rows[:4]] == [f"wait {d:.3f} s" for d in delays]
    starts = [0.0]
    for delay in delays:
        starts.append(starts[-1] + delay)
    assert [row[1] for row in rows] == [f"{s:.3f}" for s in starts]


def test_schedule_is_reproducible_and_depends_on_the_seed() -> None:
    first = runner.invoke(app, ["schedule", "--preset", "aws-legacy", "--seed", "7"])
    again = runner.invoke(app, ["schedule", "--preset", "aws-legacy", "--seed", "7"])
    other = runner.invoke(app, ["schedule", "--preset", "aws-legacy", "--seed", "8"])
    assert first.output == again.output
    assert _rows(first.output) != _rows(other.output)


def test_schedule_with_few_failures_ends_with_success() -> None:
    result = runner.invoke(app, ["schedule", "--preset", "default", "--failures", "2"])
    assert result.exit_code == 0, result.output
    rows = _rows(result.output)
    assert [(row[0], row[2]) for row in rows] == [
        ("1", "ConnectionError"),
        ("2", "ConnectionError"),
        ("3", "ok"),
    ]
    assert rows[-1][3] == "done"


@pytest.mark.parametrize(
    ("preset", "attempts"),
    [("default", 3), ("aws-standard", 3), ("aws-2026", 3), ("step-functions", 4)],
)
def test_every_preset_gives_up_after_its_attempts(preset: str, attempts: int) -> None:
    result = runner.invoke(app, ["schedule", "--preset", preset])
    assert result.exit_code == 0, result.output
    rows = _rows(result.output)
    assert len(rows) == attempts
    assert rows[-1][3] == "attempts_exhausted"


def test_unknown_preset_exits_non_zero_naming_the_option() -> None:
    result = runner.invoke(app, ["schedule", "--preset", "no-such-preset"])
    assert result.exit_code != 0
    assert "--preset" in result.output
    assert "aws-legacy" in result.output  # the message lists the valid presets


def test_failures_below_one_is_rejected() -> None:
    result = runner.invoke(app, ["schedule", "--failures", "0"])
    assert result.exit_code != 0
    assert "--failures" in result.output
