"""The systemd unit passes `systemd-analyze verify` and stops with a margin over the service's
own 10-second stop promise."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "stellar-reconciler.service"


def service_section() -> configparser.SectionProxy:
    # systemd repeats keys (SystemCallFilter); the last one read is enough for these checks.
    # configparser folds key case, and its lookups fold the same way.
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read_string(UNIT.read_text())
    return parser["Service"]


def test_unit_stops_with_margin_and_restarts() -> None:
    """TimeoutStopSec=20 over the 10 s the service promises, SIGTERM, restart on failure
    except for configuration errors (exit 2), an environment file and a non-root user."""
    service = service_section()
    assert service["TimeoutStopSec"] == "20"
    assert service["KillSignal"] == "SIGTERM"
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == "2"
    assert service["EnvironmentFile"].startswith("/etc/")
    assert service["User"] not in ("root", "0")
    assert service["ExecStart"].endswith("reconciler run")


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    """systemd-analyze verify reports nothing, with ExecStart pointed at this checkout's
    `reconciler` (verify insists that the binary exists)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    here = Path(sys.executable).parent / "reconciler"
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace("/opt/stellar-reconciler/bin/reconciler", str(here)))
    result = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
