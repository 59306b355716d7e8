"""/api/events and /api/ledgers: the indexed data, paged in ledger order."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from stellar_sdk import StrKey

from stellar_reconciler.api.auth import ReadAccess
from stellar_reconciler.api.context import ApiContext, context
from stellar_reconciler.api.errors import invalid_param
from stellar_reconciler.api.params import LedgerQuery, Limit
from stellar_reconciler.decode import decode_scval_b64
from stellar_reconciler.errors import DecodeError
from stellar_reconciler.models import iso_utc
from stellar_reconciler.store import EventQuery

router = APIRouter(tags=["data"], dependencies=[ReadAccess])
Ctx = Annotated[ApiContext, Depends(context)]

_EVENT_ID = re.compile(r"[0-9]{19}-[0-9]{10}")
_SYMBOL = re.compile(r"[A-Za-z0-9_]{1,64}")


def check_range(from_ledger: int | None, to_ledger: int | None) -> None:
    if from_ledger is not None and to_ledger is not None and from_ledger > to_ledger:
        raise invalid_param("to_ledger", f"must be at least from_ledger ({from_ledger})")


def topic_name(topic: str) -> str:
    """The event name a `topic` parameter asks for: a symbol, or a base64 ScVal of one."""
    if _SYMBOL.fullmatch(topic):
        return topic
    try:
        decoded = decode_scval_b64(topic)
    except DecodeError:
        decoded = None
    if not isinstance(decoded, str):
        raise invalid_param(
            "topic", "must be an event name (a symbol such as transfer) or its base64 ScVal"
        )
    return decoded


@router.get("/api/events", summary="Indexed contract events, in ledger and id order")
def list_events(
    ctx: Ctx,
    contract_id: Annotated[str | None, Query(description="Contract strkey (C...)")] = None,
    topic: Annotated[
        str | None, Query(description="Event name: the first topic, e.g. transfer")
    ] = None,
    from_ledger: LedgerQuery = None,
    to_ledger: LedgerQuery = None,
    limit: Limit = 100,
    cursor: Annotated[
        str | None,
        Query(
            description="next_cursor of the previous page",
            json_schema_extra={"pattern": f"^{_EVENT_ID.pattern}$"},
        ),
    ] = None,
    order: Annotated[
        Literal["asc", "desc"], Query(description="asc: oldest first (default); desc: newest first")
    ] = "asc",
) -> dict[str, Any]:
    if contract_id is not None and not StrKey.is_valid_contract(contract_id):
        raise invalid_param("contract_id", "must be a contract strkey: C followed by 55 characters")
    if cursor is not None and not _EVENT_ID.fullmatch(cursor):
        raise invalid_param("cursor", "must be a next_cursor value returned by this endpoint")
    check_range(from_ledger, to_ledger)
    rows = ctx.store.list_events(
        EventQuery(
            contract_id=contract_id,
            name=topic_name(topic) if topic is not None else None,
            from_ledger=from_ledger,
            to_ledger=to_ledger,
            after_id=cursor,
            limit=limit,
            descending=order == "desc",
        )
    )
    return {"events": rows, "next_cursor": rows[-1]["id"] if len(rows) == limit else None}


@router.get("/api/ledgers", summary="Processed ledgers with their hashes and event counts")
def list_ledgers(
    ctx: Ctx,
    from_ledger: LedgerQuery = None,
    to_ledger: LedgerQuery = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    check_range(from_ledger, to_ledger)
    records = ctx.store.list_ledgers(from_ledger, to_ledger, limit)
    ledgers = [
        {
            "sequence": r.sequence,
            "hash": r.hash,
            "previous_hash": r.previous_hash,
            "closed_at": iso_utc(r.closed_at),
            "event_count": r.event_count,
        }
        for r in records
    ]
    next_from = records[-1].sequence + 1 if len(records) == limit else None
    return {"ledgers": ledgers, "next_from_ledger": next_from}
