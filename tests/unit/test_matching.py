"""Matching expected records to events: the rules in matching.py, as properties and examples."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stellar_reconciler.assignment import (
    MatchResult,
    Settlement,
    match_events,
    priority,
    settle_ledgers,
)
from stellar_reconciler.matching import (
    AMOUNT_MISMATCH,
    I128_MAX,
    I128_MIN,
    MATCHED,
    MISSING_EXPECTED,
    PENDING,
    Claim,
    Expectation,
    ObservedEvent,
    event_amount,
    match_key,
    normalize_value,
    overdue,
    parse_amount,
)

CONTRACTS = (
    "CDLZFC3SYJYDZT7K67VZ75HPJVIEUVNIXF47ZG2FB2RMQQVU2HHGCYSC",
    "CBATA4NZKQJANEL5HSLAFZ52CL2RVJ4AR6QUNMOUPCBJOA6QIXJRDDNX",
)
ADDRESSES = (
    "GAFCZPBOMB2PKPM6PKCXMITLXUL22A2T4PBYMKQS3VPYFI32B5RTHEKL",
    "GBNTF3YUJCXYIFQ7G2NU3MXBPC65RUGHBEXIUBIUFAYTTYLUA5QCPHBF",
    "GD7YF7WOGHCMZKSQ3TDVPXY3UT3V6SJ2QL5C4TOFQ4IHK4UJUAWSVH3C",
)
TX_HASHES = tuple(c * 64 for c in "abc")
NAMES = ("transfer", "mint")

# A deliberately small world, so that expectations and events collide often.
expectation_fields = st.fixed_dictionaries(
    {
        "contract_id": st.sampled_from(CONTRACTS[:1] * 3 + CONTRACTS[1:]),
        "event_name": st.sampled_from(NAMES[:1] * 2 + NAMES[1:]),
        "deadline_ledger": st.integers(1, 8),
        "tx_hash": st.sampled_from((None, None, *TX_HASHES[:2])),
        "topics": st.lists(
            st.tuples(st.integers(1, 2), st.sampled_from(ADDRESSES[:2])),
            max_size=2,
            unique_by=lambda t: t[0],
        ).map(lambda pairs: tuple(sorted(pairs))),
        "amount": st.none() | st.integers(0, 12),
        "tolerance": st.integers(0, 3),
    }
)
event_fields = st.fixed_dictionaries(
    {
        "ledger": st.integers(1, 8),
        "contract_id": st.sampled_from(CONTRACTS[:1] * 3 + CONTRACTS[1:]),
        "name": st.sampled_from(NAMES[:1] * 2 + NAMES[1:]),
        "tx_hash": st.sampled_from(TX_HASHES[:2]),
        "topics": st.tuples(st.sampled_from(ADDRESSES[:2]), st.sampled_from(ADDRESSES[:2])),
        "amount": st.none() | st.integers(0, 12),
        "successful": st.sampled_from([True, True, True, False]),
    }
)


def build_expectations(fields: Sequence[dict[str, object]]) -> list[Expectation]:
    out = []
    for index, f in enumerate(fields):
        tolerance = f["tolerance"] if f["amount"] is not None else 0
        out.append(
            Expectation(id=index + 1, external_id=f"x{index}", **{**f, "tolerance": tolerance})
        )
    return out


def build_events(fields: Sequence[dict[str, object]]) -> list[ObservedEvent]:
    out = []
    for index, f in enumerate(fields):
        topics = f["topics"]
        assert isinstance(topics, tuple)
        out.append(
            ObservedEvent(
                id=f"{f['ledger']:019d}-{index:010d}",
                ledger=f["ledger"],
                contract_id=f["contract_id"],
                name=f["name"],
                tx_hash=f["tx_hash"],
                topics=(f["name"], *topics),
                amount=f["amount"],
                successful=f["successful"],
            )
        )
    return out


worlds = st.tuples(
    st.lists(expectation_fields, max_size=25).map(build_expectations),
    st.lists(event_fields, max_size=40).map(build_events),
)


Outcome = dict[str, tuple[str, str | None]]


class Lifecycle:
    """What the service does with records and events, in pure form: records are posted after
    some ledger (looking back at what is stored), ledgers are settled in batches, and a batch
    settles what its last ledger makes overdue, as the store's batch hook does."""

    def __init__(self, records: Sequence[Expectation], events: Sequence[ObservedEvent]) -> None:
        self.records, self.events = records, events
        self.pending: dict[int, Expectation] = {}
        self.held: dict[int, Claim] = {}
        self.candidates: dict[int, Claim] = {}
        self.blocked: set[int] = set()
        self.outcome: dict[int, tuple[str, str | None]] = {}
        self.taken: set[str] = set()

    def run(self, posted_after: dict[int, int], cuts: Sequence[int]) -> Outcome:
        checkpoint = 0
        self._post([x for x in self.records if posted_after.get(x.id, 0) <= 0], checkpoint)
        for last in [*sorted(set(cuts)), LAST_LEDGER]:
            if last <= checkpoint:
                continue
            batch = [
                e for e in self.events if checkpoint < e.ledger <= last and e.id not in self.taken
            ]
            self._apply(
                settle_ledgers(
                    self.pending.values(),
                    batch,
                    self.held.values(),
                    [c for c in self.candidates.values() if c.event.id not in self.taken],
                    [self.pending[x] for x in self.blocked if x in self.pending],
                )
            )
            self._expire(last)
            arriving = [x for x in self.records if checkpoint < posted_after.get(x.id, 0) <= last]
            checkpoint = last
            self._post(arriving, checkpoint)
        return {x.external_id: self.outcome.get(x.id, (PENDING, None)) for x in self.records}

    def _post(self, records: Sequence[Expectation], checkpoint: int) -> None:
        records = [x for x in records if x.id not in self.pending and x.id not in self.outcome]
        self.pending.update((x.id, x) for x in records)
        stored = [e for e in self.events if e.ledger <= checkpoint and e.id not in self.taken]
        result = match_events(records, stored, self.held.values())
        self._apply(result)
        self._expire(checkpoint)

    def _apply(self, result: MatchResult | Settlement) -> None:
        for claim in (*result.claims, *result.moved):
            x = claim.expectation
            self.outcome[x.id] = (claim.status, claim.event.id)
            self.taken.add(claim.event.id)
            self.pending.pop(x.id, None)
            self.candidates.pop(x.id, None)
            if claim.status == MATCHED:
                self.held[x.id] = claim
        self.taken = {c.event.id for c in self.held.values()} | {
            event for status, event in self.outcome.values() if event is not None
        }
        for claim in result.candidates:
            self.candidates[claim.expectation.id] = claim
        if isinstance(result, Settlement):
            self.blocked = set()
        self.blocked |= {x.id for x in result.blocked}
        self.blocked &= set(self.pending)

    def _expire(self, through: int) -> None:
        for x in sorted(self.pending.values(), key=priority):
            if x.deadline_ledger > through:
                continue
            del self.pending[x.id]
            candidate = self.candidates.pop(x.id, None)
            if candidate is not None and candidate.event.id not in self.taken:
                self.outcome[x.id] = (AMOUNT_MISMATCH, candidate.event.id)
                self.taken.add(candidate.event.id)
            else:
                self.outcome[x.id] = (MISSING_EXPECTED, None)


LAST_LEDGER = 8


@given(worlds)
def test_no_event_or_expectation_is_claimed_twice(
    world: tuple[list[Expectation], list[ObservedEvent]],
) -> None:
    """Each event settles at most one expectation, and each expectation is settled once."""
    records, events = world
    outcome = Lifecycle(records, events).run({}, [])
    claimed = [event for _, event in outcome.values() if event is not None]
    assert len(claimed) == len(set(claimed))


@given(worlds)
def test_every_settlement_fits_and_is_classified_exactly(
    world: tuple[list[Expectation], list[ObservedEvent]],
) -> None:
    """A settled record fits its event; matched iff within tolerance; a mismatch only once the
    deadline is processed; and never while an exact event for it sits unclaimed."""
    records, events = world
    outcome = Lifecycle(records, events).run({}, [])
    by_id = {e.id: e for e in events}
    claimed = {event for _, event in outcome.values() if event is not None}
    for record in records:
        status, event_id = outcome[record.external_id]
        exact_free = [
            e
            for e in events
            if record.fits(e) and record.within_tolerance(e.amount) and e.id not in claimed
        ]
        if status in (AMOUNT_MISMATCH, MISSING_EXPECTED):
            assert exact_free == [], "an exact event was left unclaimed beside a false alarm"
        if event_id is None:
            continue
        event = by_id[event_id]
        assert record.fits(event)
        assert (status == MATCHED) == record.within_tolerance(event.amount)


@given(worlds, st.lists(st.integers(1, LAST_LEDGER), max_size=7))
def test_batch_boundaries_do_not_change_the_outcome(
    world: tuple[list[Expectation], list[ObservedEvent]], cuts: list[int]
) -> None:
    """Settling ledger by ledger, in any batches, ends exactly as settling in one batch."""
    records, events = world
    assert Lifecycle(records, events).run({}, cuts) == Lifecycle(records, events).run({}, [])


@given(worlds, st.lists(st.integers(0, LAST_LEDGER), max_size=25), st.lists(st.integers(1, 8)))
def test_posting_late_settles_as_many_records_exactly(
    world: tuple[list[Expectation], list[ObservedEvent]], moments: list[int], cuts: list[int]
) -> None:
    """Records posted after their events (before their deadline) settle as many records exactly
    as posting them all first: a late record never loses its exact event to first-fit."""
    records, events = world
    posted = {x.id: min(m, x.deadline_ledger - 1) for x, m in zip(records, moments, strict=False)}
    late = Lifecycle(records, events).run(posted, cuts)
    early = Lifecycle(records, events).run({}, cuts)
    matched = sum(status == MATCHED for status, _ in early.values())
    assert sum(status == MATCHED for status, _ in late.values()) == matched


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
