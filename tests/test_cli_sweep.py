"""``stormproof sweep``, in-process with typer's CliRunner; includes the golden trend."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import stormproof.cli.sweep  # noqa: F401 - registers the command
from stormproof.cli._app import app

runner = CliRunner()
WIDE = {"COLUMNS": "200"}
GOLDEN = ["--policy", "no_backoff", "--policy", "backoff_full_jitter"]
# A quick sweep: the default horizon shortened, a spike on each side of the tipping point.
QUICK = [
    "simple-collapse",
    "--grid",
    "spike_s=2,5",
    "--seeds",
    "3",
    "--set",
    "horizon=40",
    "--set",
    "late_start=30",
    *GOLDEN,
]


def invoke(*args: str) -> Any:
    return runner.invoke(app, ["sweep", *args], env=WIDE)


def text(output: str) -> str:
    return " ".join(output.split())


def stuck(data: dict[str, Any], policy: str) -> dict[float, int]:
    return {c["point"]["spike_s"]: c["stuck_runs"] for c in data["cells"][policy]}


def test_golden_trend_and_report_of_both_policies(tmp_path: Path) -> None:
    # ../shared/golden simple-collapse, seeds 0..19 as in the golden table: no backoff never
    # stuck at 3 s, 4 +- 4 of 20 at 4 s, a clear majority at 5 s; backoff with jitter never.
    report = tmp_path / "sweep.html"
    result = invoke(
        "simple-collapse",
        "--grid",
        "spike_s=3:5:1",
        "--seeds",
        "20",
        *GOLDEN,
        "--workers",
        "2",
        "--json",
        "--report",
        str(report),
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["axes"] == {"spike_s": [3, 4, 5]}
    no_backoff, jitter = stuck(data, "no_backoff"), stuck(data, "backoff_full_jitter")
    assert no_backoff[3] == 0
    assert abs(no_backoff[4] - 4) <= 4
    assert no_backoff[5] > 12
    assert jitter == {3: 0, 4: 0, 5: 0}
    (line,) = data["boundary"]["no_backoff"]
    (crossing,) = line["crossings"]
    assert 4 < crossing["value"] < 5 and crossing["rising"]
    assert data["boundary"]["backoff_full_jitter"][0]["crossings"] == []
    (diffs,) = data["differences"].values()
    assert diffs[2]["difference"] == -no_backoff[5] / 20 and diffs[2]["ci95"][1] < 0
    html = report.read_text()
    for policy in ("no_backoff", "backoff_full_jitter"):
        assert f'aria-label="{policy}: P(stuck)"' in html
    assert 'aria-label="backoff_full_jitter minus no_backoff"' in html


def test_table_output_names_points_policies_and_boundary() -> None:
    result = invoke(*QUICK, "--workers", "1")
    assert result.exit_code == 0, result.output
    out = text(result.output)
    assert "spike_s" in out and "no_backoff" in out and "backoff_full_jitter" in out
    assert "0/3 0% [0%, 56%]" in out  # a 2 s spike: no seed stuck
    assert "50% boundary of no_backoff along spike_s" in out
    assert "50% boundary of backoff_full_jitter along spike_s: never (below)" in out


def test_resume_file_is_written_and_reused(tmp_path: Path) -> None:
    resume = tmp_path / "runs.jsonl"
    first = invoke(*QUICK, "--workers", "1", "--json", "--resume", str(resume))
    assert first.exit_code == 0, first.output
    assert len(resume.read_text().splitlines()) == 1 + 2 * 2 * 3
    again = invoke(*QUICK, "--workers", "1", "--json", "--resume", str(resume))
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout) == json.loads(first.stdout)
    assert len(resume.read_text().splitlines()) == 1 + 2 * 2 * 3  # nothing ran twice


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["simple-collapse", "--grid", "spike_s"], "grid: expected name=start:stop:step"),
        (["simple-collapse", "--grid", "bogus=1,2"], "bogus: is not a parameter"),
        (["simple-collapse", "--grid", "spike_s=1:3:0"], "step of a range must be > 0"),
        (["simple-collapse", "--policy", "nope"], "'nope' is not a policy"),
        (["no-such-scenario"], "scenario: 'no-such-scenario' is unknown"),
        (["simple-collapse", "--backend", "dask"], "backend: must be one of local, ray"),
        (["simple-collapse", "--address", "ray://x:1"], "address: is only used by the ray"),
        (
            ["simple-collapse", "--grid", "spike_s=1,2", "--set", "spike_s=3"],
            "is both swept",
        ),
    ],
)
def test_bad_input_exits_2_naming_the_field(args: list[str], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2
    assert message in text(result.output)


def test_a_resume_file_of_another_scenario_exits_2(tmp_path: Path) -> None:
    resume = tmp_path / "runs.jsonl"
    resume.write_text(json.dumps({"stormproof_sweep": 1, "scenario": "occ-jitter"}) + "\n")
    result = invoke(*QUICK, "--workers", "1", "--resume", str(resume))
    assert result.exit_code == 2
    assert "resume: was written with another scenario" in text(result.output)


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed")
def test_ray_backend_starts_its_own_instance_and_matches_local() -> None:
    import ray

    local = invoke(*QUICK, "--workers", "1", "--json")
    on_ray = invoke(*QUICK, "--backend", "ray", "--workers", "2", "--json")
    assert local.exit_code == 0 and on_ray.exit_code == 0, on_ray.output
    assert json.loads(on_ray.stdout)["digest"] == json.loads(local.stdout)["digest"]
    assert json.loads(on_ray.stdout) == json.loads(local.stdout)
    assert not ray.is_initialized()  # the instance it started is shut down


def test_an_interrupted_sweep_says_what_was_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stormproof.sim.sweep as sweep_module

    real = sweep_module.run_sweep

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        def stop(done: int, total: int) -> None:
            kwargs["progress"](done, total)
            if done >= 4:
                raise KeyboardInterrupt

        return real(*args, **{**kwargs, "progress": stop, "batch_size": 2})

    monkeypatch.setattr(sweep_module, "run_sweep", interrupted)
    resume = tmp_path / "runs.jsonl"
    result = invoke(*QUICK, "--workers", "1", "--resume", str(resume))
    assert result.exit_code == 130
    assert f"interrupted: 4 of 12 runs are in {resume}" in text(result.output)
    assert len(resume.read_text().splitlines()) == 1 + 4
    without = invoke(*QUICK, "--workers", "1")
    assert without.exit_code == 130
    assert "nothing was saved (use --resume FILE" in text(without.output)
