"""End to end: the reference service under a seeded burst/idle schedule, then Locust and the CLI.

The service runs in a uvicorn child process on 127.0.0.1 (random port) with a SQLite store in
``tmp_path``; afterwards the test reads the store, the outbox and the DLQ directly.
"""

from __future__ import annotations

import asyncio
import csv
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest
from service_process import ROOT, orders_service  # type: ignore[import-not-found]
from typer.testing import CliRunner

import stormproof.cli.load  # noqa: F401  (registers `stormproof load`)
from stormproof import stores
from stormproof.cli._app import app
from stormproof.events import open_queue
from stormproof.load import Bursts, Fixed, RecoveryCriteria, Traffic, Uniform, outcome
from stormproof.load.export import locust_module
from stormproof.load.runner import RunConfig
from stormproof.load.session import load_test

# Tight limits so that the bursts are shed, and a downstream that fails 20 % of calls and
# slows down with load: the interesting regime, reached in a few seconds.
SERVICE_ENV = {
    "ORDERS_MAX_CONCURRENT": "3",
    "ORDERS_MAX_QUEUE": "2",
    "ORDERS_QUEUE_TIMEOUT": "0.1",
    "ORDERS_LATENCY": "0.03",
    "ORDERS_CAPACITY": "4",
    "ORDERS_FAILURE_RATE": "0.2",
    "ORDERS_SEED": "11",
}
SHAPE = Bursts(
    rate=Uniform(70, 90),
    length=Uniform(0.6, 0.8),
    idle=Uniform(1.4, 1.6),
    idle_rate=8.0,
    lead_in=Fixed(1.2),
    tail=1.2,  # the last burst's recovery is inside the run
)
DURATION = 5.4


def _metric(text: str, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


def test_bursts_against_the_reference_service(tmp_path: Path) -> None:
    traffic = Traffic(
        duplicate_fraction=0.15,
        invalid_fraction=0.1,
        key_prefix="e2e",
        priorities=(("high", 1), ("normal", 3), ("low", 1)),
    )
    criteria = RecoveryCriteria(window=0.25, latency_slack=0.15, min_baseline=3)
    with orders_service(tmp_path, **SERVICE_ENV) as base:
        run = asyncio.run(
            load_test(
                SHAPE,
                RunConfig(f"{base}/orders", duration=DURATION, timeout=5.0),
                seed=7,
                traffic=traffic,
                criteria=criteria,
                bin_width=0.25,
            )
        )
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
    records = run.records
    analysis = run.analysis
    assert len(analysis.bursts) >= 2
    assert analysis.totals["duplicates"] > 10 and analysis.totals["invalid"] > 10
    assert not [r for r in records if r.error is not None], "every request got an answer"

    # Shed answers carry Retry-After, and the bursts were shed.
    shed = [r for r in records if outcome(r) == "shed"]
    assert shed, "the bursts should exceed the shedding limits"
    assert all(r.retry_after is not None and r.retry_after >= 1 for r in shed)
    assert analysis.shed_without_retry_after == 0

    # The service recovers after each burst.
    assert analysis.baseline.usable, analysis.baseline.note
    for burst in analysis.bursts:
        assert burst.time_to_recover is not None, (burst, analysis.baseline)

    url = f"sqlite:///{tmp_path / 'orders.db'}"
    queues = open_queue(url)
    outbox = [json.loads(m.body)["key"] for m in queues.peek("orders-placed", 100_000)]
    dlq = queues.peek("orders-dlq", 100_000)
    queues.close()

    # 0 duplicate side effects.
    assert outbox and max(Counter(outbox).values()) == 1

    # Every invalid event that reached the handler is dead-lettered once, and counted.
    rejected = {r.key for r in records if r.status == 400}
    invalid_dlq = [
        m.attributes["idempotency_key"] for m in dlq if m.attributes["dlq_reason"] == "invalid"
    ]
    assert rejected and sorted(invalid_dlq) == sorted(rejected)
    assert {r.kind for r in records if r.status == 400} <= {"invalid", "duplicate"}
    assert _metric(metrics, "orders_invalid_total") == len(rejected)
    assert _metric(metrics, 'orders_total{outcome="invalid"}') == len(rejected)

    # Every accepted event is either completed (in the outbox) or in the DLQ: nothing lost.
    failed_dlq = [
        m.attributes["idempotency_key"]
        for m in dlq
        if m.attributes["dlq_reason"] == "downstream_failed"
    ]
    assert max(Counter(failed_dlq).values(), default=1) == 1
    placed = {r.key for r in records if r.status == 201}
    parked = {r.key for r in records if r.status == 202}
    assert placed <= set(outbox) and parked <= set(failed_dlq)
    # ...checked on the server's side too: each completed idempotency record is one of them.
    store = stores.open(url)
    completed: dict[str, int] = {}
    for key in {r.key for r in records if r.key}:
        record = store.get(f"POST /orders {key}")
        if record is not None and record.status == "completed":
            completed[key] = json.loads(record.result or "{}")["status"]
    store.close()
    assert {k for k, status in completed.items() if status == 201} == set(outbox)
    assert {k for k, status in completed.items() if status == 202} == set(failed_dlq)
    assert {k for k, status in completed.items() if status == 400} == rejected

    # Duplicates were answered from the store.
    assert any(r.replayed for r in records)


_USER = """

from locust import HttpUser, constant_throughput, task
import uuid


class Orders(HttpUser):
    wait_time = constant_throughput(REQUESTS_PER_USER)

    @task
    def place(self):
        order_id = uuid.uuid4().hex
        self.client.post(
            "/orders",
            json={"type": "order.placed", "order_id": order_id, "customer_id": "c-1",
                  "items": [{"sku": "sku-1", "quantity": 1}], "total_cents": 100,
                  "currency": "EUR"},
            headers={"Idempotency-Key": order_id},
        )
"""


def test_locust_runs_the_exported_shape_headless(tmp_path: Path) -> None:
    plan = Bursts(Fixed(12), Fixed(1.0), Fixed(1.0), idle_rate=4, lead_in=Fixed(1.0)).plan(4, 3)
    locustfile = tmp_path / "locustfile.py"
    locustfile.write_text(locust_module(plan, requests_per_user=2.0) + _USER)
    with orders_service(tmp_path) as base:
        done = subprocess.run(
            [
                str(Path(sys.executable).with_name("locust")),
                "-f",
                str(locustfile),
                "--headless",
                "--host",
                base,
                "-t",
                "4s",
                "--csv",
                str(tmp_path / "run"),
                "--exit-code-on-error",
                "0",
                "--only-summary",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    with (tmp_path / "run_stats.csv").open() as stats:
        rows = {row["Name"]: row for row in csv.DictReader(stats)}
    assert int(rows["/orders"]["Request Count"]) >= 5, rows


def test_cli_run_against_the_service(tmp_path: Path) -> None:
    with orders_service(tmp_path) as base:
        result = CliRunner().invoke(
            app,
            [
                "load", "run", "--target", f"{base}/orders", "--shape", "bursts",
                "--seed", "7", "--duration", "3", "--rate", "5", "--peak", "30",
                "--burst", "0.5", "--idle", "1", "--lead-in", "1", "--window", "0.25",
                "--duplicates", "0.1", "--invalid", "0.1",
                "--json", str(tmp_path / "load.json"), "--report", str(tmp_path / "load.html"),
                "--no-live",
            ],
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "per burst" in result.output
    data = json.loads((tmp_path / "load.json").read_text())
    assert data["target"].endswith("/orders") and data["records"]
    assert len(data["analysis"]["bursts"]) == 2
    assert "<svg" in (tmp_path / "load.html").read_text()


def test_service_settings_are_validated() -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from examples.orders_service.settings import Settings
    finally:
        sys.path.remove(str(ROOT))
    from stormproof.errors import ConfigError

    assert Settings.from_env({"ORDERS_MAX_QUEUE": "3"}).max_queue == 3
    with pytest.raises(ConfigError, match="ORDERS_LATENCY"):
        Settings.from_env({"ORDERS_LATENCY": "fast"})
    with pytest.raises(ConfigError, match="failure_rate"):
        Settings.from_env({"ORDERS_FAILURE_RATE": "2"})
    with pytest.raises(ConfigError, match="store_url"):
        Settings.from_env({"STORMPROOF_STORE_URL": "mysql://x"})
