"""NATS subjects and message ids: every subject is valid, ids never collide across kinds."""

from __future__ import annotations

import pytest

from stellar_reconciler.publisher import UNNAMED, event_subject, message_id, subject_of
from stellar_reconciler.store import Publication

CONTRACT = "CDLZFC3SYJYDZT7K67VZ75HPJVIEUVNIXF47ZG2FB2RMQQVU2HHGCYSC"


def test_a_symbol_name_is_the_last_token() -> None:
    """<prefix>.<contract id>.<symbol>: the event's name as Soroban contracts give it."""
    assert event_subject("stellar", CONTRACT, "transfer") == f"stellar.{CONTRACT}.transfer"


@pytest.mark.parametrize("name", [None, "", "a.b", "with space", "*", ">", "x" * 33, "été"])
def test_a_name_that_is_no_symbol_falls_back(name: str | None) -> None:
    """Names that are no symbol (dots, wildcards, spaces, too long, none) become UNNAMED."""
    assert event_subject("p", CONTRACT, name) == f"p.{CONTRACT}.{UNNAMED}"


def test_a_malformed_contract_id_cannot_break_the_subject() -> None:
    """A contract id with characters NATS reads as syntax is replaced, not passed on."""
    assert event_subject("p", "C.*>", "transfer") == f"p.{UNNAMED}.transfer"


def test_other_kinds_have_their_own_subject_and_ids() -> None:
    """Discrepancies and expectations go to <prefix>.<kind>s with ids apart from event ids."""
    item = Publication(1, "discrepancy", "7", b'{"id":7}')
    assert subject_of("p", item) == "p.discrepancies"
    assert message_id(item) == "discrepancy-7"
    settled = Publication(3, "expectation", "7", b'{"id":7}')
    assert subject_of("p", settled) == "p.expectations"
    assert message_id(settled) == "expectation-7"
    event = Publication(2, "event", "0000000042949677056-0000000001", None)
    assert message_id(event) == "0000000042949677056-0000000001"
