from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from stormproof.cli import app

runner = CliRunner()


def test_stores_init_reports_the_schema_version(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    first = runner.invoke(app, ["stores", "init", url])
    again = runner.invoke(app, ["stores", "init", url])
    assert first.exit_code == 0 and again.exit_code == 0, first.output
    assert "schema version 1" in again.output
    assert (tmp_path / "app.db").exists()


def test_stores_init_rejects_an_unknown_scheme() -> None:
    result = runner.invoke(app, ["stores", "init", "mysql://localhost/db"])
    assert result.exit_code == 2
    assert "sqlite" in result.output


def test_dlq_commands_inspect_redrive_and_purge(tmp_path: Path) -> None:
    import time

    from stormproof.events.queue import QueuePolicy, open_queue

    url = f"sqlite:///{tmp_path / 'q.db'}"
    now = time.time() - 100.0  # in the past, so everything is visible when the CLI looks
    queue = open_queue(url, policies={"orders": QueuePolicy(max_receive_count=1)})
    queue.init()
    for n in range(3):
        queue.send("orders", f'{{"n": {n}}}', None, now)
    assert len(queue.receive("orders", 10, 1.0, now)) == 3  # received, never deleted
    assert queue.receive("orders", 10, 1.0, now + 2.0) == []  # moved to orders-dlq on receive
    queue.close()
    shown = runner.invoke(app, ["dlq", "inspect", url, "orders-dlq"])
    assert shown.exit_code == 0, shown.output
    assert "3 visible" in shown.output and "max_receive_count" in shown.output
    moved = runner.invoke(app, ["dlq", "redrive", url, "orders-dlq", "orders", "--rate", "500"])
    assert moved.exit_code == 0, moved.output
    assert "moved 3 message(s)" in moved.output
    purged = runner.invoke(app, ["dlq", "purge", url, "orders", "--yes"])
    assert purged.exit_code == 0 and "deleted 3 message(s)" in purged.output
    bad = runner.invoke(app, ["dlq", "inspect", "mysql://x", "q"])
    assert bad.exit_code == 2


def test_stores_purge_expired_deletes_in_batches_and_keeps_live_records(tmp_path: Path) -> None:
    import time

    from stormproof import stores

    url = f"sqlite:///{tmp_path / 'app.db'}"
    store = stores.open(url)
    store.init()
    old = time.time() - 10_000.0
    for n in range(5):  # completed long ago with a short TTL: expired
        store.claim(f"old-{n}", "h", f"t{n}", old, lease=30.0, ttl=60.0)
        store.complete(f"old-{n}", f"t{n}", "1", old, ttl=60.0)
    store.claim("live", "h", "t-live", time.time(), lease=30.0, ttl=3600.0)
    store.close()
    result = runner.invoke(app, ["stores", "purge-expired", url, "--batch", "2"])
    assert result.exit_code == 0, result.output
    assert "5 expired records deleted" in " ".join(result.output.split())
    store = stores.open(url)
    assert store.get("old-0") is None and store.get("live") is not None
    store.close()
