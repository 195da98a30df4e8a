"""network-manager-2025: EC2 Network Manager's propagation backlog (us-east-1, 20 October 2025).

Source: the EC2 section of the AWS report (``shared/seeds/aws-2025-10-dynamodb-us-east-1.txt``).
Time 0 is 11:48 PM PDT on 19 October, as in ``dwfm-2025``. At 5:28 AM, "shortly after the
recovery of DWFM, Network Manager began propagating updated network configurations to newly
launched instances and instances that had been terminated during the event"; "at 6:21 AM,
Network Manager started to experience increased latencies"; "Engineers worked to reduce the
load on Network Manager"; "By 10:36 AM, network configuration propagation times had returned to
normal levels".

The model (:mod:`stormproof.sim.parts.propagation`): from 5:28 AM, the delayed propagations are
handed over at a fixed rate and new launches arrive at the throttled launch rate ("request
throttling ... to reduce overall request load", removed from 11:23 AM). Propagation slows as the
working set grows, so past a tipping point the backlog feeds itself (``no_fix``). The operators
(``as_happened``) cap Network Manager's intake below the launch rate once the hand-over is done,
so the working set drains (refused launches fail fast). The fixes: ``queue_admission`` (the
report's "rate limit incoming work based on the size of the waiting queue", a
:class:`~stormproof.policies.admission.QueueRate`), ``priority_launches`` (a
:class:`~stormproof.policies.admission.PriorityShedder` that keeps room for new launches and
holds the backlog upstream), and ``all_fixes``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from stormproof.errors import ConfigError
from stormproof.policies.admission import PriorityShedder, QueueRate
from stormproof.sim.kernel import Simulation
from stormproof.sim.parts.propagation import PropagationManager
from stormproof.sim.scenario import Param, RunResult, Scenario

__all__ = ["NetworkManager2025"]

_R = "AWS 2025 report, EC2"

_ADMISSION = frozenset({"queue_admission", "all_fixes"})
_PRIORITY = frozenset({"priority_launches", "all_fixes"})

#: Seconds after 11:48 PM PDT of the report's times.
DWFM_RECOVERED_S = 20400.0  # 5:28 AM
LATENCY_UP_S = 23580.0  # 6:21 AM
LATENCY_NORMAL_S = 38880.0  # 10:36 AM
RELAX_S = 41700.0  # 11:23 AM
EC2_NORMAL_S = 50520.0  # 1:50 PM


class NetworkManager2025(Scenario):
    """Network Manager's propagation backlog after DWFM recovered, and its fixes."""

    name = "network-manager-2025"
    description = "Network Manager propagation backlog after DWFM recovery (AWS, Oct 2025)"
    policies = ("no_fix", "as_happened", "queue_admission", "priority_launches", "all_fixes")
    stuck_rule = "launch propagation latency still above latency_threshold_s at the horizon"
    series_bucket_s = 60.0
    params = (
        Param(
            "rate",
            50,
            "propagations per second with a small working set",
            "assumed: the report gives no throughput; other rates are relative to it",
            0.001,
        ),
        Param(
            "knee",
            20_000,
            "working-set size at which a propagation takes twice as long",
            f"assumed, calibrated to the report's times; {_R}: 'increased latencies in network "
            "propagation times as it worked to process the backlog'",
            1,
        ),
        Param(
            "exponent",
            1,
            "how steeply propagation cost grows with the working set past the knee",
            "assumed: linear (a steeper exponent makes the runaway too abrupt for the report's "
            "four hours from the 6:21 AM rise to 10:36 AM)",
            0.1,
        ),
        Param(
            "backlog_items",
            210_000,
            "delayed propagations handed over after DWFM recovers",
            f"assumed, calibrated; {_R}: 'a significant backlog of network state propagations' "
            "(launches and terminations since 11:48 PM). Calibrated so that the hand-over ends "
            "(6:55 AM at release_rate) before the operators' cap, and so that without them the "
            "working set at 11:23 AM is past what 16 launches/s let drain (no_fix stuck on every "
            "seed; at 190,000 about half the seeds drain by themselves)",
            0,
            integer=True,
        ),
        Param(
            "release_rate",
            40,
            "delayed propagations handed over per second",
            "assumed, calibrated: with the launches, 96 % of rate: an unstable equilibrium at "
            "a small working set that random bursts tip over within about 30 min (report: 53; "
            "at 39/s, 94 %, it does not tip at all within the horizon)",
            0.001,
        ),
        Param(
            "launch_rate_throttled",
            8,
            "new launches per second while EC2's request throttles are on",
            f"assumed; {_R}: 'request throttling that had been introduced to reduce overall "
            "request load'",
            0,
        ),
        Param(
            "launch_rate",
            16,
            "new launches per second once the throttles are removed",
            "assumed: twice the throttled rate",
            0,
        ),
        Param(
            "dwfm_recovered_s",
            DWFM_RECOVERED_S,
            "seconds after 11:48 PM when propagation work starts (DWFM recovered)",
            f"{_R}: 'At 5:28 AM PDT, shortly after the recovery of DWFM, Network Manager began "
            "propagating' (5 h 40 min)",
            0,
        ),
        Param(
            "relax_at_s",
            RELAX_S,
            "EC2 request throttles removed (launch rate back to normal)",
            f"{_R}: 'at 11:23 AM PDT our engineers began relaxing request throttles' (assumed: "
            "at once)",
            0,
        ),
        Param(
            "load_reduction_at_s",
            25_800,
            "as_happened: operators cap Network Manager's intake",
            f"assumed, calibrated: 6:58 AM, 37 min after the report's 6:21 AM rise and just "
            "after the hand-over ends (an earlier cap holds hand-over work upstream, and it "
            f"floods in when the cap is lifted at 11:23 AM); {_R}: 'Engineers worked to reduce "
            "the load on Network Manager'",
            0,
        ),
        Param(
            "operator_intake_rate",
            4,
            "as_happened: items per second Network Manager accepts under the operators' cap",
            f"assumed, calibrated to {_R}: 'By 10:36 AM, network configuration propagation "
            "times had returned to normal levels' (median 10:40 AM over 20 seeds; half the "
            "throttled launch rate: the working set drains only with intake below the launches, "
            "the refused half failing fast; at 3.5/s median 10:23 AM, at 5/s some seeds stick)",
            0.001,
        ),
        Param(
            "admission_max_queue",
            15_000,
            "queue_admission: QueueRate max_queue on the working set",
            f"assumed: under the knee; {_R}: 'rate limit incoming work based on the size of the "
            "waiting queue'",
            1,
            integer=True,
        ),
        Param(
            "admission_soft_queue",
            7_500,
            "queue_admission: QueueRate soft_queue",
            "assumed: half of max_queue (QueueRate's default)",
            0,
            integer=True,
        ),
        Param(
            "admission_rate",
            30,
            "queue_admission: items per second admitted above soft_queue",
            "assumed: about the throughput at max_queue",
            0.001,
        ),
        Param(
            "backlog_priority",
            0.25,
            "priority_launches: load (working set / knee) above which backlog work waits",
            "assumed: launches keep the rest (PriorityShedder threshold 1.0)",
            0.001,
            1,
        ),
        Param(
            "latency_threshold_s",
            120,
            "launch propagation latency above which new instances count as without connectivity",
            "assumed: normal propagation takes seconds",
            0.001,
        ),
        Param("step_s", 20, "model step (s)", "assumed: coarse for speed", 0.1),
        Param(
            "horizon_s",
            EC2_NORMAL_S,
            "simulated seconds",
            f"{_R}: 'At 1:50 PM, all EC2 APIs and new EC2 instance launches were operating "
            "normally' (14 h 2 min)",
            1,
        ),
    )

    def check(self, params: Mapping[str, float]) -> None:
        """Times in order and inside the horizon; admission zones consistent."""
        for name in ("dwfm_recovered_s", "relax_at_s", "load_reduction_at_s"):
            if params[name] >= params["horizon_s"]:
                raise ConfigError(name, "must be < horizon_s", params[name])
        for name in ("relax_at_s", "load_reduction_at_s"):
            if params[name] < params["dwfm_recovered_s"]:
                raise ConfigError(name, "must be >= dwfm_recovered_s", params[name])
        if params["admission_soft_queue"] > params["admission_max_queue"]:
            raise ConfigError(
                "admission_soft_queue",
                "must be <= admission_max_queue",
                params["admission_soft_queue"],
            )

    def run(
        self, params: Mapping[str, float], policy: str, seed: int, *, series: bool = False
    ) -> RunResult:
        """Run the morning once under ``policy``."""
        self.check_policy(policy)
        sim = Simulation(seed, max_events=self.max_events)
        horizon = params["horizon_s"]
        step = params["step_s"]
        manager = PropagationManager(
            sim,
            rate=params["rate"],
            knee=params["knee"],
            exponent=params["exponent"],
            step=step,
            admission=QueueRate(
                int(params["admission_max_queue"]),
                params["admission_rate"],
                soft_queue=int(params["admission_soft_queue"]),
                burst=max(1.0, params["admission_rate"] * step),
            )
            if policy in _ADMISSION
            else None,
            shedder=PriorityShedder({"launch": 1.0, "backlog": params["backlog_priority"]})
            if policy in _PRIORITY
            else None,
            horizon=horizon,
        )
        manager.start()
        start = params["dwfm_recovered_s"]
        sim.at(start, manager.set_launch_rate, params["launch_rate_throttled"])
        sim.at(start, manager.release_backlog, int(params["backlog_items"]), params["release_rate"])
        sim.at(params["relax_at_s"], manager.set_launch_rate, params["launch_rate"])
        if policy == "as_happened":
            sim.at(params["load_reduction_at_s"], manager.throttle, params["operator_intake_rate"])
            sim.at(params["relax_at_s"], manager.throttle, None)
        sim.run(until=horizon)
        return self._result(params, policy, seed, sim, manager, series)

    def _result(
        self,
        params: Mapping[str, float],
        policy: str,
        seed: int,
        sim: Simulation,
        manager: PropagationManager,
        series: bool,
    ) -> RunResult:
        horizon = params["horizon_s"]
        start = params["dwfm_recovered_s"]
        threshold = params["latency_threshold_s"]
        minutes = math.ceil(horizon / 60.0)
        latency = manager.metrics.series("launch_latency", minutes)
        launches = manager.metrics.series("launches", minutes)
        refused = manager.metrics.series("launch_refused", minutes)
        impact = sum(
            1
            for value, n, r in zip(latency, launches, refused, strict=True)
            if value > threshold or (n and r / n > 0.01)
        )
        history = manager.history
        up_at = _first_above(history, start, threshold)
        recover = _final_below(history, start, threshold)
        final_latency = history[-1][1] if history else 0.0
        metrics = {
            "time_to_recover_s": recover,
            "recovered": 0.0 if math.isnan(recover) else 1.0,
            "impact_minutes": float(impact),
            "latency_up_at_s": up_at,
            "latency_normal_at_s": start + recover if not math.isnan(recover) else math.nan,
            "peak_latency_s": max((h[1] for h in history), default=0.0),
            "mean_launch_latency_s": manager.latency_sum / manager.launches_propagated
            if manager.launches_propagated
            else math.nan,
            "peak_working_set": float(manager.peak_working_set),
            "final_backlog": float(manager.backlog),
            "launch_refused_fraction": manager.launch_refused / manager.launches
            if manager.launches
            else 0.0,
            "propagated": float(manager.propagated),
        }
        series_out: dict[str, list[float]] = {}
        if series:
            series_out = {
                "launch_latency": latency,
                "working_set": manager.metrics.series("working_set", minutes),
                "propagated": manager.metrics.series("propagated", minutes),
                "launches": launches,
                "launch_refused": refused,
            }
        return RunResult(
            scenario=self.name,
            policy=policy,
            seed=seed,
            stuck=final_latency > threshold,
            metrics=metrics,
            trace_hash=sim.trace_hash(),
            series=series_out,
        )


def _first_above(
    history: Sequence[tuple[float, float, int, int]], start: float, threshold: float
) -> float:
    """The first time at or after ``start`` the latency gauge exceeds ``threshold`` (NaN: never)."""
    for time, latency, _, _ in history:
        if time >= start and latency > threshold:
            return time
    return math.nan


def _final_below(
    history: Sequence[tuple[float, float, int, int]], start: float, threshold: float
) -> float:
    """Seconds from ``start`` to the final stretch at or below ``threshold`` (NaN: never)."""
    if not history or history[-1][1] > threshold:
        return math.nan
    recovered_at = start
    for time, latency, _, _ in reversed(history):
        if time < start or latency > threshold:
            break
        recovered_at = time
    return max(0.0, recovered_at - start)
