"""The powertools metrics adapter publishes one EMF document per invocation, only when it counted."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.adapters.metrics import NAMESPACE, PowertoolsMetrics


def test_counts_are_flushed_as_one_emf_document(capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    metrics = PowertoolsMetrics()
    metrics.flush()
    assert capsys.readouterr().out == ""  # nothing counted: nothing published
    metrics.count("ReleaseCreated")
    metrics.count("ReleaseCreated")
    metrics.count("BuildFailed", 3)
    metrics.flush()
    [line] = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    directive = line["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == NAMESPACE
    assert {m["Name"] for m in directive["Metrics"]} == {"ReleaseCreated", "BuildFailed"}
    assert line["ReleaseCreated"] == [1.0, 1.0]
    assert line["BuildFailed"] in (3.0, [3.0])
    assert line["service"] == "stagecoach"
    metrics.flush()
    assert capsys.readouterr().out == ""


def test_disabled_metrics_are_dropped_not_kept(capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    metrics = PowertoolsMetrics()
    for _ in range(3):
        metrics.count("ReleaseCreated")
        metrics.flush()
    assert capsys.readouterr().out == ""
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    metrics.count("BuildStarted")
    metrics.flush()
    [line] = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert "ReleaseCreated" not in line
    assert line["BuildStarted"] in (1.0, [1.0])
