"""Durable state transitions per second: stormproof's engine on SQLite and PostgreSQL, and DBOS.

    python benchmarks/workflows.py            # full run (about a minute)
    python benchmarks/workflows.py --quick    # smoke run (a few seconds)

The machine is 10 states alternating Pass and Task (5 of each; each task returns its input
plus one). Every run starts N executions and drives them to the end in one process; a
"transition" is one state executed (10 per execution), each recorded in the history and
checkpointed in one of the engine's atomic commits (one commit per task, plus the start and
the end). SQLite runs in WAL mode with ``synchronous=NORMAL`` (the default; survives a process
crash) and, for reference, ``synchronous=FULL`` (survives power loss).

Each line gives the wall-clock rate and the rate per CPU-second of this process (for SQLite,
which runs in-process, that is the whole cost and does not depend on other load on the
machine). DBOS (``dbos`` package) runs a 10-step workflow (each step returns its input plus
one) against the same PostgreSQL server, in a scratch database ``stormproof_bench_dbos`` it
creates; DBOS records each step's output in its system database, like stormproof's Python
workflows.
Medians of ``--repeats`` runs are printed, with the ratio to stormproof on PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

from stormproof.workflows.durable import Workflows, step
from stormproof.workflows.engine import Engine, EngineConfig
from stormproof.workflows.store import open_store

POSTGRES = os.environ.get("STORMPROOF_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
STATES = 10
#: Transitions per second of this process's CPU time, one entry per run (see main).
CPU: list[float] = []


def machine() -> dict[str, Any]:
    states: dict[str, Any] = {}
    for i in range(STATES):
        name = f"S{i}"
        nxt = {"Next": f"S{i + 1}"} if i < STATES - 1 else {"End": True}
        if i % 2 == 0:
            states[name] = {"Type": "Pass", "Parameters": {"n.$": "$.n"}, **nxt}
        else:
            states[name] = {"Type": "Task", "Resource": "inc", **nxt}
    return {"StartAt": "S0", "States": states}


def inc(payload: dict[str, int]) -> dict[str, int]:
    return {"n": payload["n"] + 1}


def run_asl(url: str, executions: int) -> float:
    """Transitions per second for ``executions`` runs of the 10-state machine on ``url``."""
    store = open_store(url)
    store.init()
    engine = Engine(store, tasks={"inc": inc}, config=EngineConfig())
    definition = json.dumps(machine())
    try:
        started, cpu = time.perf_counter(), time.process_time()
        for i in range(executions):
            name = f"bench-{i}"
            engine.start_machine(definition, {"n": 0}, name=name)
            engine.advance(name)
        elapsed = time.perf_counter() - started
        CPU.append(executions * STATES / (time.process_time() - cpu))
        last = engine.describe(f"bench-{executions - 1}")
        assert last.status.value == "SUCCEEDED", last
        assert json.loads(last.output or "{}") == {"n": STATES // 2}
    finally:
        store.drop()
        store.close()
    return executions * STATES / elapsed


def run_python(url: str, executions: int) -> float:
    """Steps per second of a 10-step Python workflow (stormproof) on ``url``."""
    app = Workflows()
    add = step(name="add")(lambda n: n + 1)

    @app.workflow("ten")
    def ten(n: int) -> int:
        for _ in range(STATES):
            n = add(n)
        return n

    store = open_store(url)
    store.init()
    engine = Engine(store, workflows=app)
    try:
        started, cpu = time.perf_counter(), time.process_time()
        for i in range(executions):
            name = f"py-{i}"
            engine.start(ten, 0, name=name)
            engine.advance(name)
        elapsed = time.perf_counter() - started
        CPU.append(executions * STATES / (time.process_time() - cpu))
        assert engine.output(f"py-{executions - 1}") == STATES
    finally:
        store.drop()
        store.close()
    return executions * STATES / elapsed


def run_dbos(executions: int) -> float | None:
    """Steps per second of a 10-step DBOS workflow, or ``None`` when DBOS cannot run here."""
    try:
        import psycopg
        from dbos import DBOS, DBOSConfig
    except ImportError:
        return None
    database = "stormproof_bench_dbos"
    base = POSTGRES.rsplit("/", 1)[0]
    try:
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{database}"')
    except psycopg.Error as error:
        print(f"  DBOS skipped: cannot create a scratch database ({error})", file=sys.stderr)
        return None
    config: DBOSConfig = {
        "name": "stormproof-bench",
        "system_database_url": f"{base}/{database}",
    }
    DBOS(config=config)

    @DBOS.step()
    def add(n: int) -> int:
        return n + 1

    @DBOS.workflow()
    def ten(n: int) -> int:
        for _ in range(STATES):
            n = add(n)
        return n

    DBOS.launch()
    try:
        ten(0)  # warm-up
        started = time.perf_counter()
        for _ in range(executions):
            assert ten(0) == STATES
        elapsed = time.perf_counter() - started
    finally:
        DBOS.destroy()
    return executions * STATES / elapsed


def median_of(repeats: int, fn: Callable[[], float]) -> tuple[float, float]:
    """Median wall-clock rate and median rate per CPU-second of this process."""
    CPU.clear()
    rates = [fn() for _ in range(repeats)]
    return statistics.median(rates), statistics.median(CPU) if CPU else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args(argv)
    executions = 50 if args.quick else 400
    repeats = args.repeats or (1 if args.quick else 5)
    results: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for sync in ("NORMAL", "FULL"):

            def sqlite_run(sync: str = sync) -> float:
                path = os.path.join(tmp, f"{uuid.uuid4().hex}.db")
                return run_asl(f"sqlite:///{path}?synchronous={sync}", executions)

            results[f"asl sqlite synchronous={sync}"] = median_of(repeats, sqlite_run)

        def sqlite_python() -> float:
            path = os.path.join(tmp, f"{uuid.uuid4().hex}.db")
            return run_python(f"sqlite:///{path}", executions)

        results["python sqlite synchronous=NORMAL"] = median_of(repeats, sqlite_python)
    if not args.no_postgres:
        try:
            import psycopg

            psycopg.connect(POSTGRES, connect_timeout=2).close()
        except Exception as error:
            print(f"PostgreSQL not reachable ({error}); skipping it", file=sys.stderr)
        else:

            def pg(fn: Callable[[str, int], float]) -> Callable[[], float]:
                return lambda: fn(f"{POSTGRES}?table=sp_bench_{uuid.uuid4().hex[:8]}", executions)

            results["asl postgresql"] = median_of(repeats, pg(run_asl))
            results["python postgresql"] = median_of(repeats, pg(run_python))
            dbos = run_dbos(executions)
            if dbos is not None:
                results["dbos postgresql"] = (dbos, float("nan"))
    print(f"{executions} executions x {STATES} states, median of {repeats} run(s)")
    print(f"  {'':36s} {'wall':>10s}   {'per CPU-s':>10s}  (transitions/s)")
    reference = results.get("python postgresql", (0.0, 0.0))[0]
    for name, (rate, cpu_rate) in results.items():
        ratio = f"  {rate / reference:.2f}x stormproof python/postgresql" if reference else ""
        cpu_text = "" if cpu_rate != cpu_rate else f"{cpu_rate:10,.0f}"
        print(f"  {name:36s} {rate:10,.0f}   {cpu_text:>10s}{ratio}")
    print("  (per CPU-s: this process only -- for SQLite the whole cost, for PostgreSQL the")
    print("   client side; wall is what a user sees and depends on the machine's load)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
