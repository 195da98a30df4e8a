"""Smoke test of benchmarks/integrations_http.py: it runs and prints well-formed rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "integrations_http.py"


def test_quick_json_run() -> None:
    command = [sys.executable, str(SCRIPT), "--quick", "--json", "--requests", "20"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    rows = json.loads(done.stdout)
    assert [row["case"] for row in rows] == ["sync", "async", "sync_mock", "async_mock"]
    for row in rows:
        assert row["bare_us"] > 0 and row["stormproof_us"] > 0 and row["ratio"] > 0
