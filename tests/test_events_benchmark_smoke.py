"""Smoke test of benchmarks/events.py: it runs and prints well-formed JSON (not its speed).

Rows for a service that is absent (PostgreSQL, Redis, the DynamoDB store or moto) are expected
to be missing, and peers that are not installed to be ``null``.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "events.py"
POWERTOOLS = "aws-lambda-powertools"


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def expected_peers() -> dict[str, str | None]:
    """Each case the run should print, with its peer (``None`` for no peer)."""
    jsonschema = "jsonschema" if installed("jsonschema") else None
    powertools = POWERTOOLS if installed("aws_lambda_powertools") else None
    cases: dict[str, str | None] = {
        "validation_dicts": jsonschema,
        "validation_json": jsonschema,
    }
    services: list[tuple[str, str | None]] = [("sqlite", None)]
    if reachable(5432) and installed("psycopg"):
        services.append(("postgres", None))
    if reachable(6379) and installed("redis"):
        services.append(("redis", powertools))
    if installed("stormproof.stores.dynamodb") and installed("moto") and installed("boto3"):
        services.append(("dynamodb", powertools))
    for label, peer in services:
        cases[f"idempotent_{label}"] = peer
        cases[f"idempotent_duplicate_{label}"] = peer
    return cases


def redis_bench_keys() -> set[bytes] | None:
    """The ``sp-bench-*`` keys in Redis db 15 (the benchmark's prefixes), if Redis is there."""
    if not (reachable(6379) and installed("redis")):
        return None
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, db=15)
    try:
        return set(client.scan_iter(match="sp-bench-*", count=1000))
    finally:
        client.close()


def test_events_benchmark_json_shape() -> None:
    pytest.importorskip("fastjsonschema", reason="the validation extra is not installed")
    redis_before = redis_bench_keys()
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
    for row in rows:
        assert set(row) == {"case", "ours_per_s", "peer", "peer_per_s", "ratio"}
        assert isinstance(row["ours_per_s"], int | float)
        assert row["ours_per_s"] > 0

    cases = [row["case"] for row in rows]
    assert len(cases) == len(set(cases))
    assert {row["case"]: row["peer"] for row in rows} == expected_peers()

    for row in rows:
        if row["peer"] is None:
            assert row["peer_per_s"] is None
            assert row["ratio"] is None
        else:
            assert isinstance(row["peer_per_s"], int | float)
            assert row["peer_per_s"] > 0
            assert row["ratio"] == pytest.approx(row["ours_per_s"] / row["peer_per_s"])

    # Both stormproof's and Powertools' Redis keys are deleted afterwards.
    if redis_before is not None:
        after = redis_bench_keys()
        assert after is not None
        assert after <= redis_before
