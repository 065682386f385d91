"""The Grafana dashboard (deploy/grafana/dashboards): its queries, and the metric names in them."""

from __future__ import annotations

import json
import re
from pathlib import Path

DASHBOARD = (
    Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "dashboards" / "flight-booking.json"
)

# The Temporal SDK's metrics the dashboard shows, by the names this SDK version exports
# (tests/test_metrics.py scrapes a real worker for them; durations in seconds).
SDK_DASHBOARD_NAMES = frozenset(
    {
        "temporal_workflow_task_schedule_to_start_latency_bucket",
        "temporal_workflow_task_execution_latency_bucket",
        "temporal_activity_schedule_to_start_latency_bucket",
        "temporal_activity_execution_latency_bucket",
        "temporal_local_activity_execution_latency_bucket",
    }
)

# PromQL's words that are not metric names: aggregations, functions, grouping and set keywords.
KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
}


def dashboard_queries(path: Path = DASHBOARD) -> list[str]:
    """Every PromQL expression of every panel (the file must be valid JSON)."""
    dashboard = json.loads(path.read_text())
    queries = []
    for panel in dashboard["panels"]:
        panels = [panel, *panel.get("panels", [])]  # a collapsed row holds its panels
        queries += [target["expr"] for inner in panels for target in inner.get("targets", [])]
    return queries


def metric_names(query: str) -> set[str]:
    """The metric names a PromQL expression reads: what is left once label matchers, strings,
    ranges, groupings, function calls, keywords and numbers are taken out."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", query)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group()
        if text[match.end() :].lstrip().startswith("(") or word in KEYWORDS:
            continue  # a function or an aggregation
        names.add(word)
    return names
