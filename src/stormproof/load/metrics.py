"""Per-request records and per-burst metrics: success, latency, shedding and time to recover.

Every number is computed from :class:`RequestRecord` s, which the runner fills in, so the
metrics can be checked on constructed records.

**Outcomes.** A request is

* ``shed`` when the answer is ``429`` or ``503`` (the target refused it to protect itself;
  ``Retry-After`` is recorded when sent);
* ``error`` when there was no answer (connection error, client timeout), or the answer is another
  ``5xx`` or ``408``;
* ``ok`` otherwise: ``2xx``, ``3xx`` and the other ``4xx`` answers. A ``400`` for an invalid
  event is the service doing its job, not a failure of the service.

**Latency** is measured from the time the request was *due* (its scheduled arrival), not from
when it was sent: if the load generator falls behind, the delay shows up as latency instead
of being silently left out (the "coordinated omission" that closed-loop generators suffer).

**Baseline.** The requests due in the baseline window, by default ``[0, start of the first
burst)`` -- the idle lead-in of a burst shape. From them: ``p50`` (median latency of ``ok``
requests) and ``error_rate`` (share not ``ok``). It needs at least ``min_baseline`` ``ok``
requests; otherwise there is no baseline and no recovery time.

**Healthy window.** Time after a burst is cut into consecutive windows of ``window`` seconds,
``[end + i*window, end + (i+1)*window)``, each holding the requests *due* in it. A window is
healthy when it holds at least one request, its share of non-``ok`` requests is at most
``baseline error_rate + error_tolerance``, and the median latency of its ``ok`` requests is at
most ``max(latency_factor * baseline p50, baseline p50 + latency_slack)``. Windows without
requests are skipped (no evidence either way).

**Time to recover** of a burst ending at ``end``: ``i * window`` for the smallest ``i`` such that
window ``i`` and every later non-empty window up to the next burst's start (or the end of the run)
are healthy. ``0`` means the first window after the burst was already healthy. The true
recovery instant lies in ``(end + (i-1)*window, end + i*window]``: the figure is an upper bound
with resolution ``window``. ``None`` means not recovered before the next burst (or the end),
or not measurable (no baseline, no requests after the burst).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from stormproof._validate import finite_above, finite_at_least, int_at_least
from stormproof.errors import ConfigError
from stormproof.load.shapes import RatePlan
from stormproof.sim.stats import percentile

__all__ = [
    "Baseline",
    "BurstMetrics",
    "LoadAnalysis",
    "RecoveryCriteria",
    "RequestRecord",
    "analyze",
    "outcome",
]


@dataclass(slots=True)
class RequestRecord:
    """What happened to one request; times are seconds since the start of the run.

    Attributes:
        index: the planned request's index.
        kind: ``new``, ``duplicate`` or ``invalid`` (from the plan).
        due: when it was scheduled to arrive.
        sent: when the generator actually sent it.
        finished: when the answer (or the error) came; ``None`` if cut off at the end.
        status: the HTTP status, or ``None`` when there was no answer.
        error: the exception's type name when there was no answer.
        retry_after: seconds from a ``Retry-After`` header (delta-seconds or HTTP date).
        key: the idempotency key sent.
        priority: the priority class sent.
        replayed: the answer carried ``Idempotent-Replayed: true``.
    """

    index: int
    kind: str
    due: float
    sent: float
    finished: float | None
    status: int | None
    error: str | None = None
    retry_after: float | None = None
    key: str | None = None
    priority: str | None = None
    replayed: bool = False

    @property
    def latency(self) -> float | None:
        """Seconds from due to finished (``None`` if it never finished)."""
        return None if self.finished is None else self.finished - self.due

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "index": self.index,
            "kind": self.kind,
            "due": round(self.due, 6),
            "sent": round(self.sent, 6),
            "finished": None if self.finished is None else round(self.finished, 6),
            "status": self.status,
            "error": self.error,
            "retry_after": self.retry_after,
            "key": self.key,
            "priority": self.priority,
            "replayed": self.replayed,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RequestRecord:
        """Rebuild a record from :meth:`to_json`'s form."""
        return cls(**data)


def outcome(record: RequestRecord) -> str:
    """``ok``, ``shed`` or ``error`` (see the module docstring)."""
    status = record.status
    if status is None:
        return "error"
    if status in (429, 503):
        return "shed"
    if status >= 500 or status == 408:
        return "error"
    return "ok"


@dataclass(frozen=True, slots=True)
class RecoveryCriteria:
    """When a window after a burst counts as back to baseline (see the module docstring).

    Args:
        window: seconds per window (the resolution of the time to recover).
        latency_factor: a window's median may be up to this multiple of the baseline median...
        latency_slack: ...or the baseline median plus this many seconds, whichever is larger
            (so a 2 ms baseline does not make 5 ms of jitter an incident).
        error_tolerance: a window's non-ok share may exceed the baseline's by this much.
        min_baseline: ``ok`` requests the baseline needs.
        baseline: an explicit ``(start, end)`` baseline window; default before the first burst.
    """

    window: float = 1.0
    latency_factor: float = 2.0
    latency_slack: float = 0.025
    error_tolerance: float = 0.05
    min_baseline: int = 5
    baseline: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        finite_above("window", self.window, 0.0)
        finite_at_least("latency_factor", self.latency_factor, 1.0)
        finite_at_least("latency_slack", self.latency_slack, 0.0)
        finite_at_least("error_tolerance", self.error_tolerance, 0.0)
        int_at_least("min_baseline", self.min_baseline, 1)
        if self.baseline is not None:
            start, end = self.baseline
            finite_at_least("baseline.start", start, 0.0)
            finite_above("baseline.end", end, start)


@dataclass(frozen=True, slots=True)
class Baseline:
    """The reference the recovery is measured against."""

    start: float
    end: float
    requests: int
    ok: int
    p50: float | None
    error_rate: float | None
    latency_limit: float | None
    error_limit: float | None
    note: str = ""

    @property
    def usable(self) -> bool:
        """Whether recovery can be judged against it."""
        return self.latency_limit is not None and self.error_limit is not None


@dataclass(frozen=True, slots=True)
class BurstMetrics:
    """What one burst did to the target.

    ``p50``/``p99`` are latencies of the ``ok`` requests due during the burst; ``success_rate``
    is ``ok / requests`` (``None`` without requests). ``shed_with_retry_after`` counts the shed
    answers that said when to come back.
    """

    index: int
    start: float
    end: float
    requests: int
    ok: int
    shed: int
    errors: int
    shed_with_retry_after: int
    success_rate: float | None
    p50: float | None
    p99: float | None
    time_to_recover: float | None
    recovery_note: str = ""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class LoadAnalysis:
    """Everything :func:`analyze` computes."""

    criteria: RecoveryCriteria
    baseline: Baseline
    bursts: tuple[BurstMetrics, ...]
    totals: dict[str, int]
    statuses: dict[str, int]
    p50: float | None
    p99: float | None
    shed_without_retry_after: int
    series: dict[str, list[float]] = field(default_factory=dict)
    bin_width: float = 1.0

    def all_recovered(self) -> bool:
        """Whether every burst has a finite time to recover."""
        return all(burst.time_to_recover is not None for burst in self.bursts)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form (series included)."""
        base = self.baseline
        return {
            "criteria": {
                "window": self.criteria.window,
                "latency_factor": self.criteria.latency_factor,
                "latency_slack": self.criteria.latency_slack,
                "error_tolerance": self.criteria.error_tolerance,
                "min_baseline": self.criteria.min_baseline,
                "baseline": self.criteria.baseline,
            },
            "baseline": {name: getattr(base, name) for name in base.__slots__},
            "bursts": [burst.to_json() for burst in self.bursts],
            "totals": self.totals,
            "statuses": self.statuses,
            "p50": self.p50,
            "p99": self.p99,
            "shed_without_retry_after": self.shed_without_retry_after,
            "all_recovered": self.all_recovered(),
            "bin_width": self.bin_width,
            "series": self.series,
        }


def _quantile(values: Sequence[float], q: float) -> float | None:
    return None if not values else percentile(values, q)


def _ok_latencies(records: Sequence[RequestRecord]) -> list[float]:
    return [latency for r in records if outcome(r) == "ok" and (latency := r.latency) is not None]


def _baseline(
    records: Sequence[RequestRecord], plan: RatePlan, criteria: RecoveryCriteria
) -> Baseline:
    if criteria.baseline is not None:
        start, end = criteria.baseline
    else:
        start, end = 0.0, plan.bursts[0][0] if plan.bursts else plan.duration
    chosen = [r for r in records if start <= r.due < end]
    latencies = _ok_latencies(chosen)
    if len(latencies) < criteria.min_baseline:
        return Baseline(
            start,
            end,
            len(chosen),
            len(latencies),
            _quantile(latencies, 0.5),
            None,
            None,
            None,
            f"{len(latencies)} ok request(s) in the baseline window, "
            f"{criteria.min_baseline} needed: give the shape an idle lead-in with traffic",
        )
    p50 = percentile(latencies, 0.5)
    error_rate = 1.0 - len(latencies) / len(chosen)
    return Baseline(
        start,
        end,
        len(chosen),
        len(latencies),
        p50,
        error_rate,
        max(criteria.latency_factor * p50, p50 + criteria.latency_slack),
        error_rate + criteria.error_tolerance,
    )


def _healthy(window: Sequence[RequestRecord], baseline: Baseline) -> bool:
    assert baseline.latency_limit is not None and baseline.error_limit is not None
    latencies = _ok_latencies(window)
    if 1.0 - len(latencies) / len(window) > baseline.error_limit + 1e-12:
        return False
    return bool(latencies) and percentile(latencies, 0.5) <= baseline.latency_limit


def _recovery(
    after: Sequence[RequestRecord],
    end: float,
    horizon: float,
    baseline: Baseline,
    criteria: RecoveryCriteria,
) -> tuple[float | None, str]:
    if not baseline.usable:
        return None, "no baseline"
    if not after:
        return None, "no requests after the burst"
    width = criteria.window
    count = max(1, math.ceil((horizon - end) / width - 1e-9))
    windows: list[list[RequestRecord]] = [[] for _ in range(count)]
    for record in after:
        windows[min(count - 1, int((record.due - end) / width))].append(record)
    recovered_at: int | None = None
    for index, window in enumerate(windows):
        if not window:
            continue
        if _healthy(window, baseline):
            if recovered_at is None:
                recovered_at = index
        else:
            recovered_at = None
    if recovered_at is None:
        return None, "not back to baseline before the next burst or the end of the run"
    return recovered_at * width, ""


def analyze(
    records: Sequence[RequestRecord],
    plan: RatePlan,
    criteria: RecoveryCriteria | None = None,
    *,
    bin_width: float = 1.0,
) -> LoadAnalysis:
    """Compute the baseline, the per-burst metrics, the totals and time series of a run.

    ``bin_width`` sets the resolution of the time series the HTML report plots (offered and
    achieved rate, p50/p99 latency, outcomes per bin, by due time).
    """
    if criteria is None:
        criteria = RecoveryCriteria()
    if not isinstance(criteria, RecoveryCriteria):
        raise ConfigError("criteria", "must be a RecoveryCriteria", criteria)
    finite_above("bin_width", bin_width, 0.0)
    ordered = sorted(records, key=lambda r: (r.due, r.index))
    baseline = _baseline(ordered, plan, criteria)
    dues = [r.due for r in ordered]
    bursts: list[BurstMetrics] = []
    for number, (start, end) in enumerate(plan.bursts):
        following = plan.bursts[number + 1][0] if number + 1 < len(plan.bursts) else plan.duration
        during = _slice(ordered, dues, start, end)
        after = _slice(ordered, dues, end, following)
        kinds = [outcome(r) for r in during]
        latencies = _ok_latencies(during)
        ttr, note = _recovery(after, end, following, baseline, criteria)
        bursts.append(
            BurstMetrics(
                index=number,
                start=start,
                end=end,
                requests=len(during),
                ok=kinds.count("ok"),
                shed=kinds.count("shed"),
                errors=kinds.count("error"),
                shed_with_retry_after=sum(
                    1 for r in during if outcome(r) == "shed" and r.retry_after is not None
                ),
                success_rate=kinds.count("ok") / len(during) if during else None,
                p50=_quantile(latencies, 0.5),
                p99=_quantile(latencies, 0.99),
                time_to_recover=ttr,
                recovery_note=note,
            )
        )
    kinds_all = [outcome(r) for r in ordered]
    statuses: dict[str, int] = {}
    for record in ordered:
        label = str(record.status) if record.status is not None else (record.error or "error")
        statuses[label] = statuses.get(label, 0) + 1
    all_latencies = _ok_latencies(ordered)
    return LoadAnalysis(
        criteria=criteria,
        baseline=baseline,
        bursts=tuple(bursts),
        totals={
            "requests": len(ordered),
            "ok": kinds_all.count("ok"),
            "shed": kinds_all.count("shed"),
            "errors": kinds_all.count("error"),
            "duplicates": sum(1 for r in ordered if r.kind == "duplicate"),
            "invalid": sum(1 for r in ordered if r.kind == "invalid"),
            "replayed": sum(1 for r in ordered if r.replayed),
        },
        statuses=dict(sorted(statuses.items())),
        p50=_quantile(all_latencies, 0.5),
        p99=_quantile(all_latencies, 0.99),
        shed_without_retry_after=sum(
            1 for r in ordered if outcome(r) == "shed" and r.retry_after is None
        ),
        series=_series(ordered, plan, bin_width),
        bin_width=bin_width,
    )


def _slice(
    ordered: Sequence[RequestRecord], dues: Sequence[float], start: float, end: float
) -> list[RequestRecord]:
    import bisect

    return list(ordered[bisect.bisect_left(dues, start) : bisect.bisect_left(dues, end)])


def _series(
    ordered: Sequence[RequestRecord], plan: RatePlan, width: float
) -> dict[str, list[float]]:
    bins = max(1, math.ceil(plan.duration / width - 1e-9))
    grouped: list[list[RequestRecord]] = [[] for _ in range(bins)]
    for record in ordered:
        grouped[min(bins - 1, max(0, int(record.due / width)))].append(record)
    nan = math.nan
    offered = [plan.expected(i * width, (i + 1) * width) / width for i in range(bins)]
    ok = [sum(1 for r in g if outcome(r) == "ok") / width for g in grouped]
    shed = [sum(1 for r in g if outcome(r) == "shed") / width for g in grouped]
    errors = [sum(1 for r in g if outcome(r) == "error") / width for g in grouped]
    p50 = [q if (q := _quantile(_ok_latencies(g), 0.5)) is not None else nan for g in grouped]
    p99 = [q if (q := _quantile(_ok_latencies(g), 0.99)) is not None else nan for g in grouped]
    return {
        "offered_rate": offered,
        "ok_rate": ok,
        "shed_rate": shed,
        "error_rate": errors,
        "p50_ms": [v * 1000 for v in p50],
        "p99_ms": [v * 1000 for v in p99],
    }
