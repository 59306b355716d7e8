"""Pure reconciliation logic: ranges, gaps and digests. No I/O, so Hypothesis can test it.

What the store and the network say are turned into small values here and compared; the
worker and the CLI decide what to do with the answer.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

Range = tuple[int, int]


def subtract_ranges(ranges: Sequence[Range], remove: Sequence[Range]) -> list[Range]:
    """Inclusive ranges minus other inclusive ranges, in order, without empty pieces."""
    cuts = sorted(remove)
    out: list[Range] = []
    for first, last in sorted(ranges):
        pieces = [(first, last)]
        for cut_first, cut_last in cuts:
            next_pieces = []
            for a, b in pieces:
                if cut_last < a or cut_first > b:
                    next_pieces.append((a, b))
                    continue
                if a < cut_first:
                    next_pieces.append((a, cut_first - 1))
                if cut_last < b:
                    next_pieces.append((cut_last + 1, b))
            pieces = next_pieces
        out.extend(pieces)
    return out


def split_range(first: int, last: int, size: int) -> list[Range]:
    """Cut first..last into consecutive pieces of at most `size` ledgers."""
    return [(a, min(a + size - 1, last)) for a in range(first, last + 1, size)]


@dataclass(frozen=True, slots=True)
class EventFingerprint:
    """What must be identical for a stored event to count as the event the network serves."""

    id: str
    ledger: int
    contract_id: str
    type: str
    tx_hash: str
    topics_xdr: tuple[str, ...]
    value_xdr: str

    def canonical(self) -> str:
        return json.dumps(
            [
                self.id,
                self.contract_id,
                self.type,
                self.tx_hash,
                list(self.topics_xdr),
                self.value_xdr,
            ],
            separators=(",", ":"),
        )


def ledger_digests(events: Iterable[EventFingerprint], first: int, last: int) -> dict[int, str]:
    """One digest per ledger in first..last (ledgers without events included): sha256 over
    the ledger's events in id order."""
    by_ledger: dict[int, list[EventFingerprint]] = defaultdict(list)
    for event in events:
        by_ledger[event.ledger].append(event)
    digests = {}
    for ledger in range(first, last + 1):
        h = hashlib.sha256()
        for event in sorted(by_ledger.get(ledger, ()), key=lambda e: e.id):
            h.update(event.canonical().encode())
            h.update(b"\n")
        digests[ledger] = h.hexdigest()
    return digests


@dataclass(frozen=True, slots=True)
class LedgerDiff:
    """How one ledger's stored events differ from the network's."""

    ledger: int
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    stored_hash: str | None = None
    network_hash: str | None = None

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ledger": self.ledger}
        for name in ("missing", "unexpected", "changed"):
            if getattr(self, name):
                body[name] = list(getattr(self, name))
        if self.stored_hash != self.network_hash:
            body["stored_hash"], body["network_hash"] = self.stored_hash, self.network_hash
        return body


@dataclass(frozen=True, slots=True)
class Comparison:
    first: int
    last: int
    diffs: tuple[LedgerDiff, ...] = field(default=())

    @property
    def matches(self) -> bool:
        return not self.diffs

    def summary(self) -> dict[str, Any]:
        return {
            "ledgers": [d.as_json() for d in self.diffs],
            "missing": sum(len(d.missing) for d in self.diffs),
            "unexpected": sum(len(d.unexpected) for d in self.diffs),
            "changed": sum(len(d.changed) for d in self.diffs),
        }


def compare_ranges(
    first: int,
    last: int,
    stored: Sequence[EventFingerprint],
    network: Sequence[EventFingerprint],
    stored_hashes: dict[int, str] | None = None,
    network_hashes: dict[int, str] | None = None,
) -> Comparison:
    """Compare a stored ledger range with a fresh read, digest first, details where they differ."""
    stored_digests = ledger_digests(stored, first, last)
    network_digests = ledger_digests(network, first, last)
    stored_hashes = stored_hashes or {}
    network_hashes = network_hashes or {}
    diffs = []
    stored_by_id = {e.id: e for e in stored}
    network_by_id = {e.id: e for e in network}
    for ledger in range(first, last + 1):
        same_events = stored_digests[ledger] == network_digests[ledger]
        same_hash = stored_hashes.get(ledger) == network_hashes.get(ledger)
        if same_events and same_hash:
            continue
        mine = {i for i, e in stored_by_id.items() if e.ledger == ledger}
        theirs = {i for i, e in network_by_id.items() if e.ledger == ledger}
        diffs.append(
            LedgerDiff(
                ledger=ledger,
                missing=tuple(sorted(theirs - mine)),
                unexpected=tuple(sorted(mine - theirs)),
                changed=tuple(
                    sorted(i for i in mine & theirs if stored_by_id[i] != network_by_id[i])
                ),
                stored_hash=stored_hashes.get(ledger),
                network_hash=network_hashes.get(ledger),
            )
        )
    return Comparison(first, last, tuple(diffs))
