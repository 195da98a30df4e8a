from __future__ import annotations

import itertools
import math
import random
from collections import deque
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stormproof.errors import ConfigError
from stormproof.policies.admission import (
    AdaptiveLifo,
    AdaptiveThrottle,
    CoDel,
    PriorityShedder,
    QueueAdmission,
    QueueLimit,
    QueueRate,
)

# -- QueueLimit ---------------------------------------------------------------------------------


def test_queue_limit_boundary() -> None:
    limit = QueueLimit(3)
    assert [limit.admit(0.0, n) for n in range(6)] == [True, True, True, False, False, False]
    assert isinstance(limit, QueueAdmission)


@given(st.integers(1, 1000), st.integers(0, 2000))
def test_queue_limit_is_queue_length_below_max(max_queue: int, queue_length: int) -> None:
    assert QueueLimit(max_queue).admit(0.0, queue_length) is (queue_length < max_queue)


def test_queue_limit_is_immutable() -> None:
    limit = QueueLimit(3)
    with pytest.raises(AttributeError):
        limit.max_queue = 4  # type: ignore[misc]


# -- QueueRate ----------------------------------------------------------------------------------


def test_queue_rate_zones() -> None:
    gate = QueueRate(10, rate=2.0, soft_queue=5)
    assert isinstance(gate, QueueAdmission)
    # Below soft_queue: always, and no token is used.
    assert all(gate.admit(0.0, n % 5) for n in range(100))
    # Throttled zone: the one-token bucket, refilled at 2 per second.
    assert gate.admit(0.0, 5)
    assert not gate.admit(0.0, 7)
    assert not gate.admit(0.49, 9)
    assert gate.admit(0.5, 9)
    # Full: never, even with a full bucket.
    assert not gate.admit(100.0, 10)
    assert gate.admit(100.0, 9)


def test_queue_rate_defaults_and_extremes() -> None:
    gate = QueueRate(10, rate=1.0)
    assert gate.soft_queue == 5 and gate.burst == 1.0
    unthrottled = QueueRate(4, rate=1.0, soft_queue=4)
    assert all(unthrottled.admit(0.0, 3) for _ in range(50))
    always = QueueRate(4, rate=1.0, soft_queue=0)
    assert always.admit(0.0, 0) and not always.admit(0.0, 0)


def test_queue_rate_burst() -> None:
    gate = QueueRate(10, rate=1.0, soft_queue=0, burst=3.0)
    assert [gate.admit(0.0, 1) for _ in range(4)] == [True, True, True, False]


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(0.1, 50.0),
    burst=st.integers(1, 5),
    steps=st.lists(st.tuples(st.floats(0.0, 0.5), st.integers(0, 12)), min_size=1, max_size=120),
)
def test_queue_rate_never_exceeds_the_rate_above_soft_queue(
    rate: float, burst: int, steps: list[tuple[float, int]]
) -> None:
    gate = QueueRate(10, rate=rate, soft_queue=4, burst=burst)
    now = 0.0
    throttled: list[float] = []
    for dt, queue_length in steps:
        now += dt
        admitted = gate.admit(now, queue_length)
        if queue_length >= 10:
            assert not admitted
        elif queue_length < 4:
            assert admitted
        elif admitted:
            throttled.append(now)
    # Over any stretch [t_i, t_j], admissions in the throttled zone are bounded by the bucket.
    for i, start in enumerate(throttled):
        for j in range(i, len(throttled)):
            assert j - i + 1 <= burst + rate * (throttled[j] - start) + 1e-9


# -- CoDel --------------------------------------------------------------------------------------


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(st.floats(0.0, 0.2), st.floats(0.0, 0.0049), st.booleans()),
        max_size=200,
    )
)
def test_codel_never_drops_below_target(steps: list[tuple[float, float, bool]]) -> None:
    codel = CoDel()
    now = 0.0
    for dt, sojourn, empty in steps:
        now += dt
        assert not codel.on_dequeue(now, now - sojourn, empty)
    assert not codel.dropping and codel.drops == 0


@settings(max_examples=200)
@given(st.lists(st.tuples(st.floats(0.0, 0.2), st.floats(0.0, 10.0)), max_size=200))
def test_codel_never_drops_the_last_item(steps: list[tuple[float, float]]) -> None:
    codel = CoDel()
    now = 0.0
    for dt, sojourn in steps:
        now += dt
        assert not codel.on_dequeue(now, now - sojourn, True)
    assert codel.first_above_time is None


def test_codel_first_drop_after_a_full_interval_above_target() -> None:
    codel = CoDel(target=0.005, interval=0.1)
    assert not codel.on_dequeue(1.0, 1.0 - 0.02, False)
    assert codel.first_above_time == pytest.approx(1.1)
    for now in (1.01, 1.05, 1.0999):
        assert not codel.on_dequeue(now, now - 0.02, False)
        assert not codel.dropping
    assert codel.on_dequeue(1.1, 1.1 - 0.02, False)
    assert codel.dropping and codel.count == 1 and codel.drops == 1
    assert codel.drop_next == pytest.approx(1.2)


def test_codel_one_item_below_target_restarts_the_interval() -> None:
    codel = CoDel()
    assert not codel.on_dequeue(0.0, -0.02, False)
    assert not codel.on_dequeue(0.05, 0.05 - 0.001, False)  # below target: the queue drained
    assert codel.first_above_time is None
    assert not codel.on_dequeue(0.1, 0.1 - 0.02, False)  # above again, a new interval starts
    assert not codel.on_dequeue(0.15, 0.15 - 0.02, False)
    assert codel.on_dequeue(0.2, 0.2 - 0.02, False)


def test_codel_an_emptied_queue_restarts_the_interval() -> None:
    codel = CoDel()
    assert not codel.on_dequeue(0.0, -0.02, False)
    assert not codel.on_dequeue(0.05, 0.05 - 0.02, True)
    assert not codel.on_dequeue(0.1, 0.1 - 0.02, False)
    assert not codel.dropping


def _standing_queue(codel: CoDel, start: float, stop: float, step: float) -> list[float]:
    """Dequeue every ``step`` seconds from a queue whose items have all waited 50 ms."""
    drops = []
    ticks = round((stop - start) / step)
    for i in range(ticks):
        now = start + i * step
        if codel.on_dequeue(now, now - 0.05, False):
            drops.append(now)
            # The RFC's loop: after a drop the next item is examined at the same instant.
            while codel.on_dequeue(now, now - 0.05, False):
                drops.append(now)
    return drops


def test_codel_drop_spacing_shrinks_like_interval_over_sqrt_count() -> None:
    step = 0.0001
    codel = CoDel(target=0.005, interval=0.1)
    drops = _standing_queue(codel, 0.0, 2.0, step)
    assert drops[0] == pytest.approx(0.1)
    gaps = [b - a for a, b in itertools.pairwise(drops)]
    assert len(gaps) > 20
    for count, gap in enumerate(gaps, start=1):
        assert gap == pytest.approx(0.1 / math.sqrt(count), abs=step + 1e-9)
    assert codel.count == len(drops)


def test_codel_catches_up_with_several_drops_at_one_instant() -> None:
    codel = CoDel(target=0.005, interval=0.1)
    assert not codel.on_dequeue(0.0, -0.05, False)
    assert codel.on_dequeue(0.1, 0.05, False)
    # No dequeue for a second (a stalled server); the schedule is far behind now.
    drops_at_once = 0
    while codel.on_dequeue(1.1, 1.05, False):
        drops_at_once += 1
    # drop_next advanced by 0.1 * (1 + 1/sqrt(2) + ...) until it passed 1.1.
    expected = 0
    next_drop, count = 0.2, 1
    while next_drop <= 1.1:
        count += 1
        expected += 1
        next_drop += 0.1 / math.sqrt(count)
    assert drops_at_once == expected > 1
    assert codel.dropping


def test_codel_leaves_dropping_state_when_sojourn_falls_below_target() -> None:
    codel = CoDel()
    _standing_queue(codel, 0.0, 0.5, 0.001)
    assert codel.dropping
    assert not codel.on_dequeue(0.5, 0.5 - 0.001, False)
    assert not codel.dropping
    # Even with a drop overdue, the next above-target item waits out a new interval.
    assert not codel.on_dequeue(0.6, 0.6 - 0.05, False)
    assert not codel.dropping


def test_codel_reentry_resumes_the_last_drop_rate() -> None:
    codel = CoDel(target=0.005, interval=0.1)
    first = _standing_queue(codel, 0.0, 0.5, 0.001)
    assert len(first) > 2 and codel.count == len(first)
    codel.on_dequeue(0.5, 0.5, False)  # below target: leave
    # Standing again soon after: count restarts at the drops of the last episode minus the
    # count it started with (lastcount = 1), not at 1.
    second = _standing_queue(codel, 0.6, 0.8, 0.001)
    assert codel.count - (len(second) - 1) == len(first) - 1
    assert second[1] - second[0] == pytest.approx(0.1 / math.sqrt(len(first) - 1), abs=0.0011)


def test_codel_reentry_after_a_long_calm_starts_over() -> None:
    codel = CoDel(target=0.005, interval=0.1)
    first = _standing_queue(codel, 0.0, 0.5, 0.001)
    assert len(first) > 2
    codel.on_dequeue(0.5, 0.5, False)
    second = _standing_queue(codel, 10.0, 10.3, 0.001)
    assert second[1] - second[0] == pytest.approx(0.1, abs=0.0011)


# -- AdaptiveLifo -------------------------------------------------------------------------------


def test_adaptive_lifo_follows_codel() -> None:
    lifo = AdaptiveLifo(CoDel(target=0.005, interval=0.1))
    assert not lifo.lifo(0.0)
    lifo.codel.on_dequeue(0.0, -0.02, False)
    assert not lifo.lifo(0.05)
    assert lifo.lifo(0.1)  # above target for an interval, before any drop
    assert lifo.codel.on_dequeue(0.1, 0.08, False)
    assert lifo.lifo(0.1)
    lifo.codel.on_dequeue(0.11, 0.109, False)  # below target
    assert not lifo.lifo(0.11)
    assert isinstance(AdaptiveLifo().codel, CoDel)


def test_adaptive_lifo_switches_under_a_standing_queue_and_back() -> None:
    # Millisecond ticks; the server serves one item per tick. For a second, two arrive per tick
    # (a standing queue forms); then none arrive and the queue drains. Driven as documented.
    lifo = AdaptiveLifo(CoDel(target=0.005, interval=0.1))
    queue: deque[float] = deque()
    modes: list[tuple[float, bool]] = []
    served_sojourns: list[tuple[float, float]] = []
    for tick in range(3000):
        now = tick / 1000
        if now < 1.0:
            queue.extend((now, now))
        while queue:
            if lifo.codel.on_dequeue(now, queue[0], len(queue) == 1):
                queue.popleft()
                continue
            newest_first = lifo.lifo(now)
            enqueued_at = queue.pop() if newest_first else queue.popleft()
            served_sojourns.append((now, now - enqueued_at))
            modes.append((now, newest_first))
            break
    assert not any(mode for now, mode in modes if now < 0.1)
    assert all(mode for now, mode in modes if 0.2 <= now < 1.0)
    assert not modes[-1][1] and not queue
    # In LIFO mode the served items are fresh even though the queue is old.
    assert max(s for now, s in served_sojourns if 0.2 <= now < 1.0) < 0.005


# -- PriorityShedder ----------------------------------------------------------------------------


def test_sync_first_sheds_background_then_async_then_sync() -> None:
    shedder = PriorityShedder.sync_first()
    assert shedder.classes == ("sync", "async", "background")
    assert dict(shedder.levels) == {"sync": 1.0, "async": 0.8, "background": 0.6}

    def admitted(load: float) -> list[str]:
        return [name for name in shedder.classes if shedder.admit(0.0, name, load)]

    assert admitted(0.0) == ["sync", "async", "background"]
    assert admitted(0.59) == ["sync", "async", "background"]
    assert admitted(0.6) == ["sync", "async"]
    assert admitted(0.8) == ["sync"]
    assert admitted(0.999) == ["sync"]
    assert admitted(1.0) == []
    assert admitted(math.nan) == []


@given(
    levels=st.dictionaries(
        st.text(min_size=1, max_size=8),
        st.floats(0.0, 1.0, exclude_min=True),
        min_size=1,
        max_size=6,
    ),
    load=st.floats(-1.0, 2.0),
)
def test_shedding_a_higher_class_sheds_every_lower_class(
    levels: dict[str, float], load: float
) -> None:
    shedder = PriorityShedder(levels)
    decisions = [shedder.admit(0.0, name, load) for name in shedder.classes]
    # classes runs from most to least protected: once one is shed, all after it are.
    for i, admitted in enumerate(decisions):
        if not admitted:
            assert not any(decisions[i:])
    assert decisions == [load < levels[name] for name in shedder.classes]


def test_unknown_priority_lists_the_valid_classes() -> None:
    with pytest.raises(ConfigError) as info:
        PriorityShedder.sync_first().admit(0.0, "batch", 0.1)
    assert info.value.field == "priority"
    for name in ("sync", "async", "background"):
        assert repr(name) in str(info.value)


def test_priority_levels_are_read_only_copies() -> None:
    source = {"a": 0.5}
    shedder = PriorityShedder(source)
    source["a"] = 0.9
    assert shedder.levels["a"] == 0.5
    with pytest.raises(TypeError):
        shedder.levels["a"] = 0.1  # type: ignore[index]


# -- AdaptiveThrottle ---------------------------------------------------------------------------


@given(
    accepts=st.integers(0, 500),
    rejects=st.integers(0, 1000),
    k=st.floats(1.0, 4.0),
)
def test_throttle_probability_formula(accepts: int, rejects: int, k: float) -> None:
    throttle = AdaptiveThrottle(k=k)
    for i in range(accepts):
        throttle.record(i * 0.01, True)
    for i in range(rejects):
        throttle.record(i * 0.01, False)
    requests = accepts + rejects
    assert throttle.counts(10.0) == (requests, accepts)
    probability = throttle.reject_probability(10.0)
    assert probability == pytest.approx(max(0.0, (requests - k * accepts) / (requests + 1)))
    if k * accepts >= requests:
        assert probability == 0.0
        rng = random.Random(1)
        assert all(throttle.allow(10.0, rng) for _ in range(200))


def test_throttle_probability_rises_toward_one_when_everything_is_rejected() -> None:
    throttle = AdaptiveThrottle()
    previous = throttle.reject_probability(0.0)
    assert previous == 0.0
    for n in range(1, 1001):
        throttle.record(n * 0.01, False)
        probability = throttle.reject_probability(n * 0.01)
        assert probability > previous
        previous = probability
    assert previous == pytest.approx(1000 / 1001)


def test_throttle_local_rejections_count_as_requests() -> None:
    throttle = AdaptiveThrottle()
    for _ in range(100):
        throttle.record(0.0, False)
    rng = random.Random(7)
    local = sum(not throttle.allow(1.0, rng) for _ in range(1000))
    assert local > 900
    assert throttle.counts(1.0) == (100 + local, 0)


def test_throttle_draws_exactly_once_per_allow() -> None:
    throttle = AdaptiveThrottle()
    for _ in range(10):
        throttle.record(0.0, True)
    for _ in range(15):
        throttle.record(0.0, False)
    rng, twin = random.Random(3), random.Random(3)
    for _ in range(100):
        throttle.allow(0.5, rng)
        twin.random()
    assert rng.random() == twin.random()


def test_throttle_window_forgets_old_counts() -> None:
    throttle = AdaptiveThrottle(k=2.0, window=120.0, buckets=120)
    for _ in range(50):
        throttle.record(0.5, False)
    for _ in range(30):
        throttle.record(60.5, False)
    assert throttle.counts(119.9) == (80, 0)
    assert throttle.counts(120.0) == (30, 0)  # the slice [0, 1) has aged out
    assert throttle.counts(180.0) == (0, 0)
    assert throttle.reject_probability(180.0) == 0.0
    # A jump longer than the window clears everything at once.
    throttle.record(200.0, False)
    assert throttle.counts(10_000.0) == (0, 0)


def test_throttle_books_a_late_time_into_the_newest_slice() -> None:
    throttle = AdaptiveThrottle(window=10.0, buckets=10)
    throttle.record(5.5, True)
    throttle.record(2.0, False)  # the clock stepped back
    assert throttle.counts(5.9) == (2, 1)
    assert throttle.counts(14.9) == (2, 1)  # the slice [5, 6) lives until 15
    assert throttle.counts(15.0) == (0, 0)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_throttle_empirical_rejection_rate_matches_the_formula(seed: int) -> None:
    # Backend accepts 1 in 5: requests - 2 * accepts > 0, so the throttle sheds. Local
    # rejections move the probability, so compare against the sum of the probabilities that
    # were in force at each draw (its expectation), within four standard deviations.
    throttle = AdaptiveThrottle()
    backend = random.Random(seed * 1000)
    rng = random.Random(seed)
    expected = variance = 0.0
    rejected = 0
    n = 20_000
    for i in range(n):
        now = i * 0.001
        probability = throttle.reject_probability(now)
        expected += probability
        variance += probability * (1.0 - probability)
        if throttle.allow(now, rng):
            throttle.record(now, backend.random() < 0.2)
        else:
            rejected += 1
    assert expected > 0.1 * n
    assert abs(rejected - expected) <= 4 * math.sqrt(variance)


# -- configuration errors -----------------------------------------------------------------------

CONFIG_ERRORS: list[tuple[Any, dict[str, Any], str]] = [
    (QueueLimit, {"max_queue": 0}, "max_queue"),
    (QueueLimit, {"max_queue": 2.5}, "max_queue"),
    (QueueLimit, {"max_queue": True}, "max_queue"),
    (QueueRate, {"max_queue": 0, "rate": 1.0}, "max_queue"),
    (QueueRate, {"max_queue": 5, "rate": 1.0, "soft_queue": -1}, "soft_queue"),
    (QueueRate, {"max_queue": 5, "rate": 1.0, "soft_queue": 6}, "soft_queue"),
    (QueueRate, {"max_queue": 5, "rate": 0.0}, "rate"),
    (QueueRate, {"max_queue": 5, "rate": math.nan}, "rate"),
    (QueueRate, {"max_queue": 5, "rate": 1.0, "burst": 0.5}, "burst"),
    (CoDel, {"target": 0.0}, "target"),
    (CoDel, {"target": math.inf}, "target"),
    (CoDel, {"interval": -1.0}, "interval"),
    (CoDel, {"target": 0.2, "interval": 0.1}, "target"),
    (AdaptiveLifo, {"codel": "codel"}, "codel"),
    (PriorityShedder, {"levels": {}}, "levels"),
    (PriorityShedder, {"levels": [("sync", 1.0)]}, "levels"),
    (PriorityShedder, {"levels": {"": 0.5}}, "levels"),
    (PriorityShedder, {"levels": {"sync": 0.0}}, "levels['sync']"),
    (PriorityShedder, {"levels": {"sync": 1.5}}, "levels['sync']"),
    (PriorityShedder, {"levels": {"sync": math.nan}}, "levels['sync']"),
    (PriorityShedder, {"levels": {"sync": "high"}}, "levels['sync']"),
    (AdaptiveThrottle, {"k": 0.5}, "k"),
    (AdaptiveThrottle, {"k": math.inf}, "k"),
    (AdaptiveThrottle, {"window": 0.0}, "window"),
    (AdaptiveThrottle, {"buckets": 0}, "buckets"),
    (AdaptiveThrottle, {"buckets": 1.5}, "buckets"),
]


@pytest.mark.parametrize(("kind", "kwargs", "field"), CONFIG_ERRORS)
def test_config_errors_name_their_field(kind: Any, kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        kind(**kwargs)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
