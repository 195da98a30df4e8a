"""``stormproof model check|lint|run``: messages, exit codes and JSON."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

import stormproof.cli.model  # noqa: F401 - registers the command group
from stormproof.cli._app import app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "topologies"
runner = CliRunner()

SMALL = """\
name: small
horizon: 10
services:
  web: {workers: 4, queue_limit: 10, service_time: {base: 0.01}}
entries:
  users:
    target: web
    load: {shape: bursts, rate: 20, burst: 2, idle: 3}
    client: {timeout: 1, max_attempts: 2, backoff: {kind: exponential, base: 0.1, cap: 1}}
triggers:
  slow: {kind: latency, target: web, start: 2, duration: 2, extra: 2}
policy_sets:
  single:
    entries:
      users: {timeout: 1}
"""


def write(tmp_path: Path, text: str, name: str = "t.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_check_ok_and_errors_with_lines(tmp_path: Path) -> None:
    good = runner.invoke(app, ["model", "check", write(tmp_path, SMALL)])
    assert good.exit_code == 0, good.output
    assert "ok (1 services, 0 edges, 1 entries" in good.output
    bad_file = write(tmp_path, SMALL.replace("workers: 4", "workers: -4"))
    bad = runner.invoke(app, ["model", "check", bad_file])
    assert bad.exit_code == 1
    assert f"{bad_file}:4: services.web.workers: must be >= 1 (got -4)" in bad.output
    assert "Traceback" not in bad.output


def test_check_toml_errors_have_field_paths(tmp_path: Path) -> None:
    toml = 'name = "t"\n[services.web]\nworkers = 0\nservice_time = { base = 1 }\n'
    path = write(tmp_path, toml, "t.toml")
    result = runner.invoke(app, ["model", "check", path])
    assert result.exit_code == 1
    assert f"{path}: services.web.workers: must be >= 1 (got 0)" in result.output
    assert f"{path}: entries: needs at least one entry point or fleet" not in result.output


def test_lint_exit_codes_and_json() -> None:
    three_tier = str(EXAMPLES / "three-tier.yaml")
    text = runner.invoke(app, ["model", "lint", three_tier])
    assert text.exit_code == 1
    assert f"{three_tier}:21: error: retry-amplification: db: up to 27 attempts" in text.output
    assert "see docs/model/lint.md#retry-amplification" in text.output
    result = runner.invoke(app, ["model", "lint", three_tier, "--json"])
    assert result.exit_code == 1
    document = json.loads(result.output)
    assert document["counts"]["error"] >= 1
    rules = {f["rule"] for f in document["findings"]}
    assert {"retry-amplification", "timeout-misalignment", "retry-without-jitter"} <= rules
    db = [a for a in document["amplification"] if a["service"] == "db"]
    assert db == [
        {"source": "entry:users", "service": "db", "worst_case": 27.0, "with_budgets": 27.0}
    ]
    warnings_only = runner.invoke(app, ["model", "lint", str(EXAMPLES / "simple-collapse.yaml")])
    assert warnings_only.exit_code == 0
    assert "0 error(s), 2 warning(s)" in warnings_only.output


def test_run_json_has_the_shape_of_stormproof_run(tmp_path: Path) -> None:
    path = write(tmp_path, SMALL)
    result = runner.invoke(app, ["model", "run", path, "--seeds", "2", "--workers", "1", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["scenario"] == "small"
    assert document["seeds"] == [0, 1]
    assert document["triggers"] == ["slow"]
    assert set(document["policies"]) == {"as_written", "single"}
    summary = document["policies"]["as_written"]
    assert {"runs", "stuck_runs", "stuck_probability", "ci95", "metrics", "trace_hashes"} <= set(
        summary
    )
    assert "service.web.goodput_per_s" in summary["metrics"]


def test_run_table_and_option_errors(tmp_path: Path) -> None:
    path = write(tmp_path, SMALL)
    table = runner.invoke(
        app, ["model", "run", path, "--seeds", "1", "--policy", "single", "--trigger", "slow"]
    )
    assert table.exit_code == 0, table.output
    assert "stuck runs" in table.output and "single" in table.output
    bad_policy = runner.invoke(app, ["model", "run", path, "--policy", "nope"])
    assert bad_policy.exit_code == 2
    assert "valid: as_written, single" in bad_policy.output
    bad_trigger = runner.invoke(app, ["model", "run", path, "--trigger", "nope"])
    assert bad_trigger.exit_code == 2
