"""The JSON-RPC methods of the simulated node, answering as stellar-rpc does.

Each handler takes the network and the raw params and returns the `result` already serialised
as JSON: a getEvents page of thousands of events is joined from pre-encoded fragments instead
of going through json.dumps. Field names, order and JSON types follow stellar-rpc's Go structs
(for example getLedgers' per-ledger ledgerCloseTime is a string, its latestLedgerCloseTime a
number; getHealth and getEvents send close times as strings).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from stellar_sdk import Account, TransactionBuilder, xdr

from stellar_reconciler.simnet import codec, params
from stellar_reconciler.simnet.cursor import Cursor, max_cursor
from stellar_reconciler.simnet.events import scval_json
from stellar_reconciler.simnet.jsonrpc import (
    METHOD_NOT_FOUND,
    RpcError,
    invalid_params,
    invalid_request,
)
from stellar_reconciler.simnet.network import LedgerSnapshot, SimNetwork
from stellar_reconciler.simnet.queries import EventsQuery, LedgersQuery
from stellar_reconciler.simnet.transactions import meta_xdr, result_xdr

# One getEvents call scans at most this many ledgers (stellar-rpc's LedgerScanLimit).
LEDGER_SCAN_LIMIT = 10_000

Handler = Callable[[SimNetwork, Any], str]
_HEX = frozenset("0123456789abcdefABCDEF")


def _dumps(result: dict[str, Any]) -> str:
    return json.dumps(result, separators=(",", ":"))


def get_health(net: SimNetwork, raw: Any) -> str:
    params.request_object(raw, "GetHealthRequest")
    span = net.ledger_range()
    return _dumps(
        {
            "status": "healthy",
            "latestLedger": span.latest,
            "latestLedgerCloseTime": str(span.latest_close_time),
            "oldestLedger": span.oldest,
            "oldestLedgerCloseTime": str(span.oldest_close_time),
            "ledgerRetentionWindow": net.retention_window,
        }
    )


def get_network(net: SimNetwork, raw: Any) -> str:
    params.request_object(raw, "GetNetworkRequest")
    return _dumps({"passphrase": net.passphrase, "protocolVersion": net.config.protocol_version})


def get_transaction(net: SimNetwork, raw: Any) -> str:
    request = params.request_object(raw, "GetTransactionRequest")
    tx_hash = params.string(params.field(request, "hash"), "GetTransactionRequest.hash")
    # stellar-rpc's checks and wording: the length first, then Go's hex decoder.
    if len(tx_hash) != 64:
        raise invalid_params(f"unexpected hash length ({len(tx_hash)})")
    bad = next((c for c in tx_hash if c not in _HEX), None)
    if bad is not None:
        byte = f"U+{ord(bad):04X} {bad!r}"
        raise invalid_params(f"incorrect hash: encoding/hex: invalid byte: {byte}")
    tx_hash = tx_hash.lower()
    span = net.ledger_range()
    answer: dict[str, Any] = {
        "latestLedger": span.latest,
        "latestLedgerCloseTime": str(span.latest_close_time),
        "oldestLedger": span.oldest,
        "oldestLedgerCloseTime": str(span.oldest_close_time),
    }
    found = net.transactions.lookup(tx_hash, span.latest)
    if found is None or not span.oldest <= found.ledger <= span.latest:
        return _dumps({**answer, "status": "NOT_FOUND", "txHash": tx_hash})
    fee = 100 + int(tx_hash[:6], 16) % 100_000
    return _dumps(
        {
            **answer,
            "status": "FAILED" if found.failed else "SUCCESS",
            "txHash": tx_hash,
            "applicationOrder": found.order,
            "feeBump": False,
            "envelopeXdr": _envelope(net, tx_hash),
            "resultXdr": codec.b64(result_xdr(tx_hash, fee, failed=found.failed)),
            "resultMetaXdr": codec.b64(meta_xdr()),
            "ledger": found.ledger,
            "createdAt": str(net.close_time(found.ledger)),
        }
    )


def _envelope(net: SimNetwork, tx_hash: str) -> str:
    accounts = net.cast.accounts
    source = accounts[int(tx_hash[:8], 16) % len(accounts)]
    builder = TransactionBuilder(
        Account(source.strkey, int(tx_hash[8:16], 16)), net.passphrase, base_fee=100
    )
    builder.append_invoke_contract_function_op(net.token_contract_id, "transfer", [])
    return str(builder.set_timeout(30).build().to_xdr())


def get_latest_ledger(net: SimNetwork, raw: Any) -> str:
    params.request_object(raw, "GetLatestLedgerRequest")
    latest = net.latest_ledger
    (ledger,) = net.snapshots(latest, latest)
    return _dumps(
        {
            "id": ledger.hash.hex(),
            "protocolVersion": net.config.protocol_version,
            "sequence": ledger.sequence,
            "closeTime": str(ledger.close_time),
            "headerXdr": codec.b64(ledger.header),
            "metadataXdr": codec.b64(ledger.meta),
        }
    )


def get_ledgers(net: SimNetwork, raw: Any) -> str:
    config = net.config
    query = LedgersQuery.decode(raw)
    span = net.ledger_range()
    query.validate(config.max_ledgers_limit, span.oldest, span.latest)
    start = query.first_ledger(span.oldest, span.latest)
    limit = query.limit or config.default_ledgers_limit
    if start < span.oldest:
        # stellar-rpc looks for older ledgers in its optional datastore; none is configured.
        raise invalid_params("datastore ledger reader not configured")
    ledgers = net.snapshots(start, start + limit - 1)
    as_json = query.xdr_format == "json"
    items = ",".join(_ledger_json(ledger) if as_json else _ledger_b64(ledger) for ledger in ledgers)
    # An empty page keeps the caller's cursor, or points just before the start.
    cursor = str(ledgers[-1].sequence) if ledgers else query.cursor or str(start - 1)
    return (
        f'{{"ledgers":[{items}],"latestLedger":{span.latest},'
        f'"latestLedgerCloseTime":{span.latest_close_time},"oldestLedger":{span.oldest},'
        f'"oldestLedgerCloseTime":{span.oldest_close_time},"cursor":"{cursor}"}}'
    )


def _ledger_b64(ledger: LedgerSnapshot) -> str:
    return (
        f'{{"hash":"{ledger.hash.hex()}","sequence":{ledger.sequence},'
        f'"ledgerCloseTime":"{ledger.close_time}",'
        f'"headerXdr":"{codec.b64(ledger.history_entry)}","metadataXdr":"{codec.b64(ledger.meta)}"}}'
    )


def _ledger_json(ledger: LedgerSnapshot) -> str:
    # The Go struct keeps headerXdr/metadataXdr without omitempty, so they stay, empty.
    header = xdr.LedgerHeaderHistoryEntry.from_xdr_bytes(ledger.history_entry).to_json()
    meta = xdr.LedgerCloseMeta.from_xdr_bytes(ledger.meta).to_json()
    return (
        f'{{"hash":"{ledger.hash.hex()}","sequence":{ledger.sequence},'
        f'"ledgerCloseTime":"{ledger.close_time}","headerXdr":"","headerJson":{_compact(header)},'
        f'"metadataXdr":"","metadataJson":{_compact(meta)}}}'
    )


def _compact(rendered: str) -> str:
    return json.dumps(json.loads(rendered), separators=(",", ":"))


def get_events(net: SimNetwork, raw: Any) -> str:
    config = net.config
    query = EventsQuery.decode(raw, config.max_events_limit)
    span = net.ledger_range()
    # A cursor resumes strictly after the event it names.
    start = query.cursor.after() if query.cursor is not None else Cursor(query.start_ledger)
    limit = query.limit or config.default_events_limit
    end = min(start.ledger + LEDGER_SCAN_LIMIT, span.latest + 1)
    if query.end_ledger:
        end = min(query.end_ledger, end)
    if not span.oldest <= start.ledger <= span.latest:
        raise invalid_request(
            f"startLedger must be within the ledger range: {span.oldest} - {span.latest}"
        )
    found = net.scan_events(start, end, query.filters, limit)
    tamper = net.tamper
    as_json = query.xdr_format == "json"
    parts: list[str] = []
    for ledger, i in found:
        value = None
        if tamper.active:
            value = tamper.served_value(ledger.event_id(i), ledger.values[i])
        if as_json:
            parts.append(ledger.json_fragment(i, _scval_json, value))
        else:
            parts.append(ledger.fragment(i, value))
    if len(found) == limit:
        cursor = found[-1][0].event_id(found[-1][1])
    else:
        # A short page still covered the whole window: resume after its last ledger.
        cursor = str(max_cursor(end - 1))
    return (
        f'{{"events":[{",".join(parts)}],"cursor":"{cursor}","latestLedger":{span.latest},'
        f'"oldestLedger":{span.oldest},"latestLedgerCloseTime":"{span.latest_close_time}",'
        f'"oldestLedgerCloseTime":"{span.oldest_close_time}"}}'
    )


@lru_cache(maxsize=8192)
def _scval_json(b64: str) -> str:
    # Topics repeat across events, so most conversions hit the cache.
    return scval_json(b64)


METHODS: dict[str, Handler] = {
    "getHealth": get_health,
    "getNetwork": get_network,
    "getLatestLedger": get_latest_ledger,
    "getLedgers": get_ledgers,
    "getEvents": get_events,
    "getTransaction": get_transaction,
}


def call(net: SimNetwork, method: str, raw: Any) -> str:
    """The serialised result of `method`, or RpcError as stellar-rpc would answer."""
    handler = METHODS.get(method)
    if handler is None:
        raise RpcError(METHOD_NOT_FOUND, "method not found", method)
    return handler(net, raw)
