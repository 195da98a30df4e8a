"""Per-burst metrics on constructed records: outcomes, baseline, exact time to recover."""

from __future__ import annotations

import pytest

from stormproof.errors import ConfigError
from stormproof.load import RatePlan, RecoveryCriteria, RequestRecord, analyze, outcome

PLAN = RatePlan(((0.0, 1.0), (2.0, 10.0), (3.0, 1.0)), 6.0, ((2.0, 3.0),))
CRITERIA = RecoveryCriteria(window=0.5, latency_factor=2.0, latency_slack=0.025)


def rec(
    due: float,
    latency: float | None = 0.010,
    status: int | None = 201,
    *,
    retry_after: float | None = None,
    kind: str = "new",
) -> RequestRecord:
    return RequestRecord(
        index=int(due * 1000),
        kind=kind,
        due=due,
        sent=due,
        finished=None if latency is None else due + latency,
        status=status,
        error=None if status is not None else "ConnectError",
        retry_after=retry_after,
    )


def baseline_records() -> list[RequestRecord]:
    return [rec(0.1 + 0.18 * i) for i in range(10)]  # ten ok requests, 10 ms each, in [0, 2)


def burst_records() -> list[RequestRecord]:
    return (
        [rec(2.0 + 0.1 * i, 0.5) for i in range(5)]
        + [rec(2.5 + 0.1 * i, 0.001, 503, retry_after=1.0) for i in range(2)]
        + [rec(2.75, 0.001, 429)]  # shed without Retry-After
        + [rec(2.8, None, None), rec(2.9, 0.3, 500)]
    )


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, "ok"),
        (201, "ok"),
        (302, "ok"),
        (400, "ok"),
        (409, "ok"),
        (408, "error"),
        (429, "shed"),
        (503, "shed"),
        (500, "error"),
        (504, "error"),
        (None, "error"),
    ],
)
def test_outcome_classification(status: int | None, expected: str) -> None:
    assert outcome(rec(1.0, 0.01, status)) == expected


def test_baseline_and_burst_metrics() -> None:
    records = baseline_records() + burst_records() + [rec(3.1), rec(4.1)]
    analysis = analyze(records, PLAN, CRITERIA)
    base = analysis.baseline
    assert (base.start, base.end, base.requests, base.ok) == (0.0, 2.0, 10, 10)
    assert base.p50 == pytest.approx(0.010)
    assert base.error_rate == 0.0
    assert base.latency_limit == pytest.approx(0.035)  # max(2 x 10 ms, 10 ms + 25 ms)
    assert base.error_limit == pytest.approx(0.05)
    (burst,) = analysis.bursts
    assert (burst.requests, burst.ok, burst.shed, burst.errors) == (10, 5, 3, 2)
    assert burst.shed_with_retry_after == 2
    assert burst.success_rate == pytest.approx(0.5)
    assert burst.p50 == pytest.approx(0.5) and burst.p99 == pytest.approx(0.5)
    assert analysis.shed_without_retry_after == 1
    assert analysis.totals["requests"] == 22
    assert analysis.statuses == {"201": 17, "429": 1, "500": 1, "503": 2, "ConnectError": 1}


def after_burst(unhealthy_late: bool = False, last_bad: bool = False) -> list[RequestRecord]:
    records = [
        rec(3.1, 0.2),  # window 0 [3.0, 3.5): too slow
        rec(3.6, 0.001, 503, retry_after=1.0),  # window 1 [3.5, 4.0): shed
        rec(3.7),
        rec(4.1),  # window 2 [4.0, 4.5): healthy
        rec(4.3),
        # window 3 [4.5, 5.0): empty, no evidence either way
        rec(5.2, 0.2 if unhealthy_late else 0.01),  # window 4
        rec(5.7, 0.2 if last_bad else 0.01),  # window 5
    ]
    return baseline_records() + burst_records() + records


def test_time_to_recover_is_the_start_of_the_healthy_suffix() -> None:
    (burst,) = analyze(after_burst(), PLAN, CRITERIA).bursts
    assert burst.time_to_recover == 1.0  # window 2 starts 2 x 0.5 s after the burst


def test_a_relapse_moves_recovery_later() -> None:
    (burst,) = analyze(after_burst(unhealthy_late=True), PLAN, CRITERIA).bursts
    assert burst.time_to_recover == 2.5  # window 5


def test_not_recovered_by_the_end() -> None:
    analysis = analyze(after_burst(last_bad=True), PLAN, CRITERIA)
    (burst,) = analysis.bursts
    assert burst.time_to_recover is None
    assert "not back to baseline" in burst.recovery_note
    assert not analysis.all_recovered()


def test_healthy_at_once_is_zero_and_error_tolerance_is_inclusive() -> None:
    after = [rec(3.0 + 0.025 * i) for i in range(19)] + [rec(3.49, None, None)]
    after += [rec(4.0 + 0.1 * i) for i in range(20)]
    (burst,) = analyze(baseline_records() + burst_records() + after, PLAN, CRITERIA).bursts
    assert burst.time_to_recover == 0.0  # 1 error in 20 = 5 % = 0 % + the 5 % tolerance


def test_recovery_window_ends_at_the_next_burst() -> None:
    plan = RatePlan(
        ((0.0, 1.0), (2.0, 10.0), (3.0, 1.0), (4.0, 10.0), (5.0, 1.0)),
        6.0,
        ((2.0, 3.0), (4.0, 5.0)),
    )
    records = [*baseline_records(), rec(3.2, 0.3), rec(3.7), rec(4.5, 0.9), rec(5.2)]
    first, second = analyze(records, plan, CRITERIA).bursts
    assert first.time_to_recover == 0.5  # the slow request during burst 2 does not count
    assert second.time_to_recover == 0.0


def test_no_baseline_means_no_recovery_time() -> None:
    records = [rec(0.5), rec(1.0), *burst_records(), rec(4.0)]
    analysis = analyze(records, PLAN, CRITERIA)
    assert not analysis.baseline.usable
    assert "2 ok request(s)" in analysis.baseline.note
    assert analysis.bursts[0].time_to_recover is None
    assert analysis.bursts[0].recovery_note == "no baseline"


def test_explicit_baseline_window_and_no_requests_after() -> None:
    criteria = RecoveryCriteria(window=0.5, baseline=(0.0, 1.0), min_baseline=3)
    analysis = analyze(baseline_records() + burst_records(), PLAN, criteria)
    assert analysis.baseline.requests == 6  # due at 0.10, 0.28, ... before 1.0
    assert analysis.bursts[0].recovery_note == "no requests after the burst"


def test_series_and_latency_from_due_time() -> None:
    late = RequestRecord(0, "new", due=1.0, sent=1.4, finished=1.5, status=200)
    assert late.latency == pytest.approx(0.5)  # generator lag counts as latency
    analysis = analyze(baseline_records() + burst_records(), PLAN, CRITERIA, bin_width=1.0)
    assert analysis.series["offered_rate"] == [1.0, 1.0, 10.0, 1.0, 1.0, 1.0]
    assert analysis.series["ok_rate"][0] == 6.0 and analysis.series["shed_rate"][2] == 3.0


def test_criteria_validation() -> None:
    with pytest.raises(ConfigError, match="window"):
        RecoveryCriteria(window=0)
    with pytest.raises(ConfigError, match="latency_factor"):
        RecoveryCriteria(latency_factor=0.5)
    with pytest.raises(ConfigError, match=r"baseline\.end"):
        RecoveryCriteria(baseline=(2.0, 1.0))
