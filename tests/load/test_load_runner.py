"""The runner on a manual clock against an in-process ASGI app; traffic plans; the reports."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from stormproof.clock import ManualClock
from stormproof.errors import ConfigError
from stormproof.load import Bursts, Fixed, RecoveryCriteria, Steady, Traffic, plan_requests
from stormproof.load.report import html_report, json_text
from stormproof.load.runner import RunConfig, parse_retry_after, run_load
from stormproof.load.session import load_test, prepare

SHAPE = Bursts(Fixed(40), Fixed(1.0), Fixed(2.0), idle_rate=8, lead_in=Fixed(1.5))


class App:
    """201 for new orders, the stored answer for a known key, 400 for bad JSON, 503 for low."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        extra: list[tuple[bytes, bytes]] = []
        key = headers.get("idempotency-key", "")
        if headers.get("x-priority") == "low":
            status, extra = 503, [(b"retry-after", b"2")]
        else:
            try:
                json.loads(body)
                status = 201
            except ValueError:
                status = 400
            if key in self.seen:
                status, extra = self.seen[key], [(b"idempotent-replayed", b"true")]
            self.seen[key] = status
        await send({"type": "http.response.start", "status": status, "headers": extra})
        await send({"type": "http.response.body", "body": b"{}"})


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_runner_sends_on_schedule_and_records_answers() -> None:
    traffic = Traffic(
        duplicate_fraction=0.1, invalid_fraction=0.1, priorities=(("high", 3), ("low", 1))
    )
    _plan, requests = prepare(SHAPE, duration=6.0, seed=3, traffic=traffic)
    clock = ManualClock()
    config = RunConfig("http://service/orders", duration=6.0)
    records = run(run_load(config, requests, clock=clock, transport=httpx.ASGITransport(App())))
    assert [r.due for r in records] == [q.at for q in requests]
    # Manual time: sent on the dot; an answer is noted once its task runs, maybe a few
    # arrivals later (manual time moves only with the dispatcher's sleeps).
    assert all(r.sent == pytest.approx(r.due) for r in records)
    assert all(r.latency is not None and r.latency >= -1e-9 for r in records)
    for record, request in zip(records, requests, strict=True):
        assert (record.kind, record.key, record.priority) == (
            request.kind,
            request.key,
            request.priority,
        )
        if request.priority == "low":
            assert record.status == 503 and record.retry_after == 2.0
        elif request.kind == "invalid" and not record.replayed:
            assert record.status in (201, 400)  # three of four flavours are valid JSON
    replayed = [r for r in records if r.replayed]
    assert replayed and all(r.kind == "duplicate" for r in replayed)
    assert clock.now() == pytest.approx(requests[-1].at)


def test_runner_bounds_requests_and_duration() -> None:
    _, requests = prepare(Steady(50), duration=10.0, seed=1)
    config = RunConfig("http://service/orders", duration=2.0, max_requests=30)
    records = run(
        run_load(config, requests, clock=ManualClock(), transport=httpx.ASGITransport(App()))
    )
    assert len(records) == 30
    config = RunConfig("http://service/orders", duration=2.0)
    records = run(
        run_load(config, requests, clock=ManualClock(), transport=httpx.ASGITransport(App()))
    )
    assert len(records) == sum(1 for q in requests if q.at < 2.0)


def test_in_flight_requests_are_cut_after_the_drain() -> None:
    async def hang(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await asyncio.Event().wait()

    _, requests = prepare(Steady(50), duration=0.1, seed=1)
    config = RunConfig("http://service/", duration=0.1, drain=0.05)
    # On the wall clock: a manual clock's timeout would wait for a test to advance it.
    records = run(run_load(config, requests[:3], transport=httpx.ASGITransport(hang)))
    assert [(r.status, r.error, r.finished) for r in records] == [(None, "Cancelled", None)] * 3


def test_connection_errors_are_recorded() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    _, requests = prepare(Steady(20), duration=0.5, seed=2)
    config = RunConfig("http://service/", duration=0.5)
    records = run(
        run_load(config, requests, clock=ManualClock(), transport=httpx.MockTransport(refuse))
    )
    assert records and all(r.error == "ConnectError" and r.status is None for r in records)


def test_traffic_plans_are_seeded_and_mix_duplicates_and_invalid() -> None:
    times = [i * 0.01 for i in range(2000)]
    traffic = Traffic(duplicate_fraction=0.2, invalid_fraction=0.1, key_prefix="t")
    a, b = plan_requests(times, traffic, 5), plan_requests(times, traffic, 5)
    assert a == b and plan_requests(times, traffic, 6) != a
    kinds = [r.kind for r in a]
    assert 0.15 < kinds.count("duplicate") / len(a) < 0.25
    assert 0.07 < kinds.count("invalid") / len(a) < 0.13
    originals = {r.key: r for r in a if r.kind != "duplicate"}
    assert len(originals) == len(a) - kinds.count("duplicate")  # fresh keys are unique
    for request in a:
        if request.kind == "duplicate":
            first = originals[request.key or ""]
            assert first.index < request.index and first.body == request.body
    assert dict(a[0].headers)["Idempotency-Key"] == "t-5-0"


def test_traffic_validation() -> None:
    with pytest.raises(ConfigError, match="duplicate_fraction"):
        Traffic(duplicate_fraction=0.7, invalid_fraction=0.5)
    with pytest.raises(ConfigError, match="invalid_fraction"):
        Traffic(invalid_fraction=1.5)
    with pytest.raises(ConfigError, match=r"priorities\[0\]"):
        Traffic(priorities=(("x",),))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="target"):
        RunConfig("ftp://x", duration=1)
    with pytest.raises(ConfigError, match="max_requests"):
        RunConfig("http://x", duration=1, max_requests=0)


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_load_test_json_and_html_reports(tmp_path: Path) -> None:
    load = load_test(
        SHAPE,
        RunConfig("http://service/orders", duration=6.0),
        seed=4,
        traffic=Traffic(priorities=(("high", 1), ("low", 1))),
        criteria=RecoveryCriteria(window=0.5),
        clock=ManualClock(),
        transport=httpx.ASGITransport(App()),
    )
    result = run(load)
    assert len(result.analysis.bursts) == 2
    data = json.loads(json_text(result))  # strict JSON: NaN became null
    assert data["seed"] == 4 and len(data["records"]) == len(result.records)
    assert data["analysis"]["bursts"][0]["start"] == 1.5
    html = html_report(result)
    assert html.startswith("<!doctype html>") and html.count("<svg") == 4
    assert "Per burst" in html and "time to recover" in html
    assert not re.search(r"<script", html)
