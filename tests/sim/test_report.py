"""HTML experiment reports and their SVG charts."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from html import escape

import pytest

from stormproof.report import experiment_report
from stormproof.report.svg import interval_chart, line_chart
from stormproof.sim import scenarios
from stormproof.sim.experiment import ExperimentResult, run_experiment
from stormproof.sim.scenario import Param, RunResult, Scenario


class Hostile(Scenario):
    """A tiny scenario whose every text field carries HTML."""

    name = "evil<b>name</b>"
    description = "<script>alert('description')</script> & more"
    policies = ("p<1>", "q&r")
    stuck_rule = "stuck when <i>seed</i> is odd"
    params = (
        Param("size<x>", 3, "how <big>", "'quoted' <source> & co", 0),
        Param("plain", 1.5, "a plain one", "assumed: no reason", 0),
    )

    def run(
        self, params: Mapping[str, float], policy: str, seed: int, *, series: bool = False
    ) -> RunResult:
        return RunResult(
            scenario=self.name,
            policy=policy,
            seed=seed,
            stuck=seed % 2 == 1,
            metrics={"m<etric>": float(seed), "always_nan": math.nan},
            trace_hash=f"{seed:032x}",
            series={"load<s>": [1.0, 2.0, float(seed)], "ok": [0.5] * 3} if series else {},
        )


@pytest.fixture(scope="module")
def hostile_report() -> str:
    scenario = Hostile()
    result = run_experiment(
        scenario,
        scenario.resolve({"size<x>": 4}),
        scenario.policies,
        [0, 1, 2],
        workers=1,
        series=True,
    )
    return experiment_report(scenario, result)


def test_report_escapes_html_in_every_name(hostile_report: str) -> None:
    html = hostile_report
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#x27;description&#x27;)&lt;/script&gt; &amp; more" in html
    assert "evil<b>" not in html and "evil&lt;b&gt;name&lt;/b&gt;" in html
    assert "<i>seed</i>" not in html and "&lt;i&gt;seed&lt;/i&gt;" in html
    for raw in ("p<1>", "q&r", "size<x>", "m<etric>", "load<s>", "<big>", "<source>"):
        assert raw not in html, raw
    for name in ("p&lt;1&gt;", "q&amp;r", "size&lt;x&gt;", "m&lt;etric&gt;", "load&lt;s&gt;"):
        assert name in html, name


def test_report_is_one_document_with_balanced_svgs(hostile_report: str) -> None:
    html = hostile_report
    assert html.startswith("<!doctype html>") and html.endswith("</html>")
    assert html.count("<svg") == html.count("</svg>")
    # one interval chart of P(stuck), then one line chart per series
    assert html.count("<svg") == 1 + 2


def test_report_lists_parameters_with_value_and_source(hostile_report: str) -> None:
    html = hostile_report
    assert escape("'quoted' <source> & co") in html
    assert "assumed: no reason" in html
    # the overridden value is shown, the default for the other
    assert "<td>size&lt;x&gt;</td><td class='num'>4</td>" in html
    assert "<td>plain</td><td class='num'>1.5</td>" in html


def test_report_shows_stuck_counts_nan_metrics_and_trace_hashes(hostile_report: str) -> None:
    html = hostile_report
    assert html.count("<td class='num'>1 / 3</td>") == 2  # seed 1 is stuck for each policy
    assert "n/a" in html  # always_nan has no mean
    for seed in range(3):
        assert f"<code>{seed:032x}</code>" in html


@pytest.fixture(scope="module")
def collapse_result() -> tuple[Scenario, ExperimentResult]:
    scenario = scenarios.get("simple-collapse")
    params = scenario.resolve({"spike_s": 2, "horizon": 35, "late_start": 25})
    return scenario, run_experiment(
        scenario, params, scenario.policies, [0], workers=1, series=True
    )


def test_simple_collapse_report_has_everything(
    collapse_result: tuple[Scenario, ExperimentResult],
) -> None:
    scenario, result = collapse_result
    html = experiment_report(scenario, result)
    assert f"<h1>{scenario.name}</h1>" in html
    assert escape(scenario.description) in html
    for policy in scenario.policies:
        assert f"<th>{policy}</th>" in html
    for param in scenario.params:
        assert f"<td>{escape(param.name)}</td>" in html
        assert f"<td>{escape(param.source)}</td>" in html
    series = result.policies["no_backoff"].results[0].series
    assert series
    assert html.count("<svg") == 1 + len(series)
    for name in series:
        assert f"{escape(name)} per second" in html
    for metric in result.policies["no_backoff"].metrics:
        assert f"<td>{metric}</td>" in html
    # the spike [20, 22) is shaded on the time charts
    assert html.count('fill="#f2d7d5"') == len(series)


def test_report_without_series_has_only_the_interval_chart() -> None:
    scenario = scenarios.get("occ-jitter")
    result = run_experiment(scenario, scenario.resolve({"clients": 3}), ["none"], [0], workers=1)
    html = experiment_report(scenario, result)
    assert html.count("<svg") == 1
    assert "Over time" not in html


# -- the SVG charts -------------------------------------------------------------------------


def test_line_chart_draws_one_polyline_per_series_and_skips_nan() -> None:
    svg = line_chart("t<itle>", {"a<b>": [0.0, 1.0, math.nan, 3.0], "c": [2.0, 2.0]}, y_label="y&")
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    polylines = re.findall(r'<polyline[^>]*points="([^"]*)"', svg)
    assert len(polylines) == 2
    assert len(polylines[0].split()) == 3  # the NaN point is left out
    assert len(polylines[1].split()) == 2
    assert "t&lt;itle&gt;" in svg and "a&lt;b&gt;" in svg and "y&amp;" in svg
    assert "<itle>" not in svg and "a<b>" not in svg


def test_line_chart_scales_the_y_axis_to_a_nice_maximum() -> None:
    svg = line_chart("t", {"a": [0.0, 37.0]})
    labels = re.findall(r'text-anchor="end">([^<]*)</text>', svg)
    assert labels == ["0", "12.5", "25", "37.5", "50"]


def test_line_chart_handles_empty_and_all_zero_series() -> None:
    for series in ({}, {"a": []}, {"a": [0.0, 0.0]}, {"a": [math.nan]}):
        svg = line_chart("t", series)
        assert svg.count("<svg") == 1 and svg.endswith("</svg>")


def test_line_chart_shade_is_clipped_to_the_plot() -> None:
    svg = line_chart("t", {"a": [1.0] * 10}, shade=(8.0, 50.0))
    width = float(re.search(r'<rect x="[^"]*" y="[^"]*" width="([^"]*)"', svg).group(1))  # type: ignore[union-attr]
    full = 640 - 56 - 150
    assert width == pytest.approx(full * 2 / 10, abs=0.1)


def test_interval_chart_places_points_and_bars() -> None:
    svg = interval_chart("P<stuck>", {"x<y>": (0.5, 0.25, 0.75), "z": (0.0, 0.0, 0.2)})
    assert "P&lt;stuck&gt;" in svg and "x&lt;y&gt;" in svg and "x<y>" not in svg
    circles = re.findall(r'<circle cx="([^"]*)"', svg)
    plot_w = 640 - 170 - 30
    assert [float(c) for c in circles] == [
        pytest.approx(170 + plot_w * 0.5, abs=0.1),
        pytest.approx(170.0, abs=0.1),
    ]
