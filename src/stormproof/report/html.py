"""Self-contained HTML reports of experiments: plots, stuck probabilities, provenance."""

from __future__ import annotations

import math
from html import escape

from stormproof.report.svg import interval_chart, line_chart
from stormproof.sim.experiment import ExperimentResult
from stormproof.sim.scenario import Scenario

__all__ = ["STYLE", "experiment_report", "fmt", "series_charts"]

#: The style sheet every stormproof HTML report embeds.
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: .5rem 0; font-size: .9rem; }
th, td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.note { color: #555; font-size: .9rem; }
"""
_STYLE = STYLE  # the name it had before it was public


def _mean_series(result: ExperimentResult, policy: str, name: str) -> list[float]:
    runs = [r.series[name] for r in result.policies[policy].results if name in r.series]
    if not runs:
        return []
    length = max(len(values) for values in runs)
    return [
        sum(values[i] if i < len(values) else 0.0 for values in runs) / len(runs)
        for i in range(length)
    ]


def fmt(value: float | None) -> str:
    """A number for a report table: three significant digits, "n/a" for ``None`` and NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"


_fmt = fmt  # the name it had before it was public


def series_charts(scenario: Scenario, result: ExperimentResult) -> dict[str, str]:
    """One SVG line chart per time series of ``result`` (mean over seeds, every policy).

    Charts carry the scenario's milestones as markers and shade a ``spike_start``/``spike_s``
    window when the scenario has one. Empty when the runs returned no series.
    """
    policies = list(result.policies)
    names = sorted({n for s in result.policies.values() for r in s.results for n in r.series})
    width = scenario.series_bucket_s
    unit = "s" if width == 1 else f"{width:g} s"
    shade = None
    if "spike_start" in result.params and "spike_s" in result.params:
        start = result.params["spike_start"]
        shade = (start, start + result.params["spike_s"])
    markers = scenario.milestones(result.params)
    return {
        name: line_chart(
            f"{name} per {'second' if width == 1 else unit + ' bucket'}",
            {p: _mean_series(result, p, name) for p in policies},
            x_step=width,
            y_label=f"{name}/{unit}",
            shade=shade,
            markers=markers,
        )
        for name in names
    }


def experiment_report(scenario: Scenario, result: ExperimentResult) -> str:
    """The HTML text of a report for ``result`` of ``scenario``."""
    policies = list(result.policies)
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>stormproof: {escape(scenario.name)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(scenario.name)}</h1><p>{escape(scenario.description)}</p>",
        f"<p class='note'>{len(result.seeds)} seed(s) per policy, the same seeds for every "
        "policy (common random numbers). Stuck means: "
        f"{escape(scenario.stuck_rule)}.</p>",
        "<h2>Outcome per policy</h2><table><tr><th></th>",
    ]
    summaries = list(result.policies.values())
    parts += [f"<th>{escape(name)}</th>" for name in policies]
    parts.append("</tr><tr><td>stuck runs</td>")
    parts += [f"<td class='num'>{s.stuck_runs} / {s.runs}</td>" for s in summaries]
    parts.append("</tr><tr><td>P(stuck), 95 % Wilson interval</td>")
    parts += [
        f"<td class='num'>{s.stuck_probability:.0%} ({s.ci95[0]:.0%} &ndash; {s.ci95[1]:.0%})</td>"
        for s in summaries
    ]
    parts.append("</tr>")
    for metric in sorted({m for s in summaries for m in s.metrics}):
        parts.append(f"<tr><td>{escape(metric)}</td>")
        parts += [f"<td class='num'>{fmt(s.metrics.get(metric))}</td>" for s in summaries]
        parts.append("</tr>")
    parts.append("</table>")
    parts.append(
        interval_chart(
            "Probability of staying stuck (95 % Wilson interval)",
            {
                name: (s.stuck_probability, s.ci95[0], s.ci95[1])
                for name, s in result.policies.items()
            },
        )
    )
    charts = series_charts(scenario, result)
    if charts:
        width = scenario.series_bucket_s
        unit = "s" if width == 1 else f"{width:g} s"
        parts.append(f"<h2>Over time (mean over seeds, per {unit} bucket)</h2>")
        milestones = scenario.milestones(result.params)
        if milestones:
            parts.append(
                "<p class='note'>Dashed lines: the incident report's timeline.</p>"
                "<table><tr><th>#</th><th>seconds after time 0</th><th>the report</th></tr>"
            )
            parts += [
                f"<tr><td class='num'>{n}</td><td class='num'>{at:g}</td>"
                f"<td>{escape(label)}</td></tr>"
                for n, (at, label) in enumerate(milestones, start=1)
            ]
            parts.append("</table>")
        parts += charts.values()
    parts.append("<h2>Parameters and where they come from</h2><table>")
    parts.append("<tr><th>parameter</th><th>value</th><th>meaning</th><th>source</th></tr>")
    for param in scenario.params:
        parts.append(
            f"<tr><td>{escape(param.name)}</td>"
            f"<td class='num'>{result.params.get(param.name, param.default):g}</td>"
            f"<td>{escape(param.description)}</td><td>{escape(param.source)}</td></tr>"
        )
    parts.append("</table><h2>Trace hashes</h2><table><tr><th>policy</th><th>seed</th>")
    parts.append("<th>trace hash</th></tr>")
    for name, summary in result.policies.items():
        for run in summary.results:
            parts.append(
                f"<tr><td>{escape(name)}</td><td class='num'>{run.seed}</td>"
                f"<td><code>{run.trace_hash}</code></td></tr>"
            )
    parts.append("</table></body></html>")
    return "".join(parts)
