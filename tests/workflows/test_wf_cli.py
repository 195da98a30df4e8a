"""``stormproof workflow ...`` and ``stormproof worker`` through Typer's test runner."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

import stormproof.cli.workflow  # noqa: F401 - registers the commands
from stormproof.cli._app import app

ROOT = Path(__file__).parents[2]
BOOKING = ROOT / "examples" / "travel_booking.asl.json"
runner = CliRunner()


def test_validate_accepts_the_example_and_lists_problems(tmp_path: Path) -> None:
    ok = runner.invoke(app, ["workflow", "validate", str(BOOKING)])
    assert ok.exit_code == 0 and "valid" in ok.output
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"StartAt": "A", "States": {"A": {"Type": "Task"}}}))
    result = runner.invoke(app, ["workflow", "validate", str(bad)])
    assert result.exit_code == 1 and "'A'" in result.output


def test_run_history_redrive_and_worker(tmp_path: Path, monkeypatch: object) -> None:
    (tmp_path / "wf_cli_tasks.py").write_text(
        "import os\n"
        "def seat(event):\n"
        "    if os.path.exists(os.path.join(os.path.dirname(__file__), 'broken')):\n"
        "        raise RuntimeError('no seat')\n"
        "    return '12A'\n"
        "tasks = {'Reserve-Flight': lambda e: 'F1', 'Allocate-Seat': seat,"
        " 'Refund-Flight': lambda e: 'ok'}\n"
    )
    machine = tmp_path / "m.json"
    machine.write_text(
        json.dumps(
            {
                "StartAt": "R",
                "States": {
                    "R": {
                        "Type": "Task",
                        "Resource": "Reserve-Flight",
                        "ResultPath": "$.f",
                        "Next": "S",
                    },
                    "S": {
                        "Type": "Task",
                        "Resource": "Allocate-Seat",
                        "ResultPath": "$.s",
                        "End": True,
                    },
                },
            }
        )
    )
    (tmp_path / "broken").write_text("")
    store = f"sqlite:///{tmp_path / 'cli.db'}"
    sys.path.insert(0, str(tmp_path))
    try:
        args = ["--store", store, "--tasks", "wf_cli_tasks:tasks"]
        failed = runner.invoke(
            app, ["workflow", "run", str(machine), "--input", '{"t": 1}', "--name", "c1", *args]
        )
        assert failed.exit_code == 1 and "FAILED" in failed.output
        assert "RuntimeError" in failed.output
        history = runner.invoke(app, ["workflow", "history", "c1", "--store", store, "--json"])
        kinds = [json.loads(line)["type"] for line in history.output.splitlines()]
        assert kinds[0] == "ExecutionStarted" and kinds[-1] == "ExecutionFailed"
        assert "TaskFailed" in kinds
        table = runner.invoke(app, ["workflow", "history", "c1", "--store", store])
        assert table.exit_code == 0 and "TaskScheduled" in table.output
        (tmp_path / "broken").unlink()
        redriven = runner.invoke(app, ["workflow", "redrive", "c1", "--store", store])
        assert redriven.exit_code == 0 and "RUNNING" in redriven.output
        worked = runner.invoke(app, ["worker", *args, "--once"])
        assert worked.exit_code == 0, worked.output
        again = runner.invoke(app, ["workflow", "history", "c1", "--store", store, "--json"])
        assert json.loads(again.output.splitlines()[-1])["type"] == "ExecutionSucceeded"
        missing = runner.invoke(app, ["workflow", "history", "nope", "--store", store])
        assert missing.exit_code == 1
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("wf_cli_tasks", None)


def test_the_example_runs_and_tells_what_happened() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "travel_booking.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.count("Refund-Flight   R-alan-LH-404") == 2
    assert "asl-ada: booking BA-117" in result.stdout
    assert "2 failed booking(s)" in result.stdout


def test_the_benchmark_smoke_run() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "workflows.py"), "--quick", "--no-postgres"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "asl sqlite synchronous=NORMAL" in result.stdout
    assert "transitions/s" in result.stdout
