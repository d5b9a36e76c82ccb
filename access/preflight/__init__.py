"""Pre-flight: prove an instance is reachable through its endpoint before anyone approves."""

from access.preflight.flows import evaluate, run_preflight
from access.preflight.report import Check, PreflightReport, render_table

__all__ = ["Check", "PreflightReport", "evaluate", "render_table", "run_preflight"]
