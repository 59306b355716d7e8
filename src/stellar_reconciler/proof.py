"""Proof bundles: a ledger range's stored history in one file anyone can check offline.

A bundle holds the range's ledger headers (a hash chain), its events and their RFC 6962
Merkle root, the expected records settled in it with their verdicts, and the settings that
shaped it. Every header, event and record carries the hash of its own leaf, so a changed byte
is traced to the item; every part has a SHA-256 digest and the digests a seal, so a change
anywhere else is traced to its part. The file is canonical JSON (merkle.canonical_json and a
newline), so even a byte between values cannot change unnoticed. docs/proofs.md is the
format's reference.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from stellar_reconciler import __version__
from stellar_reconciler.config import Settings
from stellar_reconciler.errors import LedgerOutOfRangeError
from stellar_reconciler.merkle import (
    canonical_json,
    event_leaf,
    header_leaf,
    leaf_hash,
    root_of_hashes,
)
from stellar_reconciler.models import iso_utc
from stellar_reconciler.pager import LedgerPager
from stellar_reconciler.rpc import StellarRpc
from stellar_reconciler.store import ProofMaterial

FORMAT = "stellar-reconciler proof bundle"
VERSION = 1
ALGORITHM = "RFC 6962 Merkle tree hash, SHA-256; leaves as docs/proofs.md defines them"
# The parts a digest covers, in the order the seal lists them.
PARTS = ("service", "range", "settings", "headers", "events", "merkle", "records", "period")
Problem = tuple[str, str]


def settings_part(settings: Settings) -> dict[str, Any]:
    """The settings that decide which events a range holds and which are unexpected."""
    return {
        "contract_ids": sorted(settings.contract_ids),
        "event_topics": [list(f) for f in settings.event_topics],
        "unexpected_event_contracts": sorted(settings.unexpected_event_contracts),
    }


def digest(value: Any) -> str:
    return hashlib.sha256(canonical_json(value)).hexdigest()


def record_leaf(record: Mapping[str, Any]) -> bytes:
    """A settled record's leaf: canonical JSON of every field but its leaf_hash."""
    return canonical_json({k: v for k, v in record.items() if k != "leaf_hash"})


def _hashed(item: Mapping[str, Any], leaf: bytes) -> dict[str, Any]:
    return {**item, "leaf_hash": leaf_hash(leaf).hex()}


def assemble(
    material: ProofMaterial, settings: Mapping[str, Any], created_at: datetime | None = None
) -> dict[str, Any]:
    """The bundle of `material` as a JSON-ready dict (write it with `encode`)."""
    headers = [_hashed(h, header_leaf(h)) for h in material.headers]
    events = [_hashed(e, event_leaf(e)) for e in material.events]
    records = [_hashed(r, record_leaf(r)) for r in material.records]
    when = iso_utc(created_at or datetime.now(UTC))
    bundle: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "service": {"name": "stellar-reconciler", "version": __version__, "created_at": when},
        "range": {"from_ledger": material.first_ledger, "to_ledger": material.last_ledger},
        "settings": {
            "network_passphrase": material.network_passphrase,
            "filter_fingerprint": material.filter_fingerprint,
            **settings,
        },
        "headers": headers,
        "events": events,
        "merkle": {
            "algorithm": ALGORITHM,
            "leaf_count": len(events),
            "events_root": _root(events),
            "headers_root": _root(headers),
        },
        "records": records,
        "period": material.period,
    }
    bundle["digests"] = {part: digest(bundle[part]) for part in PARTS}
    bundle["seal"] = digest(bundle["digests"])
    return bundle


def encode(bundle: Mapping[str, Any]) -> bytes:
    """The bundle's file: canonical JSON and a newline, the only form `check` accepts."""
    return canonical_json(bundle) + b"\n"


def _root(items: list[dict[str, Any]]) -> str:
    return root_of_hashes([bytes.fromhex(i["leaf_hash"]) for i in items]).hex()


# --- the bundle's shape -------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Header(_Strict):
    sequence: int
    hash: str
    previous_hash: str
    closed_at: str
    event_count: int
    leaf_hash: str


class _Event(_Strict):
    id: str
    ledger: int
    contract_id: str
    type: str
    tx_hash: str
    topics_xdr: list[str]
    value_xdr: str
    leaf_hash: str


class _Range(_Strict):
    from_ledger: int
    to_ledger: int


class _Merkle(_Strict):
    algorithm: str
    leaf_count: int
    events_root: str
    headers_root: str


class _Period(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    events_root: str
    headers_root: str
    event_count: int


class _Bundle(_Strict):
    format: str
    version: int
    service: dict[str, Any]
    range: _Range
    settings: dict[str, Any]
    headers: list[_Header]
    events: list[_Event]
    merkle: _Merkle
    records: list[dict[str, Any]]
    period: _Period | None
    digests: dict[str, str]
    seal: str


def _shape(data: bytes) -> tuple[dict[str, Any] | None, _Bundle | None, list[Problem]]:
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, None, [("bundle", f"not a JSON file ({exc}): it is damaged or not a bundle")]
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        return None, None, [("bundle", f"not a proof bundle (its format is not {FORMAT!r})")]
    if raw.get("version") != VERSION:
        found = raw.get("version")
        return None, None, [("bundle", f"version {found!r} is not one this verifier knows")]
    try:
        model = _Bundle.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return None, None, [("bundle", f"{where}: {first['msg']} (the bundle is damaged)")]
    problems: list[Problem] = []
    if encode(raw) != data:
        problems.append(
            ("bundle", "the file is not in canonical form: bytes between its values changed")
        )
    return raw, model, problems


# --- checking -----------------------------------------------------------------------------


def check(data: bytes) -> list[Problem]:
    """Every problem of a bundle's file, each as (part, message naming the ledger, event or
    record); an empty list when it verifies. Reads nothing but `data`."""
    raw, bundle, problems = _shape(data)
    if raw is None or bundle is None:
        return problems
    leaves = _Recomputed.of(raw)
    specific: dict[str, list[Problem]] = {
        "headers": _check_headers(bundle, leaves),
        "events": _check_events(bundle, leaves),
        "merkle": _check_merkle(bundle, leaves),
        "records": _check_records(raw["records"], bundle),
        "period": _check_period(bundle),
    }
    for found in specific.values():
        problems.extend(found)
    # A part whose own checks passed but whose digest does not is reported by its digest
    # (service, range and settings have no other check). The seal tells which side changed:
    # it still matches the digests when a part was changed, not when a digest was.
    sealed = bundle.seal == digest(raw["digests"])
    stale = [part for part in PARTS if bundle.digests.get(part) != digest(raw[part])]
    for part in stale:
        if specific.get(part):
            continue
        if sealed:
            problems.append(
                (
                    part,
                    f"changed after export: it hashes to {digest(raw[part])}, "
                    f"its digest says {bundle.digests.get(part)}",
                )
            )
        else:
            problems.append(
                (
                    "digests",
                    f"the digest of {part} was changed: the part hashes to {digest(raw[part])}",
                )
            )
    if set(bundle.digests) != set(PARTS):
        problems.append(("digests", f"lists {sorted(bundle.digests)}, expected {list(PARTS)}"))
    if not sealed and not stale:
        problems.append(("seal", "the seal was changed: the digests do not hash to it"))
    return problems


def summary(data: bytes) -> str:
    """One line saying what a bundle that passed `check` proves."""
    raw = json.loads(data)
    low, high = raw["range"]["from_ledger"], raw["range"]["to_ledger"]
    closed = " (a closed period)" if raw["period"] is not None else ""
    return (
        f"ledgers {low}-{high}{closed}, {raw['merkle']['leaf_count']:,} events with root "
        f"{raw['merkle']['events_root']}, {len(raw['records']):,} settled records, network "
        f"{raw['settings'].get('network_passphrase')!r}"
    )


@dataclass(frozen=True, slots=True)
class _Recomputed:
    """The leaf hashes of a bundle's headers and events as their fields give them."""

    headers: list[bytes]
    events: list[bytes]

    @classmethod
    def of(cls, raw: Mapping[str, Any]) -> _Recomputed:
        """From the parsed file (already validated): the leaf encodings pick their fields by
        name, so the items need no model of their own here."""
        return cls(
            [leaf_hash(header_leaf(h)) for h in raw["headers"]],
            [leaf_hash(event_leaf(e)) for e in raw["events"]],
        )


def _check_headers(bundle: _Bundle, leaves: _Recomputed) -> list[Problem]:
    part = "header chain"
    problems: list[Problem] = []
    low, high = bundle.range.from_ledger, bundle.range.to_ledger
    sequences = [h.sequence for h in bundle.headers]
    if low > high or sequences != list(range(low, high + 1)):
        problems.append((part, f"the headers are not ledgers {low}-{high} in order, one each"))
    previous = None
    for header, recomputed in zip(bundle.headers, leaves.headers, strict=True):
        if recomputed.hex() != header.leaf_hash:
            problems.append(
                (
                    part,
                    f"ledger {header.sequence}'s header was changed: it does "
                    "not hash to its leaf_hash",
                )
            )
        if previous is not None and header.previous_hash != previous.hash:
            problems.append(
                (
                    part,
                    f"broken at ledger {header.sequence}: its previous_hash "
                    f"{header.previous_hash} is not ledger {previous.sequence}'s hash "
                    f"{previous.hash}",
                )
            )
        previous = header
    return problems


def _check_events(bundle: _Bundle, leaves: _Recomputed) -> list[Problem]:
    problems: list[Problem] = []
    low, high = bundle.range.from_ledger, bundle.range.to_ledger
    last_id = ""
    for event, recomputed in zip(bundle.events, leaves.events, strict=True):
        where = f"event {event.id} (ledger {event.ledger})"
        if recomputed.hex() != event.leaf_hash:
            problems.append(("event", f"{where} was changed: it does not hash to its leaf_hash"))
        if not low <= event.ledger <= high:
            problems.append(("event", f"{where} is outside the range {low}-{high}"))
        if event.id <= last_id:
            problems.append(("event", f"{where} is out of id order (after {last_id})"))
        last_id = event.id
    counts = Counter(event.ledger for event in bundle.events)
    for header in bundle.headers:
        if counts.get(header.sequence, 0) != header.event_count:
            problems.append(
                (
                    "event",
                    f"ledger {header.sequence}'s header counts "
                    f"{header.event_count} events, the bundle holds "
                    f"{counts.get(header.sequence, 0)}",
                )
            )
    return problems


def _check_merkle(bundle: _Bundle, leaves: _Recomputed) -> list[Problem]:
    problems: list[Problem] = []
    for name, hashes, stated in (
        ("events", leaves.events, bundle.merkle.events_root),
        ("headers", leaves.headers, bundle.merkle.headers_root),
    ):
        root = root_of_hashes(hashes).hex()
        if root != stated:
            problems.append(
                (
                    "merkle root",
                    f"the {name} recompute to {root}, the bundle's {name}_root is {stated}",
                )
            )
    if bundle.merkle.leaf_count != len(bundle.events):
        problems.append(
            (
                "merkle root",
                f"leaf_count is {bundle.merkle.leaf_count}, the bundle "
                f"holds {len(bundle.events)} events",
            )
        )
    return problems


def _check_records(records: list[dict[str, Any]], bundle: _Bundle) -> list[Problem]:
    part = "verdict"
    problems: list[Problem] = []
    ledger_of = {event.id: event.ledger for event in bundle.events}
    low, high = bundle.range.from_ledger, bundle.range.to_ledger
    for record in records:
        name = f"record {record.get('external_id')!r} ({record.get('status')})"
        if leaf_hash(record_leaf(record)).hex() != record.get("leaf_hash"):
            problems.append((part, f"{name} was changed: it does not hash to its leaf_hash"))
        event_id = record.get("event_id")
        if event_id is None:
            deadline = record.get("deadline_ledger")
            if not isinstance(deadline, int) or not low <= deadline <= high:
                problems.append(
                    (
                        part,
                        f"{name} names no event and its deadline "
                        f"{deadline} is outside {low}-{high}",
                    )
                )
        elif event_id not in ledger_of:
            problems.append(
                (part, f"{name} refers to event {event_id}, which is not among the bundle's events")
            )
        elif record.get("event_ledger") != ledger_of[event_id]:
            problems.append(
                (
                    part,
                    f"{name} puts event {event_id} in ledger "
                    f"{record.get('event_ledger')}, the bundle in "
                    f"{ledger_of[event_id]}",
                )
            )
    return problems


def _check_period(bundle: _Bundle) -> list[Problem]:
    period = bundle.period
    if period is None:
        return []
    problems: list[Problem] = []
    for name in ("events_root", "headers_root"):
        recorded, now = getattr(period, name), getattr(bundle.merkle, name)
        if recorded != now:
            problems.append(("period", f"closed with {name} {recorded}; the bundle's is {now}"))
    return problems


async def check_network(data: bytes, rpc: StellarRpc) -> list[Problem]:
    """Compare a bundle that passed `check` with the network: its passphrase, and each
    header's hash and previous hash as getLedgers serves them (each served hash is itself
    checked against the header's XDR)."""
    raw = json.loads(data)
    problems: list[Problem] = []
    recorded = raw["settings"].get("network_passphrase")
    served = (await rpc.get_network()).passphrase
    if recorded is not None and served != recorded:
        problems.append(
            (
                "network",
                f"the RPC serves network {served!r}, the bundle's is "
                f"{recorded!r}: ask an RPC of the bundle's network",
            )
        )
        return problems
    low, high = raw["range"]["from_ledger"], raw["range"]["to_ledger"]
    try:
        headers = await LedgerPager(rpc).headers(low, high)
    except LedgerOutOfRangeError:
        tip = await rpc.get_health()
        return [
            (
                "network",
                f"the RPC keeps ledgers {tip.oldest_ledger}-{tip.latest_ledger} "
                f"only, not {low}-{high}: ask an RPC that keeps full history",
            )
        ]
    for header, ours in zip(headers, raw["headers"], strict=False):
        for field in ("hash", "previous_hash"):
            theirs = getattr(header, field)
            if theirs != ours[field]:
                problems.append(
                    (
                        "network",
                        f"ledger {header.sequence}'s {field} is {theirs} on "
                        f"the network, {ours[field]} in the bundle",
                    )
                )
    return problems
