"""Store on SQLite and PostgreSQL: one transaction per batch, compare-and-set checkpoint."""

from __future__ import annotations

import dataclasses
import json
import threading

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError

from stellar_reconciler.errors import CheckpointConflictError, StreamMismatchError
from stellar_reconciler.store import EventQuery, Store
from stellar_reconciler.store.discrepancies import NewDiscrepancy
from stellar_reconciler.store.migrate import current_revision, head_revision
from stellar_reconciler.store.schema import ledgers, metadata
from tests.factories import CONTRACT, make_batch


def test_migrations_build_exactly_the_declared_schema(store: Store) -> None:
    """Running every migration yields the schema in schema.py, nothing more or less (beside
    Procrastinate's own tables on PostgreSQL, which its schema file defines)."""
    assert current_revision(store.engine) == head_revision()

    def ours(name: str | None, kind: str, _parent: object) -> bool:
        return not (kind == "table" and (name or "").startswith("procrastinate_"))

    with store.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_name": ours}
        )
        diff = compare_metadata(context, metadata)
    assert diff == []


def test_postgres_migration_applies_procrastinate_schema(store: Store) -> None:
    """On PostgreSQL the migrations leave the job queue's tables in place; SQLite has none."""
    with store.engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
    assert ("procrastinate_jobs" in tables) == (store.dialect == "postgresql")


def test_migrate_twice_is_harmless(store: Store) -> None:
    """Migrating an up-to-date database changes nothing."""
    store.migrate()
    store.migrate()
    assert current_revision(store.engine) == head_revision()


def test_new_stream_starts_just_before_start_ledger(store: Store) -> None:
    """An empty database gets a checkpoint at start - 1; a second call keeps it."""
    assert store.checkpoint().ledger is None
    assert store.ensure_stream(100, "fp") == 99
    assert store.ensure_stream(500, "fp") == 99
    assert store.checkpoint().ledger == 99


def test_changed_filters_are_refused(store: Store) -> None:
    """A database filled under other filters refuses to continue under new ones."""
    store.ensure_stream(100, "fp-a")
    with pytest.raises(StreamMismatchError, match="DATABASE_URL"):
        store.ensure_stream(100, "fp-b")


def test_batch_commits_events_ledgers_and_checkpoint_together(store: Store) -> None:
    """After a batch, its ledgers, events and the checkpoint are all there."""
    store.ensure_stream(10, "fp")
    store.commit_batch(make_batch(10, 14, events_per_ledger=3))
    assert store.checkpoint().ledger == 14
    assert store.ledger_bounds() == (10, 14, 5)
    assert store.event_count() == 15
    assert store.ledger(12) is not None and store.ledger(12).event_count == 3  # type: ignore[union-attr]


def test_batch_not_following_checkpoint_is_rolled_back_whole(store: Store) -> None:
    """A batch that does not start at checkpoint + 1 raises and writes nothing at all."""
    store.ensure_stream(10, "fp")
    store.commit_batch(make_batch(10, 11))
    for first, last in [(13, 14), (11, 12), (10, 11)]:
        with pytest.raises(CheckpointConflictError) as caught:
            store.commit_batch(make_batch(first, last))
        assert caught.value.found == 11
    assert store.checkpoint().ledger == 11
    assert store.ledger_bounds() == (10, 11, 2)
    assert store.event_count() == 2


def test_duplicate_event_fails_loudly_and_rolls_back(store: Store) -> None:
    """An event already stored makes the whole batch fail, checkpoint included."""
    store.ensure_stream(10, "fp")
    batch = make_batch(10, 10)
    store.commit_batch(batch)
    replay = make_batch(11, 11)
    replay = type(replay)(11, 11, replay.ledgers, batch.events)
    with pytest.raises(IntegrityError):
        store.commit_batch(replay)
    assert store.checkpoint().ledger == 10
    assert store.ledger(11) is None


def test_two_writers_racing_commit_exactly_once(store: Store) -> None:
    """Two threads committing the same batch: one wins, the other gets a conflict."""
    store.ensure_stream(1, "fp")
    batch = make_batch(1, 50, events_per_ledger=5)
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def commit() -> None:
        barrier.wait()
        try:
            store.commit_batch(batch)
            outcomes.append("ok")
        except CheckpointConflictError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=commit) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict", "ok"]
    assert store.event_count() == 250
    assert store.checkpoint().ledger == 50


def test_events_page_in_id_order_with_filters(store: Store) -> None:
    """list_events filters by contract, name and ledger range and pages by id."""
    store.ensure_stream(1, "fp")
    store.commit_batch(make_batch(1, 10, events_per_ledger=2))
    page1 = store.list_events(EventQuery(from_ledger=3, to_ledger=6, limit=5))
    page2 = store.list_events(
        EventQuery(from_ledger=3, to_ledger=6, limit=5, after_id=page1[-1]["id"])
    )
    ids = [e["id"] for e in page1 + page2]
    assert ids == sorted(ids) and len(ids) == 8 and len(set(ids)) == 8
    assert {e["ledger"] for e in page1 + page2} == {3, 4, 5, 6}
    assert store.list_events(EventQuery(contract_id=CONTRACT, limit=100)).__len__() == 20
    assert store.list_events(EventQuery(name="mint", limit=100)) == []
    first = page1[0]
    assert first["ledger_closed_at"].endswith("Z")
    assert first["topics"] == ["transfer"] and first["topics_xdr"] == ["AAAADwAAAAh0cmFuc2Zlcg=="]


def test_event_texts_are_list_events_as_one_line_json(store: Store) -> None:
    """event_texts gives what list_events gives, as one-line JSON text, for the same filters
    and position (values that are null, nested or not ASCII included)."""
    store.ensure_stream(1, "fp")
    batch = make_batch(1, 6, events_per_ledger=2)
    odd = [
        batch.events[0]._replace(value=None),
        batch.events[1]._replace(value={"to": "G\u00e9", "amount": [1, {"a": None}]}),
    ]
    store.commit_batch(dataclasses.replace(batch, events=(*odd, *batch.events[2:])))
    for query in (
        EventQuery(limit=100),
        EventQuery(from_ledger=3, limit=3, after_id=batch.events[5].id),
        EventQuery(contract_id=CONTRACT, name="transfer", limit=4),
    ):
        texts = store.event_texts(query)
        assert all("\n" not in text for _, text in texts)
        expected = store.list_events(query)
        assert [json.loads(text) for _, text in texts] == expected
        assert [event_id for event_id, _ in texts] == [e["id"] for e in expected]


def test_acknowledged_gap_moves_checkpoint_and_is_recorded(store: Store) -> None:
    """Carrying out a gap consent moves the checkpoint past the gap, records who and why,
    consumes the consent and resolves the retention_gap discrepancy, all at once."""
    store.ensure_stream(1, "fp")
    store.discrepancies.open(
        NewDiscrepancy("retention_gap", "retention_gap:checkpoint:1", "ledgers 1-500 are gone")
    )
    store.consents.give(None, "outside retention", "cli")
    consent = store.consents.pending()
    assert consent is not None and consent.through_ledger is None
    gap = store.consents.carry_out(1, 500, consent.id)
    assert gap is not None and store.checkpoint().ledger == 500
    assert [(g.first_ledger, g.last_ledger) for g in store.gaps.acknowledged()] == [(1, 500)]
    assert "outside retention" in store.gaps.acknowledged()[0].note
    assert gap.acknowledged_at.tzinfo is not None
    assert store.consents.pending() is None
    assert store.discrepancies.open_counts()["retention_gap"] == 0
    assert [e["action"] for e in store.audit.listing()] == ["consent_to_gap"]


def test_gap_finding_is_sql_and_skips_acknowledged_ranges(store: Store) -> None:
    """find_gaps returns the missing runs between stored ledgers, minus acknowledged ones."""
    store.ensure_stream(1, "fp")
    store.commit_batch(make_batch(1, 30))
    with store.engine.begin() as conn:
        conn.execute(ledgers.delete().where(ledgers.c.sequence.in_([5, 6, 7, 12, 20, 21])))
    assert store.gaps.find() == [(5, 7), (12, 12), (20, 21)]
    assert store.gaps.find(low=10, high=25) == [(12, 12), (20, 21)]


def test_rebase_only_while_nothing_is_stored(store: Store) -> None:
    """The start can move forward while the database is empty, never after a commit."""
    store.ensure_stream(10, "fp")
    assert store.rebase_empty_stream(9, 19) is True
    store.commit_batch(make_batch(20, 20))
    assert store.rebase_empty_stream(20, 30) is False
    assert store.checkpoint().ledger == 20
