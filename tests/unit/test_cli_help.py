"""The command line reads well: -h and --help, --version, no placeholders, settings listed."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from stellar_reconciler import __version__
from stellar_reconciler.cli import app
from stellar_reconciler.config import Settings
from stellar_reconciler.terminal import human

COMMANDS = [
    [],
    ["run"],
    ["demo"],
    ["migrate"],
    ["status"],
    ["acknowledge-gap"],
    ["verify"],
    ["backfill"],
    ["simnet"],
    ["expect"],
    ["expect", "import"],
    ["proof"],
    ["proof", "export"],
    ["proof", "close"],
    ["proof", "verify"],
]


def help_of(*command: str, option: str = "-h") -> str:
    result = CliRunner().invoke(app, [*command, option], terminal_width=100)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "reconciler")
def test_every_help_answers_h_and_shows_no_bool_placeholder(command: list[str]) -> None:
    """`-h` works like `--help` on every command, and no flag shows a `<bool>` placeholder."""
    short = help_of(*command, option="-h")
    assert short == help_of(*command, option="--help")
    assert "<bool>" not in short and "BOOLEAN" not in short


def test_version_prints_the_package_version() -> None:
    """`reconciler --version` prints the version and exits 0."""
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"stellar-reconciler {__version__}"


def test_run_help_lists_every_setting() -> None:
    """`run --help` names every setting Settings reads, each on its own line."""
    text = help_of("run")
    for name in Settings.model_fields:
        assert re.search(rf"^\s+{name.upper()}\s", text, re.MULTILINE), name


def test_verify_help_names_its_settings_and_exit_codes() -> None:
    """`verify --help` names the settings it uses and documents the exit codes."""
    text = help_of("verify")
    for name in ("DATABASE_URL", "STELLAR_RPC_URL", "CONTRACT_IDS", "EVENT_TOPICS"):
        assert name in text
    assert "Exit codes:" in text and "4 nothing is stored yet" in text


def test_help_is_not_broken_mid_sentence() -> None:
    """A docstring's own line breaks do not survive into help: paragraphs are rewrapped."""
    text = " ".join(help_of("acknowledge-gap").split("\n")[2:5])
    assert "The worker carries it out at its next poll" in " ".join(text.split())
    for line in help_of("acknowledge-gap").splitlines()[2:4]:
        assert len(line) > 60, line


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "-"),
        (True, "yes"),
        (False, "no"),
        ([], "none"),
        (12345, "12,345"),
        ([[10, 12], [15, 15]], "10-12, 15"),
        ("text", "text"),
    ],
)
def test_table_values_are_human(value: object, shown: str) -> None:
    """Table cells show '-', yes/no, 'none' and ranges instead of None, True and []."""
    assert human(value) == shown
