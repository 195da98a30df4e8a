"""ebs-2011: the EBS re-mirroring storm of 21-22 April 2011 (us-east-1), simplified.

Source: "Summary of the Amazon EC2 and Amazon RDS Service Disruption in the US East Region"
(AWS, 29 April 2011; ``shared/seeds/aws-2011-04-ebs-rds-us-east-1.txt``). Time 0 is the
network change, "At 12:47 AM PDT on April 21st".

The model: one EBS cluster (the affected zone, :class:`~stormproof.sim.parts.storage.
StorageCluster`) in which a share of the nodes is cut off for two minutes; every volume with a
copy there loses its peer and, when the network returns, re-mirrors. Free space runs out, the
rest search in a tight loop, and a race crashes nodes in proportion to the search attempts,
adding stuck volumes; a volume whose surviving copy was on a crashed node cannot re-mirror at
all. Beside it, a regional control plane
(:class:`~stormproof.sim.parts.control_plane.ControlPlane`) whose threads are taken first by
create-volume calls to the exhausted cluster (12:50 to 2:40 AM), then by re-mirror negotiations
that grow with the crashed nodes (from about 5:30 AM), failing calls for the other zones.

Policies: ``as_happened`` (the operators' interventions at the report's times: create-volume
disabled in the zone at 2:40 AM, the cluster cut off from the control plane at 8:20 AM, futile
searching stopped at 11:30 AM, new capacity from 2:00 AM on 22 April), ``no_intervention``
(none), and six fixes from the report's "we will" list, each on top of ``as_happened``:
``capacity_buffer``, ``backoff_reconnect``, ``per_az_bulkhead``, ``per_az_control_plane``,
``race_fixed``, ``all_fixes``.

RDS (:class:`~stormproof.sim.parts.storage.DatabaseFleet`): database instances on the zone's
volumes, single-AZ ones unavailable while a volume is stuck, multi-AZ ones failing over except
the report's 2.5 % that hit the failover bug. ``scale`` multiplies the cluster and the fleet.

The horizon ends at 12:30 PM on 22 April, when "all but about 2.2% of the volumes ... were
restored". Left out: the launch-API issue (one API, fixed at 11:30 AM), the re-enabling of the
zone's control-plane access (23 April, after the horizon), and the snapshot restores (24 April).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from stormproof.errors import ConfigError
from stormproof.policies.backoff import Exponential, Jitter
from stormproof.sim.kernel import Simulation
from stormproof.sim.metrics import BucketCounters
from stormproof.sim.parts.control_plane import ControlPlane
from stormproof.sim.parts.storage import DatabaseFleet, StorageCluster
from stormproof.sim.scenario import Param, RunResult, Scenario

__all__ = ["Ebs2011"]

_R = "AWS 2011 report"

#: Policies that carry each fix (all keep the operators' interventions of ``as_happened``).
_BUFFER = frozenset({"capacity_buffer", "all_fixes"})
_BACKOFF = frozenset({"backoff_reconnect", "all_fixes"})
_BULKHEAD = frozenset({"per_az_bulkhead", "all_fixes"})
_PER_AZ_PLANE = frozenset({"per_az_control_plane"})
_RACE_FIXED = frozenset({"race_fixed", "all_fixes"})


def _scaled(params: Mapping[str, float], name: str) -> int:
    """A population parameter times ``scale``, rounded."""
    return round(params[name] * params["scale"])


class Ebs2011(Scenario):
    """The 2011 EBS re-mirroring storm and its control-plane thread starvation."""

    name = "ebs-2011"
    description = "EBS re-mirroring storm + regional control-plane starvation (AWS, Apr 2011)"
    policies = (
        "as_happened",
        "no_intervention",
        "capacity_buffer",
        "backoff_reconnect",
        "per_az_bulkhead",
        "per_az_control_plane",
        "race_fixed",
        "all_fixes",
    )
    stuck_rule = "final_stuck_volume_fraction above stuck_above (volumes still stuck at horizon)"
    series_bucket_s = 60.0  # the timeline series are per minute
    params = (
        Param(
            "scale",
            1,
            "multiplies nodes, volumes, RDS instances, search capacity and freed slots",
            "assumed: 1 is fast; 25 is about 7,500 nodes and 100,000 volumes",
            None,
            50,
        ),
        Param(
            "nodes",
            300,
            "storage nodes in the cluster",
            "assumed: scale for speed",
            2,
            integer=True,
        ),
        Param(
            "volumes",
            4000,
            "volumes in the zone (two copies each)",
            "assumed: scale for speed",
            1,
            integer=True,
        ),
        Param(
            "free_fraction",
            0.04,
            "share of slots free before the trigger",
            f"assumed, calibrated: fewer free slots than cut-off volumes; {_R}: 'the free "
            "capacity of the EBS cluster was quickly exhausted'",
            0,
            0.95,
        ),
        Param(
            "buffer_free_fraction",
            0.15,
            "free share with the capacity_buffer fix",
            f"assumed; {_R}: 'We have already increased our capacity buffer significantly'",
            0,
            0.95,
        ),
        Param(
            "isolated_fraction",
            0.115,
            "share of nodes cut off by the network change",
            f"assumed, calibrated to the peak; {_R}: 'For a portion of the EBS cluster ... "
            "many EBS nodes ... were completely isolated'",
            0,
            1,
        ),
        Param(
            "isolation_s",
            120,
            "seconds until the traffic shift is rolled back",
            f"assumed: {_R} gives no duration; API impact began at 12:50 AM, 3 min after",
            0,
        ),
        Param("step_s", 10, "cluster step (s)", "assumed: coarse steps for speed", 0.1),
        Param(
            "search_interval_s",
            1,
            "seconds between searches of a volume in the tight loop",
            f"assumed; {_R}: 'continuously searching the cluster for free space'",
            0.001,
        ),
        Param(
            "search_capacity_per_s",
            500,
            "search attempts per second the cluster serves",
            "assumed: enough to place every cut-off volume within a step when space exists",
            0.001,
        ),
        Param(
            "race_crash_per_attempt",
            4e-7,
            "probability that one search attempt crashes a node",
            f"assumed, calibrated to add a few % stuck; {_R}: 'with a very low probability ... "
            "the failed servers ... resulted in an additional 5% of the volumes ... stuck'",
            0,
            1,
        ),
        Param(
            "freed_slots_per_hour",
            15,
            "slots freed per hour by customers deleting volumes",
            f"assumed; {_R}: 'volumes were also slowly re-mirroring as some capacity was made "
            "available'",
            0,
        ),
        Param(
            "reconnect_success",
            0.7,
            "share of cut-off volumes whose previous replica is still usable (backoff_reconnect)",
            f"assumed; {_R}: 'focus on re-establishing connectivity with previous replicas'",
            0,
            1,
        ),
        Param("reconnect_s", 10, "seconds a reconnection takes", "assumed", 0),
        Param(
            "backoff_base_s",
            1,
            "first backoff delay of a failed search (Exponential, full jitter)",
            f"assumed; {_R}: 'our retry logic will back off more aggressively'",
            0.001,
        ),
        Param("backoff_cap_s", 600, "backoff cap (s)", "assumed", 0.001),
        Param(
            "throttle_at_s",
            38580,
            "as_happened: futile searching stopped (s after the trigger)",
            f"{_R}: 'At 11:30AM PDT, the team developed a way to prevent EBS servers ... from "
            "futilely contacting other servers' (10 h 43 min after 12:47 AM)",
            0,
        ),
        Param(
            "throttled_interval_s",
            10800,
            "search interval once searching resumes with the new capacity (day 2)",
            f"assumed, calibrated to spread the restores over the nine hours of {_R}: 'The team "
            "had to carefully make changes to their negotiation throttles to allow negotiation "
            "to occur with the newly-built servers'; searching is stopped from 11:30 AM until then",
            0.001,
        ),
        Param(
            "disable_creates_at_s",
            6780,
            "as_happened: create-volume disabled in the zone (s after the trigger)",
            f"{_R}: 'At 2:40 AM PDT ... disabled all new Create Volume requests in the "
            "affected Availability Zone' (1 h 53 min after 12:47 AM)",
            0,
        ),
        Param(
            "cut_off_at_s",
            27180,
            "the degraded cluster cut off from the control plane (as_happened)",
            f"{_R}: 'At 8:20 AM PDT, the team began disabling all communication between the "
            "degraded EBS cluster ... and the EBS control plane' (7 h 33 min)",
            0,
        ),
        Param(
            "stabilized_at_s",
            40620,
            "when the day-1 figures are read (stuck volumes, time to stable)",
            f"{_R}: 'By 12:04 PM PDT ... the degraded EBS cluster was stabilized' (11 h 17 min)",
            1,
        ),
        Param(
            "add_capacity_at_s",
            90780,
            "new servers start adding free slots (as_happened)",
            f"{_R}: 'At about 02:00AM PDT on April 22nd, the team successfully started adding "
            "significant amounts of new capacity' (25 h 13 min)",
            0,
        ),
        Param(
            "capacity_ramp_s",
            32400,
            "seconds over which the new capacity arrives",
            f"{_R}: 'Volumes were restored consistently over the next nine hours'",
            0,
        ),
        Param(
            "capacity_slots_per_hour",
            120,
            "free slots the new servers add per hour (times scale)",
            "assumed, calibrated: enough for the ~13 % stuck volumes to re-mirror within the "
            "nine hours at the throttled search rate",
            0,
        ),
        Param(
            "negotiations_per_crashed_node_per_s",
            0.7,
            "re-mirror negotiations per second sent to the control plane per crashed node",
            f"assumed, calibrated to the second brown-out 'By 5:30 AM PDT'; {_R}: 'As more EBS "
            "nodes continued to fail because of the race condition ..., the volume of such "
            "negotiations with the EBS control plane increased'",
            0,
        ),
        Param(
            "negotiation_s",
            10,
            "seconds a negotiation holds a control-plane thread",
            "assumed: slow, against a degraded cluster; with 0.7/s per crashed node the regional "
            "threads fill at about 4 crashed nodes",
            0.001,
        ),
        Param(
            "horizon_s",
            128580,
            "simulated seconds",
            f"{_R}: 'all but about 2.2% of the volumes in the affected Availability Zone were "
            "restored by 12:30PM PDT on April 22nd' (35 h 43 min)",
            1,
        ),
        Param(
            "zones", 3, "availability zones sharing the control plane", "assumed", 2, integer=True
        ),
        Param(
            "api_workers",
            30,
            "control-plane threads in the region",
            f"assumed; {_R}: 'a regional pool of available threads'",
            1,
            integer=True,
        ),
        Param("api_rate_per_zone", 0.25, "API calls per second per zone", "assumed", 0.001),
        Param("create_fraction", 0.4, "share of calls that create volumes", "assumed", 0, 1),
        Param("api_service_s", 0.5, "seconds a normal call holds a thread", "assumed", 0.001),
        Param(
            "api_timeout_s",
            600,
            "time-out of a create-volume call to the exhausted cluster",
            f"assumed: {_R}: 'configured with a long time-out period'; creates were disabled "
            "at 2:40 and 'by 2:50 AM PDT, latencies and error rates ... recovered' (10 min)",
            0.001,
        ),
        Param(
            "bulkhead_timeout_s",
            10,
            "per_az_bulkhead: the shorter time-out",
            f"assumed; {_R}: 'improve our timeout logic to prevent thread exhaustion'",
            0.001,
        ),
        Param(
            "error_minute_threshold",
            0.01,
            "a minute counts as an error minute above this error rate (other zones)",
            "assumed",
            0,
            1,
        ),
        Param(
            "rds_instances",
            2000,
            "RDS database instances whose primary is in the affected zone",
            "assumed: large enough that the 2.5 % failover bug shows within a few seeds",
            0,
            integer=True,
        ),
        Param(
            "rds_multi_az_share",
            0.5,
            "share of the RDS instances that are multi-AZ",
            f"assumed; {_R} gives no share: 'Customers can choose to operate RDS instances "
            'either in a single Availability Zone ("single-AZ") or replicated across multiple '
            'Availability Zones ("multi-AZ")\'',
            0,
            1,
        ),
        Param(
            "rds_volumes_per_instance",
            4,
            "EBS volumes each RDS instance uses (stuck I/O on any one makes it inoperable)",
            f"assumed, calibrated: {_R}: 'RDS database instances make use of multiple EBS "
            "volumes'; a peak of 45 % of single-AZ instances against about 13 % of volumes",
            1,
            integer=True,
        ),
        Param(
            "rds_failover_bug_fraction",
            0.025,
            "share of impacted multi-AZ instances that do not fail over (the failover bug)",
            f"{_R}: 'Of multi-AZ database instances in the US East Region, 2.5% did not "
            'automatically failover after experiencing "stuck" I/O\'',
            0,
            1,
        ),
        Param(
            "stuck_above",
            0.01,
            "a run is stuck if more than this share of volumes is stuck at the horizon",
            "assumed: the issue's target for all_fixes (< 1 %)",
            0,
            1,
        ),
    )

    def milestones(self, params: Mapping[str, float]) -> list[tuple[float, str]]:
        """The report's timeline, in seconds after 12:47 AM PDT on 21 April."""
        return [
            (180.0, "12:50 AM: API impact in other zones begins"),
            (params["disable_creates_at_s"], "2:40 AM: Create Volume disabled in the zone"),
            (7380.0, "2:50 AM: other zones' API latencies and errors recovered"),
            (16380.0, "5:30 AM: API errors rise again (re-mirror negotiations)"),
            (params["cut_off_at_s"], "8:20 AM: degraded cluster cut off from the control plane"),
            (params["throttle_at_s"], "11:30 AM: futile node-to-node searching stopped"),
            (params["stabilized_at_s"], "12:04 PM: cluster stabilized, about 13% stuck"),
            (params["add_capacity_at_s"], "2:00 AM, 22 April: new capacity being added"),
            (128580.0, "12:30 PM, 22 April: all but about 2.2% of volumes restored"),
        ]

    def check(self, params: Mapping[str, float]) -> None:
        """The trigger and the day-1 reading fall inside the horizon; one thread per zone."""
        if not params["scale"] > 0:
            raise ConfigError("scale", "must be > 0", params["scale"])
        if _scaled(params, "nodes") < 2:
            raise ConfigError("scale", "leaves fewer than 2 nodes", params["scale"])
        if _scaled(params, "volumes") < params["rds_volumes_per_instance"]:
            raise ConfigError(
                "rds_volumes_per_instance", "must be <= the (scaled) volumes", params["scale"]
            )
        # Interventions after the horizon simply do not happen (a shortened run); the trigger
        # and the day-1 reading must fall inside it.
        for name in ("isolation_s", "stabilized_at_s"):
            if params[name] >= params["horizon_s"]:
                raise ConfigError(name, "must be < horizon_s", params[name])
        if params["api_workers"] < params["zones"]:
            raise ConfigError("api_workers", "must be >= zones", params["api_workers"])
        if params["backoff_cap_s"] < params["backoff_base_s"]:
            raise ConfigError("backoff_cap_s", "must be >= backoff_base_s", params["backoff_cap_s"])

    def run(
        self, params: Mapping[str, float], policy: str, seed: int, *, series: bool = False
    ) -> RunResult:
        """Run the first day once under ``policy``."""
        self.check_policy(policy)
        sim = Simulation(seed, max_events=self.max_events)
        horizon = params["horizon_s"]
        backoff = (
            Exponential(
                base=params["backoff_base_s"],
                factor=2.0,
                cap=params["backoff_cap_s"],
                jitter=Jitter.FULL,
            )
            if policy in _BACKOFF
            else None
        )
        volumes = _scaled(params, "volumes")
        cluster = StorageCluster(
            sim,
            nodes=_scaled(params, "nodes"),
            volumes=volumes,
            free_fraction=params["buffer_free_fraction" if policy in _BUFFER else "free_fraction"],
            step=params["step_s"],
            search_interval=params["search_interval_s"],
            search_capacity=params["search_capacity_per_s"] * params["scale"],
            race_crash_per_attempt=0.0
            if policy in _RACE_FIXED
            else params["race_crash_per_attempt"],
            freed_slots_per_hour=params["freed_slots_per_hour"] * params["scale"],
            backoff=backoff,
            reconnect=policy in _BACKOFF,
            reconnect_success=params["reconnect_success"],
            reconnect_time=params["reconnect_s"],
        )
        zones = [f"az{i}" for i in range(int(params["zones"]))]
        degraded = zones[0]
        control = ControlPlane(
            sim,
            zones=zones,
            workers=int(params["api_workers"]),
            per_zone=policy in _BULKHEAD or policy in _PER_AZ_PLANE,
            rate_per_zone=params["api_rate_per_zone"],
            create_fraction=params["create_fraction"],
            service_time=params["api_service_s"],
            timeout=params["bulkhead_timeout_s" if policy in _BULKHEAD else "api_timeout_s"],
            is_exhausted=lambda zone: zone == degraded and cluster.exhausted,
            horizon=horizon,
            negotiation_time=params["negotiation_s"],
        )
        fleet = DatabaseFleet(
            cluster,
            instances=_scaled(params, "rds_instances"),
            volumes_per_instance=int(params["rds_volumes_per_instance"]),
            multi_az_share=params["rds_multi_az_share"],
            failover_bug=params["rds_failover_bug_fraction"],
        )
        gauges = BucketCounters(60.0)
        step = params["step_s"]
        negotiation_rate = params["negotiations_per_crashed_node_per_s"]
        snapshots: dict[str, float] = {}

        def on_step(now: float, stuck: int, free: int) -> None:
            fleet.update()
            if cluster.crashed_nodes and now + step <= horizon:
                # Re-mirrors of the crashed nodes' volumes need the control plane's say.
                control.negotiate(degraded, negotiation_rate * cluster.crashed_nodes, step)
            gauges.peak("stuck_fraction", now, stuck / volumes)
            gauges.peak("stuck_volumes", now, float(stuck))
            gauges.peak("free_slots", now, float(free))
            gauges.peak("rds_unavailable", now, float(fleet.unavailable))

        cluster.on_step = on_step
        cluster.start()
        control.start()
        cluster.isolate(params["isolated_fraction"], params["isolation_s"])
        if policy != "no_intervention":
            # The operators act on what they see: a fix that removed a symptom also removes
            # the intervention that answered it.
            def disable_creates() -> None:
                if cluster.exhausted:
                    control.disable_creates(degraded)

            def cut_off() -> None:
                # Ready from 8:20 AM, used once the other zones see errors (at once in the
                # replay; later if a brown-out starts later).
                if control.recent_errors(zones[1:], 1800.0) > 0:
                    control.cut_off(degraded)
                elif sim.now() + 60.0 < horizon:
                    sim.schedule(60.0, cut_off)

            def add_capacity() -> None:
                if cluster.stuck > 0:
                    cluster.add_capacity(
                        params["capacity_slots_per_hour"] * params["scale"],
                        params["capacity_ramp_s"],
                    )
                    cluster.throttle_searches(params["throttled_interval_s"])

            sim.schedule(params["disable_creates_at_s"], disable_creates)
            sim.schedule(params["cut_off_at_s"], cut_off)
            sim.schedule(params["throttle_at_s"], cluster.throttle_searches, math.inf)
            sim.schedule(params["add_capacity_at_s"], add_capacity)

        def snapshot() -> None:
            snapshots["stabilized_stuck_volume_fraction"] = cluster.stuck / volumes
            snapshots["rds_single_az_impacted_fraction_stabilized"] = (
                fleet.impacted_single_az / fleet.single_az_total if fleet.single_az_total else 0.0
            )
            snapshots["time_to_stable_s"] = cluster.last_new_stuck

        sim.schedule(params["stabilized_at_s"], snapshot)
        sim.run(until=horizon)

        minutes = math.ceil(horizon / 60.0)
        others = zones[1:]
        final_stuck = cluster.stuck / volumes
        affected = cluster.ever_affected
        threshold = params["error_minute_threshold"]
        # The first brown-out (create-volume calls) ends with the 2:40 AM change; what comes
        # after it is the negotiation brown-out.
        split = min(minutes, math.ceil(params["disable_creates_at_s"] / 60.0) + 10)
        calls, cross_az = control.calls_and_errors(others, minutes)
        # The error-minute rule of ControlPlane.error_minutes, minute by minute.
        bad = [c > 0 and e / c > threshold for c, e in zip(calls, cross_az, strict=True)]
        first = sum(bad[:split])
        total = sum(bad)
        second_brownout = next((60.0 * i for i in range(split, minutes) if bad[i]), math.nan)
        metrics = {
            "second_brownout_start_s": second_brownout,
            "peak_stuck_volume_fraction": cluster.peak_stuck / volumes,
            "final_stuck_volume_fraction": final_stuck,
            "stabilized_stuck_volume_fraction": snapshots["stabilized_stuck_volume_fraction"],
            "unrecoverable_volume_fraction": cluster.data_lost / volumes,
            "cross_az_api_error_minutes": float(total),
            "cross_az_api_error_minutes_creates": float(first),
            "cross_az_api_error_minutes_negotiations": float(total - first),
            "degraded_az_api_error_minutes": float(
                control.error_minutes([degraded], threshold, minutes)
            ),
            "time_to_stable_s": snapshots["time_to_stable_s"],
            "rds_single_az_impacted_fraction_stabilized": snapshots[
                "rds_single_az_impacted_fraction_stabilized"
            ],
            "rds_single_az_impacted_fraction_final": fleet.impacted_single_az
            / fleet.single_az_total
            if fleet.single_az_total
            else 0.0,
            "added_slots": float(cluster.added_slots),
            "remirror_attempts_per_volume": cluster.attempts / affected if affected else 0.0,
            "affected_volume_fraction": affected / volumes,
            "crashed_nodes": float(cluster.crashed_nodes),
            "remirrored_volumes": float(cluster.remirrored),
            "reconnected_volumes": float(cluster.reconnected),
            "api_peak_threads_in_use": float(control.peak_in_use),
            # NaN when no multi-AZ instance saw stuck I/O (a fraction of nothing).
            "rds_multi_az_no_failover_fraction": fleet.multi_az_no_failover
            / fleet.multi_az_impacted
            if fleet.multi_az_impacted
            else math.nan,
            "rds_unavailable_fraction_peak": fleet.peak_unavailable / fleet.instances
            if fleet.instances
            else 0.0,
            "rds_single_az_impacted_fraction_peak": fleet.peak_single_az_impacted
            / fleet.single_az_total
            if fleet.single_az_total
            else 0.0,
            "rds_multi_az_impacted": float(fleet.multi_az_impacted),
        }
        series_out: dict[str, list[float]] = {}
        if series:
            # Per minute: gauges are the minute's largest value, counts the minute's sum.
            negotiations = control.metrics.series(f"negotiations.{degraded}", minutes)
            series_out = {
                "negotiations": negotiations,
                "stuck_volumes": gauges.series("stuck_volumes", minutes),
                "cross_az_errors": cross_az,
                "api_threads_in_use": control.metrics.series("threads_in_use", minutes),
                "rds_unavailable": gauges.series("rds_unavailable", minutes),
                "stuck_fraction": gauges.series("stuck_fraction", minutes),
                "free_slots": gauges.series("free_slots", minutes),
            }
            for zone in zones:
                series_out[f"api_calls.{zone}"] = control.metrics.series(f"calls.{zone}", minutes)
                series_out[f"api_errors.{zone}"] = control.metrics.series(f"errors.{zone}", minutes)
        return RunResult(
            scenario=self.name,
            policy=policy,
            seed=seed,
            stuck=final_stuck > params["stuck_above"],
            metrics=metrics,
            trace_hash=sim.trace_hash(),
            series=series_out,
        )
