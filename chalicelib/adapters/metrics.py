"""Metrics through powertools (embedded metric format: CloudWatch reads them from the logs)."""

from __future__ import annotations

from typing import Any

NAMESPACE = "Stagecoach"


class PowertoolsMetrics:
    """Metrics port on powertools ``Metrics``; ``flush`` publishes what this invocation counted."""

    def __init__(self, service: str = "stagecoach") -> None:
        from aws_lambda_powertools import Metrics

        self._metrics: Any = Metrics(namespace=NAMESPACE, service=service)
        self._metrics.clear_metrics()  # powertools shares one metric store between instances
        self._pending = False

    def count(self, name: str, value: int = 1) -> None:
        """Add to a counter."""
        from aws_lambda_powertools.metrics import MetricUnit

        self._metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
        self._pending = True

    def flush(self) -> None:
        """Publish the counters (one EMF line) if anything was counted."""
        if self._pending:
            self._pending = False
            self._metrics.flush_metrics()
            # With POWERTOOLS_METRICS_DISABLED (the embedded mode) powertools keeps what it did not
            # publish; a long-running control plane must not pile up counters.
            self._metrics.clear_metrics()
