"""The sweep report: heat maps per policy, boundary marks, differences, escaping."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from sweep_fixtures import SEEDS, Ramp

from stormproof.report.sweep import (
    MAX_PANELS,
    difference_colour,
    heat_map,
    probability_colour,
    sweep_report,
)
from stormproof.sim.backends import LocalBackend
from stormproof.sim.sweep import Axis, SweepResult, parse_axis, plan_sweep, run_sweep

SVG = re.compile(r"<svg.*?</svg>", re.S)
BAR = 'stroke="#000000" stroke-width="3"'


def sweep(scenario: Ramp, *grid: str) -> SweepResult:
    plan = plan_sweep(scenario, [parse_axis(g) for g in grid], None, SEEDS)
    return run_sweep(plan, LocalBackend(1))


def svgs(html: str) -> list[ET.Element]:
    return [ET.fromstring(svg) for svg in SVG.findall(html)]


def titles(html: str) -> list[str]:
    return [svg.get("aria-label") or "" for svg in svgs(html)]


def test_two_axes_give_each_policy_its_maps_and_the_difference() -> None:
    result = sweep(Ramp(), "x=1:4:1", "y=1,2")
    html = sweep_report(Ramp(), result)
    assert html.startswith("<!doctype html>") and html.endswith("</body></html>")
    assert titles(html) == [
        "plain: P(stuck)",
        "never: P(stuck)",
        "plain: mean time to recover (s)",
        "never: mean time to recover (s)",
        "never minus plain",
    ]
    maps = SVG.findall(html)
    # 8 cells per map, labelled with their value: the top-right cell (x = 4, y = 2) is 80 %
    assert maps[0].count("<rect") == 8
    assert ">80%</text>" in maps[0] and ">10%</text>" in maps[0]
    assert ">-80%</text>" in maps[4]
    # one bar per crossing: x = 2.5 at y = 2, and y at x = 3 and x = 4; none for "never"
    assert maps[0].count(BAR) == 3
    assert maps[1].count(BAR) == 0
    assert "Tipping boundary" in html and "2.5 (rising)" in html
    assert "never (always below)" in html
    assert "swept: 1, 2, 3, 4" in html and "swept: 1, 2" in html


def test_cells_are_laid_out_with_y_growing_upwards() -> None:
    result = sweep(Ramp(), "x=1,2", "y=1,2")
    first = SVG.findall(sweep_report(Ramp(), result))[0]
    cells = re.findall(r'<rect x="(\d+)" y="(\d+)"[^>]*><title>([^<]*)</title>', first)
    by_label = {label: (int(x), int(y)) for x, y, label in cells}
    # p = x * y / 10: 10 % bottom-left, 40 % top-right
    assert by_label["10%"][1] > by_label["40%"][1]
    assert by_label["10%"][0] < by_label["40%"][0]


def test_third_axis_gives_one_panel_per_value() -> None:
    result = sweep(Ramp(), "x=1,2", "y=1,2", "z=0,5")
    names = titles(sweep_report(Ramp(), result))
    assert "plain: P(stuck) (z = 0)" in names and "plain: P(stuck) (z = 5)" in names
    assert len(names) == 5 * 2


def test_many_panels_are_capped_with_a_note() -> None:
    values = ",".join(str(v) for v in range(MAX_PANELS + 3))
    result = sweep(Ramp(), "x=1,2", "y=1", f"z={values}")
    html = sweep_report(Ramp(), result)
    assert sum(1 for t in titles(html) if t.startswith("plain: P(stuck)")) == MAX_PANELS
    assert f"first {MAX_PANELS} of {MAX_PANELS + 3}" in html


def test_one_axis_and_no_axis_sweeps_render() -> None:
    one = sweep_report(Ramp(), sweep(Ramp(), "x=1:6:1"))
    assert "plain: P(stuck)" in titles(one)
    none = sweep_report(Ramp(), sweep(Ramp()))
    assert titles(none)[0] == "plain: P(stuck)"
    assert "(single point)" in none


def test_text_is_escaped() -> None:
    class Hostile(Ramp):
        name = "<script>x</script>"
        description = "a & b <i>"
        policies = ("p<1>", "q&r")
        stuck_rule = "<b>"

    html = sweep_report(Hostile(), sweep(Hostile(), "x=1,2"))
    assert "<script>" not in html and "<i>" not in html and "<b>" not in html
    assert "&lt;script&gt;" in html and "p&lt;1&gt;" in html and "q&amp;r" in html
    svgs(html)  # still well-formed XML


def test_colours_and_missing_cells() -> None:
    assert probability_colour(0) == "#ffffff" and probability_colour(1) == "#d55e00"
    assert difference_colour(-1) == "#0072b2" and difference_colour(0) == "#ffffff"
    svg = heat_map(
        "t", Axis("a", (1, 2)), None, [[None, 0.5]], colour=probability_colour, label=str
    )
    assert ">n/a</text>" in svg and ">0.5</text>" in svg
    ET.fromstring(svg)
