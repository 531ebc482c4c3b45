"""Learners: River estimators by dotted name (and, later, batch baselines)."""
