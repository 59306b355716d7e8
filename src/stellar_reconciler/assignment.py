"""Assignment: which events settle which expected records, by the rules in matching.py.

Exact claims form a maximum matching grown one expectation at a time by augmenting paths
(`_augment`), so an expectation that needs an event another holds gets it when the holder can
move to an exact event of its own. An event settled as an amount mismatch is no bar to an
exact claim: a record posted later that fits it exactly takes it, and the record that lost it
is settled again (`Revision`), so the number matched never depends on the order records were
posted in. `settle_ledgers` applies the rules ledger by ledger, as the store's batch hook
does; `match_events` makes one round, as posting a record late does. Pure: the property tests
run it against a model of the whole lifecycle.

How ties break: among assignments that match as many records, a record matched before keeps
its match (it may move to another exact event, never back to pending: a reported `matched`
is never taken back), and records tried together go in `priority` order. What never taking
a match back costs is paid in time, not in false alarms: a pending record whose exact event
a record with a later deadline holds does not settle at its own deadline but waits for the
holder's (`held_until`), because that holder may still move to an event yet to come and
free it. So how many records match does not depend on when they were posted, and the
number in each status not on the order of records posted together (the property tests).
Amount mismatches are settled against the closest unclaimed candidate at the deadline,
looked for again in the store (`closest`) when another record took the one shown.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from stellar_reconciler.matching import MATCHED, Claim, Expectation, ObservedEvent


@dataclass(frozen=True, slots=True)
class Revision:
    """A record settled as an amount mismatch whose event a later record fits exactly: it lost
    the event, and is settled again against its closest unclaimed candidate (`settled`, an
    amount mismatch) or, with none left, as missing."""

    expectation: Expectation
    lost: ObservedEvent
    settled: Claim | None


@dataclass(frozen=True, slots=True)
class MatchResult:
    # Pending expectations now matched exactly, in priority order.
    claims: tuple[Claim, ...]
    # Expectations matched before (`held`) that moved to another exact event to free theirs.
    moved: tuple[Claim, ...]
    # For each expectation still pending, the closest non-exact event not claimed: what it
    # will settle against as amount_mismatch if nothing exact arrives by its deadline.
    candidates: tuple[Claim, ...]
    # Expectations still pending although an exact event exists: others hold all of theirs.
    blocked: tuple[Expectation, ...]
    # Events no expectation holds, in id order.
    unclaimed: tuple[ObservedEvent, ...]
    # Amount mismatches settled before whose event an exact claim took.
    revised: tuple[Revision, ...] = ()


def priority(expectation: Expectation) -> tuple[int, int, str, int]:
    """Who tries first: the earliest deadline, then the pickiest (smallest tolerance), then the
    external id, so that ties break the same way whatever order records were posted in."""
    return (
        expectation.deadline_ledger,
        expectation.tolerance,
        expectation.external_id,
        expectation.id,
    )


class _EventIndex:
    """Events by (contract, name, match key), so each expectation scans only what could fit."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str, str], list[ObservedEvent]] = defaultdict(list)
        self._by_amount: dict[tuple[str, str, str, int], list[ObservedEvent]] = defaultdict(list)

    def add(self, events: Iterable[ObservedEvent]) -> None:
        for event in events:
            if not event.successful or event.name is None:
                continue
            for key in event.match_keys():
                self._by_key[(event.contract_id, event.name, key)].append(event)
                if event.amount is not None:
                    self._by_amount[(event.contract_id, event.name, key, event.amount)].append(
                        event
                    )

    def fitting(self, expectation: Expectation) -> list[ObservedEvent]:
        key = (expectation.contract_id, expectation.event_name, expectation.key)
        return [e for e in self._by_key.get(key, ()) if expectation.fits(e)]

    def exact(self, expectation: Expectation) -> list[ObservedEvent]:
        """Fitting events within tolerance, earliest first."""
        if expectation.amount is not None and expectation.tolerance == 0:
            group = (
                expectation.contract_id,
                expectation.event_name,
                expectation.key,
                expectation.amount,
            )
            return [e for e in self._by_amount.get(group, ()) if expectation.fits(e)]
        return [e for e in self.fitting(expectation) if expectation.within_tolerance(e.amount)]


class _Board:
    """One matching in progress: the events seen so far, indexed, who holds which exactly
    (`owner`, `current`), and the events settled as amount mismatches (`settled`): nobody moves
    onto those, but a record with no other way to an exact event takes one (see settle)."""

    def __init__(self, held: Iterable[Claim]) -> None:
        held = list(held)
        self.index = _EventIndex()
        self.index.add(c.event for c in held)
        self.held = [c for c in held if c.status == MATCHED]
        self.owner: dict[str, Expectation] = {c.event.id: c.expectation for c in self.held}
        self.current: dict[int, ObservedEvent] = {c.expectation.id: c.event for c in self.held}
        self.settled: dict[str, Claim] = {c.event.id: c for c in held if c.status != MATCHED}
        self.revised: dict[int, Revision] = {}
        self._exact: dict[int, list[ObservedEvent]] = {}

    def add(self, events: Iterable[ObservedEvent]) -> None:
        self.index.add(events)
        self._exact.clear()

    def exact(self, expectation: Expectation) -> list[ObservedEvent]:
        found = self._exact.get(expectation.id)
        if found is None:
            found = self._exact[expectation.id] = [
                e for e in self.index.exact(expectation) if e.id not in self.settled
            ]
        return found

    def exact_or_settled(self, expectation: Expectation) -> list[ObservedEvent]:
        return self.index.exact(expectation)

    def held_until(self, expectation: Expectation) -> int:
        """See the module's held_until: over the holders this board knows."""
        return latest_in_reach(expectation, self._holders_of)

    def _holders_of(self, wanted: Expectation) -> Iterator[Expectation]:
        for event in self.index.exact(wanted):
            holder = self.owner.get(event.id)
            if holder is not None:
                yield holder

    def claimed(self, event_id: str) -> bool:
        return event_id in self.owner or event_id in self.settled

    def settle_mismatch(self, claim: Claim) -> None:
        self.settled[claim.event.id] = claim
        self._exact.clear()

    def settle(self, pending: Iterable[Expectation]) -> MatchResult:
        """Try each pending expectation in priority order (see match_events): first without
        touching amount mismatches, then, when that fails, taking a mismatch's event."""
        waiting = sorted(
            {x.id: x for x in pending if x.id not in self.current}.values(), key=priority
        )
        displaced: list[Claim] = []
        for expectation in waiting:
            if _augment(expectation, self.exact, self.owner, self.current):
                continue
            if not self.settled:
                continue
            if _augment(expectation, self.exact_or_settled, self.owner, self.current):
                taken = [c for event_id, c in self.settled.items() if event_id in self.owner]
                for claim in taken:
                    del self.settled[claim.event.id]
                displaced.extend(taken)
                self._exact.clear()
        claims = tuple(Claim(x, self.current[x.id]) for x in waiting if x.id in self.current)
        for claim in sorted(displaced, key=lambda c: priority(c.expectation)):
            again = self._closest_free(claim.expectation)
            if again is not None:
                self.settle_mismatch(again)
            self.revised[claim.expectation.id] = Revision(claim.expectation, claim.event, again)
        candidates = []
        blocked = []
        for expectation in waiting:
            if expectation.id in self.current:
                continue
            if self.exact(expectation):
                blocked.append(expectation)
            best = self._closest_free(expectation)
            if best is not None:
                candidates.append(best)
        return MatchResult(claims, self.moved(), tuple(candidates), tuple(blocked), ())

    def _closest_free(self, expectation: Expectation) -> Claim | None:
        free = [e for e in self.index.fitting(expectation) if not self.claimed(e.id)]
        return closest_of(expectation, free)

    def moved(self) -> tuple[Claim, ...]:
        return tuple(
            Claim(c.expectation, self.current[c.expectation.id])
            for c in self.held
            if self.current[c.expectation.id].id != c.event.id
        )


def held_until(expectation: Expectation, held: Iterable[Claim]) -> int:
    """The latest deadline among the matched records of `held` that could free an exact event
    for `expectation` (0 if none): the holders of its exact events, and the holders of the
    events those could move to, and so on. Until then one of them may move onto an event
    still to come and start the chain of moves that frees one, so a blocked record's verdict
    waits for it rather than cry wolf."""
    claims = [c for c in held if c.status == MATCHED]

    def holders_of(wanted: Expectation) -> Iterator[Expectation]:
        for c in claims:
            if wanted.fits(c.event) and wanted.within_tolerance(c.event.amount):
                yield c.expectation

    return latest_in_reach(expectation, holders_of)


def latest_in_reach(
    expectation: Expectation,
    holders_of: Callable[[Expectation], Iterable[Expectation]],
    rounds: int | None = None,
) -> int:
    """The latest deadline among the records reachable from `expectation` by `holders_of`
    (who holds an exact event of a record), walked breadth first for at most `rounds` steps
    (all, by default); 0 if none. held_until's walk, for callers that find holders elsewhere
    (the store, from the database)."""
    latest, seen, frontier = 0, {expectation.id}, [expectation]
    while frontier and rounds != 0:
        reached = []
        for wanted in frontier:
            for holder in holders_of(wanted):
                if holder.id not in seen:
                    seen.add(holder.id)
                    latest = max(latest, holder.deadline_ledger)
                    reached.append(holder)
        frontier = reached
        rounds = None if rounds is None else rounds - 1
    return latest


def match_events(
    pending: Iterable[Expectation],
    events: Iterable[ObservedEvent],
    held: Iterable[Claim] = (),
) -> MatchResult:
    """Settle pending expectations against events by the rules in this module's docstring.

    `events` are the events not claimed by anyone; `held` are exact claims made before whose
    expectation may move to another exact event (of `events`) so a pending one can have its
    event; `held` amount mismatches give up their event to an exact claim with no other way
    (`revised`). Only exact claims are made here: amount mismatches wait for the deadline."""
    events = list(events)
    board = _Board(held)
    board.add(events)
    result = board.settle(pending)
    unclaimed = tuple(
        sorted({e.id: e for e in events if not board.claimed(e.id)}.values(), key=lambda e: e.id)
    )
    return MatchResult(
        result.claims,
        result.moved,
        result.candidates,
        result.blocked,
        unclaimed,
        tuple(board.revised.values()),
    )


def _augment(
    root: Expectation,
    exact: Callable[[Expectation], list[ObservedEvent]],
    owner: dict[str, Expectation],
    current: dict[int, ObservedEvent],
) -> bool:
    """Give `root` an exact event: a free one, or one whose holder can move to another exact
    event of its own (an augmenting path, searched depth first without recursion). Each step
    looks at free events before held ones, so nobody moves when a free event will do."""

    def options(expectation: Expectation) -> Iterator[ObservedEvent]:
        return iter(sorted(exact(expectation), key=lambda e: (e.id in owner, e.id)))

    visited: set[str] = set()
    stack: list[tuple[Expectation, Iterator[ObservedEvent]]] = [(root, options(root))]
    path: list[ObservedEvent] = []
    while stack:
        _, remaining = stack[-1]
        for event in remaining:
            if event.id in visited:
                continue
            visited.add(event.id)
            holder = owner.get(event.id)
            if holder is None:
                for (taker, _), taken in zip(stack, [*path, event], strict=True):
                    owner[taken.id] = taker
                    current[taker.id] = taken
                return True
            path.append(event)
            stack.append((holder, options(holder)))
            break
        else:
            stack.pop()
            if path:
                path.pop()
    return False


# Given a record and a test of "claimed in this run", its closest unclaimed stored event.
Closest = Callable[[Expectation, Callable[[str], bool]], Claim | None]


def closest_of(expectation: Expectation, events: Iterable[ObservedEvent]) -> Claim | None:
    """The event of `events` fitting `expectation` closest in amount, earliest on a tie: the
    rule for a candidate everywhere (the caller passes only unclaimed events)."""
    if expectation.amount is None:
        return None
    wanted = expectation.amount
    fitting = [e for e in events if expectation.fits(e)]
    if not fitting:
        return None
    return Claim(expectation, min(fitting, key=lambda e: (abs((e.amount or 0) - wanted), e.id)))


@dataclass(frozen=True, slots=True)
class Settlement:
    """What a run of ledgers settles: new claims (matched, or amount_mismatch at a deadline),
    matched expectations that moved to another exact event, and the best candidate of each
    expectation still pending."""

    claims: tuple[Claim, ...]
    moved: tuple[Claim, ...]
    candidates: tuple[Claim, ...]
    # Still pending although an exact event exists: others hold all of theirs. They must be
    # tried again whenever new events come, whatever their match key (see settle_ledgers).
    blocked: tuple[Expectation, ...]
    # Amount mismatches of `held` whose event an exact claim took.
    revised: tuple[Revision, ...] = ()

    @property
    def taken(self) -> set[str]:
        return {c.event.id for c in (*self.claims, *self.moved)}


def settle_ledgers(
    pending: Iterable[Expectation],
    events: Iterable[ObservedEvent],
    held: Iterable[Claim] = (),
    candidates: Iterable[Claim] = (),
    blocked: Iterable[Expectation] = (),
    closest: Closest | None = None,
    had_candidate: Iterable[int] = (),
) -> Settlement:
    """Apply the rules one ledger at a time: match each ledger's events, then settle what its
    close makes overdue, so cutting ledgers into batches changes nothing. `held` are exact
    claims made before (they may move), `candidates` the pending expectations' best
    candidates so far (still unclaimed), `blocked` those of `pending` left blocked before.
    `closest` finds a record's closest unclaimed stored event when the candidate it showed
    (now, or before: `had_candidate`) was taken by its deadline: the events of earlier batches
    are not here. The candidates returned may be taken already: a record keeps showing one.

    Each round tries only the expectations an arriving event may fit and the blocked ones: an
    expectation that could gain nothing from a ledger's events is left alone."""
    waiting = {x.id: x for x in pending}
    by_key: dict[tuple[str, str, str], list[Expectation]] = defaultdict(list)
    for x in waiting.values():
        by_key[(x.contract_id, x.event_name, x.key)].append(x)
    board = _Board(held)
    best = {c.expectation.id: c for c in candidates}
    showed = {*had_candidate, *best}
    stuck = {x.id: waiting[x.id] for x in blocked if x.id in waiting}
    matched: list[Expectation] = []
    mismatched: list[Claim] = []
    by_ledger: dict[int, list[ObservedEvent]] = defaultdict(list)
    for event in events:
        by_ledger[event.ledger].append(event)
    # Deadlines to process, earliest first; a record deferred (see held_until) goes back in.
    due = [(x.deadline_ledger, priority(x)) for x in waiting.values()]
    heapq.heapify(due)
    for ledger, arriving in sorted(by_ledger.items()):
        board.add(arriving)
        roots = dict(stuck)
        for event in arriving:
            for key in event.match_keys():
                for x in by_key.get((event.contract_id, event.name or "", key), ()):
                    if x.id in waiting:
                        roots[x.id] = x
        result = board.settle(roots.values())
        for claim in result.claims:
            matched.append(claim.expectation)
            del waiting[claim.expectation.id]
            best.pop(claim.expectation.id, None)
            stuck.pop(claim.expectation.id, None)
        stuck.update((x.id, x) for x in result.blocked)
        for claim in result.candidates:
            known = best.get(claim.expectation.id)
            if known is None or board.claimed(known.event.id) or _closer(claim, known):
                best[claim.expectation.id] = claim
                showed.add(claim.expectation.id)
        while due and due[0][0] <= ledger:
            _, rank = heapq.heappop(due)
            expectation = waiting.get(rank[-1])
            if expectation is None:
                continue
            later = board.held_until(expectation)
            if later > ledger:
                heapq.heappush(due, (later, rank))
                continue
            del waiting[expectation.id]
            stuck.pop(expectation.id, None)
            candidate = best.pop(expectation.id, None)
            if candidate is None or board.claimed(candidate.event.id):
                candidate = None
                if closest is not None and expectation.id in showed:
                    candidate = closest(expectation, board.claimed)
            if candidate is not None and not board.claimed(candidate.event.id):
                mismatched.append(candidate)
                board.settle_mismatch(candidate)
    # A mismatch settled in this run and taken by an exact claim later in it never happened:
    # its record settles on its new candidate, or stays pending for the caller to expire.
    revised = []
    for revision in board.revised.values():
        made_here = [c for c in mismatched if c.expectation.id == revision.expectation.id]
        if not made_here:
            revised.append(revision)
            continue
        mismatched.remove(made_here[0])
        if revision.settled is not None:
            mismatched.append(revision.settled)
    return Settlement(
        claims=(*(Claim(x, board.current[x.id]) for x in matched), *mismatched),
        moved=board.moved(),
        candidates=tuple(c for x, c in best.items() if x in waiting),
        blocked=tuple(stuck.values()),
        revised=tuple(revised),
    )


def _closer(claim: Claim, known: Claim) -> bool:
    mine = (abs(claim.difference or 0), claim.event.id)
    return mine < (abs(known.difference or 0), known.event.id)
