"""Proof bundles checked offline: a true bundle verifies, any changed byte fails, named."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from stellar_reconciler import proof
from stellar_reconciler.merkle import events_root
from stellar_reconciler.store import ProofMaterial

PASSPHRASE = "Test SDF Network ; September 2015"
CONTRACT = "CAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAD2KM"


def ledger_hash(sequence: int) -> str:
    return hashlib.sha256(f"ledger {sequence}".encode()).hexdigest()


def event(ledger: int, index: int) -> dict[str, Any]:
    return {
        "id": f"{ledger << 32:019d}-{index:010d}",
        "ledger": ledger,
        "contract_id": CONTRACT,
        "type": "contract",
        "tx_hash": hashlib.sha256(f"tx {ledger} {index}".encode()).hexdigest(),
        "topics_xdr": ["AAAADwAAAAh0cmFuc2Zlcg=="],
        "value_xdr": f"AAAACgAAAAAAAAAAAAAAAAAA{ledger:03d}{index}=",
    }


def material(first: int = 100, last: int = 103, per_ledger: int = 2) -> ProofMaterial:
    found = [event(seq, i) for seq in range(first, last + 1) for i in range(per_ledger)]
    headers = [
        {
            "sequence": seq,
            "hash": ledger_hash(seq),
            "previous_hash": ledger_hash(seq - 1),
            "closed_at": f"2026-12-05T08:00:{seq % 60:02d}Z",
            "event_count": per_ledger,
        }
        for seq in range(first, last + 1)
    ]
    records = [
        {
            "external_id": "invoice-1",
            "status": "matched",
            "amount": "100",
            "tolerance": "0",
            "deadline_ledger": last,
            "event_id": found[1]["id"],
            "event_ledger": found[1]["ledger"],
            "found_amount": "100",
            "difference": "0",
        },
        {
            "external_id": "invoice-2",
            "status": "missing_expected",
            "amount": "7",
            "tolerance": "0",
            "deadline_ledger": last,
            "event_id": None,
            "event_ledger": None,
            "found_amount": None,
            "difference": None,
        },
    ]
    return ProofMaterial(
        first_ledger=first,
        last_ledger=last,
        headers=headers,
        events=found,
        records=records,
        network_passphrase=PASSPHRASE,
        filter_fingerprint="f" * 32,
        period=None,
    )


SETTINGS = {"contract_ids": [CONTRACT], "event_topics": [], "unexpected_event_contracts": []}


def bundle_bytes(source: ProofMaterial | None = None) -> bytes:
    when = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)
    return proof.encode(proof.assemble(source or material(), SETTINGS, when))


def flip(data: bytes, needle: str, offset: int = 0) -> bytes:
    """`data` with one character of the only occurrence of `needle` changed to another of
    its kind (hex digit, letter), so the file still parses as JSON."""
    at = data.index(needle.encode()) + offset
    assert data.count(needle.encode()) == 1, needle
    char = chr(data[at])
    alphabet = "0123456789abcdef" if char in "0123456789abcdef" else "abcdefghijklmnopqrstuvwxyz"
    replacement = alphabet[(alphabet.index(char.lower()) + 1) % len(alphabet)]
    return data[:at] + replacement.encode() + data[at + 1 :]


def test_a_fresh_bundle_verifies() -> None:
    """A bundle as exported verifies with no problem, and its root is the events' RFC 6962 root."""
    data = bundle_bytes()
    assert proof.check(data) == []
    assert json.loads(data)["merkle"]["events_root"] == events_root(material().events)
    assert "ledgers 100-103" in proof.summary(data) and "8 events" in proof.summary(data)


def test_an_empty_range_verifies_with_the_empty_root() -> None:
    """A range without events verifies; its root is SHA-256 of nothing."""
    data = bundle_bytes(
        replace(
            material(per_ledger=1),
            events=[],
            headers=[{**h, "event_count": 0} for h in material(per_ledger=1).headers],
            records=[],
        )
    )
    assert proof.check(data) == []
    assert json.loads(data)["merkle"]["events_root"] == hashlib.sha256(b"").hexdigest()


def test_a_changed_header_hash_breaks_the_chain_at_the_next_ledger() -> None:
    """One hex digit of ledger 101's hash changed: the chain is reported broken at 102."""
    problems = proof.check(flip(bundle_bytes(), f'"hash":"{ledger_hash(101)}', 10))
    assert problems[0] == (
        "header chain",
        "ledger 101's header was changed: it does not hash to its leaf_hash",
    )
    assert any(p == "header chain" and "broken at ledger 102" in m for p, m in problems)


def test_a_changed_event_is_named_by_id_and_ledger() -> None:
    """One character of an event's value changed: the event is named, then the root fails."""
    changed = event(102, 1)
    problems = proof.check(flip(bundle_bytes(), changed["value_xdr"] + '"', 3))
    assert problems[0] == (
        "event",
        f"event {changed['id']} (ledger 102) was changed: it does not hash to its leaf_hash",
    )
    assert problems[1][0] == "merkle root" and "the events recompute to" in problems[1][1]


def test_a_changed_root_is_named() -> None:
    """One hex digit of the Merkle root changed: the root check says what the events give."""
    root = events_root(material().events)
    problems = proof.check(flip(bundle_bytes(), f'"events_root":"{root}', 20))
    digits = "0123456789abcdef"
    stated = f"{root[:5]}{digits[(digits.index(root[5]) + 1) % 16]}{root[6:]}"
    assert problems == [
        ("merkle root", f"the events recompute to {root}, the bundle's events_root is {stated}")
    ]


def test_a_changed_verdict_is_named_by_record() -> None:
    """A verdict's status changed from matched: the record is named."""
    problems = proof.check(flip(bundle_bytes(), '"status":"matched"', 11))
    assert problems == [
        ("verdict", "record 'invoice-1' (mbtched) was changed: it does not hash to its leaf_hash")
    ]


def test_a_verdict_pointing_outside_the_bundle_is_named() -> None:
    """A record whose event is not among the bundle's events fails, naming both."""
    source = material()
    source.records[0]["event_id"] = "0000000000000000001-0000000000"
    problems = proof.check(bundle_bytes(source))
    assert problems == [
        (
            "verdict",
            "record 'invoice-1' (matched) refers to event "
            "0000000000000000001-0000000000, which is not among the bundle's events",
        )
    ]


def test_changed_settings_are_named() -> None:
    """One letter of the network passphrase changed: the settings part is named."""
    problems = proof.check(flip(bundle_bytes(), "Test SDF Network", 5))
    assert [p for p, _ in problems] == ["settings"]
    assert problems[0][1].startswith("changed after export: it hashes to ")


def test_a_changed_digest_or_seal_is_named() -> None:
    """A digest changed: the digests are named; the seal changed: the seal is named."""
    data = bundle_bytes()
    sealed = json.loads(data)
    digest_of_range = sealed["digests"]["range"]
    problems = proof.check(flip(data, f'"range":"{digest_of_range}', 12))
    assert [p for p, _ in problems] == ["digests"] and "digest of range" in problems[0][1]
    assert proof.check(flip(data, f'"seal":"{sealed["seal"]}', 10)) == [
        ("seal", "the seal was changed: the digests do not hash to it")
    ]


def test_a_pretty_printed_bundle_is_not_canonical() -> None:
    """Whitespace between values counts as a change: only the canonical file verifies."""
    pretty = json.dumps(json.loads(bundle_bytes()), indent=2).encode()
    assert proof.check(pretty) == [
        ("bundle", "the file is not in canonical form: bytes between its values changed")
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff", "not a JSON file"),
        (b"[]", "not a proof bundle"),
        (b'{"format":"stellar-reconciler proof bundle","version":9}', "version 9"),
    ],
)
def test_what_is_not_a_bundle_is_said_so(data: bytes, message: str) -> None:
    """Damaged, foreign or future files fail with one problem about the bundle as a whole."""
    [(part, found)] = proof.check(data)
    assert part == "bundle" and message in found


def test_no_single_changed_byte_verifies() -> None:
    """Every byte of a bundle, changed alone (one bit flipped), makes the bundle fail."""
    data = bundle_bytes(material(first=7, last=8, per_ledger=1))
    for at in range(len(data)):
        changed = data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]
        assert proof.check(changed), f"byte {at} ({chr(data[at])!r}) changed unnoticed"


def test_the_documented_recipe_recomputes_the_root(tmp_path: Path) -> None:
    """The standard-library script in docs/proofs.md prints the bundle's events root."""
    text = (Path(__file__).parents[2] / "docs" / "proofs.md").read_text()
    recipe = text.split("### Recomputing a root")[1].split("```python\n")[1].split("```")[0]
    (tmp_path / "recipe.py").write_text(recipe)
    (tmp_path / "bundle.json").write_bytes(bundle_bytes(material(first=3, last=9, per_ledger=3)))
    result = subprocess.run(
        [sys.executable, str(tmp_path / "recipe.py"), str(tmp_path / "bundle.json")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == events_root(material(first=3, last=9, per_ledger=3).events)
