"""The bulk write path (COPY on PostgreSQL, executemany on SQLite) stores exactly the rows the
plain one-INSERT-per-row path stores, exactly once, on both databases."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, Text, cast, create_engine, delete, insert, select
from sqlalchemy.exc import IntegrityError

from stellar_reconciler.decode import decode_event
from stellar_reconciler.errors import CheckpointConflictError
from stellar_reconciler.models import Batch, Event, LedgerRecord
from stellar_reconciler.rpc import parse_event
from stellar_reconciler.simnet import SimNetConfig, SimNetwork
from stellar_reconciler.store import Store
from stellar_reconciler.store.bulk import EVENT_COLUMNS, fast_json, insert_many
from stellar_reconciler.store.repository import event_row, ledger_row
from stellar_reconciler.store.schema import events, ledgers
from tests.factories import ledger_hash, make_batch, make_event

BIG = str(2**128 - 1)
PLUS_TWO = timezone(timedelta(hours=2))


def tricky_events() -> list[Event]:
    """Events whose values trip up hand-made serialisation: escapes, unicode, nesting, big
    numbers as text, empty topic lists, JSON null next to SQL NULL, equal instants written
    in different zones."""
    base = make_event(20)
    closed = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    shapes: list[tuple[tuple[Any, ...], Any, str | None]] = [
        (("transfer", "GA" + "A" * 54), BIG, "transfer"),
        (('quo"te', "back\\slash", "tab\there", "new\nline"), 'a "b" \\c\td\ne', 'quo"te'),
        (
            ("caf\u00e9", "\u2028\u2029", "\U0001f4b8"),
            {"k\u00e9y": "v\u00e4l\U0001f4b8"},
            "caf\u00e9",
        ),
        ((), None, None),
        (("nested",), {"a": [1, {"b": [True, False, None]}], "big": BIG, "neg": "-5"}, "nested"),
        ((7, "x"), [1, "two", None, {"three": [3]}], None),
        (("n" * 80,), True, "n" * 80),
        (("empty",), "", "empty"),
        (("pairs",), [[1, "one"], [[2], "two"]], "pairs"),
        (("zero",), 0, "zero"),
    ]
    found = []
    for index, (topics, value, name) in enumerate(shapes):
        # The last one shares the others' instant but not their zone; SQLite stores the wall
        # time it is given, so the two must not be confused.
        at = closed if index < len(shapes) - 1 else closed.astimezone(PLUS_TWO)
        found.append(
            Event(
                id=f"{(20 << 32) | (1 << 12) | index:019d}-{index:010d}",
                type="system" if index % 3 == 0 else base.type,
                ledger=base.ledger,
                ledger_closed_at=at,
                contract_id=base.contract_id,
                tx_hash=base.tx_hash,
                transaction_index=base.transaction_index,
                operation_index=index,
                in_successful_contract_call=index % 2 == 0,
                topics_xdr=tuple(f"xdr{index}-{i}" for i in range(len(topics))),
                value_xdr=f"val\\ue{index}",
                topics=topics,
                value=value,
                name=name,
            )
        )
    return found


def ledger_records(first: int, last: int) -> list[LedgerRecord]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        LedgerRecord(s, ledger_hash(s), ledger_hash(s - 1), start + timedelta(seconds=5 * s), 3)
        for s in range(first, last + 1)
    ]


def stored(conn: Connection) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every events and ledgers row as the database renders each column as text, so JSON null
    and SQL NULL, or two datetime encodings, cannot look alike."""
    rows = []
    for table, key in ((events, events.c.id), (ledgers, ledgers.c.sequence)):
        query = select(*[cast(column, Text) for column in table.columns]).order_by(key)
        rows.append([tuple(row) for row in conn.execute(query)])
    return rows[0], rows[1]


def one_by_one(conn: Connection, records: Sequence[LedgerRecord], found: Sequence[Event]) -> None:
    """The plain path: SQLAlchemy's insert, one statement per row."""
    for record in records:
        conn.execute(insert(ledgers).values(**ledger_row(record)))
    for event in found:
        conn.execute(insert(events).values(**event_row(event)))


def both_paths(
    engine: Engine, store: Store, records: Sequence[LedgerRecord], found: Sequence[Event]
) -> tuple[Any, Any]:
    with engine.begin() as conn:
        one_by_one(conn, records, found)
        plain = stored(conn)
        conn.execute(delete(events))
        conn.execute(delete(ledgers))
        store.insert_rows(conn, records, found)
        bulk = stored(conn)
    return plain, bulk


def test_bulk_rows_equal_one_by_one_rows(store: Store) -> None:
    """Escapes, unicode, nested JSON, big numbers, empty topics, JSON null and SQL NULL,
    timestamps in two zones and booleans come out of the bulk path byte for byte as the
    one-statement-per-row path writes them."""
    found = tricky_events()
    plain, bulk = both_paths(store.engine, store, ledger_records(18, 21), found)
    assert bulk == plain
    assert len(bulk[0]) == len(found) and len(bulk[1]) == 4


def test_bulk_rows_read_back_as_written(store: Store) -> None:
    """Through the store's own reads, every value comes back as it was given."""
    found = tricky_events()
    store.ensure_stream(20, "fp")
    store.commit_batch(Batch(20, 20, tuple(ledger_records(20, 20)), tuple(found)))
    with store.engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(events))}
    for event in found:
        row = rows[event.id]
        assert list(row.topics) == list(event.topics)
        assert row.value == event.value
        assert row.name == (event.name[:64] if event.name else None)
        assert row.in_successful_contract_call is event.in_successful_contract_call
        assert row.topics_xdr == list(event.topics_xdr)
        assert row.value_xdr == event.value_xdr


def test_bulk_rows_of_a_simulated_history_equal_one_by_one_rows(store: Store) -> None:
    """Real payloads (transfers with addresses and i128 amounts, escrow maps, fee events),
    decoded as the worker decodes them, store identically through both paths."""
    net = SimNetwork(SimNetConfig(prebuilt_ledgers=30, events_per_ledger=25, system_event_every=3))
    found = [decode_event(parse_event(r)) for r in net.record_events(1000, 1029)]
    records = [
        LedgerRecord(
            r["sequence"],
            r["hash"],
            r["previousLedgerHash"],
            datetime.fromtimestamp(r["closeTime"], tz=UTC),
            r["eventCount"],
        )
        for r in net.record_ledgers(1000, 1029)
    ]
    plain, bulk = both_paths(store.engine, store, records, found)
    assert bulk == plain
    assert len(bulk[0]) == len(found) > 500


def test_a_configured_json_serializer_is_honoured(store: Store) -> None:
    """An engine with its own JSON serializer gets exactly its output from the bulk path too
    (the shortcut for strings and lists stands aside)."""
    compact = create_engine(
        store.engine.url, json_serializer=lambda v: json.dumps(v, separators=(",", ":"))
    )
    try:
        plain, bulk = both_paths(compact, Store(compact), ledger_records(18, 21), tricky_events())
    finally:
        compact.dispose()
    assert bulk == plain
    if store.is_sqlite():
        texts = {row[0]: row[12] for row in bulk[0]}
        assert texts[tricky_events()[1].id] == json.dumps(
            ['quo"te', "back\\slash", "tab\there", "new\nline"], separators=(",", ":")
        )


def test_commit_batch_writes_each_row_exactly_once(store: Store) -> None:
    """A committed batch is stored once; committing it again is refused and adds nothing."""
    store.ensure_stream(10, "fp")
    batch = make_batch(10, 19, events_per_ledger=4)
    store.commit_batch(batch)
    with pytest.raises(CheckpointConflictError):
        store.commit_batch(batch)
    assert store.event_count() == 40
    with store.engine.connect() as conn:
        stored = list(conn.execute(select(events.c.id).order_by(events.c.id)).scalars())
    assert stored == sorted({e.id for e in batch.events})
    assert store.ledger_bounds() == (10, 19, 10)


@pytest.mark.parametrize("where", ["already stored", "twice in the batch"])
def test_duplicate_rows_fail_whole_and_leave_the_store_usable(store: Store, where: str) -> None:
    """A duplicate event raises SQLAlchemy's IntegrityError on both databases (COPY included),
    rolls back the whole batch, and the next batch commits normally."""
    store.ensure_stream(10, "fp")
    first = make_batch(10, 10, events_per_ledger=3)
    store.commit_batch(first)
    second = make_batch(11, 11, events_per_ledger=3)
    repeated = first.events[0] if where == "already stored" else second.events[0]
    broken = Batch(11, 11, second.ledgers, (*second.events, repeated))
    with pytest.raises(IntegrityError):
        store.commit_batch(broken)
    assert store.checkpoint().ledger == 10
    assert store.ledger(11) is None and store.event_count() == 3
    store.commit_batch(second)
    assert store.checkpoint().ledger == 11 and store.event_count() == 6


def test_event_tuples_cover_every_events_column() -> None:
    """The events fast path names each column once, and every column of the table."""
    assert sorted(EVENT_COLUMNS) == sorted(c.name for c in events.columns)
    assert sorted(EVENT_COLUMNS) == sorted(event_row(make_event(1)))


def test_rows_with_unknown_columns_are_refused(store: Store) -> None:
    """A key that is not a column is an error, as in SQLAlchemy, not silently dropped."""
    row = {**ledger_row(ledger_records(5, 5)[0]), "colour": "blue"}
    with store.engine.begin() as conn, pytest.raises(ValueError, match="colour"):
        insert_many(conn, ledgers, [row])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(json_values)
def test_json_shortcut_renders_exactly_as_json_dumps(value: Any) -> None:
    """The shortcut renders what json.dumps renders, or stands aside (None)."""
    assert fast_json(value) in (None, json.dumps(value))
    if isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(v, str) for v in value)
    ):
        assert fast_json(value) == json.dumps(value)
