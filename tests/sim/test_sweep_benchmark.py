"""Smoke test of benchmarks/sweep.py: it runs, agrees across backends, prints its JSON shape."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "sweep.py"


def test_quick_benchmark_without_ray_reports_identical_results() -> None:
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--no-ray", "--json", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    data = json.loads(completed.stdout)
    assert data["identical_results"] is True
    assert data["plan"]["runs"] == 3 * 2 * 3
    assert [row["backend"] for row in data["rows"]] == ["serial", "local"]
    for row in data["rows"]:
        assert row["runs"] == 18 and row["runs_per_s"] > 0 and row["seconds"] > 0
    serial, local = data["rows"]
    # the runs' CPU is spent in this process serially and in the pool's workers otherwise
    assert serial["driver_cpu_ms_per_run"] > 5 * local["driver_cpu_ms_per_run"]
    assert local["worker_cpu_ms_per_run"] > 5 * local["driver_cpu_ms_per_run"]
    assert data["task_overhead_ms"]["local"] > 0 and data["ray_start_s"] is None
    volume = data["data_volume"]
    assert volume["sent_bytes"] > 0 and volume["returned_bytes"] > 0
