"""Smoke test of benchmarks/policies.py: it runs and prints well-formed JSON (not its speed)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "policies.py"

CASES = ("sync_success", "sync_fail_once", "async_success", "async_fail_once")
VARIANTS = ("default", "no_budget")
PEERS = {"tenacity", "stamina", "backoff"}
# Per-decision cases of the sans-IO protection policies, with their peers.
SANS_IO_PEERS = {
    "breaker_allow_record": {"pybreaker", "aiobreaker"},
    "breaker_open_reject": {"pybreaker"},
    "bulkhead_acquire_release": {"threading.Semaphore", "asyncio.Semaphore"},
    "token_bucket_acquire": {"limits", "pyrate-limiter", "pyrate-limiter/state"},
    "gcra_acquire": {"limits", "pyrate-limiter", "pyrate-limiter/state"},
}
# Admission control has no peer; its cases run when stormproof.policies.admission exists.
ADMISSION_CASES = {
    "admission_queue_limit",
    "admission_queue_rate",
    "admission_priority",
    "admission_codel_dequeue",
    "admission_codel_dequeue_standing",
    "admission_adaptive_throttle",
}
BENCH_MODULES = (
    "tenacity",
    "stamina",
    "backoff",
    "pybreaker",
    "aiobreaker",
    "limits",
    "pyrate_limiter",
)


def has_admission() -> bool:
    return importlib.util.find_spec("stormproof.policies.admission") is not None


def test_policies_benchmark_json_shape() -> None:
    # The peers come with the optional "bench" extra.
    for module in BENCH_MODULES:
        pytest.importorskip(module)
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--json", "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    rows = json.loads(completed.stdout)

    assert isinstance(rows, list)
    assert rows
    for row in rows:
        assert set(row) == {"case", "ours_ns", "peer", "peer_ns", "ratio"}
        assert isinstance(row["ours_ns"], int | float)

    peers_by_case: dict[str, set[str]] = {}
    for row in rows:
        peers_by_case.setdefault(row["case"], set()).add(row["peer"])

    expected = {f"{case}/{variant}" for case in CASES for variant in VARIANTS}
    decisions = {f"decision/{variant}" for variant in VARIANTS}
    admission = ADMISSION_CASES if has_admission() else set()
    assert set(peers_by_case) == expected | decisions | set(SANS_IO_PEERS) | admission
    for case in expected:
        assert peers_by_case[case] == PEERS
    for case, peers in SANS_IO_PEERS.items():
        assert peers_by_case[case] == peers
    for case in decisions | admission:
        assert peers_by_case[case] == {"none"}

    for row in rows:
        if row["peer"] == "none":
            assert row["peer_ns"] is None
            assert row["ratio"] is None
        else:
            assert isinstance(row["peer_ns"], int | float)
            assert isinstance(row["ratio"], int | float)
            assert row["ratio"] > 0
            assert row["ratio"] == pytest.approx(row["ours_ns"] / row["peer_ns"], rel=0.05)


def test_queues_benchmark_json_shape() -> None:
    """benchmarks/queues.py on SQLite (no server needed): every case, with its peer."""
    pytest.importorskip("persistqueue", reason="the bench extra is not installed")
    script = SCRIPT.parent / "queues.py"
    completed = subprocess.run(
        [sys.executable, str(script), "--json", "--quick", "--only", "sqlite"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    rows = {row["case"]: row for row in json.loads(completed.stdout)}
    assert set(rows) == {"send_sqlite", "receive_delete_sqlite", "receive10_delete_sqlite"}
    for row in rows.values():
        assert row["ours_per_s"] > 0
    for case in ("send_sqlite", "receive_delete_sqlite"):
        assert rows[case]["peer"] == "persist-queue SQLiteAckQueue"
        assert rows[case]["ratio"] == pytest.approx(
            rows[case]["ours_per_s"] / rows[case]["peer_per_s"]
        )
