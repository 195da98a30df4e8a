"""The workflow store on SQLite and the real PostgreSQL: names, leases, atomic commits, timers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from store_services import store_url

from stormproof.workflows.store import (
    WORKFLOW_SCHEMA_VERSION,
    ExecutionStatus,
    NewExecution,
    OwnershipLost,
    StepRecord,
    Update,
    WorkflowStore,
    open_store,
)

T0 = 1_700_000_000.0


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WorkflowStore]:
    opened = open_store(store_url(str(request.param), tmp_path).replace("sp_test_", "sp_wf_"))
    opened.init()
    yield opened
    opened.drop()
    opened.close()


def new(name: str = "e1", input: str = '{"a":1}') -> NewExecution:
    return NewExecution(name, "python", "flow", input, "{}")


def test_init_is_idempotent_and_records_the_version(store: WorkflowStore) -> None:
    store.init()
    assert store.schema_version() == WORKFLOW_SCHEMA_VERSION


def test_start_is_idempotent_by_name_and_makes_the_execution_due(store: WorkflowStore) -> None:
    _, created = store.start(new(), T0)
    again, created_again = store.start(new(input='{"a":2}'), T0 + 5)
    assert created and not created_again
    assert again.input == '{"a":1}' and again.status is ExecutionStatus.RUNNING
    assert [e.type for e in store.history("e1")] == ["ExecutionStarted"]
    assert store.due(T0, 10) == ["e1"] and store.next_wake() == T0


def test_claim_is_exclusive_until_the_lease_ends(store: WorkflowStore) -> None:
    store.start(new(), T0)
    claimed = store.claim("e1", "w1", T0, 30.0)
    assert claimed is not None and claimed.runs == 1 and claimed.owner == "w1"
    assert store.claim("e1", "w2", T0 + 10, 30.0) is None
    assert store.due(T0 + 10, 10) == []  # leased: not offered to other workers
    taken = store.claim("e1", "w2", T0 + 31, 30.0)
    assert taken is not None and taken.runs == 2
    with pytest.raises(OwnershipLost):  # the stalled first worker is fenced off
        store.commit("e1", "w1", Update(events=(("X", {}),)), T0 + 32, T0 + 60)
    assert [e.type for e in store.history("e1")] == ["ExecutionStarted"]


def test_commit_applies_everything_at_once_with_sequence_ids(store: WorkflowStore) -> None:
    store.start(new(), T0)
    store.claim("e1", "w", T0, 30.0)
    step = StepRecord(0, "reserve", "succeeded", '{"id":1}')
    version = store.commit(
        "e1",
        "w",
        Update(
            events=(("StepSucceeded", {"step": 0}), ("WaitStarted", {"due": T0 + 99})),
            steps=(step,),
            checkpoint='{"at":1}',
            wake_at=T0 + 99,
            release=True,
        ),
        T0 + 1,
        T0 + 31,
    )
    assert version == 1
    got = store.get("e1")
    assert got is not None and got.checkpoint == '{"at":1}' and got.owner is None
    assert got.wake_at == T0 + 99
    assert [(e.seq, e.type) for e in store.history("e1")] == [
        (1, "ExecutionStarted"),
        (2, "StepSucceeded"),
        (3, "WaitStarted"),
    ]
    assert store.history("e1", after=2)[0].details == {"due": T0 + 99}
    assert store.steps("e1") == [step]
    assert store.due(T0 + 50, 10) == [] and store.due(T0 + 99, 10) == ["e1"]


def test_finish_clears_the_timer_and_reopen_makes_it_due_again(store: WorkflowStore) -> None:
    store.start(new(), T0)
    store.claim("e1", "w", T0, 30.0)
    store.commit(
        "e1",
        "w",
        Update(
            status=ExecutionStatus.FAILED, error="Boom", cause="x", clear_timer=True, release=True
        ),
        T0 + 1,
        T0 + 31,
    )
    failed = store.get("e1")
    assert failed is not None and failed.status is ExecutionStatus.FAILED and failed.error == "Boom"
    assert store.next_wake() is None and store.claim("e1", "w", T0 + 2, 30.0) is None
    assert store.reopen("e1", Update(events=(("ExecutionRedriven", {}),)), T0 + 5)
    assert not store.reopen("e1", Update(), T0 + 6)  # only a FAILED execution reopens
    again = store.get("e1")
    assert again is not None and again.status is ExecutionStatus.RUNNING and again.error is None
    assert store.due(T0 + 5, 10) == ["e1"]
    assert store.history("e1")[-1].type == "ExecutionRedriven"


def test_wake_and_listing_by_parent(store: WorkflowStore) -> None:
    store.start(new("p"), T0)
    store.start(NewExecution("c", "asl", "{}", "1", "{}", parent="p"), T0)
    store.claim("p", "w", T0, 30.0)
    store.commit("p", "w", Update(wake_at=T0 + 500, release=True), T0, T0 + 30)
    store.wake("p", T0 + 1)
    assert store.get("p").wake_at == T0 + 1  # type: ignore[union-attr]
    assert [e.name for e in store.executions(parent="p")] == ["c"]
    assert {e.name for e in store.executions(ExecutionStatus.RUNNING)} == {"p", "c"}
