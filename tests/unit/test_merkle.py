"""RFC 6962 Merkle roots: known vectors, the RFC's recursive definition, and sensitivity."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from stellar_reconciler.merkle import (
    canonical_json,
    event_leaf,
    events_root,
    leaf_hash,
    merkle_root,
    node_hash,
)

# The eight inputs of Certificate Transparency's published test vectors, and the root of
# each prefix of them (index = number of leaves).
CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    bytes(range(0x50, 0x58)),
    bytes(range(0x60, 0x70)),
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]

EVENT = {
    "id": "0000000429496733696-0000000001",
    "ledger": 100,
    "contract_id": "CAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAD2KM",
    "type": "contract",
    "tx_hash": "ab" * 32,
    "topics_xdr": ["AAAADwAAAAh0cmFuc2Zlcg=="],
    "value_xdr": "AAAACgAAAAAAAAAAAAAAAAAAAAE=",
}

leaf_lists = st.lists(st.binary(max_size=40), max_size=70)


def rfc_mth(leaves: list[bytes]) -> bytes:
    """MTH exactly as RFC 6962 section 2.1 writes it: split at the largest power of two < n."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(rfc_mth(leaves[:k]), rfc_mth(leaves[k:]))


def test_certificate_transparency_vectors() -> None:
    """Every prefix of CT's eight test leaves hashes to its published root, empty included."""
    for count, expected in enumerate(CT_ROOTS):
        assert merkle_root(CT_LEAVES[:count]).hex() == expected


@given(leaf_lists)
def test_level_by_level_equals_the_rfc_recursion(leaves: list[bytes]) -> None:
    """The iterative tree equals the RFC's recursive MTH for every leaf count and content."""
    assert merkle_root(leaves) == rfc_mth(leaves)


@given(leaf_lists.filter(bool), st.data())
def test_changing_any_leaf_changes_the_root(leaves: list[bytes], data: st.DataObject) -> None:
    """Replacing any one leaf with different bytes gives a different root."""
    index = data.draw(st.integers(0, len(leaves) - 1))
    other = data.draw(st.binary(max_size=40).filter(lambda b: b != leaves[index]))
    changed = [*leaves[:index], other, *leaves[index + 1 :]]
    assert merkle_root(changed) != merkle_root(leaves)


@given(st.lists(st.binary(max_size=20), min_size=2, max_size=40, unique=True), st.data())
def test_order_matters(leaves: list[bytes], data: st.DataObject) -> None:
    """Swapping two distinct leaves changes the root: the tree commits to their order."""
    i = data.draw(st.integers(0, len(leaves) - 2))
    j = data.draw(st.integers(i + 1, len(leaves) - 1))
    swapped = list(leaves)
    swapped[i], swapped[j] = swapped[j], swapped[i]
    assert merkle_root(swapped) != merkle_root(leaves)


@given(leaf_lists)
def test_adding_or_removing_a_leaf_changes_the_root(leaves: list[bytes]) -> None:
    """A leaf more or a leaf fewer gives another root (an empty leaf is still a leaf)."""
    assert merkle_root([*leaves, b""]) != merkle_root(leaves)
    if leaves:
        assert merkle_root(leaves[:-1]) != merkle_root(leaves)


def test_a_leaf_never_passes_for_an_inner_node() -> None:
    """The two children's hashes as one leaf do not give their parent's root (prefixes)."""
    left, right = leaf_hash(b"a"), leaf_hash(b"b")
    assert merkle_root([left + right]) != merkle_root([b"a", b"b"])


def test_event_leaf_is_the_documented_canonical_json() -> None:
    """An event's leaf is sorted-key, space-free UTF-8 JSON of its seven stored fields only."""
    stored = {**EVENT, "value": {"i128": "1"}, "topics": ["transfer"], "name": "transfer"}
    assert event_leaf(stored) == (
        b'{"contract_id":"CAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAD2KM",'
        b'"id":"0000000429496733696-0000000001","ledger":100,'
        b'"topics_xdr":["AAAADwAAAAh0cmFuc2Zlcg=="],"tx_hash":"' + b"ab" * 32 + b'",'
        b'"type":"contract","value_xdr":"AAAACgAAAAAAAAAAAAAAAAAAAAE="}'
    )
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()


def test_events_root_of_one_event_is_its_leaf_hash() -> None:
    """A range with one event has the hex SHA-256 of 0x00 and that event's leaf as its root."""
    expected = hashlib.sha256(b"\x00" + event_leaf(EVENT)).hexdigest()
    assert events_root([EVENT]) == expected
    assert events_root([]) == hashlib.sha256(b"").hexdigest()
