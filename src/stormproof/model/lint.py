"""The configuration linter: static findings computed from a topology's graph and policies.

Each rule is one small function from a :class:`~stormproof.model.spec.Topology` to a list of
:class:`Finding`; :data:`RULES` lists them in the order docs/model/lint.md documents them. A
finding carries a severity (``error`` fails ``stormproof model lint``; ``warning`` does not), a
one-line message, the field it is about (so the CLI can print the file's line), a link to the
rule's section of docs/model/lint.md and links to the pages of the mechanisms that fix it.

The retry-amplification maths is in :func:`amplification`; the budget maths behind its
"with budgets" figure is documented in docs/model/lint.md#retry-amplification.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from stormproof.model.graph import (
    Caller,
    Path,
    callers,
    format_path,
    outgoing,
    served_zones,
    topological_order,
)
from stormproof.model.spec import ClientSpec, ServiceSpec, Topology, backoff_has_jitter

__all__ = [
    "AMPLIFICATION_ERROR",
    "AMPLIFICATION_WARNING",
    "RULES",
    "Amplification",
    "Finding",
    "amplification",
    "lint",
]

Severity = Literal["error", "warning"]

#: Worst-case attempts per entry request at which amplification is a warning (more than two
#: layers of three attempts).
AMPLIFICATION_WARNING = 10.0
#: Attempts per entry request that remain, even with budgets applied, at which it is an error
#: (three layers of three attempts: 27).
AMPLIFICATION_ERROR = 27.0

_LINT_DOC = "docs/model/lint.md"
_BUDGETS = "docs/guide.md#retry-budgets"
_JITTER = "docs/guide.md#backoff-and-jitter"
_BREAKER = "docs/policies/breaker.md"
_BULKHEAD = "docs/policies/bulkhead.md"
_ADMISSION = "docs/policies/admission.md"
_VELOCITY = "docs/policies/velocity.md"
_PIPELINE = "docs/policies/pipeline.md"


@dataclass(frozen=True, slots=True)
class Finding:
    """One finding of one rule.

    ``subject`` names what it is about (a service, ``a->b``, ``entry:name``); ``path`` is the
    field in the file's terms; ``doc`` links the rule's section; ``fix`` the mechanisms' pages;
    ``data`` holds the numbers behind the message.
    """

    rule: str
    severity: Severity
    subject: str
    path: Path
    message: str
    fix: tuple[str, ...]
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def doc(self) -> str:
        """The rule's section of docs/model/lint.md."""
        return f"{_LINT_DOC}#{self.rule}"

    @property
    def field(self) -> str:
        """The dotted field path."""
        return format_path(self.path)

    def to_json(self, line: int | None = None) -> dict[str, Any]:
        """The JSON form used by ``stormproof model lint --json``."""
        return {
            "rule": self.rule,
            "severity": self.severity,
            "subject": self.subject,
            "field": self.field,
            "line": line,
            "message": self.message,
            "doc": self.doc,
            "fix": list(self.fix),
            "data": self.data,
        }


def _caller_path(caller: Caller, topology: Topology) -> Path:
    if caller.kind == "edge":
        index = next(i for i, e in enumerate(topology.edges) if e.key == caller.name)
        return ("edges", index, "client")
    return ("entries" if caller.kind == "entry" else "fleets", caller.name, "client")


def _caller_subject(caller: Caller) -> str:
    return caller.name if caller.kind == "edge" else f"{caller.kind}:{caller.name}"


def _all_callers(topology: Topology) -> list[tuple[str, Caller]]:
    """(callee, caller) for every call relation, in service order."""
    return [(s.name, c) for s in topology.services for c in callers(topology, s.name)]


# -- retry amplification --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Amplification:
    """Attempts reaching a service per request at one entry point or fleet, in the worst case.

    ``worst_case`` is the sum over every path from the entry to the service of the product of
    attempts (times hedged copies) along it; ``with_budgets`` is the same with each budgeted
    edge's factor replaced by its long-run factor in an outage (docs/model/lint.md).
    """

    source: str
    service: str
    worst_case: float
    with_budgets: float


def _factor(client: ClientSpec, budgeted: bool) -> float:
    attempts = float(client.max_attempts)
    if budgeted and client.budget is not None:
        attempts = client.budget.outage_factor(client.max_attempts)
    return attempts * client.copies_per_attempt


def amplification(topology: Topology) -> list[Amplification] | None:
    """Per entry point (and fleet) and service reached, the worst-case attempts per request.

    ``None`` when the edges form a cycle (amplification is then unbounded).
    """
    order = topological_order(topology)
    if order is None:
        return None
    results: list[Amplification] = []
    outside = [(f"entry:{e.name}", e.target, e.client) for e in topology.entries] + [
        (f"fleet:{f.name}", f.target, f.client) for f in topology.fleets
    ]
    for source, target, client in outside:
        worst = dict.fromkeys(order, 0.0)
        budgeted = dict.fromkeys(order, 0.0)
        worst[target] = _factor(client, False)
        budgeted[target] = _factor(client, True)
        for name in order:
            for edge in outgoing(topology, name):
                worst[edge.target] += worst[name] * _factor(edge.client, False)
                budgeted[edge.target] += budgeted[name] * _factor(edge.client, True)
        for name in order:
            if worst[name] > 0.0:
                results.append(Amplification(source, name, worst[name], budgeted[name]))
    return results


def rule_retry_amplification(topology: Topology) -> list[Finding]:
    """Worst-case attempts per entry request reaching each service (product along paths)."""
    found = amplification(topology)
    if found is None:
        return [
            Finding(
                "retry-amplification",
                "warning",
                "edges",
                ("edges",),
                "the edges form a cycle: retries around it can amplify without bound",
                (_BUDGETS, _BREAKER),
            )
        ]
    findings = []
    for item in found:
        if item.worst_case < AMPLIFICATION_WARNING and item.with_budgets < AMPLIFICATION_ERROR:
            continue
        severity: Severity = "error" if item.with_budgets >= AMPLIFICATION_ERROR else "warning"
        findings.append(
            Finding(
                "retry-amplification",
                severity,
                item.service,
                ("services", item.service),
                f"up to {item.worst_case:g} attempts reach {item.service} per request at "
                f"{item.source} ({item.with_budgets:.3g} with budgets applied)",
                (_BUDGETS, _BREAKER),
                {
                    "source": item.source,
                    "worst_case": item.worst_case,
                    "with_budgets": item.with_budgets,
                },
            )
        )
    return findings


# -- timeouts -------------------------------------------------------------------------------------


def _local_time(service: ServiceSpec) -> float:
    """Local work of one request at no load (base plus one request's contention)."""
    return service.service_time.base + service.service_time.per_request


def callee_time(topology: Topology, name: str) -> float:
    """The longest ``name`` can take to answer one request at no load, its retries included.

    Local work, then every dependency call in turn taking its client's worst case (every
    attempt times out, longest backoffs, bounded by ``total_timeout``) -- or, for a
    ``parallel`` service, the slowest of them: the service's own clients bound how long it
    waits, so nothing deeper needs visiting.
    """
    service = topology.service(name)
    edges = outgoing(topology, name)
    # Sequential calls add up; a parallel fan-out waits for the slowest of its calls.
    parallel = service.calls == "parallel"
    always = [e.client.worst_case_time() for e in edges if e.for_zone is None]
    # Zone-routed calls exclude each other: a request makes those of one zone only.
    by_zone: dict[str, list[float]] = {}
    for edge in edges:
        if edge.for_zone is not None:
            by_zone.setdefault(edge.for_zone, []).append(edge.client.worst_case_time())
    zoned = max((max(times) if parallel else sum(times) for times in by_zone.values()), default=0.0)
    if parallel:
        return _local_time(service) + max([*always, zoned], default=0.0)
    return _local_time(service) + sum(always) + zoned


def rule_timeout_misalignment(topology: Topology) -> list[Finding]:
    """A caller timeout shorter than the callee's own worst case, or total < one attempt."""
    findings = []
    for callee, caller in _all_callers(topology):
        client = caller.client
        path = _caller_path(caller, topology)
        subject = _caller_subject(caller)
        if client.total_timeout is not None and client.total_timeout < client.timeout:
            findings.append(
                Finding(
                    "timeout-misalignment",
                    "error",
                    subject,
                    (*path, "total_timeout"),
                    f"total_timeout {client.total_timeout:g} s is shorter than one attempt's "
                    f"timeout {client.timeout:g} s: the second attempt can never finish",
                    (_PIPELINE,),
                    {"total_timeout": client.total_timeout, "timeout": client.timeout},
                )
            )
        own = callee_time(topology, callee)
        if not outgoing(topology, callee):
            continue  # a leaf's local work against the timeout is a capacity question
        if client.timeout < own:
            findings.append(
                Finding(
                    "timeout-misalignment",
                    "error",
                    subject,
                    (*path, "timeout"),
                    f"gives up after {client.timeout:g} s while {callee} may work up to "
                    f"{own:.3g} s on the call (its own retries included): abandoned work",
                    (_PIPELINE,),
                    {"timeout": client.timeout, "callee_worst_case_s": own},
                )
            )
    return findings


# -- retries --------------------------------------------------------------------------------------


def rule_retry_without_jitter(topology: Topology) -> list[Finding]:
    """Retries whose backoff has no randomness (synchronised retry waves)."""
    findings = []
    for _, caller in _all_callers(topology):
        client = caller.client
        if client.retries and not backoff_has_jitter(client.backoff):
            findings.append(
                Finding(
                    "retry-without-jitter",
                    "warning",
                    _caller_subject(caller),
                    (*_caller_path(caller, topology), "backoff"),
                    f"retries ({client.max_attempts} attempts) with a backoff without jitter: "
                    "callers that failed together retry together",
                    (_JITTER,),
                )
            )
    return findings


def rule_unbudgeted_shared_dependency(topology: Topology) -> list[Finding]:
    """Retries with neither budget nor breaker into a service that several callers share."""
    findings = []
    for service in topology.services:
        found = callers(topology, service.name)
        if len(found) < 2:
            continue
        for caller in found:
            client = caller.client
            if client.retries and client.budget is None and client.breaker is None:
                findings.append(
                    Finding(
                        "unbudgeted-retries-on-shared-dependency",
                        "warning",
                        _caller_subject(caller),
                        (*_caller_path(caller, topology), "max_attempts"),
                        f"retries into {service.name}, shared by {len(found)} callers, with "
                        "no retry budget or circuit breaker to stop them in an outage",
                        (_BUDGETS, _BREAKER),
                        {"callers": len(found)},
                    )
                )
    return findings


# -- services -------------------------------------------------------------------------------------


def rule_unbounded_queue(topology: Topology) -> list[Finding]:
    """A service that accepts any amount of waiting work."""
    findings = []
    for service in topology.services:
        if service.queue_limit is None and service.admission is None:
            what = "workers and queue" if service.workers is None else "queue"
            findings.append(
                Finding(
                    "unbounded-queue",
                    "warning",
                    service.name,
                    ("services", service.name),
                    f"unbounded {what} and no admission policy: overload turns into latency "
                    "that callers time out and retry",
                    (_ADMISSION,),
                )
            )
    return findings


def rule_shared_pool_without_zone_bulkhead(topology: Topology) -> list[Finding]:
    """A bounded pool serving several zones with no per-zone bulkhead (2011 control plane)."""
    findings = []
    for service in topology.services:
        zones = served_zones(topology, service.name)
        if len(zones) > 1 and service.workers is not None and service.bulkhead is None:
            findings.append(
                Finding(
                    "shared-pool-without-zone-bulkhead",
                    "warning",
                    service.name,
                    ("services", service.name, "workers"),
                    f"{service.workers} workers shared by zones {', '.join(zones)} with no "
                    "per-zone bulkhead: one slow zone can take every worker",
                    (_BULKHEAD,),
                    {"zones": zones},
                )
            )
    return findings


def rule_automation_without_velocity(topology: Topology) -> list[Finding]:
    """Automation that removes capacity with no bound on how fast (2025 NLB)."""
    findings = []
    for service in topology.services:
        automation = service.automation
        if automation is not None and automation.removes_capacity and automation.velocity is None:
            findings.append(
                Finding(
                    "automation-without-velocity-control",
                    "error",
                    service.name,
                    ("services", service.name, "automation"),
                    "automation removes capacity with no velocity limit: failing checks can "
                    "remove all of it",
                    (_VELOCITY,),
                )
            )
    return findings


def rule_fleet_exceeds_capacity(topology: Topology) -> list[Finding]:
    """Fleet lease/health-check traffic (size / period) above the target's capacity (DWFM)."""
    findings = []
    for service in topology.services:
        fleets = [f for f in topology.fleets if f.target == service.name]
        if not fleets:
            continue
        offered = sum(f.rate for f in fleets)
        capacity = service.capacity()
        # Lapsed members call every retry_wait (plus the call): after an outage, all at once.
        lapsed = sum(f.size / f.lease.retry_wait if f.lease else f.rate for f in fleets)
        if offered <= capacity < lapsed:
            leased = ", ".join(f.name for f in fleets if f.lease is not None)
            findings.append(
                Finding(
                    "fleet-exceeds-capacity",
                    "warning",
                    service.name,
                    ("fleets", fleets[0].name, "lease"),
                    f"if the leases of {leased} lapse, its members call up to {lapsed:.4g}/s "
                    f"(size / retry_wait) but {service.name} can serve at most {capacity:.4g}/s",
                    (_ADMISSION, _BUDGETS),
                    {"offered_per_s": lapsed, "capacity_per_s": capacity},
                )
            )
        if offered > capacity:
            names = ", ".join(f.name for f in fleets)
            findings.append(
                Finding(
                    "fleet-exceeds-capacity",
                    "error",
                    service.name,
                    ("fleets", fleets[0].name, "period"),
                    f"fleet {names} needs {offered:.4g} calls/s (size / period) but "
                    f"{service.name} can serve at most {capacity:.4g}/s",
                    (_ADMISSION,),
                    {"offered_per_s": offered, "capacity_per_s": capacity},
                )
            )
    return findings


#: Every rule, in the order of docs/model/lint.md.
RULES: tuple[Callable[[Topology], list[Finding]], ...] = (
    rule_retry_amplification,
    rule_timeout_misalignment,
    rule_retry_without_jitter,
    rule_unbudgeted_shared_dependency,
    rule_unbounded_queue,
    rule_shared_pool_without_zone_bulkhead,
    rule_automation_without_velocity,
    rule_fleet_exceeds_capacity,
)


def lint(topology: Topology) -> list[Finding]:
    """Every finding of every rule, errors first, then in rule order."""
    findings = [finding for rule in RULES for finding in rule(topology)]
    return sorted(findings, key=lambda f: 0 if f.severity == "error" else 1)
