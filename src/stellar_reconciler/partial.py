"""Settlement by sums: a record paid in instalments, or a group of records paid as a whole.

Some payments do not arrive as one event per record. A record posted with `allow_partial` is
paid by several events (milestones, instalments) until their sum reaches its amount; a
**group** (records posted with one `group_id`) is paid as a whole, by one event carrying the
sum of its records (several invoices settled by one transfer) or by several events together
(one payout sent as several transfers). Both are a `SumTarget`: its amount and tolerance are
the sums of its members', an event fits it when it fits one member (matching.Expectation.fits)
and carries a positive amount. Pure: no I/O, so Hypothesis can test it.

The rules (`settle_sums` applies them; the store's hook and look-back call it):

- Events are offered in id order (ledger order), each to the open targets it fits in
  `priority` order (earliest deadline, smallest tolerance, key), and taken by the first one it
  does not carry past amount + tolerance. Taken events are claimed for good: an event
  settles one record or group at most.
- Once the sum taken reaches amount - tolerance the target is `matched`; before that it is
  `partially_matched` (with the amounts settled and outstanding). The sum never exceeds
  amount + tolerance while the target is open.
- An event that would carry it past amount + tolerance is not taken (it may be another
  record's) but kept as the target's candidate (the first such). At the deadline a target
  still short settles `amount_mismatch`: against that candidate when nobody claimed it
  meanwhile (an overshoot: difference = sum with it - amount > 0), else against what it has
  (difference = settled - amount < 0, the outstanding amount), or `missing_expected` when
  nothing at all arrived.
- Every event is offered once, in id order, whatever the batch it arrives in, so cutting
  ledgers into batches changes nothing; a record posted after its events looks back at the
  same events in the same order, so when it competes with no one it settles as if it had
  been posted first.
- Competing records are served in that order among those posted at the time: a record
  posted later is offered only what no record holds (sums never move, unlike one-event
  claims in assignment.py). Within a batch, sums are offered its events before the
  one-event records are (store/partials.py runs first in the hook).
- A group is the members posted so far: nothing says more are coming. Posted in parts, it
  takes what fits the smaller sum and keeps it when a member joins, and once that sum is
  reached it is matched and takes no member (store/groups.py), so its outcome may differ
  from the group posted whole. Only a size declared up front, or every group held open to
  its deadline (retracting a published `matched` when a member joins), would avoid that;
  the README asks for groups to be posted whole instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from stellar_reconciler.matching import (
    AMOUNT_MISMATCH,
    MATCHED,
    MISSING_EXPECTED,
    PARTIALLY_MATCHED,
    PENDING,
    Expectation,
    ObservedEvent,
)

OPEN = (PENDING, PARTIALLY_MATCHED)
# Sum records are stored with this prefix on their match key, so the one-event matching of
# store/settlement.py (which looks records up by match key) never sees them.
SUM_KEY_PREFIX = "sum:"


@dataclass(frozen=True, slots=True)
class SumTarget:
    """A partial record (key `record:<external_id>`) or a group (`group:<group_id>`)."""

    key: str
    members: tuple[Expectation, ...]

    @property
    def amount(self) -> int:
        return sum(m.amount or 0 for m in self.members)

    @property
    def tolerance(self) -> int:
        return sum(m.tolerance for m in self.members)

    @property
    def deadline_ledger(self) -> int:
        return max(m.deadline_ledger for m in self.members)

    @property
    def lead(self) -> Expectation:
        """The member whose row carries the target's candidate: the first by priority."""
        return min(self.members, key=_member_order)

    def fits(self, event: ObservedEvent) -> bool:
        return (
            event.amount is not None
            and event.amount > 0
            and any(member.fits(event) for member in self.members)
        )


def _member_order(member: Expectation) -> tuple[int, int, str]:
    return (member.deadline_ledger, member.tolerance, member.external_id)


def priority(target: SumTarget) -> tuple[int, int, str]:
    """Who is offered an event first; never the order of posting."""
    return (target.deadline_ledger, target.tolerance, target.key)


@dataclass(frozen=True, slots=True)
class SumState:
    """Where a target stands: the events it took, its candidate, its status."""

    status: str = PENDING
    parts: tuple[ObservedEvent, ...] = ()
    candidate: ObservedEvent | None = None
    # The overshooting event claimed at the deadline (amount_mismatch), if any.
    overshoot: ObservedEvent | None = None

    @property
    def settled(self) -> int:
        return sum(e.amount or 0 for e in self.parts)

    @property
    def claimed(self) -> tuple[ObservedEvent, ...]:
        return (*self.parts, self.overshoot) if self.overshoot is not None else self.parts

    def difference(self, target: SumTarget) -> int:
        """Found - expected: negative while short (minus the outstanding amount)."""
        found = self.settled + (self.overshoot.amount or 0 if self.overshoot else 0)
        return found - target.amount

    def outstanding(self, target: SumTarget) -> int:
        return max(target.amount - self.settled, 0)


@dataclass(slots=True)
class _Round:
    targets: dict[str, SumTarget]
    states: dict[str, SumState]
    claimed: set[str]
    changed: set[str] = field(default_factory=set)


def offer(target: SumTarget, state: SumState, event: ObservedEvent) -> SumState | None:
    """What `target` does with a fitting event: the new state, or None when it passes."""
    if state.status not in OPEN or not target.fits(event):
        return None
    total = state.settled + (event.amount or 0)
    if total > target.amount + target.tolerance:
        return replace(state, candidate=event) if state.candidate is None else None
    status = MATCHED if total >= target.amount - target.tolerance else PARTIALLY_MATCHED
    return replace(state, status=status, parts=(*state.parts, event))


def close(target: SumTarget, state: SumState, claimed: set[str]) -> SumState:
    """A target whose deadline ledger is processed: matched stays, the rest settles."""
    if state.status not in OPEN:
        return state
    candidate = state.candidate
    if candidate is not None and candidate.id not in claimed:
        return replace(state, status=AMOUNT_MISMATCH, overshoot=candidate)
    if state.parts:
        return replace(state, status=AMOUNT_MISMATCH)
    return replace(state, status=MISSING_EXPECTED)


def settle_sums(
    targets: Iterable[SumTarget],
    events: Iterable[ObservedEvent],
    through_ledger: int,
    states: Mapping[str, SumState] | None = None,
    claimed: Iterable[str] = (),
) -> dict[str, SumState]:
    """Offer `events` (the unclaimed ones of interest) to `targets`, then close the targets
    whose deadline `through_ledger` passed. `states`: where each target stood before;
    `claimed`: event ids others hold. Returns the new state of every target that changed."""
    by_priority = sorted(targets, key=priority)
    round_ = _Round(
        targets={t.key: t for t in by_priority},
        states={t.key: (states or {}).get(t.key, SumState()) for t in by_priority},
        claimed=set(claimed),
    )
    for event in sorted({e.id: e for e in events}.values(), key=lambda e: e.id):
        if event.id in round_.claimed or not event.successful:
            continue
        for target in by_priority:
            after = offer(target, round_.states[target.key], event)
            if after is None:
                continue
            round_.states[target.key] = after
            round_.changed.add(target.key)
            if after.parts and after.parts[-1].id == event.id:
                round_.claimed.add(event.id)
                break
    for target in by_priority:
        if target.deadline_ledger > through_ledger:
            continue
        before = round_.states[target.key]
        after = close(target, before, round_.claimed)
        if after != before:
            round_.states[target.key] = after
            round_.changed.add(target.key)
            if after.overshoot is not None:
                round_.claimed.add(after.overshoot.id)
    return {key: round_.states[key] for key in round_.changed}
