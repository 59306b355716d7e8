"""Importing expected records from a CSV file: every row valid, or nothing imported.

The first row names the columns (any order, case-insensitive); an empty cell means "not
given". Columns:

    external_id       required; your id for the record, unique
    contract_id       required; the contract (C...) that emits the event
    event_name        required; the event's first topic, e.g. transfer
    deadline_ledger   the last ledger the event may appear in, or
    deadline_ledgers  ledgers after the service's checkpoint at import (exactly one of the two)
    amount            whole number in the token's smallest unit (i128)
    tolerance         allowed absolute difference from amount (default 0)
    tx_hash           the transaction that must emit the event
    from, to          addresses in topics 1 and 2 (as in a SAC transfer)
    topic1, topic2, topic3   topic values by position (text; numbers match their digits)
    allow_partial     true: paid by several events until their sum reaches amount (or false)
    group_id          rows with one group_id are paid as a whole (see partial.py)
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from stellar_reconciler.errors import ExpectationConflictError, ExpectationInputError
from stellar_reconciler.expectation_spec import ExpectationSpec
from stellar_reconciler.store import Store

REQUIRED = ("external_id", "contract_id", "event_name")
COLUMNS = (
    *REQUIRED,
    "deadline_ledger",
    "deadline_ledgers",
    "amount",
    "tolerance",
    "tx_hash",
    "from",
    "to",
    "topic1",
    "topic2",
    "topic3",
    "allow_partial",
    "group_id",
)
TOPIC_COLUMNS = {"topic1": "1", "topic2": "2", "topic3": "3"}


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import did: created and already-present counts, or the errors that stopped it."""

    rows: int = 0
    created: int = 0
    existing: int = 0
    errors: tuple[RowError, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.errors


def _record(row: dict[str, str]) -> dict[str, Any]:
    """A CSV row as the fields ExpectationSpec takes: empty cells left out."""
    record: dict[str, Any] = {}
    topics: dict[str, str] = {}
    for column, cell in row.items():
        value = cell.strip()
        if not value:
            continue
        if column in TOPIC_COLUMNS:
            topics[TOPIC_COLUMNS[column]] = value
        elif column == "allow_partial" and value.lower() in ("true", "false"):
            # The API takes only JSON booleans; a cell is text: true or false, any case.
            record[column] = value.lower() == "true"
        else:
            record[column] = value
    if topics:
        record["topics"] = topics
    return record


def _describe(error: ValidationError) -> list[str]:
    messages = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        messages.append(f"{where}: {message}" if where else message)
    return messages


def _unreadable(error: csv.Error) -> str:
    if "field limit" in str(error):
        return (
            f"a cell is longer than {csv.field_size_limit():,} characters, more than any "
            "column takes; check the quoting (an unclosed quote swallows the lines after it)"
        )
    return f"cannot be read as CSV ({error}); check the quoting"


def parse_csv(text: str) -> tuple[list[tuple[int, ExpectationSpec]], list[RowError]]:
    """Validate every row; returns the records with their line numbers, and every error."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        return [], [RowError(1, _unreadable(exc))]
    if header is None:
        return [], [RowError(1, "the file is empty; the first row must name the columns")]
    names = [name.strip().lower() for name in header]
    unknown = [n for n in names if n not in COLUMNS]
    missing = [n for n in REQUIRED if n not in names]
    repeated = sorted({n for n in names if names.count(n) > 1})
    problems = [
        *(f"unknown column {n!r} (known: {', '.join(COLUMNS)})" for n in unknown),
        *(f"required column {n!r} is missing" for n in missing),
        *(f"column {n!r} appears more than once" for n in repeated),
    ]
    if problems:
        return [], [RowError(1, p) for p in problems]
    specs: list[tuple[int, ExpectationSpec]] = []
    errors: list[RowError] = []
    line = reader.line_num + 1
    while True:
        # A quoted cell may span lines: the row starts where the previous one ended.
        start = line
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            # The reader drops the rest of the line it failed on and goes on with the next,
            # so one bad row does not hide the others.
            line = reader.line_num + 1
            errors.append(RowError(start, _unreadable(exc)))
            continue
        line = reader.line_num + 1
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(names):
            errors.append(RowError(start, f"has {len(cells)} cells, the header {len(names)}"))
            continue
        try:
            spec = ExpectationSpec.model_validate(_record(dict(zip(names, cells, strict=True))))
        except ValidationError as exc:
            errors.extend(RowError(start, message) for message in _describe(exc))
            continue
        specs.append((start, spec))
    return specs, errors


def import_csv(source: Path | str, store: Store, actor: str = "cli") -> ImportReport:
    """Import a CSV file (a Path) or CSV text (a str) in one transaction, all or nothing.

    Rows already imported with the same content count as `existing`, so running the same
    import twice is harmless; any bad row, or a row whose external_id exists with other
    content, imports nothing and is reported with its line number. A successful import is
    recorded in the audit log under `actor`.
    """
    if isinstance(source, Path):
        try:
            text = source.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            return ImportReport(errors=(RowError(0, f"cannot read {source}: {exc}"),))
    else:
        text = source
    specs, errors = parse_csv(text)
    if errors:
        bad_rows = {e.line for e in errors if e.line > 1}
        return ImportReport(rows=len(specs) + len(bad_rows), errors=tuple(errors))
    lines = [line for line, _ in specs]
    by_id = {spec.external_id: line for line, spec in specs}
    try:
        created = store.expectations.create([spec for _, spec in specs])
    except ExpectationInputError as exc:
        return ImportReport(
            rows=len(specs),
            errors=tuple(RowError(lines[i], f"{name}: {msg}") for i, name, msg in exc.problems),
        )
    except ExpectationConflictError as exc:
        return ImportReport(
            rows=len(specs),
            errors=tuple(
                RowError(
                    by_id[external_id],
                    f"external_id {external_id!r} exists with different {', '.join(fields)}; "
                    "a posted record cannot change: use a new external_id",
                )
                for external_id, fields in exc.conflicts
            ),
        )
    report = ImportReport(rows=len(specs), created=created.created, existing=created.existing)
    where = str(source) if isinstance(source, Path) else "csv text"
    detail = {"rows": report.rows, "created": report.created, "existing": report.existing}
    store.audit.record(actor, "expectations.import", where, detail)
    return report
