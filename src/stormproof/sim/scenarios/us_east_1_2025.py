"""us-east-1-2025: the chained October 2025 event, from an empty DNS record to Lambda.

Source: "Summary of the Amazon DynamoDB Service Disruption in the Northern Virginia (US-EAST-1)
Region" (AWS, October 2025; ``shared/seeds/aws-2025-10-dynamodb-us-east-1.txt``). Time 0 is
11:48 PM PDT on 19 October. One simulation holds every link of the chain, each the part its own
scenario replays, coupled the way the report describes:

1. **DNS** (:mod:`stormproof.sim.parts.dns`, as in ``dynamodb-dns-2025``): the Planner/Enactor
   race replayed at time 0 -- the interleaving ``stormproof explore`` finds, which is the
   report's -- empties the regional endpoint's record under the ``original`` design and is
   harmless under ``fenced``. Operators restore the record at 2:25 AM.
2. **DynamoDB reachability** (:mod:`stormproof.sim.parts.resolver`): customers, each DWFM host
   and the EC2 API resolve the record through caching resolvers; an empty answer is cached for
   up to ``negative_ttl_s``, so reachability returns between 2:25 and 2:40 AM.
3. **DWFM** (:mod:`stormproof.sim.parts.lease`, as in ``dwfm-2025``): a host whose resolver
   fails cannot check its droplets, leases lapse, the re-establishment queue collapses.
4. **Network Manager** (:mod:`stormproof.sim.parts.propagation`, as in
   ``network-manager-2025``): the propagations DWFM held back are released when its leases are
   back, in proportion to the droplet-time spent without a lease; new instances arrive at the
   rate EC2 launches succeed.
5. **NLB** (:mod:`stormproof.sim.parts.health_check`, as in ``nlb-2025``): node replacements
   start once EC2 can launch; a new node's state is ready after Network Manager works off its
   current working set (:class:`~stormproof.sim.parts.cascade.PropagationReadyTime`).
6. **Lambda** (:mod:`stormproof.sim.parts.worker_fleet`, as in ``lambda-2025``): capacity is
   terminated while NLB health checks keep a large share of the fleet out of DNS, and comes back
   once launches work and propagate (:class:`~stormproof.sim.parts.cascade.ImpairedCapacity`).

Policies: ``no_fix`` (no operator action but the DNS repair, without which nothing ends),
``as_happened`` (the report's interventions, each taken at its time if its subsystem is impaired
then), the single fixes ``fenced_dns``, ``queue_admission`` (DWFM and Network Manager),
``velocity_control`` and ``priority_shedding`` -- each the report's night with that fix in place
of the manual action on its own link -- ``downstream_fixes`` (every fix but fenced DNS, no
operators) and ``all_fixes`` (every fix, no operators).
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from stormproof.errors import ConfigError
from stormproof.policies.admission import QueueRate
from stormproof.policies.ratelimit import TokenBucket
from stormproof.policies.velocity import VelocityLimiter
from stormproof.sim.kernel import Simulation
from stormproof.sim.metrics import BucketCounters
from stormproof.sim.parts import dns
from stormproof.sim.parts.cascade import ImpairedCapacity, PropagationReadyTime
from stormproof.sim.parts.health_check import HealthCheckConfig, HealthCheckedFleet
from stormproof.sim.parts.lease import DwfmFleet, recovery_time
from stormproof.sim.parts.propagation import PropagationManager
from stormproof.sim.parts.resolver import NegativeCachingResolver
from stormproof.sim.parts.worker_fleet import InvocationClass, WorkerFleet
from stormproof.sim.scenario import Param, RunResult, Scenario
from stormproof.sim.scenarios.dwfm_2025 import Dwfm2025, hosts_for
from stormproof.sim.scenarios.dynamodb_dns import DynamoDbDns
from stormproof.sim.scenarios.lambda_2025 import Lambda2025
from stormproof.sim.scenarios.network_manager_2025 import NetworkManager2025
from stormproof.sim.scenarios.nlb_2025 import Nlb2025, impact_timeline

__all__ = ["MILESTONES", "RACE", "SUBSYSTEMS", "USEast12025", "milestone_table"]

_R = "seeds/aws-2025-10-dynamodb-us-east-1.txt"

#: The race as a choice list over the DNS actors (Planner P, Enactors E0-E2): the shortest
#: counterexample of ``stormproof explore dynamodb-dns-2025`` -- E0 is slow, E1 applies the newest
#: plan and its clean-up deletes the old plan E0 has just written over it.
RACE = ("P", "E0", "P", "P", "E0", "E1", "E1", "E1", "E0", "E1", "E1")

#: The customer-facing subsystems, in the chain's order (metric name prefixes).
SUBSYSTEMS = ("dynamodb", "dwfm", "network", "nlb", "lambda")

#: The report's milestones in its order: (metric, seconds after 11:48 PM, the report).
MILESTONES: tuple[tuple[str, float, str], ...] = (
    ("dns_restored_at_s", 9420.0, "2:25 AM: all DNS information restored"),
    ("dynamodb_recovered_at_s", 10320.0, "2:40 AM: cached DNS records expired, DynamoDB back"),
    ("leases_back_at_s", 20400.0, "5:28 AM: DWFM has leases with all droplets"),
    ("propagation_slow_at_s", 23580.0, "6:21 AM: network propagation latency rises"),
    ("lambda_underscaled_at_s", 26160.0, "7:04 AM: Lambda under-scaled (NLB terminations)"),
    ("nlb_stable_at_s", 35280.0, "9:36 AM: NLB failover disabled, connection errors resolved"),
    ("propagation_normal_at_s", 38880.0, "10:36 AM: propagation times back to normal"),
    ("lambda_capacity_restored_at_s", 41940.0, "11:27 AM: Lambda capacity restored"),
    ("ec2_normal_at_s", 50520.0, "1:50 PM: EC2 APIs and launches normal"),
    ("lambda_recovered_at_s", 52020.0, "2:15 PM: Lambda backlogs processed"),
)

#: Seconds after 11:48 PM of report times used as parameter defaults.
DNS_RESTORED_S = 9420.0  # 2:25 AM
FAILOVER_DISABLED_S = 35280.0  # 9:36 AM
LAMBDA_RESTORED_S = 41940.0  # 11:27 AM
EC2_NORMAL_S = 50520.0  # 1:50 PM
FAILOVER_REENABLED_S = 51660.0  # 2:09 PM

_FENCED = frozenset({"fenced_dns", "all_fixes"})
_ADMISSION = frozenset({"queue_admission", "downstream_fixes", "all_fixes"})
_VELOCITY = frozenset({"velocity_control", "downstream_fixes", "all_fixes"})
_SHEDDING = frozenset({"priority_shedding", "downstream_fixes", "all_fixes"})
#: Policies with operators on the report's timeline (a fix replaces the action on its link).
_OPERATORS = frozenset(
    {"as_happened", "fenced_dns", "queue_admission", "velocity_control", "priority_shedding"}
)

#: Width of the series buckets and of the monitor's period (s).
_MINUTE = 60.0


def _borrow(
    source: type[Scenario],
    name: str,
    prefix: str,
    *,
    description: str | None = None,
) -> Param:
    """``source``'s parameter ``name`` as ``prefix + name``, citing where it was set.

    A default changed for the chain (:data:`_CHANGED`) says so, and why, in its source.
    """
    changed = _CHANGED.get(prefix + name)
    for param in source.params:
        if param.name == name:
            source_text = f"as {source.name} `{name}`: {param.source}"
            default = param.default
            if changed is not None:
                default, why = changed
                source_text = f"{why}; {source.name} `{name}` is {param.default:g}: {param.source}"
            return Param(
                prefix + name,
                default,
                param.description if description is None else description,
                source_text,
                param.minimum,
                param.maximum,
                param.integer,
            )
    raise ConfigError("name", f"is not a parameter of {source.name}", name)


#: Defaults the chain changes from its sub-scenarios': (value, why).
_CHANGED: dict[str, tuple[float, str]] = {
    "dwfm_droplets": (
        3000,
        "assumed: smaller than dwfm-2025's default so 20 seeds of 8 policies run in well under "
        "a minute (hosts behave alike; at 10000 the milestones keep their order)",
    ),
    "lambda_step_s": (60, "assumed: coarser than lambda-2025's 10 s, for speed"),
    "nm_operator_intake_rate": (
        2,
        "assumed, calibrated in the chain to 'By 10:36 AM, network configuration propagation "
        "times had returned to normal levels' (median 10:35 AM over 20 seeds with "
        "nm_reaction_s; 10:50 AM at 2.5/s): a quarter of the throttled launch rate, as the "
        "chain's working set is larger when the cap comes (peak 124,000 against 109,000)",
    ),
}


def _sub(params: Mapping[str, float], prefix: str) -> dict[str, float]:
    """The parameters starting with ``prefix``, with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}


_DWFM_BORROWED = (
    "droplets",
    "droplets_per_host",
    "check_interval_s",
    "attempt_timeout_s",
    "host_rate",
    "establish_cost",
    "lapse_mean_s",
    "slowdown_knee",
    "slowdown_cap",
    "api_rate",
    "launch_rate_per_1000",
    "throttle_at_s",
    "throttle_host_rate",
    "throttle_launch_share",
    "restart_window_s",
    "restart_downtime_s",
    "relax_at_s",
    "admission_max_queue",
    "admission_soft_queue",
    "admission_rate",
    "step_s",
    "recovered_fraction",
    "error_minute_threshold",
)
_NM_BORROWED = (
    "rate",
    "knee",
    "exponent",
    "release_rate",
    "operator_intake_rate",
    "admission_max_queue",
    "admission_soft_queue",
    "admission_rate",
    "latency_threshold_s",
    "step_s",
)
_NLB_BORROWED = (
    "balancers",
    "zones",
    "nodes_per_zone",
    "utilization",
    "check_interval_s",
    "checker_rate",
    "change_cost",
    "dns_change_cost",
    "unhealthy_after",
    "healthy_after",
    "fail_prob",
    "stale_after_s",
    "az_failover_below",
    "launch_rate_per_h",
    "propagation_normal_s",
    "velocity_window_s",
    "velocity_max_fraction",
    "impact_error_rate",
    "tick_s",
)
_LAMBDA_BORROWED = (
    "capacity_per_s",
    "sync_rate",
    "async_rate",
    "esm_rate",
    "poll_factor",
    "service_s",
    "capacity_lost_fraction",
    "loss_ramp_s",
    "throttle_fraction",
    "throttle_release_s",
    "shed_async_at",
    "shed_background_at",
    "impact_error_rate",
    "latency_slo_s",
    "async_delay_slo_s",
    "step_s",
)


class USEast12025(Scenario):
    """The whole us-east-1 chain of 19-20 October 2025, with the report's fixes as policies."""

    name = "us-east-1-2025"
    description = (
        "Chained us-east-1 event: DNS race -> DynamoDB -> DWFM -> Network Manager -> NLB -> "
        "Lambda (AWS, Oct 2025)"
    )
    policies = (
        "no_fix",
        "as_happened",
        "fenced_dns",
        "queue_admission",
        "velocity_control",
        "priority_shedding",
        "downstream_fixes",
        "all_fixes",
    )
    stuck_rule = (
        "some subsystem still customer-impacting within the last recovery_hold_s of the horizon "
        "(time_to_recover_s is null)"
    )
    series_bucket_s = _MINUTE
    params = (
        Param(
            "dns_repair_at_s",
            DNS_RESTORED_S,
            "operators restore the emptied record (every policy: the automation cannot)",
            f"{_R}, DynamoDB: 'By 2:25 AM, all DNS information was restored'; 'This situation "
            "ultimately required manual operator intervention to correct' (2 h 37 min)",
            0,
        ),
        _borrow(DynamoDbDns, "ttl_s", "", description="resolver TTL of an answer with addresses"),
        Param(
            "negative_ttl_s",
            900,
            "an empty answer is cached for a uniform share of this (drawn per fetch)",
            f"{_R}, DynamoDB: 'as cached DNS records expired between 2:25 AM and 2:40 AM' "
            "(15 min); RFC 2308 negative caching",
            0,
        ),
        _borrow(
            DynamoDbDns,
            "resolvers",
            "customer_",
            description="DynamoDB customers' caching resolvers (their share failing is impact)",
        ),
        Param(
            "dynamodb_impact_share",
            0.01,
            "a minute is customer-impacting for DynamoDB above this share of resolvers failing",
            "assumed: as the 1 % error thresholds of the other links",
            0,
            1,
        ),
        *(_borrow(Dwfm2025, name, "dwfm_") for name in _DWFM_BORROWED),
        Param(
            "ec2_normal_at_s",
            EC2_NORMAL_S,
            "as_happened: EC2 request throttles fully removed (relaxed in stages from "
            "dwfm_relax_at_s)",
            f"{_R}, EC2: 'at 11:23 AM PDT our engineers began relaxing request throttles ... At "
            "1:50 PM, all EC2 APIs and new EC2 instance launches were operating normally'",
            0,
        ),
        *(_borrow(NetworkManager2025, name, "nm_") for name in _NM_BORROWED),
        _borrow(
            NetworkManager2025,
            "launch_rate",
            "nm_",
            description="new instances per second when every EC2 launch request succeeds",
        ),
        Param(
            "nm_reaction_s",
            4200,
            "as_happened: operators cap Network Manager's intake this long after its launch "
            "propagation latency first exceeds nm_latency_threshold_s",
            "assumed, calibrated: 70 min, so the cap comes after the hand-over of held-back "
            "propagations ends (about 6:51 AM) on every seed -- a cap below the launch rate "
            "holds the rest of the hand-over upstream, where it floods in when the cap is "
            "lifted at 11:23 AM (at 60 min 4 seeds in 20 lose the report's order, at 55 min "
            "19); the report gives no time, only 'Engineers worked to reduce the load on Network "
            "Manager'. Relative, because the backlog grows exponentially: a fixed clock time "
            "would meet a different backlog on every seed",
            0,
        ),
        Param(
            "nm_backlog_per_s",
            16.5,
            "delayed propagations per second of droplet-time without a lease (fleet share)",
            "assumed, calibrated: about 224,000 items after the as_happened night "
            "(network-manager-2025 `backlog_items` is 210,000); "
            f"{_R}, EC2: 'Since these network propagation events "
            "had been delayed by the issue with DWFM, a significant backlog'",
            0,
        ),
        *(_borrow(Nlb2025, name, "nlb_") for name in _NLB_BORROWED),
        Param(
            "nlb_disable_failover_at_s",
            FAILOVER_DISABLED_S,
            "as_happened: automatic health-check failover disabled (if NLB is impacted)",
            f"{_R}, NLB: 'At 9:36 AM, engineers disabled automatic health check failovers for "
            "NLB' (9 h 48 min)",
            0,
        ),
        Param(
            "nlb_reenable_failover_at_s",
            FAILOVER_REENABLED_S,
            "as_happened: automatic failover re-enabled",
            f"{_R}, NLB: 'we re-enabled automatic DNS health check failover at 2:09 PM' "
            "(14 h 21 min)",
            0,
        ),
        Param(
            "nlb_operator_lookback_s",
            3600,
            "as_happened: operators disable failover only if NLB was impacted this recently",
            "assumed: an hour",
            60,
        ),
        *(_borrow(Lambda2025, name, "lambda_") for name in _LAMBDA_BORROWED),
        Param(
            "lambda_terminate_above",
            0.4,
            "Lambda instances are terminated while this share of NLB nodes is out of DNS",
            f"assumed, calibrated to 7:04 AM; {_R}, Lambda: 'NLB health check failures "
            "triggered instance terminations leaving a subset of Lambda internal systems "
            "under-scaled'",
            0.001,
            1,
        ),
        Param(
            "lambda_restore_s",
            3000,
            "seconds to bring all lost Lambda capacity back once launches work and propagate",
            f"{_R}: 'instance launches began to succeed from 10:37 AM' to Lambda 'By 11:27 AM, "
            "sufficient capacity was restored' (50 min)",
            1,
        ),
        Param(
            "lambda_reaction_s",
            1800,
            "as_happened: async and event-source mappings throttled this long after Lambda "
            "capacity first falls",
            "as lambda-2025 `throttle_at_s` (assumed: 30 min after the 7:04 AM terminations; "
            f"{_R}, Lambda: 'With EC2 launches still impaired, we throttled Lambda Event Source "
            "Mappings and asynchronous invocations', no time given)",
            0,
        ),
        Param(
            "lambda_relax_at_s",
            LAMBDA_RESTORED_S,
            "as_happened: the Lambda throttle is raised in steps from here",
            f"{_R}, Lambda: 'By 11:27 AM, sufficient capacity was restored ... We then "
            "gradually reduced throttling'",
            0,
        ),
        Param(
            "recovery_hold_s",
            1800,
            "a subsystem has recovered only if no impacted minute follows for this long",
            "assumed: half an hour (as nlb-2025 and lambda-2025)",
            0,
        ),
        Param(
            "horizon_s",
            57_600,
            "simulated seconds (to 3:48 PM)",
            f"assumed: past the event's end ({_R}: 'ended at 2:20 PM') by more than the "
            "recovery hold",
            3600,
        ),
    )

    def milestones(self, params: Mapping[str, float]) -> list[tuple[float, str]]:
        """The report's timeline in seconds after 11:48 PM PDT on 19 October."""
        return [
            (0.0, "11:48 PM: DynamoDB endpoint record empty; DWFM state checks fail"),
            (params["dns_repair_at_s"], "2:25 AM: all DNS information restored"),
            (10320.0, "2:40 AM: cached DNS records expired"),
            (params["dwfm_throttle_at_s"], "4:14 AM: DWFM work throttled, hosts restarted"),
            (20400.0, "5:28 AM: DWFM leases with all droplets"),
            (20520.0, "5:30 AM: NLB connection errors begin"),
            (23580.0, "6:21 AM: network propagation latency rises"),
            (26160.0, "7:04 AM: Lambda under-scaled"),
            (params["nlb_disable_failover_at_s"], "9:36 AM: NLB automatic failover disabled"),
            (38880.0, "10:36 AM: propagation times normal"),
            (params["dwfm_relax_at_s"], "11:23 AM: EC2 request throttles relaxed"),
            (params["lambda_relax_at_s"], "11:27 AM: Lambda capacity restored"),
            (params["ec2_normal_at_s"], "1:50 PM: EC2 normal"),
            (params["nlb_reenable_failover_at_s"], "2:09 PM: NLB failover re-enabled"),
            (52020.0, "2:15 PM: Lambda backlogs processed"),
        ]

    def check(self, params: Mapping[str, float]) -> None:
        """Cross-parameter rules, each naming the parameter at fault."""
        horizon = params["horizon_s"]
        for name in (
            "dns_repair_at_s",
            "dwfm_throttle_at_s",
            "dwfm_relax_at_s",
            "nlb_disable_failover_at_s",
        ):
            if params[name] >= horizon:
                raise ConfigError(name, "must be < horizon_s", params[name])
        for later, earlier in (
            ("dwfm_throttle_at_s", "dns_repair_at_s"),
            ("dwfm_relax_at_s", "dwfm_throttle_at_s"),
            ("ec2_normal_at_s", "dwfm_relax_at_s"),
            ("nlb_reenable_failover_at_s", "nlb_disable_failover_at_s"),
        ):
            if params[later] < params[earlier]:
                raise ConfigError(later, f"must be >= {earlier}", params[later])
        if params["dwfm_droplets"] < params["dwfm_droplets_per_host"]:
            raise ConfigError(
                "dwfm_droplets", "must be >= dwfm_droplets_per_host", params["dwfm_droplets"]
            )
        for prefix in ("dwfm_", "nm_"):
            if params[prefix + "admission_soft_queue"] > params[prefix + "admission_max_queue"]:
                raise ConfigError(
                    prefix + "admission_soft_queue",
                    f"must be <= {prefix}admission_max_queue",
                    params[prefix + "admission_soft_queue"],
                )
        if params["dwfm_step_s"] > params["dwfm_attempt_timeout_s"]:
            raise ConfigError(
                "dwfm_step_s", "must be <= dwfm_attempt_timeout_s", params["dwfm_step_s"]
            )
        if params["nlb_tick_s"] > params["nlb_check_interval_s"]:
            raise ConfigError("nlb_tick_s", "must be <= nlb_check_interval_s", params["nlb_tick_s"])
        if params["lambda_shed_background_at"] > params["lambda_shed_async_at"]:
            raise ConfigError(
                "lambda_shed_background_at",
                "must be <= lambda_shed_async_at (event-source mappings are shed first)",
                params["lambda_shed_background_at"],
            )

    def run(
        self, params: Mapping[str, float], policy: str, seed: int, *, series: bool = False
    ) -> RunResult:
        """Run the night once under ``policy``."""
        self.check_policy(policy)
        chain = _Chain(Simulation(seed, max_events=self.max_events), params, policy)
        chain.start()
        chain.sim.run(until=params["horizon_s"])
        return chain.result(self.name, seed, series)


@dataclass(frozen=True, slots=True)
class _Health:
    """Per-minute impact flags of every subsystem."""

    dynamodb: list[bool]
    dwfm: list[bool]
    network: list[bool]
    nlb: list[bool]
    lambda_sync: list[bool]
    lambda_async: list[bool]

    def by_subsystem(self) -> dict[str, list[bool]]:
        """Customer-facing impact per subsystem.

        Lambda's is synchronous calls failing or slow, or queued invocations (event sources,
        asynchronous) delayed beyond their objective.
        """
        return {
            "dynamodb": self.dynamodb,
            "dwfm": self.dwfm,
            "network": self.network,
            "nlb": self.nlb,
            "lambda": [a or b for a, b in zip(self.lambda_sync, self.lambda_async, strict=True)],
        }


class _Chain:
    """Every link of the chain on one simulation, the couplings and the operators."""

    def __init__(self, sim: Simulation, params: Mapping[str, float], policy: str) -> None:
        self.sim = sim
        self.params = params
        self.policy = policy
        self.horizon = params["horizon_s"]
        self.metrics = BucketCounters(_MINUTE)
        operators = policy in _OPERATORS
        self.operate_dwfm = operators and policy not in _ADMISSION
        self.operate_nm = operators and policy not in _ADMISSION
        self.operate_nlb = operators and policy not in _VELOCITY
        self.operate_lambda = operators and policy not in _SHEDDING
        self._build_dns()
        self._build_dwfm()
        self._build_network_manager()
        self._build_nlb()
        self._build_lambda()
        # Coupling state, updated by the monitor once a minute.
        self.unleased_seconds = 0.0
        self.dwfm_impaired = False
        self.backlog_released_at = math.nan
        self.backlog_items = 0
        self.nlb_started_at = math.nan
        self.dns_emptied = False
        self.dns_restored_at = math.nan
        #: Share of launch requests EC2's request throttle lets through (1: no throttle).
        self.launch_share = 1.0
        self.dwfm_throttled = False
        self.lambda_throttled = False
        self.nm_capped_at = math.nan

    # -- construction ---------------------------------------------------------------------------

    def _build_dns(self) -> None:
        params = self.params
        design = "fenced" if self.policy in _FENCED else "original"
        self.dns = dns.initial_state(design, enactors=3, endpoints=2, margin=1, max_generation=4)
        sim = self.sim
        ttl = params["ttl_s"]
        negative = params["negative_ttl_s"]
        phases = sim.rng("chain.resolver_phase")
        answer = self.dns.records[0].value or ()

        def resolver(name: str) -> NegativeCachingResolver:
            # Each resolver holds a fresh answer from before 11:48 PM, fetched at a random
            # moment within the last TTL.
            return NegativeCachingResolver(
                ttl, negative, sim.rng(name), answer=answer, expires=phases.uniform(0.0, ttl)
            )

        self.customers = [
            resolver(f"chain.resolver.customer.{i}")
            for i in range(int(params["customer_resolvers"]))
        ]
        self.hosts_needed = hosts_for(_sub(params, "dwfm_"))
        self.host_resolvers = [
            resolver(f"chain.resolver.dwfm.{i}") for i in range(self.hosts_needed)
        ]
        self.api_resolver = resolver("chain.resolver.ec2_api")

    def _build_dwfm(self) -> None:
        sub = Dwfm2025()
        dwfm_params = sub.resolve(_sub(self.params, "dwfm_"))
        fix = "queue_admission" if self.policy in _ADMISSION else "no_fix"
        config = sub.config(dwfm_params)
        hosts = self.hosts_needed
        sim = self.sim
        self.fleet = DwfmFleet(
            sim,
            config,
            hosts,
            lambda host: sub.controls(sim, fix, dwfm_params, host),
            launch_rate=dwfm_params["launch_rate_per_1000"]
            * hosts
            * config.droplets_per_host
            / 1000,
            horizon=self.horizon,
        )
        self.host_up = [True] * hosts

    def _build_network_manager(self) -> None:
        params = self.params
        step = params["nm_step_s"]
        admission = None
        if self.policy in _ADMISSION:
            admission = QueueRate(
                int(params["nm_admission_max_queue"]),
                params["nm_admission_rate"],
                soft_queue=int(params["nm_admission_soft_queue"]),
                burst=max(1.0, params["nm_admission_rate"] * step),
            )
        self.manager = PropagationManager(
            self.sim,
            rate=params["nm_rate"],
            knee=params["nm_knee"],
            exponent=params["nm_exponent"],
            step=step,
            admission=admission,
            horizon=self.horizon,
        )

    def _build_nlb(self) -> None:
        params = self.params
        config = HealthCheckConfig(
            balancers=int(params["nlb_balancers"]),
            zones=int(params["nlb_zones"]),
            nodes_per_zone=int(params["nlb_nodes_per_zone"]),
            utilization=params["nlb_utilization"],
            check_interval_s=params["nlb_check_interval_s"],
            checker_rate=params["nlb_checker_rate"],
            change_cost=params["nlb_change_cost"],
            dns_change_cost=params["nlb_dns_change_cost"],
            unhealthy_after=int(params["nlb_unhealthy_after"]),
            healthy_after=int(params["nlb_healthy_after"]),
            fail_prob=params["nlb_fail_prob"],
            stale_after_s=params["nlb_stale_after_s"],
            az_failover_below=params["nlb_az_failover_below"],
            tick_s=params["nlb_tick_s"],
        )
        window = params["nlb_velocity_window_s"]
        share = params["nlb_velocity_max_fraction"]
        self.nlb_metrics = BucketCounters(_MINUTE)
        self.nlb = HealthCheckedFleet(
            self.sim,
            config,
            ready_at=PropagationReadyTime(self.manager, params["nlb_propagation_normal_s"]),
            launch_rate=params["nlb_launch_rate_per_h"] / 3600.0,
            velocity=(lambda: VelocityLimiter(window, max_fraction=share))
            if self.policy in _VELOCITY
            else None,
            metrics=self.nlb_metrics,
            horizon=self.horizon,
        )

    def _build_lambda(self) -> None:
        params = self.params
        self.lambda_metrics = BucketCounters(_MINUTE)
        self.classes = (
            InvocationClass("async", params["lambda_async_rate"], params["lambda_poll_factor"]),
            InvocationClass("background", params["lambda_esm_rate"], params["lambda_poll_factor"]),
        )
        self.capacity = ImpairedCapacity(
            params["lambda_capacity_per_s"],
            params["lambda_capacity_lost_fraction"],
            loss_s=max(params["lambda_loss_ramp_s"], 1e-9),
            restore_s=params["lambda_restore_s"],
            losing=self._nlb_removing,
            restoring=self._launches_connect,
        )
        self.workers = WorkerFleet(
            self.sim,
            capacity=self.capacity,
            sync_rate=params["lambda_sync_rate"],
            queued=self.classes,
            service_s=params["lambda_service_s"],
            step_s=params["lambda_step_s"],
            shedder=Lambda2025().shedder(_sub(params, "lambda_"))
            if self.policy in _SHEDDING
            else None,
            metrics=self.lambda_metrics,
            horizon=self.horizon,
        )

    # -- couplings ------------------------------------------------------------------------------

    def _nlb_removing(self, now: float) -> bool:
        """NLB keeps enough of its fleet out of DNS that instances behind it are terminated."""
        return 1.0 - self.nlb.routed_fraction() >= self.params["lambda_terminate_above"]

    def _launchable(self) -> bool:
        """New EC2 instances can be launched: endpoint resolves, API up, DWFM holds leases."""
        fleet = self.fleet
        return (
            bool(self.dns.records[0].value)
            and fleet.api_up
            and fleet.leased >= self.params["dwfm_recovered_fraction"] * fleet.droplets
        )

    def _propagation_latency(self) -> float:
        history = self.manager.history
        return history[-1][1] if history else 0.0

    def _launches_connect(self, now: float) -> bool:
        """New instances launch and get their network state in normal time."""
        return self._launchable() and (
            self._propagation_latency() <= self.params["nm_latency_threshold_s"]
        )

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        params = self.params
        sim = self.sim
        for actor in RACE:
            sim.schedule(0.0, self._race_step, actor)
        sim.schedule(0.0, self._monitor)
        self.fleet.start()
        self.manager.start()
        self.workers.start()
        sim.at(params["dns_repair_at_s"], self._repair_dns)
        if self.operate_dwfm:
            sim.at(params["dwfm_throttle_at_s"], self._throttle_dwfm)
        if self.operate_nlb:
            sim.at(params["nlb_disable_failover_at_s"], self._disable_failover)

    def _race_step(self, actor: str) -> None:
        dns.step(self.dns, actor)
        if dns.empty_records(self.dns):
            self.dns_emptied = True

    def _monitor(self) -> None:
        """Once a minute: resolvers, DWFM's dependency, and the links that follow DWFM."""
        now = self.sim.now()
        params = self.params
        record = self.dns.records[0]
        failing = sum(1 for r in self.customers if not r.resolve(now, record))
        self.metrics.peak("dynamodb_failing", now, failing / len(self.customers))
        fleet = self.fleet
        for index, resolver in enumerate(self.host_resolvers):
            up = bool(resolver.resolve(now, record))
            if up != self.host_up[index]:
                self.host_up[index] = up
                fleet.dependency(index, up)
        api = bool(self.api_resolver.resolve(now, record))
        if api != fleet.api_up:
            if api:
                fleet.api_back()
            else:
                fleet.api_down()
        leased = fleet.leased / fleet.droplets
        self.unleased_seconds += (1.0 - leased) * _MINUTE
        if leased < params["dwfm_recovered_fraction"]:
            self.dwfm_impaired = True
        launchable = self._launchable()
        if launchable and math.isnan(self.nlb_started_at):
            self.nlb_started_at = now
            self.nlb.start()
        if launchable and self.dwfm_impaired and math.isnan(self.backlog_released_at):
            self.backlog_released_at = now
            items = int(params["nm_backlog_per_s"] * self.unleased_seconds)
            self.backlog_items = items
            if items > 0:
                self.manager.release_backlog(items, params["nm_release_rate"])
        # New instances reach Network Manager at the rate EC2's request throttle lets launches
        # through, once DWFM can place them; while DWFM is impaired their propagations wait
        # with the held-back ones (the report: at 5:28 AM Network Manager "began propagating
        # updated network configurations to newly launched instances").
        if (
            self.operate_nm
            and math.isnan(self.nm_capped_at)
            and self._propagation_latency() > params["nm_latency_threshold_s"]
        ):
            self.nm_capped_at = now + params["nm_reaction_s"]
            self.sim.at(self.nm_capped_at, self._reduce_nm_load)
        if (
            self.operate_lambda
            and not self.lambda_throttled
            and not math.isnan(self.capacity.first_loss_at)
        ):
            self.lambda_throttled = True
            at = self.capacity.first_loss_at + params["lambda_reaction_s"]
            self.sim.at(max(at, now), self._throttle_lambda)
        feeding = launchable and (
            not self.dwfm_impaired or not math.isnan(self.backlog_released_at)
        )
        self.manager.set_launch_rate(
            params["nm_launch_rate"] * self.launch_share if feeding else 0.0
        )
        if now + _MINUTE <= self.horizon:
            self.sim.schedule(_MINUTE, self._monitor)

    # -- operators ------------------------------------------------------------------------------

    def _repair_dns(self) -> None:
        if dns.empty_records(self.dns) or dns.deleted_active_plans(self.dns):
            dns.repair(self.dns)
            self.dns_restored_at = self.sim.now()

    def _throttle_dwfm(self) -> None:
        """4:14 AM: throttle incoming work and restart hosts, if leases are still missing."""
        params = self.params
        fleet = self.fleet
        if fleet.leased >= params["dwfm_recovered_fraction"] * fleet.droplets:
            return
        self.dwfm_throttled = True
        share = params["dwfm_throttle_launch_share"]
        host_rate = params["dwfm_throttle_host_rate"]
        self._set_launch_throttle(host_rate, share)
        hosts = len(fleet.hosts)
        spacing = params["dwfm_restart_window_s"] / hosts
        now = self.sim.now()
        for host in range(hosts):
            self.sim.at(
                now + host * spacing, fleet.restart, host, params["dwfm_restart_downtime_s"]
            )
        # From 11:23 AM the throttles are relaxed in steps and removed at 1:50 PM.
        relax, normal = params["dwfm_relax_at_s"], params["ec2_normal_at_s"]
        stages = 4
        for k in range(1, stages):
            at = relax + (normal - relax) * (k - 1) / (stages - 1)
            if at < self.horizon:
                launch = share + (1.0 - share) * k / stages
                self.sim.at(at, self._set_launch_throttle, host_rate * 2.0**k, launch)
        if normal < self.horizon:
            self.sim.at(normal, self._relax_dwfm)

    def _set_launch_throttle(self, host_rate: float, share: float) -> None:
        self.launch_share = share
        self.fleet.throttle(host_rate, share * self.fleet.launch_rate)

    def _relax_dwfm(self) -> None:
        self.launch_share = 1.0
        self.fleet.relax()

    def _reduce_nm_load(self) -> None:
        """Operators cap Network Manager's intake (propagation has been slow for a while)."""
        params = self.params
        self.manager.throttle(params["nm_operator_intake_rate"])
        if params["dwfm_relax_at_s"] < self.horizon:
            self.sim.at(max(params["dwfm_relax_at_s"], self.sim.now()), self.manager.throttle, None)

    def _disable_failover(self) -> None:
        """9:36 AM: automatic failover off, if NLB was customer-impacting lately."""
        params = self.params
        now = self.sim.now()
        first = int(max(0.0, now - params["nlb_operator_lookback_s"]) // _MINUTE)
        rates = self._nlb_error_rate(int(now // _MINUTE))[first:]
        if not any(rate > params["nlb_impact_error_rate"] for rate in rates):
            return
        self.nlb.set_failover(False)
        if params["nlb_reenable_failover_at_s"] < self.horizon:
            self.sim.at(params["nlb_reenable_failover_at_s"], self.nlb.set_failover, True)

    def _throttle_lambda(self) -> None:
        """Throttle async work and event-source mappings (the fleet is under-scaled).

        Throttled to ``throttle_fraction`` of each class's rate; from ``lambda_relax_at_s``
        raised in three steps towards the pollers' reach, ``throttle_release_s / 4`` apart, and
        lifted at the fourth (as ``lambda-2025``).
        """
        params = self.params
        dt = params["lambda_step_s"]
        fraction = params["lambda_throttle_fraction"]
        reach = params["lambda_poll_factor"]
        relax_at = max(params["lambda_relax_at_s"], self.sim.now())
        release = params["lambda_throttle_release_s"]
        stages = 4
        for c in self.classes:
            schedule = [(self.sim.now(), fraction)]
            for k in range(1, stages):
                share = fraction + (reach - fraction) * k / stages
                schedule.append((relax_at + release * (k - 1) / stages, share))
            schedule.append((relax_at + release * (stages - 1) / stages, 0.0))
            for at, share in schedule:
                if at >= self.horizon:
                    continue
                limiter = (
                    TokenBucket(share * c.rate, max(1.0, share * c.rate * dt))
                    if share > 0.0
                    else None
                )
                self.sim.at(at, self.workers.set_limiter, c.name, limiter)

    # -- results --------------------------------------------------------------------------------

    def _health(self, minutes: int) -> _Health:
        params = self.params
        dynamodb = [
            share > params["dynamodb_impact_share"]
            for share in self.metrics.series("dynamodb_failing", minutes)
        ]
        fleet_metrics = self.fleet.metrics
        launches = fleet_metrics.series("launches", minutes)
        failed = self._launch_failures(minutes)
        threshold = params["dwfm_error_minute_threshold"]
        dwfm = [bool(n) and f / n > threshold for n, f in zip(launches, failed, strict=True)]
        latency = self.manager.metrics.series("launch_latency", minutes)
        nm_launches = self.manager.metrics.series("launches", minutes)
        refused = self.manager.metrics.series("launch_refused", minutes)
        network = [
            value > params["nm_latency_threshold_s"] or (bool(n) and r / n > 0.01)
            for value, n, r in zip(latency, nm_launches, refused, strict=True)
        ]
        nlb = [rate > params["nlb_impact_error_rate"] for rate in self._nlb_error_rate(minutes)]
        error_rate, mean_latency = self._lambda_sync(minutes)
        lambda_sync = [
            e > params["lambda_impact_error_rate"] or m > params["lambda_latency_slo_s"]
            for e, m in zip(error_rate, mean_latency, strict=True)
        ]
        lambda_async = [
            age > params["lambda_async_delay_slo_s"]
            for age in self.lambda_metrics.series("oldest_age_s", minutes)
        ]
        return _Health(dynamodb, dwfm, network, nlb, lambda_sync, lambda_async)

    def _launch_failures(self, minutes: int) -> list[float]:
        metrics = self.fleet.metrics
        return [
            a + b + c
            for a, b, c in zip(
                metrics.series("insufficient_capacity", minutes),
                metrics.series("request_limit", minutes),
                metrics.series("unavailable", minutes),
                strict=True,
            )
        ]

    def _nlb_error_rate(self, minutes: int) -> list[float]:
        demand = self.nlb_metrics.series("demand", minutes)
        errors = self.nlb_metrics.series("errors", minutes)
        return [e / d if d > 0 else 0.0 for e, d in zip(errors, demand, strict=True)]

    def _lambda_sync(self, minutes: int) -> tuple[list[float], list[float]]:
        metrics = self.lambda_metrics
        sync = metrics.series("sync", minutes)
        rejected = metrics.series("sync_rejected", minutes)
        latency_sum = metrics.series("sync_latency_sum", minutes)
        admitted = metrics.series("sync_admitted", minutes)
        error_rate = [r / s if s else 0.0 for r, s in zip(rejected, sync, strict=True)]
        mean_latency = [t / n if n else 0.0 for t, n in zip(latency_sum, admitted, strict=True)]
        return error_rate, mean_latency

    def result(self, scenario: str, seed: int, series: bool) -> RunResult:
        params = self.params
        horizon = self.horizon
        hold = params["recovery_hold_s"]
        minutes = math.ceil(horizon / _MINUTE)
        health = self._health(minutes)
        flags = health.by_subsystem()
        metrics: dict[str, float] = {}
        for name, bad in flags.items():
            impact, recover = impact_timeline(bad, horizon, hold)
            metrics[f"{name}_impact_minutes"] = impact
            metrics[f"{name}_time_to_recover_s"] = recover
        lambda_all = flags["lambda"]
        any_bad = [any(column) for column in zip(*flags.values(), strict=True)]
        impact, recover = impact_timeline(any_bad, horizon, hold)
        metrics["time_to_recover_s"] = recover
        metrics["recovered"] = 0.0 if math.isnan(recover) else 1.0
        metrics["impact_minutes"] = impact
        metrics["impact_subsystem_minutes"] = float(
            sum(metrics[f"{name}_impact_minutes"] for name in SUBSYSTEMS)
        )
        metrics["subsystems_impacted"] = float(sum(1 for bad in flags.values() if any(bad)))
        metrics["dns_record_emptied"] = 1.0 if self.dns_emptied else 0.0
        milestones = self._milestones(health, lambda_all)
        metrics.update(milestones)
        metrics.update(_ordering(milestones))
        metrics["lambda_sync_impact_minutes"] = float(sum(health.lambda_sync))
        metrics["lambda_async_delay_minutes"] = float(sum(health.lambda_async))
        metrics["dwfm_leases_end_fraction"] = self.fleet.leased / self.fleet.droplets
        metrics["nm_backlog_released"] = float(self.backlog_items)
        metrics["nm_peak_working_set"] = float(self.manager.peak_working_set)
        metrics["nlb_az_failovers"] = float(self.nlb.az_failovers)
        metrics["nlb_peak_capacity_removed"] = self.nlb.peak_removed_fraction
        metrics["lambda_min_capacity_share"] = self._min_lambda_capacity(minutes)
        out: dict[str, list[float]] = {}
        if series:
            out = self._series(minutes, health, any_bad)
        digest = hashlib.blake2b(
            f"{self.sim.trace_hash()}:{self.workers.digest()}".encode(), digest_size=16
        )
        return RunResult(
            scenario=scenario,
            policy=self.policy,
            seed=seed,
            stuck=math.isnan(recover),
            metrics=metrics,
            trace_hash=digest.hexdigest(),
            series=out,
        )

    def _min_lambda_capacity(self, minutes: int) -> float:
        full = self.params["lambda_capacity_per_s"]
        values = self.lambda_metrics.series("capacity", minutes)
        return min(values[:-1] or values) / full if values else 1.0

    def _milestones(self, health: _Health, lambda_all: list[bool]) -> dict[str, float]:
        """When each milestone of :data:`MILESTONES` happened in this run (s after 11:48 PM).

        A recovery milestone is 0 when its subsystem was never impaired and NaN when it had not
        recovered for good by the horizon; an onset (propagation slow, Lambda under-scaled) is
        NaN when it never happened.
        """
        params = self.params
        horizon = self.horizon
        hold = params["recovery_hold_s"]
        threshold = params["nm_latency_threshold_s"]
        history = self.manager.history
        slow_at = next((t for t, latency, _, _ in history if latency > threshold), math.nan)
        if math.isnan(slow_at):
            normal_at = 0.0
        elif history[-1][1] > threshold:
            normal_at = math.nan
        else:
            normal_at = next(t for t, latency, _, _ in reversed(history) if latency > threshold)
            normal_at = next(t for t, _, _, _ in history if t > normal_at)
        ec2 = [a or b for a, b in zip(health.dwfm, health.network, strict=True)]
        return {
            "dns_restored_at_s": self.dns_restored_at if self.dns_emptied else 0.0,
            "dynamodb_recovered_at_s": impact_timeline(health.dynamodb, horizon, hold)[1],
            "leases_back_at_s": recovery_time(
                self.fleet.history, 0.0, params["dwfm_recovered_fraction"]
            )
            if self.dwfm_impaired
            else 0.0,
            "propagation_slow_at_s": slow_at,
            "lambda_underscaled_at_s": self.capacity.first_loss_at,
            "nlb_stable_at_s": impact_timeline(health.nlb, horizon, hold)[1],
            "propagation_normal_at_s": normal_at,
            "lambda_capacity_restored_at_s": self._capacity_restored(),
            "ec2_normal_at_s": impact_timeline(ec2, horizon, hold)[1],
            "lambda_recovered_at_s": impact_timeline(lambda_all, horizon, hold)[1],
        }

    def _capacity_restored(self) -> float:
        """When lost Lambda capacity was back in full: 0 if none was lost, NaN if never."""
        capacity = self.capacity
        if math.isnan(capacity.first_loss_at):
            return 0.0
        return capacity.restored_at if capacity.down == 0.0 else math.nan

    def _series(self, minutes: int, health: _Health, any_bad: list[bool]) -> dict[str, list[float]]:
        fleet_metrics = self.fleet.metrics
        launches = fleet_metrics.series("launches", minutes)
        failed = self._launch_failures(minutes)
        error_rate, mean_latency = self._lambda_sync(minutes)
        full = self.params["lambda_capacity_per_s"]
        impacted = [
            float(sum(column)) for column in zip(*health.by_subsystem().values(), strict=True)
        ]
        return {
            "dynamodb_failing_share": self.metrics.series("dynamodb_failing", minutes),
            "dwfm_leased_fraction": self.fleet.leased_series(_MINUTE, minutes),
            "ec2_launch_error_rate": [
                f / n if n else 0.0 for n, f in zip(launches, failed, strict=True)
            ],
            "network_launch_latency_s": self.manager.metrics.series("launch_latency", minutes),
            "network_working_set": self.manager.metrics.series("working_set", minutes),
            "nlb_connection_error_rate": self._nlb_error_rate(minutes),
            "nlb_capacity_removed": self.nlb_metrics.series("removed_fraction", minutes),
            "lambda_capacity_share": [
                c / full for c in self.lambda_metrics.series("capacity", minutes)
            ],
            "lambda_sync_error_rate": error_rate,
            "lambda_sync_latency_s": mean_latency,
            "lambda_backlog": self.lambda_metrics.series("backlog", minutes),
            "subsystems_impacted": impacted,
            "customer_impact": [1.0 if bad else 0.0 for bad in any_bad],
        }


def _ordering(milestones: Mapping[str, float]) -> dict[str, float]:
    """How the run's milestones compare with the report's order and times.

    ``milestones_in_order`` is 1 when every milestone of :data:`MILESTONES` happened and each
    is no earlier than the one before it in the report; ``milestone_inversions`` counts the
    adjacent pairs out of order (missing milestones count as out of order);
    ``milestone_mean_abs_error_min`` is the mean distance to the report's times over the
    milestones that happened.
    """
    times = [milestones[name] for name, _, _ in MILESTONES]
    inversions = 0
    for before, after in itertools.pairwise(times):
        if math.isnan(before) or math.isnan(after) or after < before:
            inversions += 1
    errors = [
        abs(milestones[name] - reported) / 60.0
        for name, reported, _ in MILESTONES
        if not math.isnan(milestones[name])
    ]
    return {
        "milestones_in_order": 1.0 if inversions == 0 else 0.0,
        "milestone_inversions": float(inversions),
        "milestone_mean_abs_error_min": sum(errors) / len(errors) if errors else math.nan,
    }


def milestone_table(results: Sequence[RunResult]) -> list[tuple[str, float, float]]:
    """``(report text, reported s, mean simulated s)`` per milestone over ``results``."""
    rows: list[tuple[str, float, float]] = []
    for name, reported, text in MILESTONES:
        values = [r.metrics[name] for r in results if not math.isnan(r.metrics[name])]
        rows.append((text, reported, sum(values) / len(values) if values else math.nan))
    return rows
