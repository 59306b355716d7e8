"""Matching expected records to events: the rules in matching.py, as properties and examples."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stellar_reconciler.assignment import (
    match_events,
    settle_ledgers,
)
from stellar_reconciler.matching import (
    AMOUNT_MISMATCH,
    I128_MAX,
    I128_MIN,
    MATCHED,
    Expectation,
    ObservedEvent,
    event_amount,
    match_key,
    normalize_value,
    overdue,
    parse_amount,
)
from tests.unit.test_assignment import ADDRESSES, CONTRACTS, TX_HASHES


@given(
    st.integers(I128_MIN // 2, I128_MAX // 2),
    st.integers(0, 2**100),
    st.sampled_from([-1, 1]),
)
def test_tolerance_boundary_is_exact_for_i128_amounts(
    expected: int, tolerance: int, sign: int
) -> None:
    """Exactly at the tolerance is matched; one unit beyond is a mismatch, at any magnitude."""
    # Deadline at the event's ledger, so a mismatch is settled there too.
    wanted = Expectation(1, "x", CONTRACTS[0], "transfer", 1, amount=expected, tolerance=tolerance)

    def claim_for(found: int) -> tuple[str, int | None]:
        event = ObservedEvent(
            "0000000000000000001-0000000000",
            1,
            CONTRACTS[0],
            "transfer",
            "a" * 64,
            ("transfer",),
            found,
        )
        (claim,) = settle_ledgers([wanted], [event]).claims
        return claim.status, claim.difference

    at_edge = expected + sign * tolerance
    beyond = expected + sign * (tolerance + 1)
    assert claim_for(at_edge) == (MATCHED, sign * tolerance)
    assert claim_for(beyond) == (AMOUNT_MISMATCH, sign * (tolerance + 1))


@given(st.integers(I128_MIN, I128_MAX))
def test_amounts_round_trip_through_text_and_json(amount: int) -> None:
    """Every i128 parses back exactly from its decimal text and from a JSON integer."""
    assert parse_amount(str(amount)) == amount == parse_amount(amount)
    assert event_amount(str(amount)) == amount
    assert event_amount({"amount": str(amount), "funder": ADDRESSES[0]}) == amount


@pytest.mark.parametrize(
    "bad", [1.5, 2.0, True, None, "1e6", "12.5", "", "0x10", str(2**127), str(-(2**127) - 1)]
)
def test_amounts_that_are_not_exact_i128_integers_are_refused(bad: object) -> None:
    """Floats, booleans, decimals, exponents and out-of-range numbers are not amounts."""
    with pytest.raises(ValueError, match=r"whole number|i128"):
        parse_amount(bad)


def test_event_amount_reads_values_and_amount_fields_only() -> None:
    """An event's amount is its integer value or its map's `amount`; anything else has none."""
    assert event_amount("485953369231") == 485953369231
    assert event_amount(7) == 7
    assert event_amount({"amount": "12", "funder": "G"}) == 12
    assert event_amount({"budget": "12"}) is None
    assert event_amount(["G...", "1", "2"]) is None
    assert event_amount("quality") is None
    assert event_amount(None) is None


def _event(
    ledger: int = 5, amount: int | None = 100, successful: bool = True, index: int = 0
) -> ObservedEvent:
    return ObservedEvent(
        id=f"{ledger:019d}-{index:010d}",
        ledger=ledger,
        contract_id=CONTRACTS[0],
        name="transfer",
        tx_hash=TX_HASHES[0],
        topics=("transfer", ADDRESSES[0], ADDRESSES[1]),
        amount=amount,
        successful=successful,
    )


def _expect(
    id: int, amount: int | None = 100, tolerance: int = 0, deadline: int = 10, **more: object
) -> Expectation:
    return Expectation(
        id, f"x{id}", CONTRACTS[0], "transfer", deadline, amount=amount, tolerance=tolerance, **more
    )


def test_a_record_within_tolerance_wins_over_an_earlier_mismatching_one() -> None:
    """Two records fit one payment: the one whose amount agrees takes it, whatever its age."""
    older, newer = _expect(1, amount=250), _expect(2, amount=100)
    (claim,) = match_events([older, newer], [_event(amount=100)]).claims
    assert claim.expectation == newer and claim.status == MATCHED


def test_ties_break_by_external_id_not_by_posting_order() -> None:
    """Two records alike but for their ids and one event: the smaller external id claims it,
    whichever was posted first; the other waits."""
    result = match_events([_expect(7), _expect(3)], [_event()])
    assert [c.expectation.id for c in result.claims] == [3]


def test_failed_calls_late_events_and_amountless_events_never_match() -> None:
    """A failed call moved nothing, an event after the deadline is too late, and an event
    without an amount cannot be the payment a record with an amount expects."""
    wanted = _expect(1, deadline=5)
    assert match_events([wanted], [_event(successful=False)]).claims == ()
    assert match_events([wanted], [_event(ledger=6)]).claims == ()
    assert match_events([wanted], [_event(amount=None)]).claims == ()
    assert len(match_events([_expect(2, amount=None)], [_event(amount=None)]).claims) == 1


def test_transaction_and_topics_pin_the_event() -> None:
    """A record pinned by transaction or topic values ignores events that differ there."""
    by_tx = _expect(1, tx_hash=TX_HASHES[1])
    by_to = _expect(2, topics=((2, ADDRESSES[2]),))
    assert match_events([by_tx, by_to], [_event()]).claims == ()
    by_from = _expect(3, topics=((1, ADDRESSES[0]),))
    assert [c.expectation.id for c in match_events([by_from], [_event()]).claims] == [3]


def test_overdue_means_the_deadline_ledger_is_processed() -> None:
    """A record is missing once its deadline ledger itself has been processed, not before."""
    wanted = _expect(1, deadline=5)
    assert overdue([wanted], 4) == []
    assert overdue([wanted], 5) == [wanted]


def test_numbers_match_their_decimal_text_in_topics() -> None:
    """A u64 topic decodes to text; the same number given as JSON or CSV text is equal."""
    assert normalize_value(866926390409) == normalize_value("866926390409") == "866926390409"
    assert normalize_value({"a": [1, True, None]}) == {"a": ["1", True, None]}
    assert match_key(None, ((1, "866926390409"),)) == 't1:"866926390409"'
    assert match_key("ab" * 32, ((1, "x"),)) == "tx:" + "ab" * 32
    assert match_key(None, ()) == "any"
