"""CSV import of expected records: every bad row reported in one run, never a traceback."""

from __future__ import annotations

import csv

from stellar_reconciler.expectations_csv import parse_csv

SAC = "CDLZFC3SYJYDZT7K67VZ75HPJVIEUVNIXF47ZG2FB2RMQQVU2HHGCYSC"
HEADER = "external_id,contract_id,event_name,deadline_ledger\n"


def test_every_bad_row_is_reported_with_its_line() -> None:
    """Three bad rows among good ones: three errors, each with its own line number."""
    text = (
        HEADER
        + f"a,{SAC},transfer,100\n"
        + "b,CBAD,transfer,100\n"
        + f"c,{SAC},transfer,soon\n"
        + f"d,{SAC},transfer,100\n"
        + "e,only,three\n"
    )
    specs, errors = parse_csv(text)
    assert [line for line, _ in specs] == [2, 5]
    assert [error.line for error in errors] == [3, 4, 6]


def test_a_cell_over_the_csv_field_limit_is_a_line_problem() -> None:
    """A cell longer than the csv module's limit is reported on its line, and the rows after
    it are still checked."""
    limit = csv.field_size_limit()
    text = HEADER + f"a,{SAC},{'x' * (limit + 10)},100\n" + "b,CBAD,transfer,100\n"
    specs, errors = parse_csv(text)
    assert specs == []
    assert [error.line for error in errors] == [2, 3]
    assert f"longer than {limit:,} characters" in errors[0].message


def test_an_unclosed_quote_is_reported_not_raised() -> None:
    """An unclosed quote that swallows the rest of the file is one reported problem."""
    text = HEADER + 'a,"' + "y" * (csv.field_size_limit() + 1) + "\n"
    _, errors = parse_csv(text)
    assert len(errors) == 1 and errors[0].line == 2
