"""Dashboards: figures of tidy DataFrames, the live ipywidgets app, the offline HTML report."""

from workbench.dashboards.app import Dashboard, dashboard
from workbench.dashboards.report import report

__all__ = ["Dashboard", "dashboard", "report"]
