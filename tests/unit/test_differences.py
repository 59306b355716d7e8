"""Expectation.differences: the per-field account of why an event is or is not a record's,
held to the matcher's own tests (fits, within_tolerance) so explanations cannot disagree."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stellar_reconciler.assignment import match_events, settle_ledgers
from stellar_reconciler.matching import MATCHED, Expectation, ObservedEvent
from tests.unit.test_assignment import (
    ADDRESSES,
    CONTRACTS,
    TX_HASHES,
    build_events,
    build_expectations,
    event_fields,
    expectation_fields,
    worlds,
)


@given(expectation_fields, event_fields)
def test_no_differences_exactly_when_the_matcher_accepts(
    wanted: dict[str, object], seen: dict[str, object]
) -> None:
    """Differences are empty iff the event fits and is within tolerance; only amount-size
    differences remain iff it fits; and an exact fit is what match_events claims."""
    (expectation,) = build_expectations([wanted])
    (event,) = build_events([seen])
    found = expectation.differences(event)
    exact = expectation.fits(event) and expectation.within_tolerance(event.amount)
    assert (not found) == exact
    assert all(d.settles_as_mismatch for d in found) == expectation.fits(event)
    claimed = match_events([expectation], [event]).claims
    assert bool(claimed) == (not found)


@given(
    st.integers(-(2**120), 2**120),
    st.integers(-(2**120), 2**120),
    st.integers(0, 2**100),
)
def test_an_amount_difference_is_found_minus_expected(
    expected: int, found: int, tolerance: int
) -> None:
    """Outside tolerance the amount difference says by how much (found - expected, exactly,
    as text in JSON); inside it there is no difference at all."""
    wanted = Expectation(1, "x", CONTRACTS[0], "transfer", 10, amount=expected, tolerance=tolerance)
    event = ObservedEvent("1", 5, CONTRACTS[0], "transfer", TX_HASHES[0], ("transfer",), found)
    differences = wanted.differences(event)
    if abs(found - expected) <= tolerance:
        assert differences == ()
    else:
        (amount,) = differences
        assert (amount.field, amount.by) == ("amount", found - expected)
        body = amount.as_json(tolerance)
        assert body["by"] == str(found - expected)
        assert f"tolerance of {tolerance}" in str(body["reason"])


def test_every_field_that_differs_is_named() -> None:
    """A failed call, after the deadline, another transaction, sender and recipient swapped
    and no amount: five differences, each naming its field, the transfer's topics by role."""
    wanted = Expectation(
        1,
        "x",
        CONTRACTS[0],
        "transfer",
        deadline_ledger=5,
        tx_hash=TX_HASHES[0],
        topics=((1, ADDRESSES[0]), (2, ADDRESSES[1])),
        amount=100,
    )
    event = ObservedEvent(
        "1",
        8,
        CONTRACTS[0],
        "transfer",
        TX_HASHES[1],
        ("transfer", ADDRESSES[1], ADDRESSES[0]),
        None,
        successful=False,
    )
    found = {d.field: d for d in wanted.differences(event)}
    assert list(found) == [
        "in_successful_contract_call",
        "ledger",
        "tx_hash",
        "topics.1",
        "topics.2",
        "amount",
    ]
    assert found["ledger"].by == 3
    assert (found["topics.1"].label, found["topics.2"].label) == ("sender", "recipient")
    assert found["amount"].reason() == "carries no amount"
    assert not found["amount"].settles_as_mismatch


def test_a_missing_topic_and_another_contract_are_differences() -> None:
    """An event with fewer topics than the record pins differs in the missing one (found
    null); another contract or event name differs there."""
    wanted = Expectation(1, "x", CONTRACTS[0], "mint", 10, topics=((3, "native"),))
    event = ObservedEvent("1", 5, CONTRACTS[1], "burn", TX_HASHES[0], ("burn", ADDRESSES[0]), None)
    found = {d.field: d.as_json() for d in wanted.differences(event)}
    assert found["contract_id"]["found"] == CONTRACTS[1]
    assert found["event_name"]["expected"] == "mint"
    assert found["topics.3"]["found"] is None and "label" not in found["topics.3"]


@given(worlds)
def test_what_matching_settles_has_the_differences_its_status_says(
    world: tuple[list[Expectation], list[ObservedEvent]],
) -> None:
    """Over whole worlds of records and events, settled ledger by ledger: every matched claim
    has no differences, every amount_mismatch and pending candidate differs in its amount
    only, and nothing else."""
    expectations, events = world
    outcome = settle_ledgers(expectations, events)
    for claim in (*outcome.claims, *outcome.candidates):
        found = claim.expectation.differences(claim.event)
        if claim.status == MATCHED:
            assert found == ()
        else:
            (amount,) = found
            assert amount.settles_as_mismatch and amount.by == claim.difference
