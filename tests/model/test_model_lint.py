"""The linter: each rule with a positive and a negative case; amplification by hand."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from stormproof.model.lint import RULES, Finding, amplification, callee_time, lint
from stormproof.model.spec import (
    AutomationSpec,
    AwsQuotaSpec,
    BulkheadSpec,
    ClientSpec,
    ConstantLoad,
    EdgeSpec,
    EntrySpec,
    FleetSpec,
    RatioBudgetSpec,
    ServiceSpec,
    ServiceTime,
    Topology,
    VelocitySpec,
)
from stormproof.policies.admission import QueueLimit
from stormproof.policies.backoff import Constant, Exponential, Jitter
from stormproof.policies.breaker import BreakerConfig
from stormproof.policies.pipeline import Hedge

JITTERED = Exponential(base=0.1, cap=2.0, jitter=Jitter.FULL)


def service(name: str, **options: object) -> ServiceSpec:
    options.setdefault("workers", 10)
    options.setdefault("queue_limit", 10)
    return ServiceSpec(name, ServiceTime(0.01), **options)  # type: ignore[arg-type]


def client(attempts: int = 1, **options: object) -> ClientSpec:
    options.setdefault("backoff", JITTERED)
    return ClientSpec(max_attempts=attempts, **options)  # type: ignore[arg-type]


def topology(
    services: list[ServiceSpec],
    edges: list[EdgeSpec],
    entry_client: ClientSpec | None = None,
    **options: object,
) -> Topology:
    entries = (EntrySpec("users", services[0].name, ConstantLoad(1.0), entry_client or client()),)
    return Topology(
        "t",
        tuple(services),
        entries=entries,
        edges=tuple(edges),
        **options,  # type: ignore[arg-type]
    )


def rules(findings: list[Finding], rule: str) -> list[Finding]:
    return [f for f in findings if f.rule == rule]


def chain(attempts: int, budget: RatioBudgetSpec | None = None) -> Topology:
    return topology(
        [service("a"), service("b"), service("c")],
        [
            EdgeSpec("a", "b", client(attempts, budget=budget, timeout=10)),
            EdgeSpec("b", "c", client(attempts, budget=budget, timeout=1)),
        ],
        client(attempts, budget=budget, timeout=100),
    )


# -- amplification ---------------------------------------------------------------------------------


def test_three_layers_of_three_attempts_make_27() -> None:
    found = {a.service: a for a in amplification(chain(3)) or []}
    assert [found[s].worst_case for s in "abc"] == [3, 9, 27]
    assert [found[s].with_budgets for s in "abc"] == [3, 9, 27]


def test_ratio_budgets_cap_each_layer_at_one_plus_the_ratio() -> None:
    found = {a.service: a for a in amplification(chain(3, RatioBudgetSpec(ratio=0.2))) or []}
    assert [found[s].worst_case for s in "abc"] == [3, 9, 27]
    assert [found[s].with_budgets for s in "abc"] == pytest.approx([1.2, 1.44, 1.728])


def test_diamond_sums_the_products_of_every_path() -> None:
    # users -2-> A; A -3-> B, A -2 (+1 hedge)-> C; B -3-> D (AWS quota), C -1-> D.
    graph = topology(
        [service("A"), service("B"), service("C"), service("D")],
        [
            EdgeSpec("A", "B", client(3)),
            EdgeSpec("A", "C", client(2, hedge=Hedge(delay=0.05, max_hedges=1))),
            EdgeSpec("B", "D", client(3, budget=AwsQuotaSpec())),
            EdgeSpec("C", "D", client(1)),
        ],
        client(2),
    )
    found = {a.service: a for a in amplification(graph) or []}
    assert found["A"].worst_case == 2
    assert found["B"].worst_case == 6
    assert found["C"].worst_case == 2 * 2 * 2  # attempts x (1 + hedges)
    assert found["D"].worst_case == 6 * 3 + 8 * 1
    assert found["D"].with_budgets == 6 * 1 + 8 * 1  # the quota drains: 1 attempt per call


def test_amplification_rule_positive_and_negative() -> None:
    bad = rules(lint(chain(3)), "retry-amplification")
    assert [(f.subject, f.severity) for f in bad] == [("c", "error")]
    assert bad[0].data["worst_case"] == 27
    assert bad[0].doc == "docs/model/lint.md#retry-amplification"
    assert "docs/guide.md#retry-budgets" in bad[0].fix
    budgeted = rules(lint(chain(3, RatioBudgetSpec())), "retry-amplification")
    assert [(f.subject, f.severity) for f in budgeted] == [("c", "warning")]
    assert rules(lint(chain(2)), "retry-amplification") == []  # 8 < 10


def test_amplification_on_a_cycle_is_unbounded() -> None:
    graph = topology(
        [service("a"), service("b")],
        [EdgeSpec("a", "b"), EdgeSpec("b", "a")],
        allow_cycles=True,
    )
    assert amplification(graph) is None
    assert "cycle" in rules(lint(graph), "retry-amplification")[0].message


# -- timeouts --------------------------------------------------------------------------------------


def test_caller_timeout_shorter_than_callee_retries_is_an_error() -> None:
    # b calls c with 3 attempts of 1 s and backoffs up to 0.1 and 0.2 s: 3.3 s + 0.01 s work.
    assert callee_time(chain(3), "b") == pytest.approx(3.31)
    graph = chain(3)
    graph = replace(
        graph, edges=(replace(graph.edges[0], client=client(3, timeout=2.0)), graph.edges[1])
    )
    found = rules(lint(graph), "timeout-misalignment")
    assert [(f.subject, f.field) for f in found] == [("a->b", "edges[0].client.timeout")]
    assert found[0].data["callee_worst_case_s"] == pytest.approx(3.31)
    assert rules(lint(chain(3)), "timeout-misalignment") == []


def test_total_timeout_shorter_than_one_attempt_is_an_error() -> None:
    bad = topology([service("a")], [], client(1, timeout=2.0, total_timeout=1.0))
    found = rules(lint(bad), "timeout-misalignment")
    assert [f.field for f in found] == ["entries.users.client.total_timeout"]
    good = topology([service("a")], [], client(1, timeout=1.0, total_timeout=2.0))
    assert rules(lint(good), "timeout-misalignment") == []


# -- retries ---------------------------------------------------------------------------------------


def test_retries_without_jitter() -> None:
    flat = topology([service("a")], [], client(3, backoff=Constant(0.5)))
    assert [f.subject for f in rules(lint(flat), "retry-without-jitter")] == ["entry:users"]
    jittered = topology([service("a")], [], client(3, backoff=Constant(0.5, Jitter.FULL)))
    assert rules(lint(jittered), "retry-without-jitter") == []
    single = topology([service("a")], [], client(1, backoff=Constant(0.5)))
    assert rules(lint(single), "retry-without-jitter") == []


def test_unbudgeted_retries_on_a_shared_dependency() -> None:
    shared = [service("a"), service("b"), service("db")]
    edges = [EdgeSpec("a", "db", client(3)), EdgeSpec("b", "db", client(1))]
    graph = topology(shared, edges)
    found = rules(lint(graph), "unbudgeted-retries-on-shared-dependency")
    assert [(f.subject, f.data["callers"]) for f in found] == [("a->db", 2)]
    with_breaker = [EdgeSpec("a", "db", client(3, breaker=BreakerConfig())), edges[1]]
    assert (
        rules(lint(topology(shared, with_breaker)), "unbudgeted-retries-on-shared-dependency") == []
    )
    alone = topology([service("a"), service("db")], [edges[0]])
    assert rules(lint(alone), "unbudgeted-retries-on-shared-dependency") == []


# -- services --------------------------------------------------------------------------------------


def test_unbounded_queue() -> None:
    graph = topology([service("a", queue_limit=None)], [])
    assert [f.subject for f in rules(lint(graph), "unbounded-queue")] == ["a"]
    shedding = topology([service("a", queue_limit=None, admission=QueueLimit(5))], [])
    assert rules(lint(shedding), "unbounded-queue") == []
    assert rules(lint(topology([service("a")], [])), "unbounded-queue") == []


def control_plane(**options: object) -> Topology:
    services = [
        service("cp", workers=50, **options),
        service("ebs-a", zones=("a",)),
        service("ebs-b", zones=("b",)),
    ]
    return Topology(
        "cp",
        tuple(services),
        zones=("a", "b"),
        entries=tuple(EntrySpec(f"api-{z}", "cp", ConstantLoad(1.0), zone=z) for z in ("a", "b")),
        edges=(
            EdgeSpec("cp", "ebs-a", for_zone="a"),
            EdgeSpec("cp", "ebs-b", for_zone="b"),
        ),
    )


def test_shared_pool_without_zone_bulkhead() -> None:
    found = rules(lint(control_plane()), "shared-pool-without-zone-bulkhead")
    assert [(f.subject, f.data["zones"]) for f in found] == [("cp", ["a", "b"])]
    fixed = control_plane(bulkhead=BulkheadSpec(max_concurrent=20))
    assert rules(lint(fixed), "shared-pool-without-zone-bulkhead") == []
    # One zone only: nothing to isolate.
    single = replace(control_plane(), entries=control_plane().entries[:1])
    assert rules(lint(single), "shared-pool-without-zone-bulkhead") == []


def test_zone_routed_calls_are_not_added_up_for_timeouts() -> None:
    graph = control_plane()
    # Each zone's call may take 1 s (one attempt of 1 s); a request makes one of them.
    assert callee_time(graph, "cp") == pytest.approx(0.01 + 1.0)


def test_capacity_removing_automation_without_velocity_control() -> None:
    bad = topology([service("nlb", automation=AutomationSpec())], [])
    found = rules(lint(bad), "automation-without-velocity-control")
    assert [(f.subject, f.severity) for f in found] == [("nlb", "error")]
    limited = AutomationSpec(velocity=VelocitySpec(window=60.0, max_fraction=0.1))
    assert rules(lint(topology([service("nlb", automation=limited)], [])), found[0].rule) == []


def fleet_graph(size: int, period: float) -> Topology:
    # 20 workers at 0.01 s each serve at most 2,000 renewals per second.
    dwfm = ServiceSpec("dwfm", ServiceTime(0.01), workers=20, queue_limit=100)
    return Topology(
        "dwfm",
        (dwfm,),
        fleets=(FleetSpec("droplets", "dwfm", size=size, period=period),),
    )


def test_fleet_lease_traffic_beyond_capacity() -> None:
    found = rules(lint(fleet_graph(300_000, 60.0)), "fleet-exceeds-capacity")  # 5,000/s
    assert [(f.subject, f.severity) for f in found] == [("dwfm", "error")]
    assert found[0].data["offered_per_s"] == pytest.approx(5000.0)
    assert found[0].data["capacity_per_s"] == pytest.approx(2000.0)
    assert rules(lint(fleet_graph(60_000, 60.0)), "fleet-exceeds-capacity") == []  # 1,000/s


def test_errors_sort_first_and_json_has_the_links() -> None:
    findings = lint(chain(3))
    severities = [f.severity for f in findings]
    assert severities == sorted(severities, key=lambda s: s != "error")
    document = findings[0].to_json(line=7)
    assert document["line"] == 7
    assert document["doc"].startswith("docs/model/lint.md#")
    assert all(link.startswith("docs/") for link in document["fix"])


# -- docs ------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def anchors(markdown: Path) -> set[str]:
    headings = re.findall(r"^#+ (.+)$", markdown.read_text(encoding="utf-8"), re.MULTILINE)
    return {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings}


def every_finding() -> list[Finding]:
    graphs = [chain(3), control_plane(), fleet_graph(300_000, 60.0)]
    graphs.append(topology([service("a", queue_limit=None, automation=AutomationSpec())], []))
    graphs.append(
        topology([service("a")], [], client(3, backoff=Constant(0.5), timeout=2, total_timeout=1))
    )
    graphs.append(
        topology(
            [service("a"), service("b"), service("db")],
            [EdgeSpec("a", "db", client(3)), EdgeSpec("b", "db", client(1))],
        )
    )
    return [f for graph in graphs for f in lint(graph)]


def test_every_rule_has_a_docs_section_and_every_fix_link_resolves() -> None:
    findings = every_finding()
    assert len({f.rule for f in findings}) == len(RULES)
    lint_doc = ROOT / "docs" / "model" / "lint.md"
    for finding in findings:
        page, anchor = finding.doc.split("#")
        assert (ROOT / page) == lint_doc
        assert anchor in anchors(lint_doc), finding.rule
        for link in finding.fix:
            page, _, anchor = link.partition("#")
            assert (ROOT / page).exists(), link
            if anchor:
                assert anchor in anchors(ROOT / page), link
