"""The examples run and say what they should (they are what `make demo` shows)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


def test_retry_schedule_example_shows_budgets_cutting_amplification() -> None:
    out = run("retry_schedule.py")
    assert "3 attempts, no budget        30000 attempts (3.00 per call)" in out
    assert "AWS SDK retry quota" in out


def test_order_processing_charges_every_valid_order_exactly_once(tmp_path: Path) -> None:
    out = run("idempotent_orders.py", str(tmp_path / "orders.db"))
    assert "orders charged: 999; charged more than once: 0" in out
    assert "'invalid_json': 1" in out
    again = run("idempotent_orders.py", str(tmp_path / "orders.db"))
    assert "orders charged: 0" in again  # a second delivery of everything charges nothing
