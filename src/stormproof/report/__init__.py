"""HTML reports of simulation experiments (dependency-free SVG plots)."""

from stormproof.report.html import experiment_report, series_charts

__all__ = ["experiment_report", "series_charts"]
