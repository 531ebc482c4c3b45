"""Prequential metrics by name."""
