"""The Makefile refuses a Python older than 3.11 with advice, and rebuilds a stale .venv."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def fake_python(directory: Path, version: str) -> Path:
    """An executable that answers any question the way `python -c ...` of `version` would."""
    path = directory / f"python{version}"
    path.write_text(f"#!/bin/sh\necho {version}\n")
    path.chmod(0o755)
    return path


def make(*arguments: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("MAKE")}
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, **env},
        check=False,
    )


@pytest.fixture(autouse=True)
def _needs_make() -> None:
    if shutil.which("make") is None:
        pytest.skip("GNU make is not installed")


def test_old_python_is_refused_with_advice(tmp_path: Path) -> None:
    """PYTHON reporting 3.9: exit 2, a message naming 3.9, 3.11 and PYTHON=, and no venv."""
    venv = tmp_path / "venv"
    result = make("install", f"PYTHON={fake_python(tmp_path, '3.9.18')}", f"VENV={venv}")
    assert result.returncode == 2
    assert "needs Python 3.11 or newer" in result.stderr
    assert "is Python 3.9" in result.stderr
    assert "make PYTHON=python3.11 install" in result.stderr
    assert not venv.exists()


def test_missing_python_is_named(tmp_path: Path) -> None:
    """A PYTHON that does not exist: exit 2 and a message naming it, not a shell error."""
    result = make("test", "PYTHON=python3.99-missing", f"VENV={tmp_path / 'venv'}")
    assert result.returncode == 2
    assert "'python3.99-missing' was not found" in result.stderr
    assert "make PYTHON=python3.11 test" in result.stderr


@pytest.mark.slow
def test_venv_of_an_old_python_is_rebuilt(tmp_path: Path) -> None:
    """A .venv whose python is 3.9 is removed and made again with PYTHON (pip is kept offline
    here so the test stops right after the venv is recreated)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    fake_python(venv / "bin", "3.9.18").rename(venv / "bin" / "python")
    (venv / ".installed-stamp").touch()
    result = make("install", f"PYTHON={sys.executable}", f"VENV={venv}", PIP_NO_INDEX="1")
    assert "Rebuilding" in result.stdout and "made with Python 3.9" in result.stdout
    rebuilt = subprocess.run(
        [venv / "bin" / "python", "-c", "import sys; print(sys.version_info >= (3, 11))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert rebuilt.stdout.strip() == "True"
    # Offline, the install cannot finish: make says so and leaves no stamp to trust later.
    assert result.returncode != 0
    assert not (venv / ".installed-stamp").exists()


@pytest.mark.slow
def test_venv_of_an_older_makefile_is_rebuilt(tmp_path: Path) -> None:
    """A .venv without this Makefile's recipe mark (made by an older one) is rebuilt."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    (venv / ".installed-stamp").touch()
    result = make("install", f"PYTHON={sys.executable}", f"VENV={venv}", PIP_NO_INDEX="1")
    assert "Rebuilding" in result.stdout and "an older Makefile made it" in result.stdout
