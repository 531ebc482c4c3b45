"""Sweeps: many configurations of one experiment, run in parallel, compared in one record."""

from workbench.sweeps.config import SweepConfig, load
from workbench.sweeps.sweep import Sweep, plan, sweep

__all__ = ["Sweep", "SweepConfig", "load", "plan", "sweep"]
