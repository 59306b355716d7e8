"""plan_next, the worker's next step from its checkpoint: properties and worked examples."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stellar_reconciler.models import BlockKind
from stellar_reconciler.plan import (
    Blocked,
    Consent,
    Idle,
    Plan,
    Proceed,
    Rebase,
    Skip,
    Start,
    plan_next,
)


@st.composite
def situations(draw: st.DrawFn) -> tuple[int, int, int, Start, Consent | None]:
    """A checkpoint, the RPC's tip and oldest ledger (oldest <= tip), a start rule and maybe
    a consent, often naming the gap just after the checkpoint and often not."""
    oldest = draw(st.integers(1, 5000))
    tip = oldest + draw(st.integers(0, 500))
    # How far the checkpoint is behind the window (negative: inside it, or past the tip).
    behind = draw(st.integers(-(tip - oldest) - 50, 300))
    checkpoint = max(0, oldest - 1 - behind)
    start = draw(st.sampled_from(Start))
    next_ledger = checkpoint + 1
    consent = draw(
        st.none()
        | st.builds(
            Consent,
            id=st.integers(1, 100),
            first_ledger=st.just(next_ledger)
            | st.integers(-20, 20).map(lambda d: max(1, next_ledger + d))
            | st.integers(1, tip + 50),
            through_ledger=st.none() | st.integers(-5, 400).map(lambda d: max(1, next_ledger + d)),
            requested_by=st.just("admin:test"),
        )
    )
    return checkpoint, tip, oldest, start, consent


def plan(situation: tuple[int, int, int, Start, Consent | None]) -> Plan:
    return plan_next(*situation)


@given(situations())
def test_never_skips_a_ledger_without_a_consent_naming_and_covering_it(
    situation: tuple[int, int, int, Start, Consent | None],
) -> None:
    """A skip starts at checkpoint + 1, is covered by a consent that names exactly that gap,
    stays within its limit, and never reaches a ledger the RPC still has."""
    checkpoint, _tip, oldest, _start, consent = situation
    step = plan(situation)
    if isinstance(step, Skip):
        assert consent is not None and step.consent == consent
        assert step.first == checkpoint + 1 == consent.first_ledger
        assert step.first <= step.last <= oldest - 1
        assert consent.through_ledger is None or step.last <= consent.through_ledger


@given(situations())
def test_never_proceeds_below_the_oldest_and_always_contiguously(
    situation: tuple[int, int, int, Start, Consent | None],
) -> None:
    """Indexing starts exactly at checkpoint + 1, within the window, and runs to the tip."""
    checkpoint, tip, oldest, _start, _consent = situation
    step = plan(situation)
    if isinstance(step, Proceed):
        assert step.first == checkpoint + 1
        assert oldest <= step.first <= step.last == tip


@given(situations())
def test_each_situation_has_exactly_the_step_its_facts_call_for(
    situation: tuple[int, int, int, Start, Consent | None],
) -> None:
    """Behind the window: rebase (empty stream following the oldest), skip or block; within
    it: idle at the tip, else proceed. A consent never changes a plan within the window."""
    checkpoint, tip, oldest, start, _consent = situation
    step = plan(situation)
    behind = checkpoint + 1 < oldest
    if not behind:
        assert isinstance(step, Idle if checkpoint >= tip else Proceed)
        assert step == plan_next(checkpoint, tip, oldest, start, None)
    elif start is Start.OLDEST_WHILE_EMPTY:
        assert step == Rebase(checkpoint=oldest - 1)
    else:
        assert isinstance(step, Skip | Blocked)


@given(situations())
def test_blocked_names_the_exact_lost_range(
    situation: tuple[int, int, int, Start, Consent | None],
) -> None:
    """A block reports every lost ledger from checkpoint + 1 to oldest - 1, as a retention gap,
    and happens only when no consent names this gap with a limit reaching into it."""
    checkpoint, _tip, oldest, _start, consent = situation
    step = plan(situation)
    if isinstance(step, Blocked):
        assert (step.first, step.last) == (checkpoint + 1, oldest - 1)
        assert step.oldest_available == oldest
        assert step.kind is BlockKind.RETENTION_GAP
        assert (
            consent is None
            or consent.first_ledger != step.first
            or (consent.through_ledger is not None and consent.through_ledger < step.first)
        )


@given(situations())
def test_after_carrying_out_a_step_the_next_one_continues_where_it_ended(
    situation: tuple[int, int, int, Start, Consent | None],
) -> None:
    """Once a rebase or skip is done (and the consent used), the next plan starts at the
    ledger right after it and is never another skip: one consent, one skip."""
    _checkpoint, tip, oldest, _start, _consent = situation
    step = plan(situation)
    if isinstance(step, Rebase | Skip):
        moved_to = step.checkpoint if isinstance(step, Rebase) else step.last
        following = plan_next(moved_to, tip, oldest, Start.FIXED, None)
        assert not isinstance(following, Skip | Rebase)
        first = following.next_ledger if isinstance(following, Idle) else following.first
        assert first == moved_to + 1


@given(
    st.lists(st.tuples(st.integers(0, 30), st.integers(0, 40)), min_size=1, max_size=25),
    st.integers(0, 25),
)
def test_following_a_sliding_window_loses_only_consented_ledgers(
    polls: list[tuple[int, int]], consent_at: int
) -> None:
    """Simulated polls of a moving window, carrying out each plan, with one consent given
    while blocked: every ledger from the start is indexed or skipped exactly once, in order,
    and every skipped ledger lies in the one gap the consent named."""
    checkpoint, tip, oldest = 100, 100, 90
    handled: list[int] = []
    skipped: list[int] = []
    consent: Consent | None = None
    named: int | None = None
    for index, (advance, slide) in enumerate(polls):
        tip += advance
        oldest = min(tip, oldest + slide)
        step = plan_next(checkpoint, tip, oldest, Start.FIXED, consent)
        if isinstance(step, Blocked) and index >= consent_at and named is None:
            named = step.first
            consent = Consent(1, step.first, None, "admin:test")
            step = plan_next(checkpoint, tip, oldest, Start.FIXED, consent)
        if isinstance(step, Skip):
            skipped.extend(range(step.first, step.last + 1))
            handled.extend(range(step.first, step.last + 1))
            checkpoint, consent = step.last, None
            step = plan_next(checkpoint, tip, oldest, Start.FIXED, None)
        if isinstance(step, Proceed):
            handled.extend(range(step.first, step.last + 1))
            checkpoint = step.last
    assert handled == list(range(101, checkpoint + 1))
    if skipped:
        assert named == skipped[0] and skipped == list(range(skipped[0], skipped[-1] + 1))


def test_examples() -> None:
    """Worked cases: the reported scenario's window passing a synced checkpoint, and more."""
    consent = Consent(7, first_ledger=2960, through_ledger=None, requested_by="admin:ab")
    # Synced at 2959; the window passes it: blocked with the exact range, nothing skipped.
    assert plan_next(2959, 3100, 2970, Start.FIXED, None) == Blocked(
        2960, 2969, BlockKind.RETENTION_GAP
    )
    # The consent names that gap: exactly 2960-2969 are skipped.
    assert plan_next(2959, 3100, 2970, Start.FIXED, consent) == Skip(2960, 2969, consent)
    # A consent for another gap (the one given earlier with no gap at all) skips nothing.
    stale = Consent(3, first_ledger=2000, through_ledger=None, requested_by="admin:ab")
    assert isinstance(plan_next(2959, 3100, 2970, Start.FIXED, stale), Blocked)
    # A limit stops the skip short; the rest is blocked at the next plan.
    limited = Consent(8, first_ledger=2960, through_ledger=2964, requested_by="cli")
    assert plan_next(2959, 3100, 2970, Start.FIXED, limited) == Skip(2960, 2964, limited)
    assert plan_next(2964, 3100, 2970, Start.FIXED, None) == Blocked(
        2965, 2969, BlockKind.RETENTION_GAP
    )
    # A limit past the window's oldest never skips a ledger the RPC still has.
    generous = Consent(9, first_ledger=2960, through_ledger=5000, requested_by="cli")
    assert plan_next(2959, 3100, 2970, Start.FIXED, generous) == Skip(2960, 2969, generous)
    # Within the window the consent does nothing.
    assert plan_next(2969, 3100, 2970, Start.FIXED, generous) == Proceed(2970, 3100)
    assert plan_next(3100, 3100, 2970, Start.FIXED, generous) == Idle(3101)
    # An empty stream started at "oldest" follows the window instead of reporting a gap.
    assert plan_next(999, 1300, 1200, Start.OLDEST_WHILE_EMPTY, None) == Rebase(1199)
    # A node behind our checkpoint (the head moved back) is waited out, not re-indexed.
    assert plan_next(3200, 3100, 2970, Start.FIXED, None) == Idle(3201)
