"""Event-processing throughput: validation and idempotent calls, side by side with peers.

    python benchmarks/events.py [--events N] [--calls N] [--repeats N] [--threads N ...]
                                [--only GROUP,...] [--json] [--quick]

* ``validation_dicts`` / ``validation_json`` -- events/s through stormproof's
  :class:`~stormproof.events.validation.ValidationPolicy` (fastjsonschema) for already-parsed
  dicts and for JSON text; peer: the ``jsonschema`` library's validator on the same schema.
* ``idempotent_sqlite`` -- idempotent calls/s on the embedded SQLite store (WAL, synchronous
  NORMAL), each call a new key (claim + complete = two committed transactions);
  ``idempotent_duplicate_sqlite`` -- calls/s for a key already completed (one read).
  ``idempotent_postgres`` the same on PostgreSQL when it answers on 127.0.0.1:5432 (no peer).
* ``--threads N`` (repeatable) adds ``idempotent_{store}_x{N}`` / ``idempotent_duplicate_..._x{N}``
  rows: N threads sharing one ``Idempotency`` and one store (PostgreSQL: ``pool_max=N``), each
  making ``--calls`` calls on its own keys, started together; the rate is all calls over the wall
  time. On PostgreSQL concurrent commits share WAL flushes (group commit); SQLite has one writer.
* ``--only sqlite,postgres`` runs only those groups (``validation``, ``sqlite``, ``postgres``,
  ``redis``, ``dynamodb``, ``async``).
* ``--only async`` -- asyncio services: ``async_{postgres,redis}_xN`` /
  ``async_duplicate_..._xN`` rows are N concurrent tasks on one event loop, each making
  ``--calls``/N idempotent calls, through the native async store (``stores.open_async``); the
  peer is the blocking store of the same URL with ``store_calls="thread"`` (each store call in
  ``asyncio.to_thread``, the loop's default executor: min(32, CPUs + 4) threads). N comes from
  ``--tasks`` (repeatable, default 16); the PostgreSQL pool has ``pool_max=N`` in both.
* ``--only group_commit`` -- group commit on PostgreSQL and Redis (the URL's ``group_commit``):
  for N in ``--tasks`` (default 4, 16 and 64) concurrent callers,
  ``group_commit_{postgres,redis}_{async,threads}_xN`` rows give new-key idempotent calls/s
  with the default setting (``group_commit=2``) and ``group_commit1_..._xN`` with
  ``group_commit=1``, each against ``group_commit=0`` (every call
  its own statements; concurrent commits still share WAL flushes in the server);
  ``..._duplicate_...`` rows repeat one completed key. ``async`` is N tasks on one event loop
  with the native async store, ``threads`` N threads on the blocking store; ``pool_max`` is
  max(N, 10). The settings alternate sample by sample, so that load from other jobs falls on
  all of them alike.
* ``idempotent_redis`` / ``idempotent_duplicate_redis`` -- the same on Redis (127.0.0.1:6379,
  db 15, a unique key prefix) when it answers; peer: AWS Lambda Powertools' idempotency utility
  (``idempotent_function``) with its Redis persistence layer on the same server and db.
* ``idempotent_dynamodb`` / ``idempotent_duplicate_dynamodb`` -- stormproof's DynamoDB store
  (when ``stormproof.stores.dynamodb`` exists) and Powertools' ``DynamoDBPersistenceLayer``,
  each on its own table in moto's in-process mock (``moto.mock_aws``). Both make the same calls
  (new key: PutItem + UpdateItem; duplicate: one failed PutItem returning the old item), and
  moto's parsing of them is most of the time: compare client-side cost, not DynamoDB latency.

Powertools (``idempotent_function``, ``data_keyword_argument="event"``) is configured to do the
same work as stormproof: an explicit key (``event_key_jmespath="key"``), the payload checked
against the stored hash (``payload_validation_jmespath="payload"``), no local cache, a one-hour
TTL, and a stub Lambda context given to ``config.register_lambda_context`` so in-progress records
get a 60 s expiry like stormproof's lease (outside Lambda it is optional, but without it
Powertools warns on every claim and in-progress records never expire before the TTL). On Redis
payload validation is off: Powertools 3.37's Redis layer drops the hash when it completes a
record, so every duplicate would fail validation. Keys are under a unique ``key_prefix``,
deleted afterwards.

Rates are medians of ``--repeats`` runs; ``--json`` prints a list of
``{"case", "ours_per_s", "peer", "peer_per_s", "ratio"}`` (ratio = ours / peer, above 1 is
better for us).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _rows import has_module, port_open, print_rows
from stormproof.events.idempotency import Idempotency
from stormproof.events.validation import ValidationPolicy

SCHEMA = {
    "type": "object",
    "required": ["id", "amount"],
    "properties": {"id": {"type": "string"}, "amount": {"type": "integer", "minimum": 1}},
}
POWERTOOLS = "aws-lambda-powertools"
# Every Powertools key starts with this (``{key_prefix}#{hash}``); deleted after the Redis run.
POWERTOOLS_PREFIX = f"sp-bench-pt-{uuid.uuid4().hex[:12]}"
REGION = "us-east-1"


def rate(count: int, run: Callable[[], None], repeats: int) -> float:
    """Median items per second of ``run`` over ``repeats`` runs."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        samples.append(count / (time.perf_counter() - start))
    return statistics.median(samples)


def validation_rows(n: int, repeats: int) -> list[dict[str, Any]]:
    events = [{"id": str(i), "amount": i + 1} for i in range(n)]
    texts = [json.dumps(e) for e in events]
    policy = ValidationPolicy(SCHEMA)
    ours_dicts = rate(n, lambda: policy.filter(events), repeats)
    ours_json = rate(n, lambda: policy.filter(texts), repeats)
    rows = [
        {"case": "validation_dicts", "ours_per_s": ours_dicts},
        {"case": "validation_json", "ours_per_s": ours_json},
    ]
    try:
        import jsonschema
    except ImportError:
        return [{**r, "peer": None, "peer_per_s": None, "ratio": None} for r in rows]
    validator = jsonschema.Draft7Validator(SCHEMA)

    def peer_dicts() -> None:
        [e for e in events if validator.is_valid(e)]

    def peer_json() -> None:
        [e for e in map(json.loads, texts) if validator.is_valid(e)]

    peers = [rate(n, peer_dicts, repeats), rate(n, peer_json, repeats)]
    return [
        {**row, "peer": "jsonschema", "peer_per_s": peer, "ratio": row["ours_per_s"] / peer}
        for row, peer in zip(rows, peers, strict=True)
    ]


def in_threads(threads: int, work: Callable[[], None]) -> Callable[[], None]:
    """``work`` run by ``threads`` threads started together; returns when all are done."""
    if threads == 1:
        return work

    def run() -> None:
        start = threading.Barrier(threads)

        def worker() -> None:
            start.wait()
            work()

        pool = [threading.Thread(target=worker) for _ in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()

    return run


def idempotency_rows(
    url: str, label: str, n: int, repeats: int, threads: tuple[int, ...] = (1,)
) -> list[dict[str, Any]]:
    from stormproof import stores

    store = stores.open(url)
    store.init()
    engine = Idempotency(store)
    try:

        def fresh() -> None:
            prefix = uuid.uuid4().hex
            for i in range(n):
                engine.run(f"{prefix}-{i}", {"i": i}, _identity, i)

        done_key = uuid.uuid4().hex
        engine.run(done_key, {"i": 0}, _identity, 0)

        def duplicate() -> None:
            for _ in range(n):
                engine.run(done_key, {"i": 0}, _identity, 0)

        rows = []
        for count in threads:
            suffix = "" if count == 1 else f"_x{count}"
            for case, work in (
                (f"idempotent_{label}", fresh),
                (f"idempotent_duplicate_{label}", duplicate),
            ):
                total = n * count
                rows.append(
                    {
                        "case": case + suffix,
                        "ours_per_s": rate(total, in_threads(count, work), repeats),
                    }
                )
        return rows
    finally:
        drop = getattr(store, "drop", None)
        if drop is not None and label != "sqlite":
            drop()
        store.close()


class _StubLambdaContext:
    """What Powertools reads from a Lambda context: the time left (our lease, 60 s)."""

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def powertools_rates(
    layer: Any, label: str, n: int, repeats: int, *, validate: bool = True
) -> dict[str, float]:
    """Powertools' ``idempotent_function`` calls/s on ``layer``: new keys and one done key."""
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function

    config = IdempotencyConfig(
        event_key_jmespath="key",
        payload_validation_jmespath="payload" if validate else "",
        expires_after_seconds=3600,
        use_local_cache=False,
    )
    config.register_lambda_context(_StubLambdaContext())

    @idempotent_function(
        data_keyword_argument="event",
        persistence_store=layer,
        config=config,
        key_prefix=POWERTOOLS_PREFIX,
    )
    def handle(*, event: dict[str, Any]) -> int:
        return _identity(event["payload"]["i"])

    def fresh() -> None:
        prefix = uuid.uuid4().hex
        for i in range(n):
            handle(event={"key": f"{prefix}-{i}", "payload": {"i": i}})

    done_key = uuid.uuid4().hex
    handle(event={"key": done_key, "payload": {"i": 0}})

    def duplicate() -> None:
        for _ in range(n):
            handle(event={"key": done_key, "payload": {"i": 0}})

    return {
        f"idempotent_{label}": rate(n, fresh, repeats),
        f"idempotent_duplicate_{label}": rate(n, duplicate, repeats),
    }


def with_peer(rows: list[dict[str, Any]], peer: str, rates: dict[str, float]) -> None:
    for row in rows:
        peer_rate = rates.get(row["case"])
        if peer_rate is not None:
            row.update(peer=peer, peer_per_s=peer_rate, ratio=row["ours_per_s"] / peer_rate)


def redis_rows(n: int, repeats: int) -> list[dict[str, Any]]:
    unique = uuid.uuid4().hex[:12]
    rows = idempotency_rows(
        f"redis://127.0.0.1:6379/15?prefix=sp-bench-{unique}:", "redis", n, repeats
    )
    if not has_module("aws_lambda_powertools"):
        return rows
    import redis
    from aws_lambda_powertools.utilities.idempotency.persistence.cache import (
        CachePersistenceLayer,
    )

    client = redis.Redis(host="127.0.0.1", port=6379, db=15, decode_responses=True)
    try:
        with warnings.catch_warnings():
            # 3.x marks the Redis layer deprecated in favour of CachePersistenceLayer, which is
            # an alias of the same class, so constructing either warns.
            warnings.simplefilter("ignore", DeprecationWarning)
            layer = CachePersistenceLayer(client=client)
        # No payload validation here: in Powertools 3.37 the Redis layer's completed record drops
        # the validation hash, so every duplicate would raise IdempotencyValidationError.
        rates = powertools_rates(layer, "redis", n, repeats, validate=False)
        with_peer(rows, POWERTOOLS, rates)
    finally:
        stale = list(client.scan_iter(match=f"{POWERTOOLS_PREFIX}#*", count=1000))
        for start in range(0, len(stale), 500):
            client.unlink(*stale[start : start + 500])
        client.close()
    return rows


def dynamodb_rows(n: int, repeats: int) -> list[dict[str, Any]]:
    if not has_module("stormproof.stores.dynamodb"):
        return []  # no peer row without ours
    import boto3
    from moto import mock_aws

    with mock_aws():  # fake credentials; every boto3 client in here talks to the mock
        client = boto3.client("dynamodb", region_name=REGION)
        url = f"dynamodb://sp_bench_{uuid.uuid4().hex[:8]}?region={REGION}"
        rows = idempotency_rows(url, "dynamodb", n, repeats)
        if not has_module("aws_lambda_powertools"):
            return rows
        from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

        table = f"powertools_bench_{uuid.uuid4().hex[:8]}"
        client.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        layer = DynamoDBPersistenceLayer(table_name=table, boto3_client=client)
        with_peer(rows, POWERTOOLS, powertools_rates(layer, "dynamodb", n, repeats))
        return rows


def _identity(value: int) -> int:
    return value


async def _aidentity(value: int) -> int:
    return value


async def async_rates(
    engine: Idempotency, label: str, n: int, repeats: int, tasks: int
) -> dict[str, float]:
    """Calls/s of ``tasks`` concurrent tasks on ``engine``: new keys, then one completed key."""

    async def timed(work: Callable[[int], Awaitable[None]]) -> float:
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            await asyncio.gather(*(work(t) for t in range(tasks)))
            samples.append(per_task * tasks / (time.perf_counter() - start))
        return statistics.median(samples)

    per_task = max(n // tasks, 1)
    prefix = uuid.uuid4().hex
    done_key = f"{prefix}-done"
    await engine.arun(done_key, {"i": 0}, _aidentity, 0)

    async def fresh(task: int) -> None:
        batch = uuid.uuid4().hex
        for i in range(per_task):
            await engine.arun(f"{prefix}-{batch}-{task}-{i}", {"i": i}, _aidentity, i)

    async def duplicate(task: int) -> None:
        for _ in range(per_task):
            await engine.arun(done_key, {"i": 0}, _aidentity, 0)

    return {
        f"async_{label}_x{tasks}": await timed(fresh),
        f"async_duplicate_{label}_x{tasks}": await timed(duplicate),
    }


def async_rows(url: str, label: str, n: int, repeats: int, tasks: int) -> list[dict[str, Any]]:
    """Native async store against the blocking store with ``store_calls="thread"``."""
    from stormproof import stores

    blocking = stores.open(url)
    blocking.init()

    async def native() -> dict[str, float]:
        store = stores.open_async(url)
        try:
            return await async_rates(Idempotency(store), label, n, repeats, tasks)
        finally:
            await store.close()

    async def threaded() -> dict[str, float]:
        engine = Idempotency(blocking, store_calls="thread")
        return await async_rates(engine, label, n, repeats, tasks)

    try:
        ours = asyncio.run(native())
        peer = asyncio.run(threaded())
    finally:
        drop = getattr(blocking, "drop", None)
        if drop is not None:
            drop()
        blocking.close()
    rows = [{"case": case, "ours_per_s": rate} for case, rate in ours.items()]
    with_peer(rows, 'store_calls="thread"', peer)
    return rows


_GROUP_COMMIT_SETTINGS = {"group_commit": 2, "group_commit1": 1, "off": 0}


def _group_commit_url(backend: str, count: int, setting: int) -> str:
    unique = uuid.uuid4().hex[:8]
    if backend == "redis":
        return f"redis://127.0.0.1:6379/15?prefix=sp-bench-{unique}:&group_commit={setting}"
    return (
        f"postgresql://postgres@127.0.0.1:5432/test?table=sp_bench_{unique}"
        f"&pool_max={max(count, 10)}&group_commit={setting}"
    )


def group_commit_rows(
    backend: str, n: int, repeats: int, concurrency: tuple[int, ...]
) -> list[dict[str, Any]]:
    """New-key and duplicate calls/s by ``group_commit`` setting, alternating sample by sample."""
    from stormproof import stores

    rows: list[dict[str, Any]] = []
    for count in concurrency:
        urls = {
            name: _group_commit_url(backend, count, setting)
            for name, setting in _GROUP_COMMIT_SETTINGS.items()
        }
        samples: dict[str, list[float]] = {}
        for _ in range(repeats):
            for name, url in urls.items():

                async def native(url: str = url, count: int = count) -> dict[str, float]:
                    store = stores.open_async(url)
                    await store.init()
                    try:
                        return await async_rates(Idempotency(store), "pg", n, 1, count)
                    finally:
                        await store.close()

                new, duplicate = asyncio.run(native()).values()
                threaded = idempotency_rows(url, "pg", max(n // count, 1), 1, (count,))
                for kind, rate_ in (
                    ("async", new),
                    ("async_duplicate", duplicate),
                    ("threads", threaded[0]["ours_per_s"]),
                    ("threads_duplicate", threaded[1]["ours_per_s"]),
                ):
                    samples.setdefault(f"{name}:{kind}", []).append(rate_)
        for url in urls.values():
            store = stores.open(url)
            drop = getattr(store, "drop", None)
            if drop is not None:
                drop()
            store.close()
        for name in ("group_commit", "group_commit1"):
            for kind in ("async", "async_duplicate", "threads", "threads_duplicate"):
                ours = statistics.median(samples[f"{name}:{kind}"])
                peer = statistics.median(samples[f"off:{kind}"])
                rows.append(
                    {
                        "case": f"{name}_{backend}_{kind}_x{count}",
                        "ours_per_s": ours,
                        "peer": "group_commit=0",
                        "peer_per_s": peer,
                        "ratio": ours / peer,
                    }
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--calls", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, action="append", default=None)
    parser.add_argument("--tasks", type=int, action="append", default=None)
    parser.add_argument("--only", default="validation,sqlite,postgres,redis,dynamodb")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.events, args.calls, args.repeats = 5_000, 200, 1
    threads = tuple(dict.fromkeys([1, *(args.threads or ())]))
    if min(threads) < 1:
        parser.error("--threads must be >= 1")
    only = set(args.only.split(","))
    rows = validation_rows(args.events, args.repeats) if "validation" in only else []
    if "sqlite" in only:
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{Path(tmp) / 'bench.db'}"
            rows += idempotency_rows(url, "sqlite", args.calls, args.repeats, threads)
    if "postgres" in only and port_open(5432) and has_module("psycopg"):
        table = f"sp_bench_{uuid.uuid4().hex[:8]}"
        pg = f"postgresql://postgres@127.0.0.1:5432/test?table={table}&pool_max={max(threads)}"
        rows += idempotency_rows(pg, "postgres", args.calls // 5, args.repeats, threads)
    if "redis" in only and port_open(6379) and has_module("redis"):
        rows += redis_rows(args.calls, args.repeats)
    if "async" in only:
        for tasks in dict.fromkeys(args.tasks or (16,)):
            if tasks < 1:
                parser.error("--tasks must be >= 1")
            if port_open(5432) and has_module("psycopg"):
                table = f"sp_bench_{uuid.uuid4().hex[:8]}"
                pg = f"postgresql://postgres@127.0.0.1:5432/test?table={table}&pool_max={tasks}"
                rows += async_rows(pg, "postgres", args.calls // 5, args.repeats, tasks)
            if port_open(6379) and has_module("redis"):
                prefix = f"sp-bench-{uuid.uuid4().hex[:12]}:"
                redis_url = f"redis://127.0.0.1:6379/15?prefix={prefix}"
                rows += async_rows(redis_url, "redis", args.calls, args.repeats, tasks)
    if "group_commit" in only:
        concurrency = tuple(dict.fromkeys(args.tasks or (4, 16, 64)))
        if port_open(5432) and has_module("psycopg"):
            rows += group_commit_rows("postgres", args.calls // 5, args.repeats, concurrency)
        if port_open(6379) and has_module("redis"):
            rows += group_commit_rows("redis", args.calls // 5, args.repeats, concurrency)
    if "dynamodb" in only and has_module("moto") and has_module("boto3"):
        # moto parses every request in-process (~10 ms per write), so fewer calls.
        rows += dynamodb_rows(max(args.calls // 25, 20), args.repeats)
    print_rows(rows, as_json=args.json)


if __name__ == "__main__":
    main()
