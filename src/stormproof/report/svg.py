"""Tiny dependency-free SVG charts for self-contained HTML reports."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

__all__ = ["interval_chart", "line_chart"]

# A colour-blind-safe palette (Okabe and Ito, 2008).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")


def _nice_max(value: float) -> float:
    if value <= 0 or math.isnan(value):
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        candidate = step * 10**exponent
        if candidate >= value:
            return float(candidate)
    return float(10 ** (exponent + 1))


def line_chart(
    title: str,
    series: Mapping[str, Sequence[float]],
    *,
    x_step: float = 1.0,
    x_label: str = "time (s)",
    y_label: str = "",
    shade: tuple[float, float] | None = None,
    markers: Sequence[tuple[float, str]] = (),
    width: int = 640,
    height: int = 260,
) -> str:
    """An SVG line chart of named series sampled every ``x_step``.

    ``shade`` marks an x-range; ``markers`` draws a dashed vertical line, numbered, at each
    ``(x, label)`` (an incident report's milestones), the label in the line's tooltip.
    """
    left, right, top, bottom = 56, 150, 28, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    points = max((len(values) for values in series.values()), default=0)
    x_max = max(points, 1) * x_step
    finite = [v for values in series.values() for v in values if not math.isnan(v)]
    y_max = _nice_max(max(finite, default=1.0))

    def x(value: float) -> float:
        return left + plot_w * value / x_max

    def y(value: float) -> float:
        return top + plot_h * (1 - value / y_max)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}" font-family="sans-serif" font-size="11">',
        f'<text x="{left}" y="16" font-size="13" font-weight="bold">{escape(title)}</text>',
    ]
    if shade is not None:
        x0, x1 = (min(max(v, 0.0), x_max) for v in shade)
        parts.append(
            f'<rect x="{x(x0):.1f}" y="{top}" width="{max(x(x1) - x(x0), 0):.1f}" '
            f'height="{plot_h}" fill="#f2d7d5"/>'
        )
    for i in range(5):
        value = y_max * i / 4
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
            'stroke="#ddd"/>'
            f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value:g}</text>'
        )
    tick = _nice_max(x_max / 5)
    for i in range(int(x_max / tick) + 1):
        value = tick * i
        parts.append(
            f'<text x="{x(value):.1f}" y="{top + plot_h + 16}" text-anchor="middle">'
            f"{value:g}</text>"
        )
    parts.append(
        f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle">'
        f"{escape(x_label)}</text>"
        f'<text x="14" y="{top + plot_h / 2}" transform="rotate(-90 14 {top + plot_h / 2})" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )
    for number, (at, label) in enumerate(markers, start=1):
        if not 0.0 <= at <= x_max:
            continue
        parts.append(
            f"<g><title>{number}: {escape(label)}</title>"
            f'<line x1="{x(at):.1f}" x2="{x(at):.1f}" y1="{top}" y2="{top + plot_h}" '
            'stroke="#555" stroke-dasharray="4 3"/>'
            f'<text x="{x(at) + 2:.1f}" y="{top + 10}" fill="#555">{number}</text></g>'
        )
    for index, (name, values) in enumerate(series.items()):
        colour = PALETTE[index % len(PALETTE)]
        coords = " ".join(
            f"{x(i * x_step):.1f},{y(v):.1f}" for i, v in enumerate(values) if not math.isnan(v)
        )
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" points="{coords}"/>'
        )
        legend_y = top + 14 * index + 6
        parts.append(
            f'<line x1="{left + plot_w + 10}" x2="{left + plot_w + 28}" y1="{legend_y}" '
            f'y2="{legend_y}" stroke="{colour}" stroke-width="3"/>'
            f'<text x="{left + plot_w + 32}" y="{legend_y + 4}">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def interval_chart(
    title: str, rows: Mapping[str, tuple[float, float, float]], *, width: int = 640
) -> str:
    """Horizontal point-and-interval chart of proportions: ``name -> (p, low, high)``."""
    left, right, top, row_h = 170, 30, 28, 26
    plot_w = width - left - right
    height = top + row_h * len(rows) + 30
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}" font-family="sans-serif" font-size="11">',
        f'<text x="{left}" y="16" font-size="13" font-weight="bold">{escape(title)}</text>',
    ]
    for i in range(6):
        value = i / 5
        px = left + plot_w * value
        parts.append(
            f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{top}" y2="{height - 24}" stroke="#ddd"/>'
            f'<text x="{px:.1f}" y="{height - 10}" text-anchor="middle">{value:.0%}</text>'
        )
    for index, (name, (p, low, high)) in enumerate(rows.items()):
        cy = top + row_h * index + row_h / 2
        colour = PALETTE[index % len(PALETTE)]
        parts.append(
            f'<text x="{left - 8}" y="{cy + 4:.1f}" text-anchor="end">{escape(name)}</text>'
            f'<line x1="{left + plot_w * low:.1f}" x2="{left + plot_w * high:.1f}" '
            f'y1="{cy:.1f}" y2="{cy:.1f}" stroke="{colour}" stroke-width="3"/>'
            f'<circle cx="{left + plot_w * p:.1f}" cy="{cy:.1f}" r="5" fill="{colour}"/>'
        )
    parts.append("</svg>")
    return "".join(parts)
