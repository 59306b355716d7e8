"""event_text: the hand-built event JSON is byte for byte what json.dumps writes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from stellar_reconciler.models import iso_utc
from stellar_reconciler.store.repository import event_text

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


def _reference(row: Any) -> str:
    """The event as json.dumps writes it, the JSON columns as the stored text they are."""
    head = json.dumps(
        {
            "id": row.id,
            "ledger": row.ledger,
            "ledger_closed_at": iso_utc(row.ledger_closed_at),
            "contract_id": row.contract_id,
            "type": row.type,
            "name": row.name,
            "tx_hash": row.tx_hash,
        },
        separators=(",", ":"),
    )
    return (
        f'{head[:-1]},"topics":{row.topics},"value":{row.value or "null"},'
        f'"topics_xdr":{row.topics_xdr},"value_xdr":{json.dumps(row.value_xdr)}}}'
    )


@given(
    name=st.none() | st.text(),
    ledger=st.integers(min_value=1, max_value=2**32 - 1),
    micros=st.integers(min_value=0, max_value=10**6 - 1),
    topics=st.lists(_JSON, max_size=4),
    value=_JSON,
    text=st.text(alphabet=st.characters(codec="ascii")),
)
def test_event_text_is_what_json_dumps_writes(
    name: str | None, ledger: int, micros: int, topics: list[Any], value: Any, text: str
) -> None:
    """Any name (quotes, control characters, not ASCII), any stored JSON, any close time:
    the same bytes as json.dumps of the same fields, and always valid JSON on one line."""
    row = SimpleNamespace(
        id=f"{ledger << 32:019d}-0000000001",
        ledger=ledger,
        ledger_closed_at=datetime(2024, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros),
        contract_id=text,
        type="contract",
        name=name,
        tx_hash=text[::-1],
        topics=json.dumps(topics),
        value=None if value is None else json.dumps(value),
        topics_xdr=json.dumps([text]),
        value_xdr=text,
    )
    made = event_text(row)
    assert made == _reference(row)
    assert "\n" not in made
    assert json.loads(made)["name"] == name
