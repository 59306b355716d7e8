"""Event shapes worked out from the XDR: types of topics and value, map fields, comparison,
and why an amount cannot be read."""

from __future__ import annotations

from datetime import UTC, datetime

from stellar_sdk import scval

from stellar_reconciler.decode import decode_scval_b64
from stellar_reconciler.models import Event
from stellar_reconciler.shapes import Shape, amount_problem, shape_of
from tests.factories import CONTRACT, event_id

ALICE = "GAFCZPBOMB2PKPM6PKCXMITLXUL22A2T4PBYMKQS3VPYFI32B5RTHEKL"


def emitted(value: object, ledger: int = 10, name: str = "transfer") -> Event:
    """An event of CONTRACT named `name` from ALICE carrying `value` (an ScVal)."""
    topics_xdr = (scval.to_symbol(name).to_xdr(), scval.to_address(ALICE).to_xdr())
    value_xdr = value.to_xdr()  # type: ignore[attr-defined]
    return Event(
        id=event_id(ledger),
        type="contract",
        ledger=ledger,
        ledger_closed_at=datetime(2026, 1, 1, tzinfo=UTC),
        contract_id=CONTRACT,
        tx_hash="ab" * 32,
        transaction_index=1,
        operation_index=0,
        in_successful_contract_call=True,
        topics_xdr=topics_xdr,
        value_xdr=value_xdr,
        topics=tuple(decode_scval_b64(t) for t in topics_xdr),
        value=decode_scval_b64(value_xdr),
        name=name,
    )


def map_of(**fields: object) -> object:
    return scval.to_map({scval.to_symbol(k): v for k, v in fields.items()})  # type: ignore[misc]


def test_an_i128_transfer_has_the_types_of_its_topics_and_value() -> None:
    """A transfer of an i128: topics (symbol, address), value i128, no fields."""
    shape = shape_of(emitted(scval.to_int128(125)))
    assert shape == Shape(("symbol", "address"), "i128")
    assert shape.as_json() == {"topics": ["symbol", "address"], "value": "i128"}
    assert shape.text() == "topics (symbol, address); value i128"


def test_a_map_value_lists_its_keys_and_their_types_in_order() -> None:
    """A map value's shape names each key with its value's type, nested values skipped."""
    value = map_of(
        amount=scval.to_int128(5),
        memo=scval.to_string("rent"),
        parts=scval.to_vec([scval.to_uint32(1), map_of(x=scval.to_bool(True))]),
    )
    shape = shape_of(emitted(value))
    assert shape.value == "map"
    assert shape.fields == (("amount", "i128"), ("memo", "string"), ("parts", "vec"))
    assert Shape.from_json(shape.as_json()) == shape


def test_every_common_arm_inside_a_map_is_stepped_over_exactly() -> None:
    """Addresses of both kinds, bytes, void, wide integers, nested vectors and maps: each
    field gets its own type, so each value before it was skipped to its last byte."""
    contract = "CDLZFC3SYJYDZT7K67VZ75HPJVIEUVNIXF47ZG2FB2RMQQVU2HHGCYSC"
    value = map_of(
        a=scval.to_address(ALICE),
        b=scval.to_address(contract),
        c=scval.to_bytes(b"\x01\x02\x03"),
        d=scval.to_void(),
        e=scval.to_uint256(2**200),
        f=scval.to_duration(9),
        g=scval.to_vec([]),
        h=map_of(inner=scval.to_symbol("abcde")),
        i=scval.to_bool(False),
    )
    kinds = [kind for _, kind in shape_of(emitted(value)).fields]
    assert kinds == [
        "address",
        "address",
        "bytes",
        "void",
        "u256",
        "duration",
        "vec",
        "map",
        "bool",
    ]


def test_equal_shapes_compare_equal_whatever_the_values() -> None:
    """Two events of one shape and different amounts and senders have one shape and digest;
    an i128 and a string of the same digits (equal as JSON) have different shapes."""
    first, second = shape_of(emitted(scval.to_int128(1))), shape_of(emitted(scval.to_int128(9)))
    assert first == second and first.digest == second.digest
    as_text = emitted(scval.to_string("1"))
    assert as_text.value == emitted(scval.to_int128(1)).value
    assert shape_of(as_text) != first and shape_of(as_text).digest != first.digest


def test_a_change_of_map_field_type_or_name_is_another_shape() -> None:
    """{amount: i128}, {amount: string} and {value: i128} are three shapes."""
    shapes = {
        shape_of(emitted(map_of(amount=scval.to_int128(1)))).digest,
        shape_of(emitted(map_of(amount=scval.to_string("1")))).digest,
        shape_of(emitted(map_of(value=scval.to_int128(1)))).digest,
    }
    assert len(shapes) == 3


def test_a_value_that_is_not_xdr_is_typed_unreadable() -> None:
    """Bytes that are not base64 XDR give the type `unreadable`, not an exception."""
    event = emitted(scval.to_int128(1))._replace(value_xdr="!!!!")
    assert shape_of(event).value == "unreadable"


def test_readable_amounts_have_no_problem() -> None:
    """An i128 value and a map's i128 `amount` field are read: no problem reported."""
    for value in (scval.to_int128(7), map_of(amount=scval.to_int128(7))):
        event = emitted(value)
        assert amount_problem(event.value, shape_of(event)) is None


def test_an_unreadable_amount_names_the_field_and_the_type_found() -> None:
    """A decimal string, a map without `amount` and a map whose amount is a string each
    say which field and which type."""
    text = emitted(scval.to_string("12.5000000"))
    assert amount_problem(text.value, shape_of(text)) == (
        "the value is a string ('12.5000000'), not a whole number in the token's smallest unit"
    )
    renamed = emitted(map_of(value=scval.to_int128(3)))
    reason = amount_problem(renamed.value, shape_of(renamed))
    assert reason == "the value is a map without an `amount` field (its fields: value: i128)"
    nested = emitted(map_of(amount=scval.to_string("3 USDC")))
    reason = amount_problem(nested.value, shape_of(nested))
    assert reason is not None and "`amount` field is a string ('3 USDC')" in reason
