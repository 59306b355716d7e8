"""Build the stellar-reconciler Grafana dashboard with grafana-foundation-sdk.

    python deploy/grafana/generate.py          write stellar-reconciler.json beside this file
    python deploy/grafana/generate.py --check  exit 1 if the committed JSON differs

Edit this script, not the JSON: a test checks that the two agree and that every metric the
queries name is one the service exports.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

OUTPUT = Path(__file__).with_name("stellar-reconciler.json")
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
# Every query is limited to the instance picked at the top of the dashboard.
SELECTOR = '{job="$job", instance=~"$instance"}'


def query(expr: str, legend: str = "") -> prometheus.Dataquery:
    target = prometheus.Dataquery().expr(expr.replace("{SEL}", SELECTOR)).datasource(DATASOURCE)
    return target.legend_format(legend) if legend else target


def number(panel_id: int, title: str, expr: str, description: str) -> stat.Panel:
    return (
        stat.Panel()
        .id(panel_id)
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(query(expr).ref_id("A"))
        .height(4)
        .span(6)
    )


def chart(
    panel_id: int, title: str, unit: str, description: str, *targets: prometheus.Dataquery
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .id(panel_id)
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .min(0)
        .height(8)
        .span(12)
    )
    for ref_id, target in zip("ABCDEFGH", targets, strict=False):
        panel = panel.with_target(target.ref_id(ref_id))
    return panel


def build() -> dashboard.Dashboard:
    ids = itertools.count(1)
    return (
        dashboard.Dashboard("stellar-reconciler")
        .uid("stellar-reconciler")
        .description(
            "Indexing lag, throughput, RPC health and reconciliation of stellar-reconciler."
        )
        .tags(["stellar", "stellar-reconciler"])
        .time("now-6h", "now")
        .refresh("30s")
        .timezone("browser")
        .with_variable(
            dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")
        )
        .with_variable(
            dashboard.QueryVariable("job")
            .label("Job")
            .datasource(DATASOURCE)
            .query("label_values(reconciler_healthy, job)")
        )
        .with_variable(
            dashboard.QueryVariable("instance")
            .label("Instance")
            .datasource(DATASOURCE)
            .query('label_values(reconciler_healthy{job="$job"}, instance)')
            .include_all(True)
            .all_value(".*")
        )
        .with_row(dashboard.Row("Now").id(next(ids)))
        .with_panel(
            number(
                next(ids), "Healthy", "min(reconciler_healthy{SEL})", "1 when /health answers 200."
            )
        )
        .with_panel(
            number(
                next(ids),
                "Ledger lag",
                "max(reconciler_ledger_lag{SEL})",
                "Ledgers behind the network.",
            )
        )
        .with_panel(
            number(
                next(ids),
                "Checkpoint",
                "max(reconciler_checkpoint_ledger{SEL})",
                "Last ledger committed.",
            )
        )
        .with_panel(
            number(
                next(ids),
                "Open discrepancies",
                "sum(reconciler_discrepancies_open{SEL})",
                "Discrepancies of every kind not yet resolved.",
            )
        )
        .with_row(dashboard.Row("Indexing").id(next(ids)))
        .with_panel(
            chart(
                next(ids),
                "Lag",
                "short",
                "Ledgers between the network's latest and the checkpoint.",
                query("reconciler_ledger_lag{SEL}", "{{instance}}"),
            )
        )
        .with_panel(
            chart(
                next(ids),
                "Throughput",
                "ops",
                "Ledgers and contract events committed per second.",
                query(
                    "sum(rate(reconciler_processed_ledgers_total{SEL}[$__rate_interval]))",
                    "ledgers/s",
                ),
                query(
                    "sum(rate(reconciler_events_indexed_total{SEL}[$__rate_interval]))", "events/s"
                ),
            )
        )
        .with_panel(
            chart(
                next(ids),
                "Batch commit time (p50, p95)",
                "s",
                "Time to commit one batch: events, ledgers and checkpoint in one transaction.",
                query(
                    "histogram_quantile(0.5, sum by (le) "
                    "(rate(reconciler_batch_duration_seconds_bucket{SEL}[$__rate_interval])))",
                    "p50",
                ),
                query(
                    "histogram_quantile(0.95, sum by (le) "
                    "(rate(reconciler_batch_duration_seconds_bucket{SEL}[$__rate_interval])))",
                    "p95",
                ),
            )
        )
        .with_panel(
            chart(
                next(ids),
                "Processing errors",
                "ops",
                "Failed polls or batches per second, by kind.",
                query(
                    "sum by (kind) "
                    "(rate(reconciler_processing_errors_total{SEL}[$__rate_interval]))",
                    "{{kind}}",
                ),
            )
        )
        .with_row(dashboard.Row("Stellar RPC").id(next(ids)))
        .with_panel(
            chart(
                next(ids),
                "RPC calls by outcome",
                "reqps",
                "Stellar RPC attempts per second; anything but ok is a failure.",
                query(
                    "sum by (outcome) (rate(reconciler_rpc_requests_total{SEL}[$__rate_interval]))",
                    "{{outcome}}",
                ),
            )
        )
        .with_panel(
            chart(
                next(ids),
                "RPC retries",
                "reqps",
                "Attempts that were retries, per second, by method.",
                query(
                    "sum by (method) (rate(reconciler_rpc_retries_total{SEL}[$__rate_interval]))",
                    "{{method}}",
                ),
            )
        )
        .with_panel(
            chart(
                next(ids),
                "RPC latency (p95)",
                "s",
                "95th percentile time of one Stellar RPC attempt, by method.",
                query(
                    "histogram_quantile(0.95, sum by (le, method) "
                    "(rate(reconciler_rpc_request_duration_seconds_bucket{SEL}[$__rate_interval])))",
                    "{{method}}",
                ),
            )
        )
        .with_row(dashboard.Row("Reconciliation").id(next(ids)))
        .with_panel(
            chart(
                next(ids),
                "Open discrepancies",
                "short",
                "Open discrepancies by kind (chain_break and source_mismatch page someone).",
                query("sum by (kind) (reconciler_discrepancies_open{SEL})", "{{kind}}"),
            )
        )
        .with_panel(
            chart(
                next(ids),
                "Expected records",
                "short",
                "The application's expected records, by status.",
                query("sum by (status) (reconciler_expectations{SEL})", "{{status}}"),
            )
        )
        .build()
    )


def render() -> str:
    """The dashboard as the committed file holds it."""
    return json.dumps(build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def main(arguments: list[str]) -> int:
    text = render()
    if arguments == ["--check"]:
        if OUTPUT.read_text() != text:
            print(f"{OUTPUT.name} is out of date: run python deploy/grafana/generate.py")  # noqa: T201
            return 1
        return 0
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
