"""SimNetwork: the simulated Stellar network, its ledgers, events, faults and tampering.

Everything a test needs in-process: close ledgers, read the record of what was emitted,
script faults (`net.faults`) and lies (`net.tamper`, `break_chain_at`, `set_retention_window`).
The HTTP server (server.py) reads the same object from its own thread, so mutations take a
lock and the tip (`latest_ledger`) is published only after a ledger is complete.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

from stellar_reconciler.models import iso_from_unix
from stellar_reconciler.simnet.cast import build_cast
from stellar_reconciler.simnet.chain import LedgerChain
from stellar_reconciler.simnet.config import SimNetConfig, SimNetConfigError
from stellar_reconciler.simnet.cursor import Cursor
from stellar_reconciler.simnet.events import EventFactory, LedgerEvents
from stellar_reconciler.simnet.faults import FaultBook
from stellar_reconciler.simnet.filters import EventFilter, matches_any
from stellar_reconciler.simnet.tamper import LieSchedule, TamperBook
from stellar_reconciler.simnet.transactions import TransactionBook

Found = list[tuple[LedgerEvents, int]]


@dataclass(frozen=True, slots=True)
class LedgerRange:
    """The ledgers the node still serves, read in one consistent snapshot."""

    oldest: int
    latest: int
    oldest_close_time: int
    latest_close_time: int


@dataclass(frozen=True, slots=True)
class LedgerSnapshot:
    sequence: int
    hash: bytes
    header: bytes  # bare LedgerHeader XDR
    close_time: int
    meta: bytes  # LedgerCloseMeta XDR

    @property
    def history_entry(self) -> bytes:
        """LedgerHeaderHistoryEntry XDR: hash, header, ext v0."""
        return self.hash + self.header + b"\x00\x00\x00\x00"


class SimNetwork:
    def __init__(self, config: SimNetConfig | None = None) -> None:
        self.config = config or SimNetConfig()
        self.cast = build_cast(self.config.seed, self.config.network_passphrase)
        self.faults = FaultBook()
        self.tamper = TamperBook()
        # Transactions by hash for getTransaction; tests declare failures with `fail`.
        self.transactions = TransactionBook()
        self._chain = LedgerChain(self.config, self.cast)
        self._factory = EventFactory(self.config, self.cast)
        self._events: list[LedgerEvents | None] = []
        self._lock = threading.RLock()
        self._retention_window = self.config.retention_window
        self._broken_links: list[int] = []
        self._requests: Counter[str] = Counter()
        self._latest = self.config.first_ledger - 1
        self._lies: LieSchedule | None = None
        self.lies_told: list[tuple[str, str]] = []
        for _ in range(self.config.prebuilt_ledgers):
            self._close_one()

    # -- who is who ---------------------------------------------------------------------
    @property
    def token_contract_id(self) -> str:
        """The SAC-like token contract: `transfer` and `mint` events."""
        return self.cast.token.strkey

    @property
    def escrow_contract_id(self) -> str:
        """The escrow contract: job_posted ... escrow_refunded events."""
        return self.cast.escrow.strkey

    @property
    def native_contract_id(self) -> str:
        """The native asset contract for this passphrase: transaction-level `fee` events."""
        return self.cast.native.strkey

    @property
    def passphrase(self) -> str:
        return self.config.network_passphrase

    # -- the tip ------------------------------------------------------------------------
    @property
    def first_ledger(self) -> int:
        return self.config.first_ledger

    @property
    def latest_ledger(self) -> int:
        return self._latest

    @property
    def oldest_ledger(self) -> int:
        return self.ledger_range().oldest

    @property
    def retention_window(self) -> int:
        return self._retention_window

    def ledger_range(self) -> LedgerRange:
        with self._lock:
            latest = self._latest
            oldest = max(self.config.first_ledger, latest - self._retention_window + 1)
            return LedgerRange(
                oldest, latest, self._chain.close_time(oldest), self._chain.close_time(latest)
            )

    def set_retention_window(self, window: int) -> None:
        """Change how many ledgers the node keeps; shrinking it forgets older ledgers."""
        if window < 1:
            raise SimNetConfigError(f"retention window must be at least 1, got {window}")
        with self._lock:
            self._retention_window = window

    # -- closing ledgers ----------------------------------------------------------------
    def close_ledger(self) -> int:
        """Close one ledger now; returns its sequence."""
        return self._close_one()

    def close_ledgers(self, count: int) -> int:
        """Close `count` ledgers now; returns the new latest sequence."""
        if count < 0:
            raise ValueError(f"count must not be negative, got {count}")
        for _ in range(count):
            self._close_one()
        return self._latest

    def _close_one(self) -> int:
        with self._lock:
            sequence = self._chain.append()
            closed_at = iso_from_unix(self._chain.close_time(sequence))
            self._events.append(self._factory.generate(sequence, closed_at))
            self.transactions.add_ledger(self._events[-1])
            self._tell_scheduled_lie(sequence)
            # Published last: a reader that sees the new tip finds its header and events.
            self._latest = sequence
            return sequence

    # -- ledger reads -------------------------------------------------------------------
    def _check(self, sequence: int) -> None:
        if not self.config.first_ledger <= sequence <= self._latest:
            raise ValueError(
                f"ledger {sequence} is outside {self.config.first_ledger}..{self._latest}"
            )

    def close_time(self, sequence: int) -> int:
        self._check(sequence)
        return self._chain.close_time(sequence)

    def ledger_hash(self, sequence: int) -> str:
        """Hex hash of the ledger as served now (after any break_chain_at)."""
        self._check(sequence)
        with self._lock:
            return self._chain.hash(sequence).hex()

    def header_xdr(self, sequence: int) -> bytes:
        """Bare LedgerHeader XDR."""
        self._check(sequence)
        with self._lock:
            return self._chain.header(sequence)

    def snapshots(self, first: int, last: int) -> list[LedgerSnapshot]:
        """Ledgers first..last (clamped to what has closed) read under one lock, metas included."""
        chain = self._chain
        with self._lock:
            return [
                LedgerSnapshot(
                    seq, chain.hash(seq), chain.header(seq), chain.close_time(seq), chain.meta(seq)
                )
                for seq in range(max(first, self.config.first_ledger), min(last, self._latest) + 1)
            ]

    def meta_xdr(self, sequence: int) -> bytes:
        """LedgerCloseMeta XDR, built on demand (it can be hundreds of KB)."""
        self._check(sequence)
        with self._lock:
            return self._chain.meta(sequence)

    def ledger_events(self, sequence: int) -> LedgerEvents | None:
        self._check(sequence)
        return self._events[sequence - self.config.first_ledger]

    # -- the record ---------------------------------------------------------------------
    def record_events(self, from_ledger: int, to_ledger: int) -> list[dict[str, Any]]:
        """Every event emitted in ledgers from_ledger..to_ledger (both inclusive), in id order,
        with the true values, shaped like getEvents entries (base64 XDR)."""
        first, last = self._clamp(from_ledger, to_ledger)
        records: list[dict[str, Any]] = []
        for sequence in range(first, last + 1):
            ledger = self._events[sequence - self.config.first_ledger]
            if ledger is not None:
                records.extend(ledger.record(i) for i in range(len(ledger)))
        return records

    def record_ledgers(self, from_ledger: int, to_ledger: int) -> list[dict[str, Any]]:
        """Ledgers from_ledger..to_ledger (inclusive) with their hashes as served now."""
        first, last = self._clamp(from_ledger, to_ledger)
        out: list[dict[str, Any]] = []
        with self._lock:
            for sequence in range(first, last + 1):
                header = self._chain.header(sequence)
                ledger = self._events[sequence - self.config.first_ledger]
                out.append(
                    {
                        "sequence": sequence,
                        "hash": self._chain.hash(sequence).hex(),
                        "previousLedgerHash": header[4:36].hex(),
                        "closeTime": self._chain.close_time(sequence),
                        "eventCount": len(ledger) if ledger is not None else 0,
                    }
                )
        return out

    def _clamp(self, from_ledger: int, to_ledger: int) -> tuple[int, int]:
        return max(from_ledger, self.config.first_ledger), min(to_ledger, self._latest)

    # -- tampering ----------------------------------------------------------------------
    def drop_event(self, event_id: str) -> str:
        """Leave the event out of the first getEvents answer that would include it."""
        self._event_position(event_id)
        self.tamper.drop_event(event_id)
        return event_id

    def drop_event_at(self, ledger: int, index: int) -> str:
        """Like drop_event, for the index-th event (0-based, id order) of `ledger`."""
        return self.drop_event(self.event_id_at(ledger, index))

    def alter_event(self, event_id: str, value: str | None = None) -> str:
        """Serve a different value for the event from its second read on."""
        self._event_position(event_id)
        self.tamper.alter_event(event_id, value)
        return event_id

    def event_id_at(self, ledger: int, index: int) -> str:
        events = self.ledger_events(ledger)
        if events is None or not 0 <= index < len(events):
            count = len(events) if events else 0
            raise ValueError(f"ledger {ledger} has {count} events, no event {index}")
        return events.event_id(index)

    def _event_position(self, event_id: str) -> None:
        cursor = Cursor.parse(event_id)
        events = self.ledger_events(cursor.ledger)
        key = (cursor.tx, cursor.op, cursor.event)
        if events is None or all(events.position(i) != key for i in range(len(events))):
            raise ValueError(f"no event {event_id} in ledger {cursor.ledger}")

    def schedule_lies(self, schedule: LieSchedule | None) -> None:
        """Tell lies on ledgers as they close, as `schedule` says (None: stop)."""
        with self._lock:
            self._lies = schedule

    def _tell_scheduled_lie(self, sequence: int) -> None:
        # Runs before the ledger is published, so no reader can see it before the lie is set.
        events = self._events[-1]
        if self._lies is None or not events:
            return
        kind = self._lies.due(sequence, len(self.lies_told))
        if kind is None:
            return
        event_id = events.event_id(0)
        if kind == "drop":
            self.tamper.drop_event(event_id)
        else:
            self.tamper.alter_event(event_id)
        self.lies_told.append((kind, event_id))

    def break_chain_at(self, sequence: int) -> None:
        """From now on ledger `sequence`'s previousLedgerHash differs from its parent's hash."""
        self._check(sequence)
        with self._lock:
            self._chain.break_at(sequence)
            self._broken_links.append(sequence)

    # -- request counters ---------------------------------------------------------------
    def count_request(self, method: str) -> None:
        with self._lock:
            self._requests[method] += 1

    @property
    def requests_served(self) -> dict[str, int]:
        """JSON-RPC calls received per method (including those answered with a fault)."""
        with self._lock:
            return dict(self._requests)

    def reset_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # -- scanning for getEvents ---------------------------------------------------------
    def scan_events(
        self, start: Cursor, end_ledger: int, filters: list[EventFilter], limit: int
    ) -> Found:
        """Events at or after `start` in ledgers before `end_ledger` that match, up to `limit`.

        Dropped events (see drop_event) are skipped as if absent and the scan goes on.
        """
        found: Found = []
        first = self.config.first_ledger
        tamper = self.tamper
        contract_bound = bool(filters) and all(f.contract_ids for f in filters)
        key = (start.tx, start.op, start.event)
        for sequence in range(start.ledger, min(end_ledger, self._latest + 1)):
            ledger = self._events[sequence - first]
            if ledger is None:
                continue
            if contract_bound and not any(f.could_match(ledger.contract_set) for f in filters):
                continue
            begin = 0
            if sequence == start.ledger and key != (0, 0, 0):
                count = len(ledger)
                begin = next((i for i in range(count) if ledger.position(i) >= key), count)
            if not filters and not tamper.active:
                take = min(len(ledger) - begin, limit - len(found))
                found.extend((ledger, i) for i in range(begin, begin + take))
            else:
                for i in range(begin, len(ledger)):
                    topics = ledger.topics[i]
                    if not matches_any(filters, ledger.types[i], ledger.contract_ids[i], topics):
                        continue
                    if tamper.active and tamper.take_drop(ledger.event_id(i)):
                        continue
                    found.append((ledger, i))
                    if len(found) >= limit:
                        break
            if len(found) >= limit:
                break
        return found

    # -- description --------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """What the control endpoint /_simnet/status reports."""
        span = self.ledger_range()
        return {
            "firstLedger": self.config.first_ledger,
            "oldestLedger": span.oldest,
            "latestLedger": span.latest,
            "retentionWindow": self._retention_window,
            "passphrase": self.passphrase,
            "protocolVersion": self.config.protocol_version,
            "contracts": {
                "token": self.token_contract_id,
                "escrow": self.escrow_contract_id,
                "native": self.native_contract_id,
            },
            "seed": self.config.seed,
            # The contract upgrade (--upgrade-ledger): when transfers change shape, and to what.
            "upgrade": {"ledger": self.config.upgrade_ledger, "shape": self.config.upgrade_shape}
            if self.config.upgrade_ledger is not None
            else None,
            "requests": self.requests_served,
            "faults": [rule.describe() for rule in self.faults.rules],
            "tamper": {**self.tamper.describe(), "brokenLinks": list(self._broken_links)},
            "transactions": self.transactions.describe(),
        }
