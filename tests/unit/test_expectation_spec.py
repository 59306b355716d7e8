"""ExpectationSpec: what an expected record may say, and the message for each thing it may not."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from stellar_reconciler.expectation_spec import ExpectationSpec
from stellar_reconciler.matching import I128_MAX

CONTRACTS = (
    "CDLZFC3SYJYDZT7K67VZ75HPJVIEUVNIXF47ZG2FB2RMQQVU2HHGCYSC",
    "CBATA4NZKQJANEL5HSLAFZ52CL2RVJ4AR6QUNMOUPCBJOA6QIXJRDDNX",
)
ADDRESSES = (
    "GAFCZPBOMB2PKPM6PKCXMITLXUL22A2T4PBYMKQS3VPYFI32B5RTHEKL",
    "GBNTF3YUJCXYIFQ7G2NU3MXBPC65RUGHBEXIUBIUFAYTTYLUA5QCPHBF",
    "GD7YF7WOGHCMZKSQ3TDVPXY3UT3V6SJ2QL5C4TOFQ4IHK4UJUAWSVH3C",
)


SPEC = {
    "external_id": "invoice-1",
    "contract_id": CONTRACTS[0],
    "event_name": "transfer",
    "from": ADDRESSES[0],
    "to": ADDRESSES[1],
    "amount": "170141183460469231731687303715884105727",
    "tolerance": 5,
    "deadline_ledger": 100,
}


def test_a_full_record_validates_and_folds_from_and_to_into_topics() -> None:
    """from/to become topics 1 and 2; amounts stay exact integers, even at the i128 limit."""
    spec = ExpectationSpec.model_validate({**SPEC, "tx_hash": "AB" * 32, "topics": {"3": 42}})
    assert spec.topic_values() == ((1, ADDRESSES[0]), (2, ADDRESSES[1]), (3, "42"))
    assert spec.amount == I128_MAX and spec.tolerance == 5
    assert spec.tx_hash == "ab" * 32


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"contract_id": ADDRESSES[0]}, "contract strkey"),
        ({"event_name": "no spaces"}, "symbol"),
        ({"tx_hash": "xyz"}, "64 hexadecimal"),
        ({"from": "not-an-address"}, "address strkey"),
        ({"topics": {"0": "transfer"}}, "position '0'"),
        ({"topics": {"1": ADDRESSES[2]}}, "disagree"),
        ({"amount": 1.5}, "whole number"),
        ({"amount": None, "tolerance": 3}, "tolerance needs an amount"),
        ({"tolerance": -1}, "0 or more"),
        ({"deadline_ledgers": 10}, "exactly one of deadline_ledger"),
        ({"deadline_ledger": None}, "exactly one of deadline_ledger"),
        ({"deadline_ledger": 0}, "greater than or equal to 1"),
        ({"external_id": " padded"}, "leading or trailing"),
        ({"external_id": ""}, "at least 1 character"),
        ({"external_id": "invoice/explain"}, "must not end in '/explain'"),
        ({"colour": "blue"}, "Extra inputs"),
    ],
)
def test_each_bad_field_is_refused_with_a_message_naming_it(
    change: dict[str, object], message: str
) -> None:
    """Every kind of bad input fails validation with a message that says what is wrong."""
    record = {k: v for k, v in {**SPEC, **change}.items() if v is not None}
    with pytest.raises(ValidationError, match=message):
        ExpectationSpec.model_validate(record)
