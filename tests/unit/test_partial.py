"""Settlement by sums (partial.py): instalments and groups, as properties over random
instalment sets, batch cuts and posting moments."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from stellar_reconciler.matching import (
    AMOUNT_MISMATCH,
    MATCHED,
    MISSING_EXPECTED,
    PARTIALLY_MATCHED,
    PENDING,
    Expectation,
    ObservedEvent,
)
from stellar_reconciler.partial import SumState, SumTarget, settle_sums

CONTRACT = "CDLZFC3SYJYDZT7K67VZ75HPJVIEUVNIXF47ZG2FB2RMQQVU2HHGCYSC"
ALICE = "GAFCZPBOMB2PKPM6PKCXMITLXUL22A2T4PBYMKQS3VPYFI32B5RTHEKL"
LAST_LEDGER = 12


def member(
    n: int, memo: str, amount: int, deadline: int = LAST_LEDGER, tol: int = 0
) -> Expectation:
    return Expectation(
        id=n,
        external_id=f"x{n}",
        contract_id=CONTRACT,
        event_name="transfer",
        deadline_ledger=deadline,
        topics=((1, ALICE), (3, memo)),
        amount=amount,
        tolerance=tol,
    )


def paid(ledger: int, index: int, memo: str, amount: int) -> ObservedEvent:
    return ObservedEvent(
        id=f"{ledger << 32:019d}-{index:010d}",
        ledger=ledger,
        contract_id=CONTRACT,
        name="transfer",
        tx_hash=f"{ledger:02d}{index:062d}",
        topics=("transfer", ALICE, "G-somebody", memo),
        amount=amount,
    )


def partial_record(n: int, memo: str, amount: int, **kw: int) -> SumTarget:
    return SumTarget(f"record:x{n}", (member(n, memo, amount, **kw),))


def test_instalments_settle_partially_then_exactly() -> None:
    """100 paid as 30 + 50 + 20: partially_matched at 30 and 80, matched at 100."""
    target = partial_record(1, "m", 100)
    state = settle_sums([target], [paid(2, 0, "m", 30)], 2)[target.key]
    assert (state.status, state.settled, state.outstanding(target)) == (PARTIALLY_MATCHED, 30, 70)
    state = settle_sums([target], [paid(3, 0, "m", 50)], 3, {target.key: state})[target.key]
    assert (state.status, state.settled) == (PARTIALLY_MATCHED, 80)
    state = settle_sums([target], [paid(4, 0, "m", 20)], 4, {target.key: state})[target.key]
    assert (state.status, state.settled, state.outstanding(target)) == (MATCHED, 100, 0)
    assert [e.amount for e in state.parts] == [30, 50, 20]


def test_overshoot_waits_for_the_deadline_then_is_a_mismatch() -> None:
    """60 then 70 against 100: the 70 is not taken while the record is open; at the deadline
    the record settles amount_mismatch against it, difference +30."""
    target = partial_record(1, "m", 100, deadline=5)
    events = [paid(2, 0, "m", 60), paid(3, 0, "m", 70)]
    state = settle_sums([target], events, 3)[target.key]
    assert (state.status, state.settled, state.candidate) == (PARTIALLY_MATCHED, 60, events[1])
    state = settle_sums([target], [], 5, {target.key: state})[target.key]
    assert (state.status, state.overshoot, state.difference(target)) == (
        AMOUNT_MISMATCH,
        events[1],
        30,
    )


def test_short_at_the_deadline_is_a_mismatch_with_the_outstanding_amount() -> None:
    """40 of 100 by the deadline: amount_mismatch, difference -60; nothing at all: missing."""
    short, none = partial_record(1, "a", 100, deadline=5), partial_record(2, "b", 100, deadline=5)
    states = settle_sums([short, none], [paid(2, 0, "a", 40)], 5)
    assert (states[short.key].status, states[short.key].difference(short)) == (AMOUNT_MISMATCH, -60)
    assert states[none.key].status == MISSING_EXPECTED


def test_an_event_after_the_deadline_is_not_taken() -> None:
    """A payment in a ledger after the deadline never counts towards the sum."""
    target = partial_record(1, "m", 100, deadline=3)
    states = settle_sums([target], [paid(2, 0, "m", 50), paid(4, 0, "m", 50)], 4)
    assert (states[target.key].status, states[target.key].settled) == (AMOUNT_MISMATCH, 50)


def test_a_group_is_paid_by_one_transfer_or_by_several() -> None:
    """Three invoices (10, 20, 30) paid by one transfer of 60; a payout of 90 expected as
    two records paid by three transfers (40, 30, 20)."""
    invoices = SumTarget(
        "group:g1", (member(1, "g1", 10), member(2, "g1", 20), member(3, "g1", 30))
    )
    payout = SumTarget("group:g2", (member(4, "g2", 45), member(5, "g2", 45)))
    events = [paid(2, 0, "g1", 60), *(paid(3, i, "g2", a) for i, a in enumerate((40, 30, 20)))]
    states = settle_sums([invoices, payout], events, 3)
    assert states[invoices.key].status == MATCHED and states[invoices.key].settled == 60
    assert states[payout.key].status == MATCHED and len(states[payout.key].parts) == 3


def test_tolerance_is_the_members_sum() -> None:
    """Two members of 50 with tolerance 1 each: 98 is within the group's tolerance of 2."""
    group = SumTarget("group:g", (member(1, "g", 50, tol=1), member(2, "g", 50, tol=1)))
    assert settle_sums([group], [paid(2, 0, "g", 98)], 2)[group.key].status == MATCHED


# --- properties ------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    targets: tuple[SumTarget, ...]
    events: tuple[ObservedEvent, ...]


@st.composite
def splits(draw: st.DrawFn, total: int) -> list[int]:
    """A random split of `total` into positive instalments."""
    cuts = draw(st.lists(st.integers(1, total - 1), max_size=4, unique=True)) if total > 1 else []
    bounds = [0, *sorted(cuts), total]
    return [b - a for a, b in itertools.pairwise(bounds)]


@st.composite
def worlds(draw: st.DrawFn, compete: bool = False) -> World:
    """1-3 targets (partial records or groups of 2-3), each paid by a random split of its
    amount, sometimes short or with an extra payment; with `compete`, all share one memo."""
    targets: list[SumTarget] = []
    events: list[ObservedEvent] = []
    slot = 0
    for t in range(draw(st.integers(1, 3))):
        memo = "shared" if compete else f"memo{t}"
        deadline = draw(st.integers(2, LAST_LEDGER))
        amounts = draw(st.lists(st.integers(1, 60), min_size=1, max_size=3))
        members = tuple(member(10 * t + i + 1, memo, a, deadline) for i, a in enumerate(amounts))
        grouped = len(members) > 1
        targets.append(SumTarget(f"group:g{t}" if grouped else f"record:x{10 * t + 1}", members))
        payments = draw(splits(sum(amounts)))
        tweak = draw(st.sampled_from(["exact", "exact", "short", "extra"]))
        if tweak == "short":
            payments = payments[:-1]
        elif tweak == "extra":
            payments.append(draw(st.integers(1, 40)))
        for amount in payments:
            ledger = draw(st.integers(1, LAST_LEDGER))
            events.append(paid(ledger, slot, memo, amount))
            slot += 1
    return World(tuple(targets), tuple(sorted(events, key=lambda e: e.id)))


def run(world: World, cuts: Sequence[int], posted_at: Sequence[int]) -> dict[str, SumState]:
    """The store's life in miniature: batches end at `cuts`; target i is posted after the
    batch ending at ledger posted_at[i] (0: before any) and looks back at the unclaimed
    events stored by then, as store/partials.look_back_sums does."""
    # A record is posted between two batches: its moment ends one.
    ends = sorted({*cuts, *(at for at in posted_at if at), LAST_LEDGER})
    states: dict[str, SumState] = {}
    claimed: set[str] = set()
    posted: list[SumTarget] = []
    through = 0
    for end in [0, *ends]:
        if end > 0:
            arriving = [e for e in world.events if through < e.ledger <= end]
            changed = settle_sums(posted, arriving, end, states, claimed)
            states.update(changed)
            claimed.update(e.id for s in changed.values() for e in s.claimed)
            through = end
        new = [t for t, at in zip(world.targets, posted_at, strict=True) if at == end]
        if new:
            stored = [e for e in world.events if e.ledger <= through and e.id not in claimed]
            changed = settle_sums(new, stored, through, states, claimed)
            states.update(changed)
            claimed.update(e.id for s in changed.values() for e in s.claimed)
            posted.extend(new)
    return states


def statuses(world: World, states: dict[str, SumState]) -> dict[str, str]:
    return {t.key: states.get(t.key, SumState()).status for t in world.targets}


moments = st.lists(st.sampled_from([0, 3, 6, 9]), min_size=3, max_size=3)
cut_lists = st.lists(st.integers(1, LAST_LEDGER), max_size=6)


@given(worlds(), cut_lists, moments)
def test_batch_cuts_and_posting_moments_do_not_change_the_outcome(
    world: World, cuts: list[int], posted_at: list[int]
) -> None:
    """Whatever the batch cuts and whenever each record is posted (before its payments or
    after some or all of them), the final statuses and sums are those of one batch with
    every record posted first."""
    at = [*posted_at, 0, 0, 0][: len(world.targets)]
    reference = run(world, [], [0] * len(world.targets))
    other = run(world, cuts, at)
    assert statuses(world, other) == statuses(world, reference)
    for key, state in reference.items():
        assert {e.id for e in other[key].claimed} == {e.id for e in state.claimed}


@given(worlds(compete=True), cut_lists)
def test_sums_never_exceed_and_settle_exactly_at_the_amount(world: World, cuts: list[int]) -> None:
    """Even with every target competing for the same payments: no event is claimed twice; an
    open or matched sum never exceeds amount + tolerance, and is matched exactly when it
    reaches amount - tolerance; only an amount_mismatch carries an overshoot."""
    states = run(world, cuts, [0] * len(world.targets))
    seen: set[str] = set()
    for target in world.targets:
        state = states.get(target.key, SumState())
        ids = [e.id for e in state.claimed]
        assert not seen & set(ids) and len(ids) == len(set(ids))
        seen.update(ids)
        assert state.settled <= target.amount + target.tolerance
        assert (state.status == MATCHED) == (state.settled >= target.amount - target.tolerance)
        assert state.overshoot is None or state.status == AMOUNT_MISMATCH
        assert state.status in (MATCHED, AMOUNT_MISMATCH, MISSING_EXPECTED)
        assert (state.status == MISSING_EXPECTED) == (not ids)
        assert all(e.ledger <= target.deadline_ledger for e in state.claimed)


@given(worlds(), cut_lists)
def test_a_group_or_record_is_matched_whenever_its_payments_sum_to_its_amount(
    world: World, cuts: list[int]
) -> None:
    """A target whose payments due by its deadline add up to its amount is matched, whether
    it is one record paid in instalments, several records paid by one transfer or by
    several; one whose payments fall short is not."""
    states = run(world, cuts, [0] * len(world.targets))
    for target in world.targets:
        memo = target.members[0].topics[1][1]
        due = [
            e for e in world.events if e.topics[3] == memo and e.ledger <= target.deadline_ledger
        ]
        total = sum(e.amount or 0 for e in due)
        if total == target.amount:
            assert states[target.key].status == MATCHED
        if total < target.amount:
            assert states[target.key].status != MATCHED
    assert all(s.status != PENDING for s in states.values())
