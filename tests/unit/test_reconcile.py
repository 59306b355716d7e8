"""Property tests of the pure reconciliation logic: ranges, gaps and digests."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from stellar_reconciler.reconcile import (
    EventFingerprint,
    compare_ranges,
    ledger_digests,
    split_range,
    subtract_ranges,
)

sequences = st.sets(st.integers(min_value=1, max_value=400), min_size=1, max_size=120)
ranges = st.lists(
    st.tuples(st.integers(1, 300), st.integers(0, 40)).map(lambda t: (t[0], t[0] + t[1])),
    max_size=6,
)


def covered(rs: list[tuple[int, int]]) -> set[int]:
    return {n for a, b in rs for n in range(a, b + 1)}


@given(ranges, ranges)
def test_subtracting_ranges_is_set_difference(
    base: list[tuple[int, int]], cut: list[tuple[int, int]]
) -> None:
    """subtract_ranges covers exactly the numbers in base and not in cut."""
    result = subtract_ranges(base, cut)
    assert covered(result) == covered(base) - covered(cut)
    assert all(a <= b for a, b in result)


@given(st.integers(1, 10_000), st.integers(0, 5_000), st.integers(1, 700))
def test_split_range_covers_in_order_without_overlap(first: int, span: int, size: int) -> None:
    """split_range pieces are consecutive, at most `size` long, and cover the whole range."""
    pieces = split_range(first, first + span, size)
    assert pieces[0][0] == first and pieces[-1][1] == first + span
    assert all(b - a + 1 <= size for a, b in pieces)
    assert all(b + 1 == a2 for (_, b), (a2, _) in itertools.pairwise(pieces))


def fingerprint(ledger: int, index: int, value: str = "v") -> EventFingerprint:
    return EventFingerprint(
        id=f"{ledger << 32:019d}-{index:010d}",
        ledger=ledger,
        contract_id="C",
        type="contract",
        tx_hash="aa",
        topics_xdr=("t",),
        value_xdr=value,
    )


event_sets = st.lists(
    st.tuples(st.integers(10, 30), st.integers(0, 5)), max_size=40, unique=True
).map(lambda pairs: [fingerprint(ledger, index) for ledger, index in pairs])


@given(event_sets, st.permutations(list(range(40))))
def test_digests_ignore_order_and_identical_ranges_match(
    events: list[EventFingerprint], order: list[int]
) -> None:
    """The same events in any order give the same digests, and compare as matching."""
    shuffled = [events[i] for i in order if i < len(events)]
    assert ledger_digests(events, 10, 30) == ledger_digests(shuffled, 10, 30)
    assert compare_ranges(10, 30, events, shuffled).matches


@given(event_sets, st.data())
def test_any_single_difference_is_found_at_its_ledger(
    events: list[EventFingerprint], data: st.DataObject
) -> None:
    """Dropping, adding or changing one event is reported at exactly that event's ledger."""
    if not events:
        events = [fingerprint(20, 0)]
    victim = data.draw(st.sampled_from(events))
    change = data.draw(st.sampled_from(["drop", "add", "change"]))
    if change == "drop":
        network = [e for e in events if e != victim]
    elif change == "add":
        extra = fingerprint(victim.ledger, 99)
        network = [*events, extra]
    else:
        network = [
            e if e != victim else fingerprint(e.ledger, int(e.id[-10:]), "other") for e in events
        ]
    comparison = compare_ranges(10, 30, events, network)
    assert [d.ledger for d in comparison.diffs] == [victim.ledger]
    diff = comparison.diffs[0]
    if change == "drop":
        assert diff.unexpected == (victim.id,) and not diff.missing
    elif change == "add":
        assert diff.missing == (fingerprint(victim.ledger, 99).id,)
    else:
        assert diff.changed == (victim.id,)


@given(
    st.dictionaries(
        st.integers(10, 30), st.text("0123456789abcdef", min_size=4, max_size=4), max_size=21
    )
)
def test_hash_differences_are_reported_even_when_events_agree(hashes: dict[int, str]) -> None:
    """A ledger whose hash differs is a difference, whatever its events say."""
    network = {ledger: h + "x" for ledger, h in hashes.items()}
    comparison = compare_ranges(10, 30, [], [], hashes, network)
    assert sorted(d.ledger for d in comparison.diffs) == sorted(hashes)
