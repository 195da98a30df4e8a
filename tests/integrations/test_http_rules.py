"""The rules shared by the HTTP client adapters (stormproof.integrations._http), without I/O."""

from __future__ import annotations

import calendar
import random
import time
from email.utils import formatdate

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stormproof import ConfigError, ManualClock, RetryPolicy
from stormproof.errors import DeadlineExceeded
from stormproof.integrations._http import (
    IDEMPOTENT_METHODS,
    RETRYABLE_STATUSES,
    HostBreakers,
    HttpEngine,
    HttpPolicy,
    TransportFailure,
    origin,
    parse_http_date,
    parse_retry_after,
)
from stormproof.policies.backoff import Constant, Exponential, Jitter
from stormproof.policies.breaker import BreakerConfig, BreakerOpen, BreakerState
from stormproof.policies.budget import RatioBudget
from stormproof.policies.deadline import Deadline, deadline_scope
from stormproof.policies.retry import GiveUp, GiveUpReason, RetryAfter

METHODS = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE", "POST", "PATCH", "CONNECT")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
LONG_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# 1970-01-01 .. 2099-12-31: every instant has one IMF-fixdate rendering.
instants = st.integers(min_value=0, max_value=4_102_444_799)


def engine(clock: ManualClock | None = None, **changes: object) -> HttpEngine:
    policy = HttpPolicy(
        retry=RetryPolicy(max_attempts=5, backoff=Constant(1.0)), breaker=None
    ).replace(**changes)
    return HttpEngine(policy, clock=clock or ManualClock(), wall_time=lambda: 1_000_000.0)


# -- Retry-After and HTTP-date ---------------------------------------------------------------


def test_rfc_examples() -> None:
    # RFC 9110 §5.6.7 and §10.2.3 examples.
    expected = 784111777.0
    assert parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == expected
    assert parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT", now=1.7e9) == expected
    assert parse_http_date("Sun Nov  6 08:49:37 1994") == expected
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Fri, 31 Dec 1999 23:59:59 GMT", now=946684799.0 - 30) == 30.0


@given(st.integers(min_value=0, max_value=10**9))
def test_delay_seconds_round_trip(seconds: int) -> None:
    assert parse_retry_after(str(seconds)) == float(seconds)
    assert parse_retry_after(f"  {seconds} ") == float(seconds)


@given(instants)
def test_imf_fixdate_round_trip(at: int) -> None:
    text = formatdate(at, usegmt=True)  # the standard library's IMF-fixdate
    assert parse_http_date(text) == float(at)


@given(instants)
def test_asctime_round_trip(at: int) -> None:
    parts = time.gmtime(at)
    text = (
        f"{WEEKDAYS[parts.tm_wday]} {MONTHS[parts.tm_mon - 1]} {parts.tm_mday:2d} "
        f"{parts.tm_hour:02d}:{parts.tm_min:02d}:{parts.tm_sec:02d} {parts.tm_year}"
    )
    assert parse_http_date(text) == float(at)


@given(instants, st.integers(min_value=0, max_value=120))
def test_rfc850_round_trip_within_fifty_years(at: int, years_later: int) -> None:
    parts = time.gmtime(at)
    text = (
        f"{LONG_WEEKDAYS[parts.tm_wday]}, {parts.tm_mday:02d}-{MONTHS[parts.tm_mon - 1]}-"
        f"{parts.tm_year % 100:02d} {parts.tm_hour:02d}:{parts.tm_min:02d}:{parts.tm_sec:02d} GMT"
    )
    now = float(calendar.timegm((parts.tm_year + years_later, 6, 15, 0, 0, 0)))
    parsed = parse_http_date(text, now=now)
    assert parsed is not None
    year = time.gmtime(parsed).tm_year
    # A year with those two digits, never more than 50 years ahead (then a century earlier).
    current = parts.tm_year + years_later
    assert year % 100 == parts.tm_year % 100
    assert current - 99 <= year <= current + 50
    if years_later < 50:
        assert parsed == float(at)


@given(instants, instants)
def test_retry_after_date_is_time_until_it_never_negative(at: int, now: int) -> None:
    delay = parse_retry_after(formatdate(at, usegmt=True), now=float(now))
    assert delay == max(0.0, float(at - now))


@given(st.text(max_size=40))
def test_garbage_never_raises(text: str) -> None:
    result = parse_retry_after(text, now=0.0)
    assert result is None or result >= 0.0


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "1.5",
        "-1",
        "+3",
        "1e3",
        "١٢",  # Arabic-Indic digits are digits to Python, not to RFC 9110
        "sun, 06 Nov 1994 08:49:37 GMT",  # the grammar is case-sensitive
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 31 Feb 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun,06 Nov 1994 08:49:37 GMT",
    ],
)
def test_invalid_values(text: str) -> None:
    assert parse_retry_after(text, now=0.0) is None


def test_huge_delay_is_clamped_not_an_error() -> None:
    assert parse_retry_after("9" * 5000) == 1e9


# -- the decision table ----------------------------------------------------------------------


@given(
    st.sampled_from(METHODS) | st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=8),
    st.integers(min_value=100, max_value=599),
    st.booleans(),
)
def test_status_decision_table(method: str, status: int, has_key: bool) -> None:
    call = engine().start(method, "http://h:80", has_key)
    call.begin()
    decision = call.on_response(status)
    retryable = status in RETRYABLE_STATUSES and (method in IDEMPOTENT_METHODS or has_key)
    if status not in RETRYABLE_STATUSES:
        assert decision is None
    elif retryable:
        assert isinstance(decision, RetryAfter) and decision.delay == 1.0
    else:
        assert isinstance(decision, GiveUp) and decision.reason is GiveUpReason.NOT_RETRYABLE


@given(st.sampled_from(METHODS), st.sampled_from(list(TransportFailure)), st.booleans())
def test_error_decision_table(method: str, failure: TransportFailure, has_key: bool) -> None:
    call = engine().start(method, "http://h:80", has_key)
    call.begin()
    decision = call.on_error(ConnectionError("boom"), failure)
    # Not sent: always safe. Sent: only idempotent methods or with a key.
    expected = not failure.sent or method in IDEMPOTENT_METHODS or has_key
    assert isinstance(decision, RetryAfter) is expected


def test_lower_case_method_and_custom_rules() -> None:
    policy = HttpPolicy(
        idempotent_methods=frozenset({"get"}),
        retry_statuses=frozenset({418}),
        idempotency_header=None,
    )
    assert policy.may_retry("GET", False) and not policy.may_retry("PUT", False)
    assert not policy.may_retry("POST", True)  # no header configured: never
    assert policy.is_retryable_status(418) and not policy.is_retryable_status(503)
    assert policy.counts_as_failure(418) and policy.counts_as_failure(501)
    assert not policy.counts_as_failure(404)


def test_unclassified_error_is_not_retried() -> None:
    call = engine().start("GET", "http://h:80", False)
    call.begin()
    decision = call.on_error(ValueError("bad url"), None)
    assert isinstance(decision, GiveUp) and decision.reason is GiveUpReason.NOT_RETRYABLE


def test_not_replayable_body_is_not_retried() -> None:
    call = engine().start("PUT", "http://h:80", False, replayable=lambda: False)
    call.begin()
    assert isinstance(call.on_response(503), GiveUp)


# -- Retry-After honoured ----------------------------------------------------------------------


def test_retry_after_is_a_floor_over_the_backoff() -> None:
    clock = ManualClock()
    http = engine(clock, retry=RetryPolicy(max_attempts=5, backoff=Constant(2.0)))
    call = http.start("GET", "http://h:80", False)
    call.begin()
    shorter = call.on_response(503, "1")
    assert isinstance(shorter, RetryAfter) and shorter.delay == 2.0  # backoff wins
    call.begin()
    longer = call.on_response(503, "5")
    assert isinstance(longer, RetryAfter) and longer.delay == 5.0


def test_retry_after_is_capped_by_max_server_delay() -> None:
    http = engine(
        retry=RetryPolicy(max_attempts=3, backoff=Constant(1.0), max_server_delay=7.0),
        total_timeout=None,
    )
    call = http.start("GET", "http://h:80", False)
    call.begin()
    decision = call.on_response(429, "3600")
    assert isinstance(decision, RetryAfter) and decision.delay == 7.0


def test_retry_after_date_is_read_against_the_response_date() -> None:
    http = engine()
    call = http.start("GET", "http://h:80", False)
    call.begin()
    decision = call.on_response(
        503, "Sun, 06 Nov 1994 08:50:00 GMT", date="Sun, 06 Nov 1994 08:49:37 GMT"
    )
    assert isinstance(decision, RetryAfter) and decision.delay == 23.0


def test_retry_after_date_without_date_header_uses_wall_time() -> None:
    http = engine()  # wall_time() is 1,000,000
    call = http.start("GET", "http://h:80", False)
    call.begin()
    decision = call.on_response(503, formatdate(1_000_012, usegmt=True))
    assert isinstance(decision, RetryAfter) and decision.delay == 12.0


def test_retry_after_beyond_the_total_deadline_gives_up() -> None:
    http = engine(total_timeout=30.0)
    call = http.start("GET", "http://h:80", False)
    call.begin()
    decision = call.on_response(503, "45")
    assert isinstance(decision, GiveUp) and decision.reason is GiveUpReason.DEADLINE


def test_attempt_limit_shrinks_to_the_time_left() -> None:
    clock = ManualClock()
    http = engine(clock, attempt_timeout=10.0, total_timeout=25.0)
    call = http.start("GET", "http://h:80", False)
    assert call.begin() == 10.0
    clock.advance(20.0)
    assert call.begin() == 5.0


def test_context_deadline_bounds_the_request() -> None:
    clock = ManualClock(100.0)
    http = engine(clock, attempt_timeout=10.0, total_timeout=30.0)
    with deadline_scope(Deadline(104.0)):
        call = http.start("GET", "http://h:80", False)
        assert call.begin() == 4.0
    with deadline_scope(Deadline(99.0)), pytest.raises(DeadlineExceeded):
        http.start("GET", "http://h:80", False)


def test_budget_refuses_retries_once_spent() -> None:
    # A reserve of exactly one retry, and requests that add nothing to it.
    budget = RatioBudget(ratio=0.0, min_retries_per_second=0.1, ttl=10.0)
    http = engine(retry=RetryPolicy(max_attempts=3, backoff=Constant(1.0), budget=budget))
    first = http.start("GET", "http://h:80", False)
    first.begin()
    assert isinstance(first.on_response(503), RetryAfter)
    second = http.start("GET", "http://h:80", False)
    second.begin()
    refused = second.on_response(503)
    assert isinstance(refused, GiveUp) and refused.reason is GiveUpReason.BUDGET_EXHAUSTED


def test_exponential_full_jitter_draws_from_the_seeded_rng() -> None:
    backoff = Exponential(base=1.0, factor=2.0, cap=20.0, jitter=Jitter.FULL)
    http = engine(retry=RetryPolicy(max_attempts=3, backoff=backoff, rng=random.Random(7)))
    call = http.start("GET", "http://h:80", False)
    delays = []
    for _ in range(2):
        call.begin()
        decision = call.on_response(502)
        assert isinstance(decision, RetryAfter)
        delays.append(decision.delay)
    expected = random.Random(7)
    assert delays == [expected.random() * 1.0, expected.random() * 2.0]


# -- breakers per origin -----------------------------------------------------------------------


def test_breakers_are_per_origin_and_bounded() -> None:
    config = BreakerConfig(window_size=2, minimum_calls=2, open_duration=10.0)
    breakers = HostBreakers(config, max_hosts=2)
    for _ in range(2):
        breaker = breakers.check("http://a:80", 0.0)
        breakers.record(breaker, 0.0, success=False, duration=0.1)
    assert breakers.state("http://a:80", 0.0) is BreakerState.OPEN
    with pytest.raises(BreakerOpen):
        breakers.check("http://a:80", 1.0)
    breakers.check("http://b:80", 1.0)  # another origin is unaffected
    # A third origin evicts the least recently used *closed* breaker (b), not the open one.
    breakers.check("http://c:80", 1.0)
    assert len(breakers) == 2
    assert "http://a:80" in breakers and "http://b:80" not in breakers


def test_breaker_open_stops_retries_of_a_call() -> None:
    config = BreakerConfig(window_size=2, minimum_calls=2, open_duration=10.0)
    http = engine(breaker=config)
    call = http.start("GET", "http://h:80", False)
    call.begin()
    assert isinstance(call.on_response(503), RetryAfter)
    call.begin()
    decision = call.on_response(503)  # the second failure opens the breaker
    assert isinstance(decision, GiveUp) and "breaker" in decision.detail
    with pytest.raises(BreakerOpen):
        http.start("GET", "http://h:80", False).begin()


def test_origin_key() -> None:
    assert origin("HTTPS", "API.example.com", None) == "https://api.example.com:443"
    assert origin("http", "h", 8080) == "http://h:8080"


# -- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"attempt_timeout": 0.0}, "attempt_timeout"),
        ({"attempt_timeout": 10.0, "total_timeout": 5.0}, "total_timeout"),
        ({"retry": RetryPolicy(total_timeout=3.0)}, "retry"),
        ({"retry": "three"}, "retry"),
        ({"retry_statuses": frozenset({99})}, "retry_statuses"),
        ({"idempotent_methods": frozenset({""})}, "idempotent_methods"),
        ({"idempotency_header": " "}, "idempotency_header"),
        ({"max_hosts": 0}, "max_hosts"),
        ({"breaker": "yes"}, "breaker"),
    ],
)
def test_bad_policy_names_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        HttpPolicy(**changes)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_engine_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="policy"):
        HttpEngine("fast")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="clock"):
        HttpEngine(clock=object())  # type: ignore[arg-type]
