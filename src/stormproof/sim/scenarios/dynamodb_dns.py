"""dynamodb-dns-2025: the DNS plan race that emptied DynamoDB's regional endpoint record.

Replays the DynamoDB section of ``shared/seeds/aws-2025-10-dynamodb-us-east-1.txt`` (the
report is in Chinese in the seed; quotations below give the Chinese and an English gloss). A
Planner makes a new plan every ``planner_period_s``; three Enactors poll for the newest plan,
check once that it is newer than what is applied, write it endpoint by endpoint -- each write
a transaction whose time has a lognormal body and, with probability ``tail_prob``, a Pareto
tail (an Enactor "blocked" and retrying) -- and then clean up plans more than ``margin``
generations older than the one they applied. Resolvers cache answers for ``ttl_s``.

The actors are the step functions of :mod:`stormproof.sim.parts.dns`; this module only times
them on the kernel. Policies: ``original`` (the report's design) and ``fenced``
(generation-checked writes and a clean-up that never deletes a plan in use).
"""

from __future__ import annotations

from collections.abc import Mapping

from stormproof.sim.kernel import Simulation
from stormproof.sim.parts import dns
from stormproof.sim.scenario import Param, RunResult, Scenario

__all__ = ["DynamoDbDns"]

_SEED = "seeds/aws-2025-10-dynamodb-us-east-1.txt, DynamoDB"


class DynamoDbDns(Scenario):
    """The October 2025 DynamoDB DNS Planner/Enactor race, original and fenced designs."""

    name = "dynamodb-dns-2025"
    description = "DNS plan race empties an endpoint record (AWS us-east-1, Oct 2025)"
    policies = dns.DESIGNS
    stuck_rule = (
        "an endpoint record was empty, or its active plan deleted, at any time (the state "
        "needs an operator: the automation cannot repair it)"
    )
    params = (
        Param(
            "enactors",
            3,
            "independent DNS Enactors",
            f"{_SEED}: '在三个不同的可用区（AZ）中冗余且完全独立地运行' (runs redundantly and "  # noqa: RUF001 - quoted verbatim
            "fully independently in three different AZs)",
            1,
            16,
            integer=True,
        ),
        Param(
            "endpoints",
            4,
            "endpoints each plan is applied to, one transaction each",
            f"{_SEED}: '公共区域端点 ... FIPS 合规端点、IPv6 端点和账户特定端点' (public regional, "
            "FIPS, IPv6 and account-specific endpoints); assumed: one record each, 4 in all",
            1,
            64,
            integer=True,
        ),
        Param(
            "planner_period_s",
            30,
            "seconds between plan generations",
            f"assumed: the report says only '定期为服务的每个端点创建新的 DNS 计划' ({_SEED}: "
            "periodically creates a new DNS plan)",
            0.1,
        ),
        Param(
            "margin",
            5,
            "clean-up deletes plans more than this many generations older",
            f"assumed: {_SEED}: '比它刚应用的计划显著更旧的计划' (plans significantly older than "
            "the one it just applied)",
            0,
            integer=True,
        ),
        Param(
            "poll_s",
            5,
            "seconds between an idle Enactor's looks for a new plan",
            f"assumed: {_SEED}: '都会查找新计划' (each looks for new plans)",
            0.01,
        ),
        Param(
            "apply_s",
            0.5,
            "median time of one endpoint transaction (s), lognormal body",
            f"assumed: {_SEED}: '此过程通常会迅速完成' (this process typically completes rapidly)",
            0.001,
        ),
        Param(
            "apply_sigma",
            0.5,
            "sigma of the lognormal body of a transaction time",
            "assumed: a moderate spread",
            0,
        ),
        Param(
            "tail_prob",
            0.001,
            "probability that a transaction is blocked and retried (Pareto tail added)",
            f"assumed: {_SEED}: '在尝试事务时遇到延迟，并被另一个...DNS 执行器阻塞' (delays when a "  # noqa: RUF001 - quoted verbatim
            "transaction is blocked by another Enactor); rare, per the report 'unlikely'",
            0,
            1,
        ),
        Param(
            "tail_scale_s",
            10,
            "minimum of the Pareto tail delay (s)",
            "assumed: retries take at least several seconds",
            0.001,
        ),
        Param(
            "tail_alpha",
            1.1,
            "Pareto shape of the tail delay (smaller is fatter)",
            f"assumed: fat enough for '异常高的延迟' ({_SEED}: unusually high delays)",
            0.1,
        ),
        Param(
            "operator_repair_s",
            9420,
            "seconds from the record emptying to the operator's repair",
            f"{_SEED}: 11:48 PM (DNS failures begin) to '凌晨 2:25，所有 DNS 信息都已恢复' "  # noqa: RUF001 - quoted verbatim
            "(by 2:25 AM all DNS information was restored): 2 h 37 min",
            0,
        ),
        Param(
            "ttl_s",
            60,
            "resolver cache TTL (s), for positive and empty answers",
            f"assumed; {_SEED}: '随着缓存的 DNS 记录在凌晨 2:25 到凌晨 2:40 之间过期' (as cached "
            "records expired between 2:25 and 2:40 AM) bounds it by 15 min",
            0.1,
        ),
        Param(
            "resolvers",
            20,
            "caching resolvers, spread over the endpoints",
            "assumed: enough to average over cache phases",
            1,
            10_000,
            integer=True,
        ),
        Param(
            "horizon",
            86_400,
            "simulated seconds",
            "assumed: one day",
            1,
        ),
    )

    def run(
        self, params: Mapping[str, float], policy: str, seed: int, *, series: bool = False
    ) -> RunResult:
        """Run the model once on the kernel."""
        self.check_policy(policy)
        sim = Simulation(seed, max_events=self.max_events)
        model = _DnsModel(sim, policy, params)
        model.start()
        horizon = params["horizon"]
        sim.run(until=horizon)
        model.finish(horizon)
        metrics = {
            "empty_record_seconds": model.empty_seconds,
            "empty_record_events": float(model.empty_events),
            "active_plan_deleted_events": float(model.deleted_events),
            "resolution_failure_fraction": model.failed_resolver_seconds
            / (params["resolvers"] * horizon),
            "max_generation_regression": float(model.max_regression),
            "stale_writes_rejected": float(model.state.stale_writes),
            "operator_repairs": float(model.repairs),
            "plans": float(model.state.generation),
        }
        return RunResult(
            scenario=self.name,
            policy=policy,
            seed=seed,
            stuck=model.empty_events > 0 or model.deleted_events > 0,
            metrics=metrics,
            trace_hash=sim.trace_hash(),
            series={},
        )


class _DnsModel:
    """Times the DNS actors' steps on the kernel and measures the records and resolvers."""

    def __init__(self, sim: Simulation, design: str, params: Mapping[str, float]) -> None:
        self.sim = sim
        self.params = params
        self.state = dns.initial_state(
            design,
            enactors=int(params["enactors"]),
            endpoints=int(params["endpoints"]),
            margin=int(params["margin"]),
            max_generation=2**62,
        )
        self.horizon = params["horizon"]
        self.empty_since: float | None = None
        self.empty_seconds = 0.0
        self.empty_events = 0
        self.deleted_events = 0
        self.deleted_now = False
        self.max_regression = 0
        self.repairs = 0
        self.repair_pending = False
        self.failed_resolver_seconds = 0.0
        self.caches = [dns.ResolverCache(params["ttl_s"]) for _ in range(int(params["resolvers"]))]

    def start(self) -> None:
        params = self.params
        self.sim.schedule(params["planner_period_s"], self.plan)
        start_rng = self.sim.rng("dns.start")
        for index in range(len(self.state.enactors)):
            self.sim.schedule(start_rng.uniform(0, params["poll_s"]), self.poll, index)
        ttl = params["ttl_s"]
        for index in range(len(self.caches)):
            self.sim.schedule(ttl * index / len(self.caches), self.resolve, index)

    # -- actors ---------------------------------------------------------------------------------

    def plan(self) -> None:
        dns.step(self.state, dns.PLANNER)
        self.sim.schedule(self.params["planner_period_s"], self.plan)

    def poll(self, index: int) -> None:
        actor = f"E{index}"
        if dns.next_step_kind(self.state, actor) == "pickup":
            dns.step(self.state, actor)
            self.sim.schedule(0.0, self.check, index)
        else:
            self.sim.schedule(self.params["poll_s"], self.poll, index)

    def check(self, index: int) -> None:
        actor = f"E{index}"
        dns.step(self.state, actor)
        if dns.next_step_kind(self.state, actor) == "apply":
            self.sim.schedule(self.transaction_time(index), self.apply, index)
        else:
            self.sim.schedule(self.params["poll_s"], self.poll, index)

    def apply(self, index: int) -> None:
        actor = f"E{index}"
        dns.step(self.state, actor)
        self.observe()
        if dns.next_step_kind(self.state, actor) == "apply":
            self.sim.schedule(self.transaction_time(index), self.apply, index)
        else:
            self.sim.schedule(0.0, self.cleanup, index)

    def cleanup(self, index: int) -> None:
        dns.step(self.state, f"E{index}")
        self.observe()
        self.sim.schedule(self.params["poll_s"], self.poll, index)

    def transaction_time(self, index: int) -> float:
        """Lognormal body; with probability ``tail_prob`` plus a Pareto-distributed retry delay."""
        params = self.params
        rng = self.sim.rng(f"dns.enactor{index}")
        time = params["apply_s"] * rng.lognormvariate(0.0, params["apply_sigma"])
        if rng.random() < params["tail_prob"]:
            time += params["tail_scale_s"] * rng.paretovariate(params["tail_alpha"])
        return time

    def repair(self) -> None:
        dns.repair(self.state)
        self.repairs += 1
        self.repair_pending = False
        self.observe()

    def resolve(self, index: int) -> None:
        now = self.sim.now()
        cache = self.caches[index]
        record = self.state.records[index % len(self.state.records)]
        if not cache.resolve(now, record):
            self.failed_resolver_seconds += min(cache.ttl, self.horizon - now)
        self.sim.schedule(cache.ttl, self.resolve, index)

    # -- measurement ----------------------------------------------------------------------------

    def observe(self) -> None:
        now = self.sim.now()
        state = self.state
        empty = bool(dns.empty_records(state))
        if empty and self.empty_since is None:
            self.empty_since = now
            self.empty_events += 1
        elif not empty and self.empty_since is not None:
            self.empty_seconds += now - self.empty_since
            self.empty_since = None
        deleted = bool(dns.deleted_active_plans(state))
        if deleted and not self.deleted_now:
            self.deleted_events += 1
        self.deleted_now = deleted
        for high, record in zip(state.high, state.records, strict=True):
            if record.generation is not None:
                self.max_regression = max(self.max_regression, high - record.generation)
        if (empty or deleted) and not self.repair_pending:
            self.repair_pending = True
            self.sim.schedule(self.params["operator_repair_s"], self.repair)

    def finish(self, horizon: float) -> None:
        if self.empty_since is not None:
            self.empty_seconds += horizon - self.empty_since
            self.empty_since = None
