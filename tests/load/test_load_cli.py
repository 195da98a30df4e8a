"""`stormproof load plan|export|run` (run against a server is in test_orders_service.py)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

import stormproof.cli.load  # noqa: F401  (registers the group)
from stormproof.cli._app import app
from stormproof.clock import ManualClock
from stormproof.load import Bursts, Fixed, RecoveryCriteria, Uniform
from stormproof.load.export import k6_scenarios
from stormproof.load.options import shape_from_options
from stormproof.load.report import write_report
from stormproof.load.runner import RunConfig
from stormproof.load.session import load_test

runner = CliRunner()
SHAPE_ARGS = ["--shape", "bursts", "--seed", "7", "--duration", "60"]


def test_plan_prints_a_deterministic_plan() -> None:
    first = runner.invoke(app, ["load", "plan", *SHAPE_ARGS])
    second = runner.invoke(app, ["load", "plan", *SHAPE_ARGS])
    assert first.exit_code == 0, first.output
    assert first.output == second.output
    data = json.loads(first.output)
    plan = shape_from_options("bursts", duration=60).plan(60, 7)
    assert data["steps"] == [list(step) for step in plan.steps]
    assert data["bursts"] and data["expected_requests"] == pytest.approx(plan.expected())


def test_export_k6_matches_the_library(tmp_path: Path) -> None:
    result = runner.invoke(app, ["load", "export", "--format", "k6", *SHAPE_ARGS])
    assert result.exit_code == 0, result.output
    plan = shape_from_options("bursts", duration=60).plan(60, 7)
    assert json.loads(result.output) == k6_scenarios(plan)
    out = tmp_path / "k6.json"
    result = runner.invoke(
        app, ["load", "export", "--format", "k6", *SHAPE_ARGS, "--out", str(out)]
    )
    assert result.exit_code == 0 and json.loads(out.read_text()) == k6_scenarios(plan)


def test_export_locust_module_text() -> None:
    result = runner.invoke(
        app, ["load", "export", "--format", "locust", *SHAPE_ARGS, "--requests-per-user", "5"]
    )
    assert result.exit_code == 0, result.output
    assert "class StormproofShape(LoadTestShape):" in result.output
    assert "REQUESTS_PER_USER = 5.0" in result.output
    compile(result.output, "shape.py", "exec")  # valid Python


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shape", "waves"], "shape: must be one of"),
        (["--shape", "bursts", "--idle", "3..1"], "idle.high"),
        (["--shape", "ramp", "--peak", "1..5"], "peak: must be a number"),
        (["--shape", "replay"], "replay: a CSV file is needed"),
        (["--shape", "replay", "--replay", "/nonexistent.csv"], "replay: cannot be read"),
    ],
)
def test_bad_options_exit_2_naming_the_field(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["load", "plan", *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_other_shapes_from_options(tmp_path: Path) -> None:
    csv = tmp_path / "rates.csv"
    csv.write_text("rate\n1\n1\n30\n1\n")
    result = runner.invoke(
        app, ["load", "plan", "--shape", "replay", "--replay", str(csv), "--duration", "4"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["bursts"] == [[2.0, 3.0]]
    for shape in ("steady", "ramp", "spike"):
        result = runner.invoke(app, ["load", "plan", "--shape", shape, "--duration", "9"])
        assert result.exit_code == 0, result.output
    spike = json.loads(
        runner.invoke(app, ["load", "plan", "--shape", "spike", "--duration", "9"]).output
    )
    assert spike["bursts"] == [[3.0, 8.0]]  # at a third of the run, for the largest burst


def test_run_rejects_a_bad_target() -> None:
    result = runner.invoke(app, ["load", "run", "--target", "localhost:80", "--no-live"])
    assert result.exit_code == 2 and "target" in result.output


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed")
def test_html_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    async def ok(scope: dict[str, object], receive: object, send: object) -> None:
        await send({"type": "http.response.start", "status": 201, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b"{}"})  # type: ignore[operator]

    shape = Bursts(Uniform(30, 50), Fixed(1), Fixed(2), idle_rate=5, lead_in=Fixed(1))
    run = asyncio.run(
        load_test(
            shape,
            RunConfig("http://service/orders", duration=8),
            seed=1,
            criteria=RecoveryCriteria(window=0.5),
            clock=ManualClock(),
            transport=httpx.ASGITransport(ok),
        )
    )
    report = tmp_path / "load.html"
    write_report(run, report)
    done = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
         report.as_uri()],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HOME": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert "Per burst" in dom and dom.count("<svg") == 4 and "polyline" in dom
