"""Drift: detectors on each learner's error or loss, feature drift, scoring against the truth."""
