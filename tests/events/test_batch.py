from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stormproof.errors import ConfigError
from stormproof.events.batch import BatchFailed, BatchProcessor, Record


def records(*bodies: object, group: str | None = None) -> list[Record]:
    return [Record(f"r{i}", body, group) for i, body in enumerate(bodies)]


def fail_on_poison(record: Record) -> None:
    if record.body == "poison":
        raise ValueError("cannot parse")


def test_only_failed_records_are_reported() -> None:
    result = BatchProcessor(fail_on_poison).process(records("a", "poison", "b", "poison"))
    assert result.succeeded == ["r0", "r2"]
    assert result.failed == ["r1", "r3"]
    assert result.errors["r1"] == "ValueError: cannot parse"
    assert result.lambda_response() == {
        "batchItemFailures": [{"itemIdentifier": "r1"}, {"itemIdentifier": "r3"}]
    }


def test_all_failed_can_raise() -> None:
    processor = BatchProcessor(fail_on_poison, raise_on_all_failed=True)
    with pytest.raises(BatchFailed) as excinfo:
        processor.process(records("poison", "poison"))
    assert excinfo.value.result.failed == ["r0", "r1"]
    assert processor.process([]).succeeded == []


def test_fifo_group_skips_the_rest_of_the_failed_group_only() -> None:
    batch = [
        Record("1", "a", "g1"),
        Record("2", "poison", "g1"),
        Record("3", "b", "g2"),
        Record("4", "c", "g1"),
        Record("5", "d", "g2"),
    ]
    result = BatchProcessor(fail_on_poison, fifo="group").process(batch)
    assert result.succeeded == ["1", "3", "5"]
    assert result.failed == ["2"] and result.skipped == ["4"]
    assert result.retry == ["2", "4"]


def test_fifo_batch_stops_at_the_first_failure() -> None:
    result = BatchProcessor(fail_on_poison, fifo="batch").process(records("a", "poison", "b"))
    assert (result.succeeded, result.failed, result.skipped) == (["r0"], ["r1"], ["r2"])


def test_records_past_max_attempts_are_dead_lettered() -> None:
    dead: list[tuple[str, str]] = []
    processor = BatchProcessor(
        fail_on_poison, max_attempts=3, dead_letter=lambda r, e: dead.append((r.id, str(e)))
    )
    batch = [Record("new", "poison", attempts=1), Record("old", "poison", attempts=3)]
    result = processor.process(batch)
    assert result.failed == ["new"] and result.dead_lettered == ["old"]
    assert dead == [("old", "cannot parse")]
    assert result.lambda_response() == {"batchItemFailures": [{"itemIdentifier": "new"}]}


def test_bisect_isolates_poison_pills_in_batch_handlers() -> None:
    calls: list[int] = []

    def handle_all(batch: list[Record]) -> None:
        calls.append(len(batch))
        if any(r.body == "poison" for r in batch):
            raise ValueError("batch contains poison")

    bodies = ["ok"] * 7 + ["poison"]
    result = BatchProcessor(batch_handler=handle_all).process(records(*bodies))
    assert result.failed == ["r7"]
    assert sorted(result.succeeded) == [f"r{i}" for i in range(7)]
    assert calls == [8, 4, 4, 2, 2, 1, 1]  # log2(8) levels down to the culprit
    no_bisect = BatchProcessor(batch_handler=handle_all, bisect_on_error=False)
    assert len(no_bisect.process(records(*bodies)).failed) == 8


@given(st.lists(st.booleans(), max_size=40), st.booleans())
@settings(max_examples=150)
def test_every_record_ends_in_exactly_one_list(poison: list[bool], batch_mode: bool) -> None:
    batch = records(*("poison" if p else "ok" for p in poison))

    def handle_all(items: list[Record]) -> None:
        for item in items:
            fail_on_poison(item)

    processor = (
        BatchProcessor(batch_handler=handle_all) if batch_mode else BatchProcessor(fail_on_poison)
    )
    result = processor.process(batch)
    outcome = result.succeeded + result.failed + result.skipped + result.dead_lettered
    assert sorted(outcome) == sorted(r.id for r in batch)
    assert sorted(result.failed) == sorted(r.id for r in batch if r.body == "poison")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({}, "handler"),
        ({"handler": print, "batch_handler": print}, "handler"),
        ({"handler": print, "fifo": "all"}, "fifo"),
        ({"batch_handler": print, "fifo": "group"}, "fifo"),
        ({"handler": print, "max_attempts": 2}, "dead_letter"),
        ({"handler": print, "max_attempts": 0, "dead_letter": print}, "max_attempts"),
    ],
)
def test_invalid_configuration(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        BatchProcessor(**kwargs)  # type: ignore[arg-type]
    assert excinfo.value.field == field


def test_duplicate_ids_are_rejected() -> None:
    with pytest.raises(ConfigError):
        BatchProcessor(print).process([Record("a", 1), Record("a", 2)])
