"""Assigning events to expected records: maximum exact matching, mismatches at the deadline,
batch cuts and posting order, as properties over a model of the whole lifecycle."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from hypothesis import given
from hypothesis import strategies as st

from stellar_reconciler.assignment import (
    MatchResult,
    Settlement,
    closest_of,
    held_until,
    match_events,
    priority,
    settle_ledgers,
)
from stellar_reconciler.matching import (
    AMOUNT_MISMATCH,
    MATCHED,
    MISSING_EXPECTED,
    PENDING,
    Claim,
    Expectation,
    ObservedEvent,
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
        # Amount mismatches settled: a record posted later may take their events.
        self.mismatches: dict[int, Claim] = {}
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
                    self._closest,
                    self.candidates,
                )
            )
            self._expire(last)
            arriving = [x for x in self.records if checkpoint < posted_after.get(x.id, 0) <= last]
            checkpoint = last
            self._post(arriving, checkpoint)
        return {x.external_id: self.outcome.get(x.id, (PENDING, None)) for x in self.records}

    def _post(self, records: Sequence[Expectation], checkpoint: int) -> None:
        """Post each record in its own request, in the order of `self.records`."""
        for record in records:
            if record.id in self.pending or record.id in self.outcome:
                continue
            self.pending[record.id] = record
            stored = [e for e in self.events if e.ledger <= checkpoint and e.id not in self.taken]
            held = [*self.held.values(), *self.mismatches.values()]
            self._apply(match_events([record], stored, held))
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
            else:
                self.mismatches[x.id] = claim
        for revision in result.revised:
            x = revision.expectation
            del self.mismatches[x.id]
            if revision.settled is None:
                self.outcome[x.id] = (MISSING_EXPECTED, None)
            else:
                self.outcome[x.id] = (AMOUNT_MISMATCH, revision.settled.event.id)
                self.mismatches[x.id] = revision.settled
        self.taken = {c.event.id for c in self.held.values()} | {
            event for status, event in self.outcome.values() if event is not None
        }
        for claim in result.candidates:
            self.candidates[claim.expectation.id] = claim
        if isinstance(result, Settlement):
            self.blocked = set()
        self.blocked |= {x.id for x in result.blocked}
        self.blocked &= set(self.pending)

    def _closest(self, x: Expectation, claimed: Callable[[str], bool]) -> Claim | None:
        return closest_of(
            x, [e for e in self.events if e.id not in self.taken and not claimed(e.id)]
        )

    def _expire(self, through: int) -> None:
        for x in sorted(self.pending.values(), key=priority):
            if x.deadline_ledger > through or held_until(x, self.held.values()) > through:
                continue
            del self.pending[x.id]
            candidate = self.candidates.pop(x.id, None)
            if candidate is not None and candidate.event.id in self.taken:
                candidate = self._closest(x, lambda _: False)
            if candidate is not None:
                self.outcome[x.id] = (AMOUNT_MISMATCH, candidate.event.id)
                self.mismatches[x.id] = candidate
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


@given(worlds, st.data())
def test_posting_order_changes_no_status_count(
    world: tuple[list[Expectation], list[ObservedEvent]], data: st.DataObject
) -> None:
    """The same records posted one request at a time, in any order, at one moment, then
    settled in any batches, end with as many records in each status. (Which of two
    records competing for one event gets it is the first posted: assignment.py says how
    ties break.)"""
    records, events = world
    if not records:
        return
    checkpoint = data.draw(st.integers(0, min(x.deadline_ledger for x in records) - 1))
    order = data.draw(st.permutations(records))
    cuts = sorted({checkpoint, *data.draw(st.lists(st.integers(1, LAST_LEDGER), max_size=4))})

    def counts(posting: Sequence[Expectation]) -> Counter[str]:
        outcome = Lifecycle(posting, events).run({x.id: checkpoint for x in posting}, cuts)
        return Counter(status for status, _ in outcome.values())

    assert counts(order) == counts(records)


@given(worlds, st.data())
def test_records_posted_late_match_as_many_and_never_cry_wolf(
    world: tuple[list[Expectation], list[ObservedEvent]], data: st.DataObject
) -> None:
    """Records posted at any moment before their deadline, after events they fit were stored,
    match as many as records all posted at the start; each settles on an event it fits,
    matched iff within tolerance; none is a mismatch or missing beside an unclaimed exact
    event."""
    records, events = world
    posted = {x.id: data.draw(st.integers(0, x.deadline_ledger - 1)) for x in records}
    cuts = data.draw(st.lists(st.integers(1, LAST_LEDGER), max_size=4))
    outcome = Lifecycle(records, events).run(posted, sorted({*posted.values(), *cuts}))
    early = Lifecycle(records, events).run({}, [])
    assert sum(s == MATCHED for s, _ in outcome.values()) == sum(
        s == MATCHED for s, _ in early.values()
    )
    by_id = {e.id: e for e in events}
    claimed = [event for _, event in outcome.values() if event is not None]
    assert len(claimed) == len(set(claimed))
    for record in records:
        status, event_id = outcome[record.external_id]
        if status in (AMOUNT_MISMATCH, MISSING_EXPECTED):
            assert not [
                e
                for e in events
                if record.fits(e) and record.within_tolerance(e.amount) and e.id not in claimed
            ]
        if event_id is not None:
            assert record.fits(by_id[event_id])
            assert (status == MATCHED) == record.within_tolerance(by_id[event_id].amount)


def test_a_record_posted_late_takes_its_exact_event_from_an_amount_mismatch() -> None:
    """An event settled as another record's amount mismatch goes to a record posted later
    that it fits exactly; the first record settles again on its next candidate."""

    def transfer(index: int, amount: int) -> ObservedEvent:
        return ObservedEvent(
            id=f"{1:019d}-{index:010d}",
            ledger=1,
            contract_id=CONTRACTS[0],
            name="transfer",
            tx_hash=TX_HASHES[index],
            topics=("transfer", ADDRESSES[0], ADDRESSES[1]),
            amount=amount,
            successful=True,
        )

    exact_for_late, farther = transfer(0, 10), transfer(1, 50)
    early = Expectation(
        id=1,
        external_id="early",
        contract_id=CONTRACTS[0],
        event_name="transfer",
        deadline_ledger=1,
        amount=9,
    )
    late = Expectation(
        id=2,
        external_id="late",
        contract_id=CONTRACTS[0],
        event_name="transfer",
        deadline_ledger=5,
        amount=10,
    )
    settled_before = Claim(early, exact_for_late)
    assert settled_before.status == AMOUNT_MISMATCH
    result = match_events([late], [farther], [settled_before])
    assert [(c.expectation.external_id, c.event.id, c.status) for c in result.claims] == [
        ("late", exact_for_late.id, MATCHED)
    ]
    [revision] = result.revised
    assert revision.expectation == early
    assert revision.lost == exact_for_late
    assert revision.settled == Claim(early, farther)
    assert result.unclaimed == ()
    # With nothing else to settle on, the record that lost its event is missing.
    [alone] = match_events([late], [], [settled_before]).revised
    assert alone.settled is None


def test_a_blocked_record_waits_for_the_last_deadline_along_a_chain_of_holders() -> None:
    """A record posted late whose exact event is held by a record that can move only onto the
    event a third record holds waits for that third record's deadline, not the first
    holder's: the third record's payment comes after the first holder's deadline, both
    holders move, and all three match, as many as when all were posted at the start."""
    a, b, c = ADDRESSES

    def transfer(ledger: int, sender: str, recipient: str) -> ObservedEvent:
        return ObservedEvent(
            id=f"{ledger:019d}-{0:010d}",
            ledger=ledger,
            contract_id=CONTRACTS[0],
            name="transfer",
            tx_hash=TX_HASHES[0],
            topics=("transfer", sender, recipient),
            amount=5,
            successful=True,
        )

    def record(n: int, deadline: int, topics: tuple[tuple[int, str], ...]) -> Expectation:
        return Expectation(
            id=n,
            external_id=f"x{n}",
            contract_id=CONTRACTS[0],
            event_name="transfer",
            deadline_ledger=deadline,
            topics=topics,
            amount=5,
        )

    late = record(1, 3, ((1, a), (2, b)))
    from_a = record(2, 4, ((1, a),))
    to_c = record(3, 8, ((2, c),))
    events = [transfer(1, a, b), transfer(2, a, c), transfer(6, b, c)]
    world = Lifecycle([late, from_a, to_c], events)
    outcome = world.run({late.id: 2}, [2, 4, 6])
    assert outcome == Lifecycle([late, from_a, to_c], events).run({}, [])
    assert {x: status for x, (status, _) in outcome.items()} == {
        "x1": MATCHED,
        "x2": MATCHED,
        "x3": MATCHED,
    }
