"""JSON and self-contained HTML reports of a load run (inline SVG plots, no scripts).

The HTML report follows the house style of :mod:`stormproof.report`: one file, a summary table,
a per-burst table, and plots made with :func:`stormproof.report.svg.line_chart`, each above a
strip that marks the bursts on the same time axis.
"""

from __future__ import annotations

import json
import math
from html import escape
from pathlib import Path
from typing import Any

from stormproof.load.session import LoadRun
from stormproof.report.html import STYLE
from stormproof.report.svg import PALETTE, line_chart

__all__ = ["html_report", "json_text", "write_json", "write_report"]

# The other reports' style sheet, plus failed-burst cells and chart spacing.
_STYLE = (
    STYLE
    + """td.bad { background: #f2d7d5; }
figure { margin: 1rem 0; }
"""
)

# line_chart's fixed geometry (left margin, right margin, width): the burst strip matches it.
_LEFT, _RIGHT, _WIDTH = 56, 150, 640


def _clean(value: Any) -> Any:
    """NaN and infinities become ``None`` so the JSON is strict."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(item) for item in value]
    return value


def json_text(run: LoadRun) -> str:
    """The run as strict JSON text (see :meth:`LoadRun.to_json`)."""
    return json.dumps(_clean(run.to_json()), indent=1, allow_nan=False)


def write_json(run: LoadRun, path: str | Path) -> None:
    """Write :func:`json_text` to ``path``."""
    Path(path).write_text(json_text(run), encoding="utf-8")


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 1000:,.1f} ms"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _burst_strip(run: LoadRun, x_max: float) -> str:
    plot_w = _WIDTH - _LEFT - _RIGHT
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="22" role="img" '
        'aria-label="bursts" font-family="sans-serif" font-size="11">',
        f'<text x="{_LEFT - 6}" y="15" text-anchor="end">bursts</text>',
        f'<rect x="{_LEFT}" y="4" width="{plot_w}" height="14" fill="#f4f4f4"/>',
    ]
    for burst in run.analysis.bursts:
        x0 = _LEFT + plot_w * min(burst.start, x_max) / x_max
        x1 = _LEFT + plot_w * min(burst.end, x_max) / x_max
        parts.append(
            f'<rect x="{x0:.1f}" y="4" width="{max(x1 - x0, 1):.1f}" height="14" '
            f'fill="{PALETTE[1]}"><title>burst {burst.index}: {burst.start:.2f}-'
            f"{burst.end:.2f} s</title></rect>"
        )
        if burst.time_to_recover is not None:
            x2 = _LEFT + plot_w * min(burst.end + burst.time_to_recover, x_max) / x_max
            parts.append(
                f'<rect x="{x1:.1f}" y="8" width="{max(x2 - x1, 0):.1f}" height="6" '
                f'fill="{PALETTE[4]}"/>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _figure(run: LoadRun, chart: str, x_max: float) -> str:
    return f"<figure>{chart}<br>{_burst_strip(run, x_max)}</figure>"


def html_report(run: LoadRun) -> str:
    """The HTML text of a self-contained report of ``run``."""
    analysis = run.analysis
    base = analysis.baseline
    totals = analysis.totals
    width = analysis.bin_width
    bins = len(analysis.series.get("offered_rate", []))
    x_max = max(bins, 1) * width
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>stormproof load: {escape(run.target)}</title><style>{_STYLE}</style>",
        "</head><body>",
        f"<h1>Load test of {escape(run.target)}</h1>",
        f"<p>Shape: {escape(run.shape)}; seed {run.seed}; {run.plan.duration:g} s planned, "
        f"{run.wall_seconds:.1f} s taken.</p>",
        "<h2>Summary</h2><table>",
    ]
    rows = [
        ("requests", f"{totals['requests']:,}"),
        ("ok / shed / errors", f"{totals['ok']:,} / {totals['shed']:,} / {totals['errors']:,}"),
        ("duplicates sent / answers replayed", f"{totals['duplicates']} / {totals['replayed']}"),
        ("invalid events sent", str(totals["invalid"])),
        ("latency p50 / p99 (ok)", f"{_ms(analysis.p50)} / {_ms(analysis.p99)}"),
        ("shed answers without Retry-After", str(analysis.shed_without_retry_after)),
        ("statuses", ", ".join(f"{k}: {v}" for k, v in analysis.statuses.items()) or "none"),
        (
            "baseline",
            f"{base.start:.2f}-{base.end:.2f} s, {base.ok} ok of {base.requests}; p50 "
            f"{_ms(base.p50)}, non-ok {_pct(base.error_rate)}"
            + (f" ({escape(base.note)})" if base.note else ""),
        ),
        (
            "healthy window",
            f"{analysis.criteria.window:g} s with median latency <= {_ms(base.latency_limit)} "
            f"and non-ok share <= {_pct(base.error_limit)}",
        ),
    ]
    parts += [f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in rows]
    parts.append("</table>")
    parts.append(
        "<h2>Per burst</h2><table><tr><th>#</th><th>window (s)</th><th>requests</th>"
        "<th>success</th><th>shed (with Retry-After)</th><th>errors</th><th>p50</th>"
        "<th>p99</th><th>time to recover</th></tr>"
    )
    for burst in analysis.bursts:
        ttr = (
            f"&le; {burst.time_to_recover:g} s"
            if burst.time_to_recover is not None
            else f"not recovered ({escape(burst.recovery_note)})"
        )
        css = "num" if burst.time_to_recover is not None else "num bad"
        parts.append(
            f"<tr><td>{burst.index}</td><td>{burst.start:.2f}&ndash;{burst.end:.2f}</td>"
            f"<td class='num'>{burst.requests}</td><td class='num'>{_pct(burst.success_rate)}"
            f"</td><td class='num'>{burst.shed} ({burst.shed_with_retry_after})</td>"
            f"<td class='num'>{burst.errors}</td><td class='num'>{_ms(burst.p50)}</td>"
            f"<td class='num'>{_ms(burst.p99)}</td><td class='{css}'>{ttr}</td></tr>"
        )
    parts.append("</table>")
    parts.append(
        "<p class='note'>Requests are grouped by the time they were due. Time to recover: the "
        "start of the first window after the burst from which every window up to the next "
        "burst is healthy (an upper bound, to the window's resolution). Orange bars below the "
        "plots are bursts, yellow the time to recover.</p>"
    )
    series = analysis.series
    if series:
        parts.append("<h2>Timeline</h2>")
        charts = [
            line_chart(
                "Arrival rate: planned vs answered",
                {
                    "planned": series["offered_rate"],
                    "ok": series["ok_rate"],
                    "shed": series["shed_rate"],
                    "errors": series["error_rate"],
                },
                x_step=width,
                y_label="requests/s",
            ),
            line_chart(
                "Latency of ok requests",
                {"p50": series["p50_ms"], "p99": series["p99_ms"]},
                x_step=width,
                y_label="ms",
            ),
        ]
        parts += [_figure(run, chart, x_max) for chart in charts]
    parts.append(
        "<p class='note'>Generated by stormproof load. Latency is measured from the due time, "
        "so generator lag counts as latency.</p></body></html>"
    )
    return "".join(parts)


def write_report(run: LoadRun, path: str | Path) -> None:
    """Write :func:`html_report` to ``path``."""
    Path(path).write_text(html_report(run), encoding="utf-8")
