"""Every setting is listed in .env.example and in the README's settings table, and nothing else.

The README's table is made from the Settings fields; UPDATE_README=1 rewrites it from them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from dotenv import dotenv_values

from stellar_reconciler.config import Settings, settings_table

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / ".env.example"
README = REPO / "README.md"
TABLE_HEAD = "| variable | default | meaning |\n"
SETTINGS = sorted(name.upper() for name in Settings.model_fields)


def test_env_example_lists_every_setting_and_only_settings() -> None:
    """The keys of .env.example are exactly the Settings fields."""
    assert sorted(dotenv_values(EXAMPLE)) == SETTINGS


def test_env_example_lines_carry_a_comment() -> None:
    """Each setting in .env.example has a comment line right above it."""
    lines = EXAMPLE.read_text().splitlines()
    for index, line in enumerate(lines):
        if re.match(r"^[A-Z_]+=", line):
            assert index > 0 and lines[index - 1].startswith("# "), line


def test_env_example_holds_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Read as a .env file, the example gives the same settings as no file at all."""
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    from_example = Settings.from_env(_env_file=EXAMPLE)
    assert from_example == Settings.from_env(_env_file=None)


def test_readme_settings_table_is_made_from_the_settings() -> None:
    """The README's settings table is the one the Settings fields describe, row for row; with
    UPDATE_README=1 the test writes it there instead."""
    readme = README.read_text()
    start = readme.index(TABLE_HEAD)
    end = readme.index("\n\n", start) + 1
    if os.environ.get("UPDATE_README") == "1":
        README.write_text(readme[:start] + settings_table() + readme[end:])
        return
    assert readme[start:end] == settings_table(), (
        "the README's settings table is out of date: run "
        "UPDATE_README=1 pytest tests/deploy/test_settings_lists.py"
    )


def test_readme_settings_table_lists_every_setting() -> None:
    """The README has a table row for each Settings field."""
    rows = set(re.findall(r"^\| `([A-Z_]+)` \|", README.read_text(), flags=re.MULTILINE))
    assert [name for name in SETTINGS if name not in rows] == []
