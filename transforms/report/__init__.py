"""The run report: one static HTML page over everything a ``zorgpad run`` wrote."""

from transforms.report.build import build_report

__all__ = ["build_report"]
