"""Stellar RPC answers turned into models, with every field a follower relies on checked.

Servers differ in small ways (numbers sent as strings, fields older servers lack); what is
accepted is written here, and anything else is an RpcProtocolError naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stellar_reconciler.decode import decode_history_entry
from stellar_reconciler.errors import DecodeError, RpcProtocolError
from stellar_reconciler.models import LedgerHeader, NetworkTip, RawEvent


def int_field(data: Mapping[str, Any], key: str, method: str, *, optional: bool = False) -> int:
    """Read an integer field that servers send as a JSON number or as a decimal string."""
    value = data.get(key)
    if value is None and optional:
        return 0
    if isinstance(value, bool):
        raise RpcProtocolError(method, f"field {key!r} is a boolean, expected a number")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise RpcProtocolError(method, f"field {key!r} is {value!r}, expected a whole number")


def str_field(data: Mapping[str, Any], key: str, method: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise RpcProtocolError(method, f"field {key!r} is {value!r}, expected a string")
    return value


def network_tip(result: Mapping[str, Any], method: str) -> NetworkTip:
    return NetworkTip(
        latest_ledger=int_field(result, "latestLedger", method),
        oldest_ledger=int_field(result, "oldestLedger", method),
        latest_close_time=int_field(result, "latestLedgerCloseTime", method, optional=True) or None,
        oldest_close_time=int_field(result, "oldestLedgerCloseTime", method, optional=True) or None,
        retention_window=int_field(result, "ledgerRetentionWindow", method, optional=True) or None,
    )


def parse_event(item: Any, method: str = "getEvents") -> RawEvent:
    """Turn one getEvents entry into a RawEvent, checking every field a follower relies on."""
    # A catch-up parses millions of entries: take the ones shaped exactly as stellar-rpc
    # serves them with exact type checks only; anything else gets the checks (and the
    # messages) of the careful path below.
    if type(item) is dict:
        topics, value = item.get("topic"), item.get("value")
        ledger, event_id = item.get("ledger"), item.get("id")
        kind, closed_at = item.get("type"), item.get("ledgerClosedAt")
        contract_id, tx_hash = item.get("contractId"), item.get("txHash")
        tx_index, op_index = item.get("transactionIndex"), item.get("operationIndex")
        successful = item.get("inSuccessfulContractCall", True)
        if (
            type(topics) is list
            and type(value) is str
            and type(ledger) is int
            and type(event_id) is str
            and type(kind) is str
            and type(closed_at) is str
            and type(contract_id) is str
            and type(tx_hash) is str
            and type(tx_index) is int
            and type(op_index) is int
            and type(successful) is bool
            and all(type(t) is str for t in topics)
        ):
            return RawEvent(
                event_id,
                kind,
                ledger,
                closed_at,
                contract_id,
                tx_hash,
                tx_index,
                op_index,
                successful,
                tuple(topics),
                value,
            )
    return _parse_event_carefully(item, method)


def _parse_event_carefully(item: Any, method: str) -> RawEvent:
    if not isinstance(item, Mapping):
        raise RpcProtocolError(method, f"event entry is {type(item).__name__}, expected an object")
    topics = item.get("topic")
    if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
        raise RpcProtocolError(
            method, "event 'topic' must be a list of base64 strings (is xdrFormat json?)"
        )
    contract_id = item.get("contractId") or ""
    if not isinstance(contract_id, str):
        raise RpcProtocolError(method, f"event contractId is {contract_id!r}")
    value = item.get("value")
    if not isinstance(value, str):
        raise RpcProtocolError(method, f"event 'value' is {value!r}, expected base64 XDR")
    return RawEvent(
        id=str_field(item, "id", method),
        type=str_field(item, "type", method),
        ledger=int_field(item, "ledger", method),
        ledger_closed_at=str_field(item, "ledgerClosedAt", method),
        contract_id=contract_id,
        tx_hash=str(item.get("txHash") or ""),
        transaction_index=int_field(item, "transactionIndex", method, optional=True),
        operation_index=int_field(item, "operationIndex", method, optional=True),
        in_successful_contract_call=bool(item.get("inSuccessfulContractCall", True)),
        topics_xdr=tuple(topics),
        value_xdr=value,
    )


def parse_ledger(item: Any, method: str = "getLedgers") -> LedgerHeader:
    """Decode one getLedgers entry and prove its hash: the served hash, the entry's own hash
    and sha256 of the header XDR must all agree."""
    if not isinstance(item, Mapping):
        raise RpcProtocolError(method, "ledger entry is not an object")
    sequence = int_field(item, "sequence", method)
    served_hash = str_field(item, "hash", method).lower()
    meta = item.get("metadataXdr")
    try:
        header, entry_hash = decode_history_entry(
            str_field(item, "headerXdr", method), len(meta) if isinstance(meta, str) else 0
        )
    except DecodeError as exc:
        raise RpcProtocolError(method, f"ledger {sequence}: {exc}") from exc
    if header.sequence != sequence:
        raise RpcProtocolError(method, f"ledger {sequence} carries a header for {header.sequence}")
    if not header.hash == entry_hash == served_hash:
        raise RpcProtocolError(
            method,
            f"ledger {sequence}: served hash {served_hash} but its header hashes to {header.hash}",
        )
    return header
