from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stormproof.errors import ConfigError
from stormproof.policies.fencing import (
    FencedRegister,
    GenerationStore,
    Lease,
    may_apply,
    may_delete,
)


def test_only_newer_generations_apply() -> None:
    register: FencedRegister[str] = FencedRegister()
    assert register.apply(5, "plan-5")
    assert not register.apply(3, "plan-3")
    assert not register.apply(5, "plan-5-again")
    assert register.apply(6, "plan-6")
    assert (register.generation, register.value, register.rejected) == (6, "plan-6", 2)
    assert may_apply(None, 0) and not may_apply(2, 2)


def test_may_delete_never_touches_the_active_or_newer() -> None:
    assert may_delete(5, 10, margin=3)
    assert not may_delete(7, 10, margin=3)
    assert not may_delete(10, 10, margin=0)
    assert not may_delete(11, 10, margin=0)
    assert not may_delete(1, None, margin=0)


def test_generation_store_cleanup_keeps_active_and_margin() -> None:
    store: GenerationStore[str] = GenerationStore()
    for generation in range(1, 11):
        store.put(generation, f"plan-{generation}")
    assert store.activate(8)
    assert not store.activate(7)  # a delayed writer with an older plan is refused
    assert store.stale_activations == 1
    assert store.cleanup(margin=2) == [1, 2, 3, 4, 5]
    assert store.generations() == [6, 7, 8, 9, 10]
    assert store.get(8) == "plan-8"
    with pytest.raises(ConfigError):
        store.activate(2)  # deleted


# A writer in the DNS race: it checks its plan against the active one when it starts (the
# "one-time check"), then applies it later, after delays.
interleavings = st.lists(
    st.tuples(st.integers(0, 2), st.sampled_from(["start", "apply"])), max_size=60
)


def _replay(steps: list[tuple[int, str]], fenced: bool) -> list[int]:
    """Three writers each take ever newer plans; returns the sequence of active generations."""
    register: FencedRegister[int] = FencedRegister()
    naive_active: int | None = None
    next_plan = 0
    picked: dict[int, int | None] = {0: None, 1: None, 2: None}
    history: list[int] = []
    for writer, step in steps:
        if step == "start":
            next_plan += 1
            checked = may_apply(register.generation if fenced else naive_active, next_plan)
            picked[writer] = next_plan if checked else None
        elif picked[writer] is not None:
            plan = picked[writer]
            assert plan is not None
            if fenced:
                register.apply(plan, plan)
                active = register.generation
            else:
                naive_active = plan  # the check happened at start, not now
                active = naive_active
            assert active is not None
            history.append(active)
            picked[writer] = None
    return history


@given(interleavings)
@settings(max_examples=300)
def test_fenced_writes_never_let_a_stale_generation_overwrite_a_newer_one(
    steps: list[tuple[int, str]],
) -> None:
    history = _replay(steps, fenced=True)
    assert history == sorted(history)


def test_the_one_time_check_alone_does_regress() -> None:
    # Writer 0 picks plan 1; writer 1 picks plan 2 and applies it; writer 0, delayed, applies 1.
    steps = [(0, "start"), (1, "start"), (1, "apply"), (0, "apply")]
    assert _replay(steps, fenced=False) == [2, 1]
    assert _replay(steps, fenced=True) == [2, 2]


def test_lease_grants_renews_and_expires() -> None:
    lease = Lease(ttl=10.0)
    grant = lease.acquire(0.0, "dwfm-1")
    assert grant is not None and grant.token == 1 and grant.expires_at == 10.0
    assert lease.acquire(5.0, "dwfm-2") is None
    renewed = lease.renew(8.0, grant)
    assert renewed is not None and renewed.expires_at == 18.0 and renewed.token == 1
    assert lease.holder(17.9) == "dwfm-1"
    assert lease.holder(18.0) is None
    assert lease.renew(18.0, renewed) is None  # expired leases are not renewed
    other = lease.acquire(18.0, "dwfm-2")
    assert other is not None and other.token == 2
    assert not lease.accepts(1) and lease.accepts(2)
    assert not lease.release(19.0, renewed)
    assert lease.release(19.0, other) and lease.holder(19.0) is None


def test_reacquire_by_the_same_holder_keeps_the_token() -> None:
    lease = Lease(ttl=1.0)
    first = lease.acquire(0.0, "a")
    again = lease.acquire(0.5, "a")
    assert first is not None and again is not None
    assert again.token == first.token and again.expires_at == 1.5
    assert lease.grants == 1


@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.floats(0.0, 3.0), st.booleans()),
        max_size=80,
    )
)
@settings(max_examples=200)
def test_lease_has_at_most_one_holder_and_tokens_only_grow(
    ops: list[tuple[str, float, bool]],
) -> None:
    lease = Lease(ttl=2.0)
    now = 0.0
    last_token = 0
    for holder, step, renew in ops:
        now += step
        grant = lease.grant(now)
        if renew and grant is not None and grant.holder == holder:
            assert lease.renew(now, grant) is not None
            continue
        got = lease.acquire(now, holder)
        if got is not None:
            assert got.token >= last_token
            last_token = got.token
            assert lease.holder(now) == holder
        else:
            assert lease.holder(now) not in (None, holder)


def test_lease_ttl_must_be_positive() -> None:
    with pytest.raises(ConfigError) as excinfo:
        Lease(ttl=0.0)
    assert excinfo.value.field == "ttl"


def test_accepts_with_now_refuses_a_lapsed_holder_before_anyone_else_acquires() -> None:
    lease = Lease(ttl=5.0)
    grant = lease.acquire(0.0, "a")
    assert grant is not None
    assert lease.accepts(grant.token, now=4.9)
    assert not lease.accepts(grant.token, now=5.0)
    assert lease.accepts(grant.token)  # without now: only the token is checked
