"""The Prometheus configuration and alert rules load, their promtool unit tests pass, and a real
Prometheus scraping a real service fires ReconcilerUnhealthy when the RPC starts failing."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.deploy.processes import free_port, poll, required_tool, running, service, simnet

PROMETHEUS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
HOW = "Debian: apt-get install prometheus"

pytestmark = pytest.mark.prometheus


@pytest.fixture
def promtool() -> str:
    return required_tool("promtool", "REQUIRE_PROMETHEUS", HOW)


def run_promtool(promtool: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *arguments], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus-compose.yml"])
def test_scrape_config_is_valid(promtool: str, config: str) -> None:
    """promtool accepts each scrape config (host and compose) and the rule file it names."""
    result = run_promtool(promtool, "check", "config", str(PROMETHEUS / config))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_are_valid(promtool: str) -> None:
    """promtool accepts alerts.yml, and it holds an alert for each condition the kit promises."""
    result = run_promtool(promtool, "check", "rules", str(PROMETHEUS / "alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"][0]["rules"]
    assert {rule["alert"] for rule in rules} >= {
        "ReconcilerDown",
        "ReconcilerUnhealthy",
        "ReconcilerLagGrowing",
        "ReconcilerStalled",
        "ReconcilerIntegrityDiscrepancy",
        "ReconcilerRetentionGap",
        "ReconcilerRpcErrors",
    }


def test_alert_rule_unit_tests_pass(promtool: str) -> None:
    """`promtool test rules` passes for every test file in deploy/prometheus/tests."""
    files = sorted(str(path) for path in (PROMETHEUS / "tests").glob("*.yml"))
    assert files
    result = run_promtool(promtool, "test", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr


def quick_rules(target: Path) -> None:
    """alerts.yml with every `for:` cut to 1s, so a test sees an alert fire within seconds."""
    document = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    for group in document["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "1s"
    target.write_text(yaml.safe_dump(document))


def api(prometheus_url: str, path: str, params: dict[str, str] | None = None) -> Any:
    """The `data` of a Prometheus API answer; a server still starting (503) raises TransportError
    so that `poll` asks again instead of failing on a body that is not JSON."""
    answer = httpx.get(f"{prometheus_url}{path}", params=params, timeout=5)
    if answer.status_code == 503:
        raise httpx.TransportError(f"Prometheus is not ready yet: {answer.text[:80]}")
    answer.raise_for_status()
    return answer.json()["data"]


def alerts(prometheus_url: str) -> list[dict[str, Any]]:
    body = {"data": api(prometheus_url, "/api/v1/alerts")}
    found: list[dict[str, Any]] = body["data"]["alerts"]
    return found


def firing(prometheus_url: str, name: str) -> list[dict[str, Any]]:
    return [
        alert
        for alert in alerts(prometheus_url)
        if alert["labels"]["alertname"] == name and alert["state"] == "firing"
    ]


def scraped_healthy(prometheus_url: str) -> bool:
    query = {"query": 'reconciler_healthy{job="stellar-reconciler"} == 1'}
    return bool(api(prometheus_url, "/api/v1/query", query)["result"])


@pytest.mark.slow
def test_real_prometheus_fires_unhealthy_when_the_rpc_fails(tmp_path: Path) -> None:
    """A real Prometheus scrapes a synced service (no alert), the simulated RPC then answers
    500 to everything, /health turns 503 and ReconcilerUnhealthy fires with the service's labels."""
    prometheus = required_tool("prometheus", "REQUIRE_PROMETHEUS", HOW)
    with simnet(tmp_path) as rpc_url, service(tmp_path, rpc_url) as service_url:
        quick_rules(tmp_path / "alerts.yml")
        target = service_url.removeprefix("http://")
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": ["alerts.yml"],
            "scrape_configs": [
                {"job_name": "stellar-reconciler", "static_configs": [{"targets": [target]}]}
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        prometheus_url = f"http://127.0.0.1:{free_port()}"
        command = [
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address={prometheus_url.removeprefix('http://')}",
        ]
        with running(command, tmp_path / "prometheus.log"):
            poll(lambda: scraped_healthy(prometheus_url), "a healthy scrape", deadline=90)
            assert firing(prometheus_url, "ReconcilerUnhealthy") == []

            fault = {"kind": "http_500", "method": "*", "times": None}
            httpx.post(f"{rpc_url}_simnet/faults", json=fault, timeout=5).raise_for_status()
            fired = poll(
                lambda: firing(prometheus_url, "ReconcilerUnhealthy"), "ReconcilerUnhealthy"
            )

            assert fired[0]["labels"]["instance"] == target
            assert fired[0]["labels"]["severity"] == "critical"
            assert httpx.get(f"{service_url}/health", timeout=5).status_code == 503
