"""Self-contained HTML reports of parameter sweeps: heat maps, tipping boundaries, differences.

Each map is an inline SVG: the first swept parameter runs along x, the second (if any) along y,
and each further one gets its own panel. Crossings of the 50 % tipping boundary are drawn on the
stuck-probability maps as black bars between the grid values where they fall.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from html import escape

from stormproof.report.html import STYLE, fmt
from stormproof.sim.scenario import Scenario
from stormproof.sim.sweep import RECOVERY_METRIC, Axis, BoundaryLine, SweepResult

__all__ = ["heat_map", "sweep_report"]

#: More panels than this (sweeps of three or more parameters) are listed in tables only.
MAX_PANELS = 12

# Ramps between colours of the Okabe-Ito palette used by the other charts and white.
_WHITE = (255, 255, 255)
_VERMILLION = (0xD5, 0x5E, 0x00)
_BLUE = (0x00, 0x72, 0xB2)


def _mix(low: tuple[int, int, int], high: tuple[int, int, int], t: float) -> str:
    t = min(max(t, 0.0), 1.0)
    r, g, b = (round(a + (c - a) * t) for a, c in zip(low, high, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def probability_colour(value: float) -> str:
    """0 white to 1 vermillion."""
    return _mix(_WHITE, _VERMILLION, value)


def difference_colour(value: float) -> str:
    """-1 blue (fewer stuck runs) through 0 white to +1 vermillion (more)."""
    return _mix(_WHITE, _BLUE, -value) if value < 0 else _mix(_WHITE, _VERMILLION, value)


def _ramp(maximum: float) -> Callable[[float], str]:
    scale = maximum if maximum > 0 else 1.0
    return lambda value: _mix(_WHITE, _BLUE, value / scale)


def _dark(colour: str) -> bool:
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.299 * r + 0.587 * g + 0.114 * b < 140


def heat_map(
    title: str,
    x_axis: Axis,
    y_axis: Axis | None,
    values: Sequence[Sequence[float | None]],
    *,
    colour: Callable[[float], str],
    label: Callable[[float], str],
    x_marks: Sequence[tuple[int, float]] = (),
    y_marks: Sequence[tuple[int, float]] = (),
    cell_w: int = 56,
    cell_h: int = 30,
) -> str:
    """An SVG heat map: ``values[row][column]``, rows along ``y_axis`` (bottom row first).

    ``None`` is a cell without a value (drawn hatched grey, labelled n/a). ``x_marks`` are
    ``(row, x position)`` and ``y_marks`` ``(column, y position)`` boundary crossings, positions in
    grid-index units (1.5 is half-way between the second and third value).
    """
    rows = len(values)
    columns = len(x_axis.values)
    left, top, bottom, right = 76, 30, 44, 16
    # Wide enough for the title too (about 7 px per character at 13 px bold).
    width = max(left + columns * cell_w + right, 16 + 7 * len(title))
    height = top + rows * cell_h + bottom
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}" font-family="sans-serif" font-size="11">',
        f'<text x="8" y="16" font-size="13" font-weight="bold">{escape(title)}</text>',
    ]

    def cx(position: float) -> float:
        return left + cell_w * (position + 0.5)

    def cy(position: float) -> float:
        # Row 0 at the bottom, as on a plot whose y values grow upwards.
        return top + cell_h * (rows - position - 0.5)

    for row, row_values in enumerate(values):
        for column, value in enumerate(row_values):
            x0, y0 = left + column * cell_w, top + (rows - 1 - row) * cell_h
            if value is None or math.isnan(value):
                parts.append(
                    f'<rect x="{x0}" y="{y0}" width="{cell_w}" height="{cell_h}" '
                    'fill="#eeeeee" stroke="#cccccc"/>'
                    f'<text x="{x0 + cell_w / 2}" y="{y0 + cell_h / 2 + 4}" '
                    'text-anchor="middle" fill="#777">n/a</text>'
                )
                continue
            fill = colour(value)
            ink = "#ffffff" if _dark(fill) else "#222222"
            parts.append(
                f'<rect x="{x0}" y="{y0}" width="{cell_w}" height="{cell_h}" fill="{fill}" '
                f'stroke="#cccccc"><title>{escape(label(value))}</title></rect>'
                f'<text x="{x0 + cell_w / 2}" y="{y0 + cell_h / 2 + 4}" text-anchor="middle" '
                f'fill="{ink}">{escape(label(value))}</text>'
            )
    for row, position in x_marks:
        x = cx(position)
        y0 = top + (rows - 1 - row) * cell_h
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y0 + 2}" y2="{y0 + cell_h - 2}" '
            'stroke="#000000" stroke-width="3"/>'
        )
    for column, position in y_marks:
        y = cy(position)
        x0 = left + column * cell_w
        parts.append(
            f'<line x1="{x0 + 2}" x2="{x0 + cell_w - 2}" y1="{y:.1f}" y2="{y:.1f}" '
            'stroke="#000000" stroke-width="3"/>'
        )
    for column, value in enumerate(x_axis.values):
        parts.append(
            f'<text x="{cx(column):.1f}" y="{top + rows * cell_h + 14}" '
            f'text-anchor="middle">{value:g}</text>'
        )
    parts.append(
        f'<text x="{left + columns * cell_w / 2:.1f}" y="{height - 8}" text-anchor="middle">'
        f"{escape(x_axis.name)}</text>"
    )
    if y_axis is not None:
        for row, value in enumerate(y_axis.values):
            parts.append(
                f'<text x="{left - 6}" y="{cy(row) + 4:.1f}" text-anchor="end">{value:g}</text>'
            )
        middle = top + rows * cell_h / 2
        parts.append(
            f'<text x="14" y="{middle:.1f}" transform="rotate(-90 14 {middle:.1f})" '
            f'text-anchor="middle">{escape(y_axis.name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _index_position(values: Sequence[float], crossing: float) -> float:
    """A crossing's value as a position in grid-index units (values are increasing)."""
    for i, (a, b) in enumerate(itertools.pairwise(values)):
        if a <= crossing <= b:
            return i + (crossing - a) / (b - a)
    return 0.0 if crossing < values[0] else float(len(values) - 1)


def _point_text(point: Mapping[str, float]) -> str:
    return ", ".join(f"{k} = {v:g}" for k, v in point.items()) or "(single point)"


class _Panels:
    """Splits a sweep's grid into 2-D panels: x = axis 0, y = axis 1, one panel per rest."""

    def __init__(self, result: SweepResult) -> None:
        self.axes = result.axes
        self.index = {
            tuple(point[a.name] for a in result.axes): i for i, point in enumerate(result.points)
        }
        self.x = result.axes[0] if result.axes else Axis("", (0.0,))
        self.y = result.axes[1] if len(result.axes) > 1 else None
        self.rest = result.axes[2:]

    def panels(self) -> list[dict[str, float]]:
        """The values of the third and further axes of each panel."""
        return [
            dict(zip((a.name for a in self.rest), combo, strict=True))
            for combo in itertools.product(*(a.values for a in self.rest))
        ]

    def grid(
        self, fixed: Mapping[str, float], by_point: Sequence[float | None]
    ) -> list[list[float | None]]:
        """Values by grid-point index laid out as rows (y values) of columns (x values)."""
        y_values = self.y.values if self.y is not None else (None,)
        rows = []
        for y in y_values:
            row = []
            for x in self.x.values:
                key: list[float] = [x] if self.axes else []
                if y is not None:
                    key.append(y)
                key += [fixed[a.name] for a in self.rest]
                row.append(by_point[self.index[tuple(key)] if self.axes else 0])
            rows.append(row)
        return rows

    def marks(
        self, lines: Sequence[BoundaryLine], fixed: Mapping[str, float]
    ) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        """Boundary crossings of this panel as heat-map marks along x and along y."""
        x_marks: list[tuple[int, float]] = []
        y_marks: list[tuple[int, float]] = []
        for line in lines:
            if any(line.at.get(name) != value for name, value in fixed.items()):
                continue
            for crossing in line.crossings:
                if line.axis == self.x.name:
                    row = self.y.values.index(line.at[self.y.name]) if self.y is not None else 0
                    x_marks.append((row, _index_position(self.x.values, crossing.value)))
                elif self.y is not None and line.axis == self.y.name:
                    column = self.x.values.index(line.at[self.x.name])
                    y_marks.append((column, _index_position(self.y.values, crossing.value)))
        return x_marks, y_marks

    def maps(
        self,
        panels: Sequence[Mapping[str, float]],
        title: str,
        by_point: Sequence[float | None],
        *,
        colour: Callable[[float], str],
        label: Callable[[float], str],
        boundary: Sequence[BoundaryLine] = (),
    ) -> list[str]:
        """One heat map of ``by_point`` per panel, with the crossings of ``boundary`` marked."""
        maps = []
        for fixed in panels:
            x_marks, y_marks = self.marks(boundary, fixed)
            maps.append(
                heat_map(
                    _panel_title(title, fixed),
                    self.x,
                    self.y,
                    self.grid(fixed, by_point),
                    colour=colour,
                    label=label,
                    x_marks=x_marks,
                    y_marks=y_marks,
                )
            )
        return maps


def _panel_title(title: str, fixed: Mapping[str, float]) -> str:
    return f"{title} ({_point_text(fixed)})" if fixed else title


def sweep_report(scenario: Scenario, result: SweepResult) -> str:
    """The HTML text of a report for ``result`` of ``scenario``."""
    layout = _Panels(result)
    panels = layout.panels()
    shown = panels[:MAX_PANELS]
    baseline = result.policies[0]
    swept = {axis.name for axis in result.axes}
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>stormproof sweep: {escape(scenario.name)}</title><style>{STYLE}</style>",
        "</head><body>",
        f"<h1>Sweep: {escape(scenario.name)}</h1><p>{escape(scenario.description)}</p>",
        f"<p class='note'>{len(result.points)} grid point(s) &times; {len(result.policies)} "
        f"polic{'y' if len(result.policies) == 1 else 'ies'} &times; {len(result.seeds)} "
        f"seed(s) = {len(result.runs)} runs. The same seeds at every grid point and for every "
        "policy (common random numbers), so policies are compared seed by seed. Stuck means: "
        f"{escape(scenario.stuck_rule)}. Digest of all runs: <code>{result.digest()}</code>.</p>",
    ]
    if len(panels) > len(shown):
        parts.append(
            f"<p class='note'>Maps are drawn for the first {len(shown)} of {len(panels)} "
            "combinations of the third and further parameters; the tables list all.</p>"
        )
    parts.append("<h2>Probability of staying stuck</h2>")
    parts.append(
        "<p class='note'>Share of seeds that end stuck. Black bars: where the probability "
        "crosses 50 %, interpolated linearly between neighbouring grid values.</p>"
    )
    boundaries = {policy: result.boundary(policy) for policy in result.policies}
    for policy in result.policies:
        parts += layout.maps(
            shown,
            f"{policy}: P(stuck)",
            [c.stuck_probability for c in result.cells[policy]],
            colour=probability_colour,
            label=lambda v: f"{v:.0%}",
            boundary=boundaries[policy],
        )
    parts.append("<h2>Tipping boundary (50 %)</h2><table>")
    parts.append("<tr><th>policy</th><th>along</th><th>with</th><th>crosses 50 % at</th>")
    parts.append("<th>P(stuck) on the line</th></tr>")
    for policy, lines in boundaries.items():
        for line in lines:
            if line.crossings:
                where = "; ".join(
                    f"{c.value:.3g} ({'rising' if c.rising else 'falling'})" for c in line.crossings
                )
            else:
                where = "never (always below)" if line.high < 0.5 else "never (always at or above)"
            parts.append(
                f"<tr><td>{escape(policy)}</td><td>{escape(line.axis)}</td>"
                f"<td>{escape(_point_text(line.at))}</td><td>{escape(where)}</td>"
                f"<td class='num'>{line.low:.0%} &ndash; {line.high:.0%}</td></tr>"
            )
    parts.append("</table>")
    if any(RECOVERY_METRIC in run.metrics for run in result.runs):
        parts.append("<h2>Time to recover</h2>")
        parts.append(
            "<p class='note'>Mean seconds from the end of the trigger to lasting health, over the "
            "runs that recovered (n/a: none did).</p>"
        )
        for policy in result.policies:
            cells = result.cells[policy]
            means = [c.recovery_mean_s for c in cells if c.recovery_mean_s is not None]
            parts += layout.maps(
                shown,
                f"{policy}: mean time to recover (s)",
                [c.recovery_mean_s for c in cells],
                colour=_ramp(max(means, default=1.0)),
                label=lambda v: f"{v:.3g}",
            )
    if len(result.policies) > 1:
        parts.append(f"<h2>Difference from {escape(baseline)}</h2>")
        parts.append(
            "<p class='note'>P(stuck) of each policy minus that of the first, paired by seed. "
            "Blue: fewer stuck runs than the baseline; vermillion: more.</p>"
        )
        for policy in result.policies[1:]:
            parts += layout.maps(
                shown,
                f"{policy} minus {baseline}",
                [d.difference for d in result.difference(policy, baseline)],
                colour=difference_colour,
                label=lambda v: f"{v:+.0%}",
            )
    parts += _cell_table(result)
    parts.append("<h2>Parameters and where they come from</h2><table>")
    parts.append("<tr><th>parameter</th><th>value</th><th>meaning</th><th>source</th></tr>")
    for param in scenario.params:
        if param.name in swept:
            axis = next(a for a in result.axes if a.name == param.name)
            value = "swept: " + ", ".join(f"{v:g}" for v in axis.values)
        else:
            value = f"{result.base.get(param.name, param.default):g}"
        parts.append(
            f"<tr><td>{escape(param.name)}</td><td class='num'>{escape(value)}</td>"
            f"<td>{escape(param.description)}</td><td>{escape(param.source)}</td></tr>"
        )
    parts.append("</table></body></html>")
    return "".join(parts)


def _cell_table(result: SweepResult) -> list[str]:
    parts = ["<h2>Every grid point</h2><table><tr><th>grid point</th><th>policy</th>"]
    parts.append("<th>stuck runs</th><th>P(stuck), 95 % Wilson interval</th>")
    parts.append("<th>recovered</th><th>recovery mean / p50 / p90 (s)</th>")
    if len(result.policies) > 1:
        parts.append(f"<th>minus {escape(result.policies[0])} (95 % paired)</th>")
    parts.append("</tr>")
    diffs = {p: result.difference(p, result.policies[0]) for p in result.policies[1:]}
    for index, point in enumerate(result.points):
        for policy in result.policies:
            cell = result.cells[policy][index]
            recovery = " / ".join(
                fmt(v) for v in (cell.recovery_mean_s, cell.recovery_p50_s, cell.recovery_p90_s)
            )
            parts.append(
                f"<tr><td>{escape(_point_text(point))}</td><td>{escape(policy)}</td>"
                f"<td class='num'>{cell.stuck_runs} / {cell.runs}</td>"
                f"<td class='num'>{cell.stuck_probability:.0%} ({cell.ci95[0]:.0%} &ndash; "
                f"{cell.ci95[1]:.0%})</td><td class='num'>{cell.recovered_runs}</td>"
                f"<td class='num'>{recovery}</td>"
            )
            if len(result.policies) > 1:
                if policy in diffs:
                    d = diffs[policy][index]
                    parts.append(
                        f"<td class='num'>{d.difference:+.0%} ({d.ci95[0]:+.0%} &ndash; "
                        f"{d.ci95[1]:+.0%})</td>"
                    )
                else:
                    parts.append("<td></td>")
            parts.append("</tr>")
    parts.append("</table>")
    return parts
