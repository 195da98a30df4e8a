"""HTML reports of simulation experiments (dependency-free SVG plots)."""

from stormproof.report.html import experiment_report

__all__ = ["experiment_report"]
