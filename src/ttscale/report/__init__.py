"""Reports from run records: accuracy-versus-compute curves, the paper's tables, and a
single-file HTML viewer of every search tree."""

from ttscale.report.build import ReportFiles, build_report

__all__ = ["ReportFiles", "build_report"]
