"""lambda-2025: an under-scaled Lambda fleet, synchronous vs queued work (us-east-1, 20 Oct 2025).

Replays the Lambda paragraph of ``shared/seeds/aws-2025-10-dynamodb-us-east-1.txt`` ("Other AWS
Services"). Time 0 is 7:04 AM PDT: "Starting at 7:04 AM, NLB health check failures triggered
instance terminations leaving a subset of Lambda internal systems under-scaled."

The model is :class:`~stormproof.sim.parts.worker_fleet.WorkerFleet`: a fleet whose capacity
drops by ``capacity_lost_fraction`` over ``loss_ramp_s``, stays down while EC2 launches are
impaired, and comes back between 10:37 AM (launches succeed again) and 11:27 AM ("sufficient
capacity was restored"). It serves synchronous invocations and two queued classes, asynchronous
invocations (``async``) and event-source mappings (``background``), whose pollers push up to
``poll_factor`` times their normal rate while a backlog exists.

Policies: ``no_fix`` (no priorities: every class gets the same share of what it offers),
``as_happened`` (the operators throttle event-source mappings and asynchronous invocations with
token buckets at ``throttle_at_s``, relax the throttle in steps from 11:27 AM), the fixes
``priority_shedding`` (:meth:`PriorityShedder.sync_first
<stormproof.policies.admission.PriorityShedder.sync_first>` asked per invocation) and
``poller_backoff`` (an :class:`~stormproof.policies.concurrency.AIMDLimit` on each class's
pollers), and ``all_fixes`` (both). Arrivals come from one stream no policy draws from.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping

from stormproof.errors import ConfigError
from stormproof.policies.admission import PriorityShedder
from stormproof.policies.concurrency import AIMDLimit
from stormproof.policies.ratelimit import TokenBucket
from stormproof.sim.kernel import Simulation
from stormproof.sim.metrics import BucketCounters
from stormproof.sim.parts.worker_fleet import InvocationClass, WorkerFleet
from stormproof.sim.scenario import Param, RunResult, Scenario
from stormproof.sim.scenarios.nlb_2025 import impact_timeline

__all__ = ["Lambda2025", "StepCapacity"]

_R = "seeds/aws-2025-10-dynamodb-us-east-1.txt"
_L = f"{_R}, Other AWS Services (Lambda)"

_SHED = frozenset({"priority_shedding", "all_fixes"})
_BACKOFF = frozenset({"poller_backoff", "all_fixes"})


class StepCapacity:
    """Capacity over time: full, down by ``lost`` over ``ramp_s`` from 0, back between two times.

    ``capacity(now)`` is in invocations per second: ``full * (1 - lost * down(now))`` where
    ``down`` rises linearly from 0 to 1 over ``[0, ramp_s]`` and falls linearly from 1 to 0 over
    ``[restore_start, restore_done]``.
    """

    __slots__ = ("full", "lost", "ramp_s", "restore_done", "restore_start")

    def __init__(
        self, full: float, lost: float, ramp_s: float, restore_start: float, restore_done: float
    ) -> None:
        self.full = full
        self.lost = lost
        self.ramp_s = ramp_s
        self.restore_start = restore_start
        self.restore_done = restore_done

    def __call__(self, now: float) -> float:
        """Invocations per second at ``now``."""
        down = 1.0 if self.ramp_s <= 0.0 else min(1.0, max(0.0, now / self.ramp_s))
        if now >= self.restore_done:
            down = 0.0
        elif now > self.restore_start:
            down *= (self.restore_done - now) / (self.restore_done - self.restore_start)
        return self.full * (1.0 - self.lost * down)


class Lambda2025(Scenario):
    """Lambda under-scaled after NLB-triggered terminations: protect sync, then drain."""

    name = "lambda-2025"
    description = (
        "Under-scaled Lambda fleet: sync vs async/ESM priorities (AWS us-east-1, Oct 2025)"
    )
    policies = ("no_fix", "as_happened", "priority_shedding", "poller_backoff", "all_fixes")
    stuck_rule = (
        "still customer-impacting within the last recovery_hold_s of the horizon "
        "(time_to_recover_s is null), or the backlog not drained by the horizon"
    )
    series_bucket_s = 60.0
    params = (
        Param(
            "capacity_per_s",
            20,
            "full fleet capacity, invocations per second",
            "assumed: scaled down for speed; the normal load (7/s) is 35 % of it",
            0.01,
        ),
        Param(
            "sync_rate",
            4.5,
            "synchronous invocations per second",
            f"assumed; {_L}: 'latency-sensitive synchronous invocations'",
            0,
        ),
        Param(
            "async_rate",
            1.5,
            "asynchronous invocations per second (queued)",
            f"assumed; {_L}: 'asynchronous invocations'",
            0,
        ),
        Param(
            "esm_rate",
            1.0,
            "event-source-mapping invocations per second (queued in SQS/Kinesis)",
            f"assumed; {_L}: 'Lambda Event Source Mappings'",
            0,
        ),
        Param(
            "poll_factor",
            3,
            "pollers offer up to this many times a class's normal rate while it has a backlog",
            "assumed: pollers scale up to work a backlog off",
            1,
        ),
        Param(
            "service_s",
            0.1,
            "mean service time of an invocation (latency model)",
            "assumed: a short function",
            0.001,
        ),
        Param(
            "capacity_lost_fraction",
            0.7,
            "share of capacity lost to the terminations",
            f"assumed; {_L}: 'instance terminations leaving a subset of Lambda internal systems "
            "under-scaled' -- enough that sync alone nearly fills what is left",
            0,
            1,
        ),
        Param(
            "loss_ramp_s",
            600,
            "seconds over which the capacity is lost",
            "assumed: terminations over ten minutes",
            0,
        ),
        Param(
            "restore_start_s",
            12780,
            "capacity starts coming back (s after 7:04 AM)",
            f"{_R}: 'instance launches began to succeed from 10:37 AM' (3 h 33 min)",
            0,
        ),
        Param(
            "restore_done_s",
            15780,
            "capacity fully back (s after 7:04 AM)",
            f"{_L}: 'By 11:27 AM, sufficient capacity was restored, and errors subsided' "
            "(4 h 23 min)",
            0,
        ),
        Param(
            "throttle_at_s",
            1800,
            "as_happened: async and event-source mappings throttled (s after 7:04 AM)",
            f"assumed: the report gives no time; {_L}: 'With EC2 launches still impaired, we "
            "throttled Lambda Event Source Mappings and asynchronous invocations'",
            0,
        ),
        Param(
            "throttle_fraction",
            0.1,
            "as_happened: throttled rate as a share of each class's normal rate",
            "assumed",
            0.001,
            1,
        ),
        Param(
            "throttle_release_s",
            7200,
            "as_happened: from 11:27 AM the throttle is raised in steps towards the pollers' "
            "reach over this long, then lifted",
            f"assumed; {_L}: 'We then gradually reduced throttling and processed all backlogs "
            "by 2:15 PM'",
            0,
        ),
        Param(
            "shed_async_at",
            0.8,
            "priority_shedding: async is shed at or above this load",
            "PriorityShedder.sync_first() (assumed thresholds; order from the report)",
            0.01,
            1,
        ),
        Param(
            "shed_background_at",
            0.6,
            "priority_shedding: event-source mappings are shed at or above this load",
            "PriorityShedder.sync_first() (assumed thresholds; order from the report)",
            0.01,
            1,
        ),
        Param(
            "impact_error_rate",
            0.01,
            "a minute is impacting above this share of synchronous calls throttled",
            "assumed",
            0,
            1,
        ),
        Param(
            "latency_slo_s",
            1.0,
            "a minute is impacting above this mean synchronous response time",
            "assumed: ten service times",
            0.001,
        ),
        Param(
            "async_delay_slo_s",
            900,
            "a minute is impacting when the oldest queued invocation is older than this",
            "assumed: a quarter of an hour of delay is noticed",
            1,
        ),
        Param(
            "recovery_hold_s",
            1800,
            "recovered only if no impacted minute follows for this long before the horizon",
            "assumed: half an hour",
            0,
        ),
        Param("step_s", 10, "step of the fluid model (s)", "assumed", 1),
        Param(
            "horizon_s",
            28800,
            "simulated seconds (to 3:04 PM)",
            f"assumed: past {_L}: 'processed all backlogs by 2:15 PM' (7 h 11 min)",
            60,
        ),
    )

    def check(self, params: Mapping[str, float]) -> None:
        """The restoration must come after the loss starts and end after it begins."""
        if params["restore_done_s"] < params["restore_start_s"]:
            raise ConfigError(
                "restore_done_s", "must be >= restore_start_s", params["restore_done_s"]
            )
        if params["shed_background_at"] > params["shed_async_at"]:
            raise ConfigError(
                "shed_background_at",
                "must be <= shed_async_at (event-source mappings are shed first)",
                params["shed_background_at"],
            )

    def shedder(self, params: Mapping[str, float]) -> PriorityShedder:
        """The priority shedder of ``priority_shedding`` (a new object per run)."""
        return PriorityShedder(
            {
                "sync": 1.0,
                "async": params["shed_async_at"],
                "background": params["shed_background_at"],
            }
        )

    def run(
        self, params: Mapping[str, float], policy: str, seed: int, *, series: bool = False
    ) -> RunResult:
        """Run the Lambda timeline once under ``policy``."""
        self.check_policy(policy)
        sim = Simulation(seed, max_events=self.max_events)
        horizon = params["horizon_s"]
        dt = params["step_s"]
        metrics = BucketCounters(60.0)
        classes = (
            InvocationClass("async", params["async_rate"], params["poll_factor"]),
            InvocationClass("background", params["esm_rate"], params["poll_factor"]),
        )

        def poller_limit(c: InvocationClass) -> AIMDLimit:
            reach = max(1, math.ceil(c.poll_factor * c.rate * dt))
            return AIMDLimit(initial=reach, min_limit=1, max_limit=reach)

        fleet = WorkerFleet(
            sim,
            capacity=StepCapacity(
                params["capacity_per_s"],
                params["capacity_lost_fraction"],
                params["loss_ramp_s"],
                params["restore_start_s"],
                params["restore_done_s"],
            ),
            sync_rate=params["sync_rate"],
            queued=classes,
            service_s=params["service_s"],
            step_s=dt,
            shedder=self.shedder(params) if policy in _SHED else None,
            poller_limits=poller_limit if policy in _BACKOFF else None,
            metrics=metrics,
            horizon=horizon,
        )
        fleet.start()
        if policy == "as_happened":
            self._operators(sim, fleet, classes, params)
        sim.run(until=horizon)
        return self._result(params, policy, seed, sim, fleet, metrics, series)

    def _operators(
        self,
        sim: Simulation,
        fleet: WorkerFleet,
        classes: tuple[InvocationClass, ...],
        params: Mapping[str, float],
    ) -> None:
        """The report's throttle, then its gradual relaxation from 11:27 AM.

        Throttled to ``throttle_fraction`` of each class's normal rate; from ``restore_done_s``
        raised in three steps towards the pollers' reach (``poll_factor`` times the normal
        rate), ``throttle_release_s / 4`` apart, and lifted at the fourth.
        """
        dt = params["step_s"]
        horizon = params["horizon_s"]
        fraction = params["throttle_fraction"]
        reach = params["poll_factor"]
        relax_at = params["restore_done_s"]
        stages = 4
        for c in classes:
            schedule = [(params["throttle_at_s"], fraction)]
            for k in range(1, stages):
                share = fraction + (reach - fraction) * k / stages
                schedule.append((relax_at + params["throttle_release_s"] * (k - 1) / stages, share))
            # The last stage lifts the throttle altogether.
            schedule.append((relax_at + params["throttle_release_s"] * (stages - 1) / stages, 0.0))
            for at, share in schedule:
                if at >= horizon:
                    continue
                limiter = (
                    TokenBucket(share * c.rate, max(1.0, share * c.rate * dt))
                    if share > 0.0
                    else None
                )
                sim.at(at, fleet.set_limiter, c.name, limiter)

    def _result(
        self,
        params: Mapping[str, float],
        policy: str,
        seed: int,
        sim: Simulation,
        fleet: WorkerFleet,
        metrics: BucketCounters,
        series: bool,
    ) -> RunResult:
        horizon = params["horizon_s"]
        minutes = math.ceil(horizon / 60.0)
        sync = metrics.series("sync", minutes)
        rejected = metrics.series("sync_rejected", minutes)
        latency_sum = metrics.series("sync_latency_sum", minutes)
        admitted = metrics.series("sync_admitted", minutes)
        ages = metrics.series("oldest_age_s", minutes)
        backlog = metrics.series("backlog", minutes)
        error_rate = [r / s if s else 0.0 for r, s in zip(rejected, sync, strict=True)]
        mean_latency = [
            total / count if count else 0.0
            for total, count in zip(latency_sum, admitted, strict=True)
        ]
        sync_bad = [
            e > params["impact_error_rate"] or m > params["latency_slo_s"]
            for e, m in zip(error_rate, mean_latency, strict=True)
        ]
        async_bad = [age > params["async_delay_slo_s"] for age in ages]
        # Customer-facing impact is what the report calls "API errors and latencies"; recovery
        # also waits for the queued work ("processed all backlogs by 2:15 PM").
        _, recover = impact_timeline(
            [a or b for a, b in zip(sync_bad, async_bad, strict=True)],
            horizon,
            params["recovery_hold_s"],
        )
        impact = float(sum(sync_bad))
        drained_level = 60.0 * (params["async_rate"] + params["esm_rate"])
        over = [m for m, size in enumerate(backlog) if size > drained_level]
        if not over:
            drained = 0.0
        elif over[-1] == minutes - 1:
            drained = math.nan
        else:
            drained = (over[-1] + 1) * 60.0
        result_metrics = {
            "time_to_recover_s": recover,
            "recovered": 0.0 if math.isnan(recover) else 1.0,
            "impact_minutes": impact,
            "async_delay_minutes": float(sum(async_bad)),
            "sync_error_rate": fleet.sync_rejected / fleet.sync_offered
            if fleet.sync_offered
            else 0.0,
            "sync_latency_p99_s": fleet.sync_latency_percentile(0.99),
            "sync_latency_p50_s": fleet.sync_latency_percentile(0.50),
            "async_backlog_peak": fleet.peak_backlog,
            "async_drain_time_s": drained,
            "async_max_age_s": fleet.peak_age,
        }
        series_out: dict[str, list[float]] = {}
        if series:
            series_out = {
                "capacity": metrics.series("capacity", minutes),
                "sync_error_rate": error_rate,
                "sync_mean_latency_s": mean_latency,
                "backlog": backlog,
                "oldest_age_s": ages,
                "utilisation": metrics.series("utilisation", minutes),
                "queued_served": metrics.series("queued_served", minutes),
            }
        return RunResult(
            scenario=self.name,
            policy=policy,
            seed=seed,
            stuck=math.isnan(recover) or math.isnan(drained),
            metrics=result_metrics,
            trace_hash=hashlib.blake2b(
                f"{sim.trace_hash()}:{fleet.digest()}".encode(), digest_size=16
            ).hexdigest(),
            series=series_out,
        )
