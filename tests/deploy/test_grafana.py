"""The committed Grafana dashboard is what its generator builds, it is well formed, and every
metric its queries name is one the service exports."""

from __future__ import annotations

import json
import re
import runpy
from pathlib import Path
from typing import Any

from stellar_reconciler.metrics import Metrics

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
DASHBOARD = GRAFANA / "stellar-reconciler.json"

# What a scrape shows for each family type: counters gain _total, histograms three series.
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "gauge": ("",),
    "summary": ("", "_sum", "_count"),
}


def exported_series_names() -> set[str]:
    """Every series name the service's /metrics can carry, from its registry's families
    (labelled families are listed even before their first sample)."""
    names: set[str] = set()
    for family in Metrics().registry.collect():
        for suffix in SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def panels() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(DASHBOARD.read_text())["panels"]
    return found


def test_generator_reproduces_the_committed_json() -> None:
    """generate.py renders exactly the committed stellar-reconciler.json (edit the script, not
    the JSON)."""
    render = runpy.run_path(str(GRAFANA / "generate.py"))["render"]
    assert render() == DASHBOARD.read_text()


def test_every_queried_metric_is_exported() -> None:
    """Each reconciler_* name in a panel query is a series the service exports."""
    queried = {
        name
        for panel in panels()
        for target in panel.get("targets", [])
        for name in re.findall(r"\breconciler_[a-z_]+", target["expr"])
    }
    assert queried, "the dashboard queries no reconciler metric"
    assert sorted(queried - exported_series_names()) == []


def test_panels_are_well_formed() -> None:
    """Panel ids are unique, every query has a refId unique in its panel and a data source,
    and the dashboard covers lag, throughput, RPC errors and retries, discrepancies and
    expectations."""
    ids = [panel["id"] for panel in panels()]
    assert len(ids) == len(set(ids))
    for panel in panels():
        ref_ids = [target["refId"] for target in panel.get("targets", [])]
        assert all(ref_ids) and len(ref_ids) == len(set(ref_ids)), panel["title"]
        assert all(
            target["datasource"]["type"] == "prometheus" for target in panel.get("targets", [])
        )
    titles = {panel["title"] for panel in panels()}
    assert {
        "Lag",
        "Throughput",
        "RPC calls by outcome",
        "RPC retries",
        "Open discrepancies",
        "Expected records",
    } <= titles
