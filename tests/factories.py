"""Small builders of model objects for tests that do not need a whole network."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from stellar_reconciler.models import Batch, Event, LedgerRecord

CONTRACT = "CDLZFC3SYJYDZT7K67VZ75HPJVIEUVNIXF47ZG2FB2RMQQVU2HHGCYSC"


def ledger_hash(sequence: int, salt: str = "") -> str:
    return hashlib.sha256(f"{salt}{sequence}".encode()).hexdigest()


def event_id(ledger: int, tx: int = 1, op: int = 0, index: int = 0) -> str:
    toid = (ledger << 32) | (tx << 12) | op
    return f"{toid:019d}-{index:010d}"


def make_event(
    ledger: int, index: int = 0, name: str = "transfer", contract: str = CONTRACT
) -> Event:
    return Event(
        id=event_id(ledger, index=index),
        type="contract",
        ledger=ledger,
        ledger_closed_at=datetime.fromtimestamp(1_700_000_000 + ledger * 5, tz=UTC),
        contract_id=contract,
        tx_hash=hashlib.sha256(f"tx{ledger}".encode()).hexdigest(),
        transaction_index=1,
        operation_index=0,
        in_successful_contract_call=True,
        topics_xdr=("AAAADwAAAAh0cmFuc2Zlcg==",),
        value_xdr="AAAACgAAAAAAAAAAAAAAALLQXgA=",
        topics=(name,),
        value=str(1000 + index),
        name=name,
    )


def make_batch(first: int, last: int, events_per_ledger: int = 1) -> Batch:
    ledgers = tuple(
        LedgerRecord(
            sequence=s,
            hash=ledger_hash(s),
            previous_hash=ledger_hash(s - 1),
            closed_at=datetime.fromtimestamp(1_700_000_000 + s * 5, tz=UTC),
            event_count=events_per_ledger,
        )
        for s in range(first, last + 1)
    )
    events = tuple(
        make_event(s, i) for s in range(first, last + 1) for i in range(events_per_ledger)
    )
    return Batch(first, last, ledgers, events)
