"""The HTML report of ``stormproof model run --report``: the experiment report of a topology.

It is :func:`stormproof.report.experiment_report` -- the same page ``stormproof run --report``
writes for the replays -- given a view of the scenario that carries the topology's name, a
description of the triggers and of what each policy set changes, and the trigger window shaded
on every time-series chart. Time series (mean over seeds, per second): the goodput and the load
offered at the entry points and fleets, and per service ``arrivals``, ``goodput`` and ``queue``
(the longest queue in the second), plus ``leased`` for fleets with leases.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from stormproof.model.simulate import AS_WRITTEN, TopologyScenario
from stormproof.report.html import experiment_report
from stormproof.sim.experiment import ExperimentResult

__all__ = ["describe", "topology_report"]


def describe(scenario: TopologyScenario, sources: Mapping[str, str] | None = None) -> str:
    """One paragraph: the topology, the triggers applied and what each policy changes.

    ``sources`` maps a policy-set name to the file it came from.
    """
    topology = scenario.topology
    sources = sources or {}
    text = [topology.description.rstrip(".") + "."] if topology.description else []
    triggers = [
        f"{t.name} ({type(t).__name__} of {t.target}, {t.start:g}-{t.start + t.duration:g} s)"
        for t in topology.triggers
    ]
    text.append("Triggers: " + (", ".join(triggers) or "none") + ".")
    policies = [f"{AS_WRITTEN} (the clients and protections as the topology writes them)"]
    for policy_set in topology.policy_sets:
        where = f", from {sources[policy_set.name]}" if policy_set.name in sources else ""
        said = policy_set.description.rstrip(".") + ": " if policy_set.description else ""
        policies.append(f"{policy_set.name}{where} ({said}{policy_set.summary()})")
    text.append("Policies: " + "; ".join(policies) + ".")
    return " ".join(text)


def topology_report(
    scenario: TopologyScenario,
    result: ExperimentResult,
    sources: Mapping[str, str] | None = None,
) -> str:
    """The HTML text of the report of ``result``, an experiment on ``scenario``.

    Run the experiment with ``series=True`` for the time-series charts.
    """
    topology = scenario.topology
    # The report reads the title and description from the scenario class; a subclass made
    # here, in the process that writes the report, carries the topology's own.
    view_class = type(
        "TopologyReportView",
        (TopologyScenario,),
        {"name": topology.name, "description": describe(scenario, sources)},
    )
    view = view_class(topology)
    shown = result
    if topology.triggers:
        # series_charts shades a spike_start/spike_s window: here, from the first trigger's
        # start to the last one's end. The report's parameter table lists only the scenario's
        # parameters (a topology has none), so these two do not appear as parameters.
        start = min(t.start for t in topology.triggers)
        end = max(t.start + t.duration for t in topology.triggers)
        shown = replace(
            result, params={**result.params, "spike_start": start, "spike_s": end - start}
        )
    return experiment_report(view, shown)
