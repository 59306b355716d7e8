"""models' time helpers: one ISO form for every time the service shows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from stellar_reconciler.models import as_utc, iso_from_unix, iso_utc


def test_iso_utc_ends_in_z_and_reads_a_zoneless_time_as_utc() -> None:
    """Aware and zoneless (as SQLite returns them) times both come out in UTC with a Z; None
    stays None."""
    aware = datetime(2026, 12, 5, 8, 30, 15, 250000, tzinfo=UTC)
    assert iso_utc(aware) == "2026-12-05T08:30:15.250000Z"
    assert iso_utc(aware.replace(tzinfo=None)) == "2026-12-05T08:30:15.250000Z"
    assert iso_utc(None) is None


def test_as_utc_keeps_an_aware_time_as_it_is() -> None:
    """A time that has a zone is left alone; only a zoneless one is given UTC."""
    plus_two = datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    assert as_utc(plus_two) is plus_two
    assert as_utc(datetime(2026, 1, 1, 12)) == datetime(2026, 1, 1, 12, tzinfo=UTC)


def test_iso_from_unix_is_how_getevents_shows_a_close_time() -> None:
    """A ledger's close time (whole seconds since 1970) comes out as getEvents writes
    ledgerClosedAt: no fraction, UTC, ending in Z."""
    assert iso_from_unix(0) == "1970-01-01T00:00:00Z"
    assert iso_from_unix(1_753_120_870) == "2025-07-21T18:01:10Z"
