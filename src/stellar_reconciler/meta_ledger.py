"""A ledger out of its metadata, and stellar-rpc's rules for its events.

The rules are stellar-rpc's own (its event ingestion from `LedgerCloseMeta`):
- transactions in apply order (the meta's tx processing order), numbered from 1;
- TransactionMeta v3: the Soroban meta's contract events, as operation 0 (diagnostic events
  are not events of getEvents); v0-v2 carry no events;
- TransactionMeta v4: each operation's events under its own index, and the transaction-level
  events by stage: before all transactions at (tx 0, op 0) with one counter for the whole
  ledger, after each transaction at (tx, op 4095), after all transactions at (tx 1048575,
  op 0) with one counter for the whole ledger;
- an event index counts within its (tx, op) slot; failed transactions are not skipped (their
  fee events stay), and `inSuccessfulContractCall` is whether the transaction succeeded;
- the transaction hash is the one in the transaction's result pair.

Two readers apply them: metaevents walks the bytes (fast), metasdk decodes with stellar-sdk
(the reference, and the fast path's fallback). Both collect into `LedgerEvents`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from stellar_reconciler.config import Settings
from stellar_reconciler.decode import decode_event
from stellar_reconciler.models import Event, LedgerHeader, RawEvent

TX_MASK = (1 << 20) - 1
OP_MASK = (1 << 12) - 1
EVENT_TYPES = {0: "system", 1: "contract"}
DIAGNOSTIC = 2
BEFORE_ALL_TXS, AFTER_TX, AFTER_ALL_TXS = 0, 1, 2
# txSUCCESS and txFEE_BUMP_INNER_SUCCESS; every other result code is a failed transaction.
SUCCESS_CODES = (0, 1)


@dataclass(frozen=True, slots=True)
class MetaLedger:
    """One ledger out of its metadata: the header, hash-checked, and its events in id order."""

    header: LedgerHeader
    events: tuple[RawEvent, ...]

    def decoded(self, selector: EventSelector | None = None) -> list[Event]:
        """The selected events decoded as the service stores them (topics and value as JSON)."""
        chosen = self.events if selector is None else filter(selector.selects, self.events)
        return [decode_event(event) for event in chosen]


@dataclass(frozen=True, slots=True)
class EventSelector:
    """CONTRACT_IDS and EVENT_TOPICS applied the way getEvents applies them.

    Topic segments are base64 ScVals or the wildcards `*` (one topic) and, last, `**` (any
    number); without `**` an event has exactly as many topics as the filter has segments.
    No contracts and no topic filters select every event.
    """

    contract_ids: frozenset[str] = frozenset()
    topic_filters: tuple[tuple[str, ...], ...] = ()

    @classmethod
    def of(cls, contract_ids: Iterable[str], topics: Iterable[Sequence[str]]) -> EventSelector:
        return cls(frozenset(contract_ids), tuple(tuple(t) for t in topics))

    @classmethod
    def for_settings(cls, settings: Settings) -> EventSelector:
        """What CONTRACT_IDS and EVENT_TOPICS select (segments already as getEvents takes them)."""
        return cls.of(settings.contract_ids, settings.event_topics)

    def selects(self, event: RawEvent) -> bool:
        if self.contract_ids and event.contract_id not in self.contract_ids:
            return False
        if not self.topic_filters:
            return True
        return any(_topics_match(f, event.topics_xdr) for f in self.topic_filters)


def _topics_match(segments: tuple[str, ...], topics: tuple[str, ...]) -> bool:
    flexible = bool(segments) and segments[-1] == "**"
    fixed = segments[:-1] if flexible else segments
    if len(topics) < len(fixed) or (not flexible and len(topics) != len(fixed)):
        return False
    return all(s in ("*", t) for s, t in zip(fixed, topics, strict=False))


def rpc_record(event: RawEvent) -> dict[str, Any]:
    """The event as getEvents serves it (keys and JSON types of its base64 XDR format)."""
    return {
        "type": event.type,
        "ledger": event.ledger,
        "ledgerClosedAt": event.ledger_closed_at,
        "contractId": event.contract_id,
        "id": event.id,
        "operationIndex": event.operation_index,
        "transactionIndex": event.transaction_index,
        "txHash": event.tx_hash,
        "inSuccessfulContractCall": event.in_successful_contract_call,
        "topic": list(event.topics_xdr),
        "value": event.value_xdr,
    }


def event_id(ledger: int, tx: int, op: int, index: int) -> str:
    return f"{(ledger << 32) | (tx << 12) | op:019d}-{index:010d}"


class LedgerEvents:
    """One ledger's events as a reader finds them, with stellar-rpc's ids; the counters of
    the ledger-wide stages run across the ledger's transactions."""

    def __init__(self, ledger: int, closed_at: str) -> None:
        self.ledger = ledger
        self.closed_at = closed_at
        self.events: list[RawEvent] = []
        self.before_all = 0
        self.after_all = 0

    def sorted(self) -> list[RawEvent]:
        self.events.sort(key=lambda e: e.id)
        return self.events

    def add(
        self,
        slot: tuple[int, int, int],
        kind: int,
        contract_id: str,
        tx_hash: str,
        ok: bool,
        topics: tuple[str, ...],
        value: str,
    ) -> None:
        """The event at (tx, op, index) of its kind; diagnostic events are not getEvents'."""
        if kind == DIAGNOSTIC:
            return
        tx, op, index = slot
        self.events.append(
            RawEvent(
                event_id(self.ledger, tx, op, index),
                EVENT_TYPES.get(kind, "contract"),
                self.ledger,
                self.closed_at,
                contract_id,
                tx_hash,
                tx,
                op,
                ok,
                topics,
                value,
            )
        )
