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


def test_lint_a_policy_set_as_well_as_the_file(tmp_path: Path) -> None:
    three_tier = str(EXAMPLES / "three-tier.yaml")
    # The file's own set "fixed" retries once per layer and budgets the edge: no error left.
    fixed = runner.invoke(app, ["model", "lint", three_tier, "--policy", "fixed"])
    assert fixed.exit_code == 0, fixed.output
    assert "== fixed ==" in fixed.output and "retry-amplification" not in fixed.output
    # A set from a file that keeps three attempts at every layer: the amplification is back,
    # reported against the set (no line: its clients are not at the topology's lines).
    louder = tmp_path / "louder.yaml"
    louder.write_text(
        "name: louder\ntopology: three-tier\nedges:\n"
        "  web->app: {timeout: 1.0, max_attempts: 3, backoff: {kind: none}}\n"
        "  app->db: {timeout: 0.3, max_attempts: 3, backoff: {kind: none}}\n",
        encoding="utf-8",
    )
    both = runner.invoke(
        app, ["model", "lint", three_tier, "--policy-set", str(louder), "--policy", "all"]
    )
    assert both.exit_code == 1
    sections = both.output.split("== ")
    assert [s.split(" ==")[0] for s in sections[1:]] == ["as_written", "fixed", "louder"]
    assert f"{three_tier} [louder] " in sections[3]
    assert "error: retry-amplification: db: up to 27 attempts" in sections[3]
    assert "0 error(s)" in sections[2]

    document = json.loads(
        runner.invoke(
            app,
            ["model", "lint", three_tier, "--policy-set", str(louder), "--policy", "all", "--json"],
        ).output
    )
    assert set(document["policies"]) == {"as_written", "fixed", "louder"}
    # The top level is the first policy linted, as before --policy existed.
    assert document["counts"] == document["policies"]["as_written"]["counts"]
    assert document["findings"] == document["policies"]["as_written"]["findings"]
    assert document["policies"]["fixed"]["counts"]["error"] == 0
    louder_findings = document["policies"]["louder"]["findings"]
    assert louder_findings and all(f["line"] is None for f in louder_findings)
    assert any(f["line"] for f in document["policies"]["as_written"]["findings"])


def test_lint_refuses_an_unknown_policy() -> None:
    result = runner.invoke(
        app, ["model", "lint", str(EXAMPLES / "three-tier.yaml"), "--policy", "nope"]
    )
    assert result.exit_code == 2
    assert "'nope' is not a policy set of three-tier" in result.output
    assert "as_written, fixed" in result.output
