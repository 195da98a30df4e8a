"""The ``scenarios`` and ``run`` commands, in-process with typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from stormproof.cli import app
from stormproof.sim import scenarios
from stormproof.sim.experiment import run_experiment

runner = CliRunner()
WIDE = {"COLUMNS": "200"}


def _invoke(*args: str) -> Any:
    return runner.invoke(app, list(args), env=WIDE)


def _text(output: str) -> str:
    """Output with whitespace runs collapsed, so wrapped messages can be matched."""
    return " ".join(output.split())


def test_scenarios_lists_both_with_their_policies() -> None:
    result = _invoke("scenarios")
    assert result.exit_code == 0, result.output
    text = _text(result.output)
    for name in scenarios.names():
        assert name in text
        for policy in scenarios.get(name).policies:
            assert policy in text
    assert "occ-jitter" in text and "simple-collapse" in text


def test_run_occ_jitter_json() -> None:
    result = _invoke(
        "run", "occ-jitter", "--seeds", "2", "--set", "clients=5", "--json", "--workers", "1"
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {"scenario", "params", "policies"} <= set(data)
    assert data["scenario"] == "occ-jitter"
    assert data["params"]["clients"] == 5
    assert data["seeds"] == [0, 1]
    assert list(data["policies"]) == list(scenarios.get("occ-jitter").policies)
    for policy in data["policies"].values():
        assert policy["runs"] == 2
        assert policy["stuck_runs"] == 0
        assert policy["stuck_probability"] == 0.0
        assert policy["ci95"][0] == 0.0 and 0.0 < policy["ci95"][1] < 1.0
        assert set(policy["metrics"]) >= {"mean_completion_ms", "mean_calls"}
        assert policy["metrics"]["mean_calls"] >= 5  # every client writes at least once
        assert policy["metrics"]["mean_completion_ms"] > 0
        hashes = policy["trace_hashes"]
        assert len(hashes) == 2 and len(set(hashes)) == 2


def test_run_json_matches_the_library() -> None:
    result = _invoke(
        "run", "occ-jitter", "--seeds", "2", "--seed", "7", "--set", "clients=4",
        "--policy", "none", "--json", "--workers", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    scenario = scenarios.get("occ-jitter")
    expected = run_experiment(
        scenario, scenario.resolve({"clients": 4}), ["none"], [7, 8], workers=1
    )
    assert json.loads(result.stdout) == json.loads(json.dumps(expected.to_json()))


def test_run_simple_collapse_json_single_policy() -> None:
    result = _invoke(
        "run", "simple-collapse", "--seeds", "1", "--set", "spike_s=1",
        "--policy", "no_backoff", "--json", "--workers", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert list(data["policies"]) == ["no_backoff"]
    summary = data["policies"]["no_backoff"]
    assert summary["runs"] == 1 and summary["stuck_runs"] == 0
    metrics = summary["metrics"]
    assert metrics["late_goodput_per_s"] > 30
    assert metrics["amplification"] == pytest.approx(1.0, abs=0.1)
    assert data["params"]["spike_s"] == 1.0
    assert data["params"]["horizon"] == 80


def test_run_prints_a_table_without_json() -> None:
    result = _invoke(
        "run", "occ-jitter", "--seeds", "1", "--set", "clients=3", "--policy", "none",
        "--workers", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    text = _text(result.stdout)
    assert "stuck runs" in text and "0/1" in text
    assert "mean_calls" in text


def test_run_report_writes_an_html_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "report.html"
    target.parent.mkdir()
    result = _invoke(
        "run", "simple-collapse", "--seeds", "1", "--policy", "no_backoff",
        "--set", "horizon=30", "--set", "late_start=20", "--set", "spike_s=1",
        "--workers", "1", "--report", str(target),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    html = target.read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>") and html.endswith("</html>")
    assert "<h1>simple-collapse</h1>" in html
    assert html.count("<svg") >= 2  # the P(stuck) chart and time series
    assert "no_backoff" in html
    assert "report written to" in _text(result.stdout)


def test_run_report_together_with_json(tmp_path: Path) -> None:
    target = tmp_path / "r.html"
    result = _invoke(
        "run", "occ-jitter", "--seeds", "1", "--set", "clients=3", "--json",
        "--workers", "1", "--report", str(target),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["scenario"] == "occ-jitter"
    assert "occ-jitter" in target.read_text(encoding="utf-8")


def test_unknown_scenario_names_the_valid_ones() -> None:
    result = _invoke("run", "no-such-scenario", "--workers", "1")
    assert result.exit_code == 2
    text = _text(result.output)
    assert "no-such-scenario" in text
    from stormproof.sim import scenarios

    assert f"valid: {', '.join(scenarios.names())}" in text
    assert "ebs-2011" in scenarios.names() and "simple-collapse" in scenarios.names()


def test_unknown_parameter_names_the_valid_ones() -> None:
    result = _invoke("run", "occ-jitter", "--set", "bogus=1", "--workers", "1")
    assert result.exit_code == 2
    text = _text(result.output)
    assert "bogus" in text
    assert "valid: base_ms, cap_ms, clients, hop_mean_ms, hop_sd_ms" in text


def test_unknown_policy_names_the_valid_ones() -> None:
    result = _invoke("run", "simple-collapse", "--policy", "bogus", "--workers", "1")
    assert result.exit_code == 2
    text = _text(result.output)
    assert "'bogus'" in text
    assert "valid: no_backoff, backoff_full_jitter" in text


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("clients", "expected key=value, got 'clients'"),
        ("=5", "expected key=value, got '=5'"),
        ("clients=abc", "clients: must be a number"),
        ("clients=2.5", "clients: must be a whole number"),
        ("clients=0", "clients: must be >= 1"),
    ],
)
def test_malformed_or_invalid_set_exits_with_a_message(setting: str, expected: str) -> None:
    result = _invoke("run", "occ-jitter", "--set", setting, "--workers", "1")
    assert result.exit_code == 2
    assert expected in _text(result.output)
    assert result.stdout == ""  # nothing on stdout: no partial JSON or table


def test_cross_parameter_error_exits_non_zero() -> None:
    result = _invoke("run", "simple-collapse", "--set", "horizon=50", "--workers", "1")
    assert result.exit_code == 2
    assert "late_start: must be < horizon" in _text(result.output)


@pytest.mark.parametrize("option", [("--seeds", "0"), ("--workers", "0")])
def test_counts_below_one_are_rejected(option: tuple[str, str]) -> None:
    result = _invoke("run", "occ-jitter", *option)
    assert result.exit_code == 2
    assert option[0] in result.output


@pytest.mark.parametrize(
    "args",
    [("run", "no[/]such"), ("run", "occ-jitter", "--set", "x[/]=1")],
)
def test_errors_naming_user_input_with_brackets_are_printed_verbatim(args: tuple[str]) -> None:
    result = _invoke(*args, "--workers", "1")
    assert result.exit_code == 2
    assert "[/]" in result.output
    assert "valid:" in result.output
