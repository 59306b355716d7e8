"""The simulated network's hand-packed ScVal XDR equals stellar-sdk's encoding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stellar_sdk import scval, xdr

from stellar_reconciler.simnet import codec

ADDRESS = "GCHHLGOJVLRAPYBB6TR4NS4VRF5VW5RKZXQCVQUGMLGLXPTKJFCINQVE"


@given(st.integers(min_value=-(1 << 127), max_value=(1 << 127) - 1))
def test_i128_matches_stellar_sdk(value: int) -> None:
    """Every i128, negative or above 2^64, packs exactly as stellar-sdk encodes it."""
    assert codec.i128(value) == scval.to_int128(value).to_xdr_bytes()
    assert codec.i128_value(codec.i128(value)) == value


@given(st.integers(min_value=0, max_value=(1 << 64) - 1))
def test_u64_matches_stellar_sdk(value: int) -> None:
    """u64 packing is byte-identical to stellar-sdk."""
    assert codec.u64(value) == scval.to_uint64(value).to_xdr_bytes()


@given(st.integers(min_value=0, max_value=(1 << 32) - 1))
def test_u32_matches_stellar_sdk(value: int) -> None:
    """u32 packing is byte-identical to stellar-sdk."""
    assert codec.u32(value) == scval.to_uint32(value).to_xdr_bytes()


def test_vec_and_map_match_stellar_sdk() -> None:
    """Vectors and symbol-keyed maps of mixed values pack as stellar-sdk encodes them."""
    address = scval.to_address(ADDRESS)
    items = [address, scval.to_int128(5), scval.to_uint32(2)]
    assert codec.vec([i.to_xdr_bytes() for i in items]) == scval.to_vec(items).to_xdr_bytes()
    entries = {scval.to_symbol("amount"): scval.to_int128(7), scval.to_symbol("client"): address}
    packed = codec.scmap([(k.to_xdr_bytes(), v.to_xdr_bytes()) for k, v in entries.items()])
    assert packed == scval.to_map(entries).to_xdr_bytes()
    assert codec.vec([]) == scval.to_vec([]).to_xdr_bytes()


def test_i128_refuses_values_outside_the_range() -> None:
    """A value that does not fit 128 signed bits is refused rather than wrapped."""
    with pytest.raises(ValueError, match="i128"):
        codec.i128(1 << 127)


@pytest.mark.parametrize("text", ["abc", "AAAA", "////", "", "AAAADwAAAAh0cmFuc2ZlcgAAAAA="])
def test_canonical_refuses_what_is_not_an_scval(text: str) -> None:
    """Bad base64, short XDR and trailing bytes all read as 'not an ScVal'."""
    with pytest.raises(ValueError, match="not a base64 XDR ScVal"):
        codec.canonical(text)


def test_canonical_round_trips_a_valid_scval() -> None:
    """A valid ScVal's canonical form decodes to the same value."""
    text = scval.to_symbol("transfer").to_xdr()
    assert codec.canonical(text) == text
    assert xdr.SCVal.from_xdr(codec.canonical(text)) == scval.to_symbol("transfer")


def test_i128_value_ignores_other_shapes() -> None:
    """Reading an i128 out of another ScVal gives None."""
    assert codec.i128_value(codec.u64(5)) is None
    assert codec.i128_value(codec.u32(1) + codec.u32(1) + codec.u32(1) + b"\x00" * 8) is None
