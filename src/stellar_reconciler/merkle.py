"""Merkle trees as RFC 6962 (Certificate Transparency) defines them, and the leaf of an event.

The tree is the RFC's Merkle Tree Hash (MTH) with SHA-256: a leaf hashes as
SHA-256(0x00 || leaf), an inner node as SHA-256(0x01 || left || right), a list of n > 1
items splits at k, the largest power of two below n, and the empty list hashes to SHA-256 of
nothing. The prefixes keep a leaf from ever passing for an inner node. docs/proofs.md spells
out the event leaf so anyone can recompute a root in any language.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
# The stored fields of an event a leaf commits to: the ones re-verification compares with
# the network, so a leaf changes exactly when a repair would find the event different.
EVENT_LEAF_FIELDS = (
    "id",
    "ledger",
    "contract_id",
    "type",
    "tx_hash",
    "topics_xdr",
    "value_xdr",
)
# A ledger header as stored: closed_at is ISO 8601 UTC with a "Z" (microseconds if any).
HEADER_LEAF_FIELDS = ("sequence", "hash", "previous_hash", "closed_at", "event_count")


def canonical_json(value: Any) -> bytes:
    """UTF-8 JSON with sorted keys and no spaces: one byte string per value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_leaf(event: Mapping[str, Any]) -> bytes:
    """The leaf of one stored event: canonical JSON of EVENT_LEAF_FIELDS, nothing else."""
    return canonical_json({name: event[name] for name in EVENT_LEAF_FIELDS})


def header_leaf(header: Mapping[str, Any]) -> bytes:
    """The leaf of one stored ledger header: canonical JSON of HEADER_LEAF_FIELDS."""
    return canonical_json({name: header[name] for name in HEADER_LEAF_FIELDS})


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def root_of_hashes(hashes: Sequence[bytes]) -> bytes:
    """The root over leaves already hashed with `leaf_hash`.

    Pairs are combined level by level and an odd last node moves up unchanged; that builds
    the same left-leaning tree as the RFC's split at the largest power of two (the tests
    check the two against each other), without recursion or copies of the list.
    """
    if not hashes:
        return hashlib.sha256(b"").digest()
    level = list(hashes)
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def merkle_root(leaves: Iterable[bytes]) -> bytes:
    """MTH over the leaves in the order given (order matters)."""
    return root_of_hashes([leaf_hash(leaf) for leaf in leaves])


def events_root(events: Iterable[Mapping[str, Any]]) -> str:
    """The hex root over events, which must come in id order (that is ledger order)."""
    return merkle_root(event_leaf(event) for event in events).hex()


def headers_root(headers: Iterable[Mapping[str, Any]]) -> str:
    """The hex root over ledger headers in sequence order."""
    return merkle_root(header_leaf(header) for header in headers).hex()
