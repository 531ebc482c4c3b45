"""The production alerts, as Prometheus rules over the update service's metrics.

The update service acts on the last one itself (it rolls back the version served); the rules
are what an operator's Prometheus and Alertmanager see. ``workbench alert-rules -o FILE``
writes them; ``promtool check rules FILE`` checks them.
"""

from __future__ import annotations

from pathlib import Path

import yaml

#: the seconds above which an update is late, as the seed's alert said
UPDATE_LATENCY_SECONDS = 0.1

RULES = {
    "groups": [
        {
            "name": "workbench-production",
            "rules": [
                {
                    "alert": "WorkbenchDriftDetected",
                    "expr": 'increase(workbench_drift_events_total{kind="drift"}[5m]) > 0',
                    "labels": {"severity": "warning"},
                    "annotations": {"summary": "The update service's drift detector fired in the last 5 minutes"},
                },
                {
                    "alert": "WorkbenchUpdateLatencyHigh",
                    "expr": "histogram_quantile(0.95, sum by (le) (rate(workbench_update_latency_seconds_bucket[5m])))"
                    f" > {UPDATE_LATENCY_SECONDS}",
                    "for": "5m",
                    "labels": {"severity": "warning"},
                    "annotations": {
                        "summary": "p95 from a label's arrival to its update is over "
                        f"{UPDATE_LATENCY_SECONDS * 1000:.0f} ms"
                    },
                },
                {
                    "alert": "WorkbenchLagGrowing",
                    "expr": "deriv(workbench_consumer_lag[10m]) > 0 and workbench_consumer_lag > 1000",
                    "for": "10m",
                    "labels": {"severity": "warning"},
                    "annotations": {"summary": "The update service falls behind topic {{ $labels.topic }}"},
                },
                {
                    "alert": "WorkbenchServedBelowBaseline",
                    "expr": 'workbench_served_accuracy{arm="a"} < ignoring(arm) workbench_baseline_accuracy - 0.05',
                    "for": "1m",
                    "labels": {"severity": "critical", "action": "rollback"},
                    "annotations": {
                        "summary": "Served accuracy is below the batch baseline: the update service rolls back"
                    },
                },
            ],
        }
    ]
}


def write_rules(path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(RULES, sort_keys=False))
    return path
