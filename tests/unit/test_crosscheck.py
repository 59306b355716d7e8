"""crosscheck.judge: three sources vote per ledger; the outvoted one is named with what differs."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stellar_reconciler.crosscheck import SourceRead, cleared, judge
from stellar_reconciler.reconcile import EventFingerprint

FIRST, LAST = 100, 104


def event(ledger: int, index: int, value: str = "AAAAAw==") -> EventFingerprint:
    return EventFingerprint(
        id=f"{ledger:019d}-{index:010d}",
        ledger=ledger,
        contract_id="C" * 56,
        type="contract",
        tx_hash="ab" * 32,
        topics_xdr=("AAAADwAAAAh0cmFuc2Zlcg==",),
        value_xdr=value,
    )


def history() -> SourceRead:
    events = [event(ledger, i) for ledger in range(FIRST, LAST + 1) for i in range(3)]
    return SourceRead(events, {ledger: f"{ledger:064x}" for ledger in range(FIRST, LAST + 1)})


def changed_value(read: SourceRead, ledger: int, index: int) -> SourceRead:
    events = [
        dataclasses.replace(e, value_xdr="AAAAAQ==")
        if (e.ledger, e.id) == (ledger, event(ledger, index).id)
        else e
        for e in read.events
    ]
    return SourceRead(events, read.hashes)


def test_all_agree_is_no_finding() -> None:
    """Store, RPC and lake with the same events and hashes: nothing is named."""
    assert judge(FIRST, LAST, {"store": history(), "rpc": history(), "lake": history()}) == []


def test_a_lake_ledger_that_differs_names_the_lake() -> None:
    """One changed event value in the lake's ledger 102: the lake is named for 102 alone,
    with the event id as changed and the store and RPC as the agreeing pair."""
    lake = changed_value(history(), 102, 1)
    [finding] = judge(FIRST, LAST, {"store": history(), "rpc": history(), "lake": lake})
    assert (finding.ledger, finding.source, finding.agreeing) == (102, "lake", ("store", "rpc"))
    assert finding.changed == (event(102, 1).id,) and not finding.missing and not finding.extra
    assert not finding.hash_differs
    record = finding.discrepancy()
    assert record.kind == "source_mismatch" and record.key == "source_mismatch:lake:102"
    assert record.subject == "lake" and record.found["changed"] == [event(102, 1).id]
    assert "the lake disagrees with store and rpc" in record.message


def test_an_rpc_that_lies_is_outvoted_by_store_and_lake() -> None:
    """The RPC leaves an event out and serves another hash for 103: it is named, the event as
    missing from it and both hashes shown."""
    base = history()
    rpc = SourceRead(
        [e for e in base.events if e.id != event(103, 2).id],
        {**base.hashes, 103: "f" * 64},
    )
    [finding] = judge(FIRST, LAST, {"store": history(), "rpc": rpc, "lake": history()})
    assert (finding.source, finding.agreeing) == ("rpc", ("store", "lake"))
    assert finding.missing == (event(103, 2).id,) and finding.hash_differs
    assert finding.discrepancy().found["hashes"]["rpc"] == "f" * 64


def test_a_store_outvoted_by_rpc_and_lake_is_named_store() -> None:
    """The store holds an extra event the RPC and the lake agree is not there: store named."""
    store = history()
    store = SourceRead([*store.events, event(101, 9)], store.hashes)
    [finding] = judge(FIRST, LAST, {"store": store, "rpc": history(), "lake": history()})
    assert (finding.source, finding.agreeing) == ("store", ("rpc", "lake"))
    # Differences are those of the named source against the majority: the store adds one.
    assert finding.extra == (event(101, 9).id,)


def test_no_two_agree_names_none_and_two_sources_name_the_other() -> None:
    """Three different copies name no one; with the store and the lake only, the lake."""
    rpc, lake = changed_value(history(), 100, 0), changed_value(history(), 100, 1)
    lake = SourceRead(lake.events, {**lake.hashes, 100: "e" * 64})
    [three] = judge(FIRST, LAST, {"store": history(), "rpc": rpc, "lake": lake})
    assert three.source == "none" and three.agreeing == ()
    assert "no two agree" in three.discrepancy().message
    [two] = judge(FIRST, LAST, {"store": history(), "lake": lake})
    assert (two.source, two.agreeing) == ("lake", ("store",))


def test_ledgers_the_store_lacks_are_not_judged() -> None:
    """A ledger missing from the store is a gap, not a disagreement of the sources."""
    store = history()
    store = SourceRead(
        [e for e in store.events if e.ledger != 104],
        {k: v for k, v in store.hashes.items() if k != 104},
    )
    assert judge(FIRST, LAST, {"store": store, "rpc": history(), "lake": history()}) == []


def test_judge_needs_the_store() -> None:
    """Without the store (or with it alone) there is nothing to judge."""
    with pytest.raises(ValueError, match="store"):
        judge(FIRST, LAST, {"rpc": history(), "lake": history()})
    with pytest.raises(ValueError, match="store"):
        judge(FIRST, LAST, {"store": history()})


@given(
    odd=st.sampled_from(["store", "rpc", "lake"]),
    ledger=st.integers(FIRST, LAST),
    index=st.integers(0, 2),
    hash_too=st.booleans(),
)
def test_whichever_source_differs_alone_is_the_one_named(
    odd: str, ledger: int, index: int, hash_too: bool
) -> None:
    """Any one source changed on any one ledger (an event, and perhaps the hash): exactly
    that source and ledger are named, by the other two."""
    sources = {name: history() for name in ("store", "rpc", "lake")}
    changed = changed_value(sources[odd], ledger, index)
    if hash_too:
        changed = SourceRead(changed.events, {**changed.hashes, ledger: "0" * 64})
    sources[odd] = changed
    [finding] = judge(FIRST, LAST, sources)
    assert (finding.ledger, finding.source) == (ledger, odd)
    assert set(finding.agreeing) == {"store", "rpc", "lake"} - {odd}
    assert finding.changed == (event(ledger, index).id,)
    assert finding.hash_differs is hash_too


def test_a_record_is_cleared_only_by_a_vote_that_could_have_caught_it() -> None:
    """A record naming the lake is cleared by any vote the lake took part in; one naming the
    RPC needs the RPC; one naming the store or no one needs all three sources."""
    three = {name: history() for name in ("store", "rpc", "lake")}
    store_and_lake = {name: history() for name in ("store", "lake")}
    assert cleared("lake", three) and cleared("lake", store_and_lake)
    assert cleared("rpc", three) and not cleared("rpc", store_and_lake)
    for named in ("store", "none"):
        assert cleared(named, three) and not cleared(named, store_and_lake)
