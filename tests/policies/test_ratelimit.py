from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stormproof.errors import ConfigError
from stormproof.policies.ratelimit import (
    GCRA,
    GRANTED,
    KeyedLimiter,
    RateLimiter,
    Rejected,
    TokenBucket,
    Wait,
)

LIMITERS = [TokenBucket, GCRA]


@pytest.mark.parametrize("kind", LIMITERS)
def test_burst_then_rate(kind: type[TokenBucket] | type[GCRA]) -> None:
    limiter = kind(rate=2.0, burst=3.0)
    assert [limiter.acquire(0.0) for _ in range(3)] == [GRANTED] * 3
    refused = limiter.acquire(0.0)
    assert isinstance(refused, Rejected)
    assert refused.retry_after == pytest.approx(0.5)
    assert limiter.acquire(0.5) is GRANTED
    assert isinstance(limiter.acquire(0.5), Rejected)
    assert limiter.acquire(1.0) is GRANTED


@pytest.mark.parametrize("kind", LIMITERS)
def test_wait_reserves_the_permit(kind: type[TokenBucket] | type[GCRA]) -> None:
    limiter = kind(rate=1.0, burst=1.0, max_wait=2.0)
    assert limiter.acquire(0.0) is GRANTED
    first = limiter.acquire(0.0)
    second = limiter.acquire(0.0)
    assert first == Wait(1.0) and second == Wait(2.0)
    third = limiter.acquire(0.0)
    assert isinstance(third, Rejected) and third.retry_after == pytest.approx(3.0)


@pytest.mark.parametrize("kind", LIMITERS)
def test_cost_above_burst_is_always_rejected(kind: type[TokenBucket] | type[GCRA]) -> None:
    decision = kind(rate=1.0, burst=2.0, max_wait=100.0).acquire(0.0, cost=3.0)
    assert isinstance(decision, Rejected)
    assert math.isinf(decision.retry_after) and "exceeds burst" in decision.reason


@pytest.mark.parametrize("kind", LIMITERS)
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rate": 0.0, "burst": 1.0}, "rate"),
        ({"rate": 1.0, "burst": -1.0}, "burst"),
        ({"rate": 1.0, "burst": 1.0, "max_wait": -1.0}, "max_wait"),
        ({"rate": math.inf, "burst": 1.0}, "rate"),
    ],
)
def test_invalid_configuration(
    kind: type[TokenBucket] | type[GCRA], kwargs: dict[str, float], field: str
) -> None:
    with pytest.raises(ConfigError) as excinfo:
        kind(**kwargs)
    assert excinfo.value.field == field


requests = st.lists(
    st.tuples(st.integers(0, 40), st.sampled_from([0.5, 1.0, 2.0])), min_size=1, max_size=80
)


@pytest.mark.parametrize("kind", LIMITERS)
@given(
    requests=requests,
    rate=st.sampled_from([0.5, 1.0, 4.0]),
    burst=st.sampled_from([2.0, 4.0]),
    max_wait=st.sampled_from([0.0, 1.0, 8.0]),
)
@settings(max_examples=120)
def test_grants_never_exceed_burst_plus_rate_times_time(
    kind: type[TokenBucket] | type[GCRA],
    requests: list[tuple[int, float]],
    rate: float,
    burst: float,
    max_wait: float,
) -> None:
    limiter: RateLimiter = kind(rate=rate, burst=burst, max_wait=max_wait)
    now = 0.0
    served: list[tuple[float, float]] = []  # (time the permit may be used, cost)
    for step, cost in requests:
        now += step / 8
        decision = limiter.acquire(now, cost)
        if decision is GRANTED:
            served.append((now, cost))
        elif isinstance(decision, Wait):
            assert 0.0 < decision.delay <= max_wait + 1e-9
            served.append((now + decision.delay, cost))
    served.sort()
    for i, (start, _) in enumerate(served):
        for j in range(i, len(served)):
            end = served[j][0]
            used = sum(cost for _, cost in served[i : j + 1])
            assert used <= burst + rate * (end - start) + 1e-9


@given(requests=requests, rate=st.sampled_from([0.5, 1.0, 4.0]), burst=st.sampled_from([2.0, 4.0]))
@settings(max_examples=120)
def test_gcra_and_token_bucket_make_the_same_decisions(
    requests: list[tuple[int, float]], rate: float, burst: float
) -> None:
    bucket, gcra = TokenBucket(rate, burst, max_wait=2.0), GCRA(rate, burst, max_wait=2.0)
    now = 0.0
    for step, cost in requests:
        now += step / 8
        assert bucket.acquire(now, cost) == gcra.acquire(now, cost)


def test_keyed_limiter_keeps_keys_apart_and_bounds_them() -> None:
    keyed = KeyedLimiter(lambda: TokenBucket(rate=1.0, burst=1.0), max_keys=2)
    assert keyed.acquire("a", 0.0) is GRANTED
    assert isinstance(keyed.acquire("a", 0.0), Rejected)
    assert keyed.acquire("b", 0.0) is GRANTED  # b has its own bucket
    keyed.acquire("a", 0.0)  # a is now the most recently used
    assert keyed.acquire("c", 0.0) is GRANTED  # evicts b, the least recently used
    assert len(keyed) == 2 and keyed.evictions == 1
    assert keyed.acquire("b", 0.0) is GRANTED  # b comes back with a fresh bucket
    with pytest.raises(ConfigError):
        KeyedLimiter(lambda: GCRA(1.0, 1.0), max_keys=0)


@pytest.mark.parametrize("start", [0.1, 0.3, 7.7, 1234.567])
def test_gcra_grants_a_full_burst_at_any_start_time(start: float) -> None:
    gcra = GCRA(rate=10.0, burst=5.0)
    assert [gcra.acquire(start) for _ in range(5)] == [GRANTED] * 5
    assert isinstance(gcra.acquire(start), Rejected)
    assert GCRA(rate=1.0, burst=1.0).acquire(start) is GRANTED


@pytest.mark.parametrize("kind", LIMITERS)
@pytest.mark.parametrize("cost", [0.0, -1.0, math.nan])
def test_a_cost_that_is_not_positive_is_an_error(
    kind: type[TokenBucket] | type[GCRA], cost: float
) -> None:
    with pytest.raises(ConfigError) as excinfo:
        kind(rate=1.0, burst=2.0).acquire(0.0, cost)
    assert excinfo.value.field == "cost"
