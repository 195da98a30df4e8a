"""The fan-out gateway and lease-fleet examples: the naive policies collapse, the fixed sets do
not (short variants of the files, a few seeds), and ``model run --policy-set --report``."""

from __future__ import annotations

import json
from dataclasses import replace
from functools import cache
from pathlib import Path

from typer.testing import CliRunner

import stormproof.cli.model  # noqa: F401 - registers the command group
from stormproof.cli._app import app
from stormproof.model.load import load_file
from stormproof.model.policy_file import apply_policy_sets, read_policy_set_file
from stormproof.model.simulate import TopologyScenario
from stormproof.model.spec import LatencyInjection, Outage, StuckRule, Topology
from stormproof.sim.experiment import ExperimentResult, run_experiment

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "topologies"
SEEDS = [0, 1, 2, 3]


def with_fix(name: str) -> Topology:
    topology = load_file(EXAMPLES / f"{name}.yaml")
    return apply_policy_sets(
        topology, [read_policy_set_file(EXAMPLES / "policies" / f"{name}-fixed.yaml")]
    )


@cache
def short_gateway() -> ExperimentResult:
    """The gateway file with a 40 s horizon: the 5 s slowdown at 10 s, judged over 30-40 s."""
    topology = replace(
        with_fix("fan-out-gateway"),
        horizon=40.0,
        stuck=StuckRule(late_start=30.0),
        triggers=(LatencyInjection("slow-datastore", "datastore", 10.0, 5.0, 0.1),),
    )
    scenario = TopologyScenario(topology)
    return run_experiment(scenario, {}, ["as_written", "fixed"], SEEDS, workers=2)


@cache
def short_leases() -> ExperimentResult:
    """The lease file with a 90 s horizon: the 40 s outage at 5 s, judged over 60-90 s."""
    topology = replace(
        with_fix("lease-fleet"),
        horizon=90.0,
        stuck=StuckRule(late_start=60.0),
        triggers=(Outage("db-outage", "lease-db", 5.0, 40.0, mode="error"),),
    )
    scenario = TopologyScenario(topology)
    return run_experiment(scenario, {}, ["as_written", "fixed"], SEEDS, workers=2)


def test_fan_out_gateway_naive_collapses_and_fixed_does_not() -> None:
    result = short_gateway()
    naive, fixed = result.policies["as_written"], result.policies["fixed"]
    assert naive.stuck_runs == len(SEEDS)
    assert fixed.stuck_runs == 0
    assert naive.metrics["service.datastore.amplification"] > 8  # retries at every layer
    assert fixed.metrics["service.datastore.amplification"] < 4.5  # four backends, ~1 each
    assert naive.metrics["wasted_work_fraction"] > 0.5 > fixed.metrics["wasted_work_fraction"]


def test_lease_fleet_naive_collapses_and_fixed_does_not() -> None:
    result = short_leases()
    naive, fixed = result.policies["as_written"], result.policies["fixed"]
    assert naive.stuck_runs == len(SEEDS)
    assert fixed.stuck_runs == 0
    assert naive.metrics["fleet.workers.leased_fraction_end"] == 0.0
    assert fixed.metrics["fleet.workers.leased_fraction_end"] == 1.0
    assert naive.metrics["service.lease-manager.peak_queue"] > 1000
    assert fixed.metrics["service.lease-manager.peak_queue"] <= 100


def test_the_full_examples_lint_with_the_expected_findings() -> None:
    runner = CliRunner()
    gateway = runner.invoke(app, ["model", "lint", str(EXAMPLES / "fan-out-gateway.yaml")])
    assert gateway.exit_code == 1
    assert "up to 144 attempts reach datastore per request at entry:apps" in gateway.output
    leases = runner.invoke(app, ["model", "lint", str(EXAMPLES / "lease-fleet.yaml")])
    assert leases.exit_code == 0
    assert "if the leases of workers lapse, its members call up to 1000/s" in leases.output


SMALL = """\
name: small
horizon: 12
services:
  web: {workers: 4, queue_limit: 10, service_time: {base: 0.01}}
  db: {workers: 2, queue_limit: 5, service_time: {base: 0.02}}
edges:
  - {from: web, to: db, client: {timeout: 0.5}}
entries:
  users: {target: web, load: {shape: constant, rate: 20}}
triggers:
  slow: {kind: latency, target: db, start: 2, duration: 2, extra: 1}
policy_sets:
  inline:
    services:
      db: {queue_limit: 1}
"""

SET = """\
name: from-file
description: Shed at the database
services:
  db:
    admission: {kind: queue_limit, max_queue: 2}
    remove: [queue_limit]
"""


def test_run_with_policy_set_files_and_a_report(tmp_path: Path) -> None:
    topology = tmp_path / "small.yaml"
    topology.write_text(SMALL, encoding="utf-8")
    policy = tmp_path / "set.yaml"
    policy.write_text(SET, encoding="utf-8")
    report = tmp_path / "report.html"
    runner = CliRunner()
    args = ["model", "run", str(topology), "--seeds", "2", "--workers", "1"]
    result = runner.invoke(
        app, [*args, "--policy-set", str(policy), "--report", str(report), "--json"]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert list(document["policies"]) == ["as_written", "inline", "from-file"]
    assert document["scenario"] == "small" and document["seeds"] == [0, 1]
    html = report.read_text(encoding="utf-8")
    assert "<h1>small</h1>" in html
    for name in ("as_written", "inline", "from-file"):
        assert f"<th>{name}</th>" in html
    assert f"from-file, from {policy}" in html and "removes queue_limit" in html
    assert "<svg" in html and "service.db.queue per second" in html
    assert "service.web.goodput per second" in html
    # The same seeds give the same runs with or without the report's series.
    plain = json.loads(runner.invoke(app, [*args, "--json"]).output)
    assert (
        plain["policies"]["as_written"]["trace_hashes"]
        == document["policies"]["as_written"]["trace_hashes"]
    )


def test_bad_policy_set_files_are_reported_with_lines(tmp_path: Path) -> None:
    topology = tmp_path / "small.yaml"
    topology.write_text(SMALL, encoding="utf-8")
    policy = tmp_path / "set.yaml"
    policy.write_text(SET.replace("db:", "cache:") + "edges:\n  web->db: {timeout: 0}\n")
    result = CliRunner().invoke(
        app, ["model", "run", str(topology), "--policy-set", str(policy), "--seeds", "1"]
    )
    assert result.exit_code == 1
    assert f"{policy}:8: edges.web->db.timeout: must be > 0 (got 0)" in result.output
    policy.write_text(SET.replace("db:", "cache:"), encoding="utf-8")
    check = CliRunner().invoke(app, ["model", "check", str(topology), "--policy-set", str(policy)])
    assert check.exit_code == 1
    assert f"{policy}:4: services.cache: unknown service 'cache'; services: web, db" in (
        check.output
    )
    assert "Traceback" not in check.output
