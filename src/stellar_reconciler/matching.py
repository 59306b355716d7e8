"""Expected records and how contract events satisfy them. Pure: no I/O, so Hypothesis can test it.

An expectation names an event by contract id and event name (its first topic), may pin it
further by transaction hash and topic values, may carry an amount with an absolute tolerance,
and has a deadline ledger: the last ledger the event may appear in.

The rules, which `match_events` and the store's settlement apply and the property tests check:

- An expectation fits an event when the contract, name, transaction hash and every given
  topic agree, the event is no later than the deadline, it was emitted by a successful call
  (a failed call moved nothing), and, when an amount is expected, the event has one. It fits
  exactly when, besides, |found - expected| <= tolerance. Amounts are integers in the token's
  smallest unit (i128), never floats, so the comparison is exact.
- An exact fit settles the expectation `matched` as soon as the event is seen. A fit that is
  not exact never settles it early: it stays `pending`, showing its closest candidate so far,
  because the exact event may still come (or already sit in the store, unclaimed).
- An event is claimed by at most one expectation, and exact claims form a maximum matching:
  an expectation whose exact event another one holds gets it when the holder can move to
  another exact event of its own. A matched expectation stays matched; only its event can
  change. Ties break by `priority` (earliest deadline, smallest tolerance, external id), never
  by the order in which records were posted or events arrived.
- When its deadline ledger is processed, a pending expectation settles `amount_mismatch`
  against its closest unclaimed candidate (difference = found - expected), else
  `missing_expected`.
- Events are settled ledger by ledger, so cutting them into batches changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

from stellar_reconciler.models import Event, Json

PENDING = "pending"
MATCHED = "matched"
AMOUNT_MISMATCH = "amount_mismatch"
MISSING_EXPECTED = "missing_expected"
STATUSES = (PENDING, MATCHED, AMOUNT_MISMATCH, MISSING_EXPECTED)

I128_MIN = -(2**127)
I128_MAX = 2**127 - 1
_INTEGER = re.compile(r"^[+-]?[0-9]{1,40}$")
# A topic value longer than this goes into a match key as its digest, keeping keys short.
_MAX_KEY_VALUE = 120


def parse_amount(value: object) -> int:
    """An i128 amount from a JSON integer or a decimal string of one, exactly."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(
            "must be a whole number in the token's smallest unit, as an integer or a string of "
            'digits such as "12500000" (floats would lose precision)'
        )
    if isinstance(value, str):
        if not _INTEGER.match(value.strip()):
            raise ValueError(
                f"{value!r} is not a whole number: amounts are integers in the token's smallest "
                'unit (for example stroops), written as digits such as "12500000"'
            )
        value = int(value.strip())
    if not I128_MIN <= value <= I128_MAX:
        raise ValueError("is outside the i128 range that Soroban amounts use")
    return value


def normalize_value(value: Json) -> Json:
    """A topic value in comparable form: integers as decimal text, so a u64 topic (decoded as
    text) equals the same number given as a JSON number or a CSV cell."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return [normalize_value(item) for item in value]
    if isinstance(value, dict):
        return {str(k): normalize_value(v) for k, v in value.items()}
    return value


def canonical(value: Json) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _key_part(position: int, value: Json) -> str:
    if isinstance(value, str):
        return _text_key_part(position, value)
    return _shorten(position, canonical(value))


@lru_cache(maxsize=65536)
def _text_key_part(position: int, value: str) -> str:
    # Topics repeat (the same addresses over and over): memoised, like decoding them.
    return _shorten(position, canonical(value))


def _shorten(position: int, text: str) -> str:
    if len(text) > _MAX_KEY_VALUE:
        text = "#" + hashlib.sha256(text.encode()).hexdigest()
    return f"t{position}:{text}"


def event_amount(value: Json) -> int | None:
    """The amount an event carries: its value when that is an integer (i128 values arrive as
    decimal text), or the `amount` field of a map value; None otherwise."""
    if isinstance(value, dict):
        value = value.get("amount")
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    try:
        return parse_amount(value)
    except ValueError:
        return None


def topics_json(topics: Sequence[tuple[int, Json]]) -> dict[str, Json]:
    return {str(position): value for position, value in topics}


def match_key(tx_hash: str | None, topics: Sequence[tuple[int, Json]]) -> str:
    """The most selective thing an expectation pins, so a batch loads only the pending
    expectations its events could satisfy: the transaction, else the first topic, else any."""
    if tx_hash is not None:
        return f"tx:{tx_hash}"
    if topics:
        return _key_part(*topics[0])
    return "any"


@dataclass(frozen=True, slots=True)
class Expectation:
    """A pending expectation as the matcher sees it; `id` orders creation."""

    id: int
    external_id: str
    contract_id: str
    event_name: str
    deadline_ledger: int
    tx_hash: str | None = None
    topics: tuple[tuple[int, Json], ...] = ()
    amount: int | None = None
    tolerance: int = 0

    @property
    def key(self) -> str:
        return match_key(self.tx_hash, self.topics)

    def fits(self, event: ObservedEvent) -> bool:
        """Everything but the amount's size agrees: the event could be this record."""
        return (
            event.successful
            and event.ledger <= self.deadline_ledger
            and event.contract_id == self.contract_id
            and event.name == self.event_name
            and (self.tx_hash is None or event.tx_hash == self.tx_hash)
            and all(
                position < len(event.topics) and event.topics[position] == value
                for position, value in self.topics
            )
            and (self.amount is None or event.amount is not None)
        )

    def within_tolerance(self, found: int | None) -> bool:
        if self.amount is None:
            return True
        return found is not None and abs(found - self.amount) <= self.tolerance


@dataclass(frozen=True, slots=True)
class ObservedEvent:
    """What matching needs of a stored or incoming event (topics normalised)."""

    id: str
    ledger: int
    contract_id: str
    name: str | None
    tx_hash: str
    topics: tuple[Json, ...]
    amount: int | None
    successful: bool = True

    @classmethod
    def of(cls, event: Event) -> ObservedEvent:
        return cls.from_parts(
            event.id,
            event.ledger,
            event.contract_id,
            event.name,
            event.tx_hash,
            event.topics,
            event.value,
            event.in_successful_contract_call,
        )

    @classmethod
    def from_parts(
        cls,
        event_id: str,
        ledger: int,
        contract_id: str,
        name: str | None,
        tx_hash: str,
        topics: Sequence[Json],
        value: Json,
        successful: bool,
    ) -> ObservedEvent:
        return cls(
            id=event_id,
            ledger=ledger,
            contract_id=contract_id,
            name=name,
            tx_hash=tx_hash.lower(),
            topics=tuple(normalize_value(t) for t in topics),
            amount=event_amount(value),
            successful=successful,
        )

    def match_keys(self) -> list[str]:
        """Every match key an expectation that fits this event can have."""
        keys = [f"tx:{self.tx_hash}"]
        keys.extend(_key_part(p, self.topics[p]) for p in range(1, min(len(self.topics), 4)))
        keys.append("any")
        return keys


@dataclass(frozen=True, slots=True)
class Claim:
    """An expectation paired with an event: a settlement (matched or amount_mismatch), or
    while the expectation is pending, its best candidate so far."""

    expectation: Expectation
    event: ObservedEvent

    @property
    def status(self) -> str:
        return MATCHED if self.expectation.within_tolerance(self.event.amount) else AMOUNT_MISMATCH

    @property
    def difference(self) -> int | None:
        if self.expectation.amount is None or self.event.amount is None:
            return None
        return self.event.amount - self.expectation.amount


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

    def __init__(self, events: Iterable[ObservedEvent]) -> None:
        self._by_key: dict[tuple[str, str, str], list[ObservedEvent]] = defaultdict(list)
        self._by_amount: dict[tuple[str, str, str, int], list[ObservedEvent]] = defaultdict(list)
        for event in sorted(events, key=lambda e: e.id):
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


def match_events(
    pending: Iterable[Expectation],
    events: Iterable[ObservedEvent],
    held: Iterable[Claim] = (),
) -> MatchResult:
    """Settle pending expectations against events by the rules in this module's docstring.

    `events` are the events not claimed by anyone; `held` are exact claims made before whose
    expectation may move to another exact event (of `events`) so a pending one can have its
    event. Only exact claims are made here: amount mismatches wait for the deadline."""
    held = list(held)
    index = _EventIndex([*events, *(c.event for c in held)])
    owner: dict[str, Expectation] = {c.event.id: c.expectation for c in held}
    current: dict[int, ObservedEvent] = {c.expectation.id: c.event for c in held}
    exact_cache: dict[int, list[ObservedEvent]] = {}

    def exact(expectation: Expectation) -> list[ObservedEvent]:
        found = exact_cache.get(expectation.id)
        if found is None:
            found = exact_cache[expectation.id] = index.exact(expectation)
        return found

    waiting = sorted({e.id: e for e in pending if e.id not in current}.values(), key=priority)
    for expectation in waiting:
        _augment(expectation, exact, owner, current)
    before = {c.expectation.id: c.event.id for c in held}
    claims = tuple(Claim(x, current[x.id]) for x in waiting if x.id in current)
    moved = tuple(
        Claim(c.expectation, current[c.expectation.id])
        for c in held
        if current[c.expectation.id].id != before[c.expectation.id]
    )
    candidates = []
    blocked = []
    for expectation in waiting:
        if expectation.id in current:
            continue
        if exact(expectation):
            blocked.append(expectation)
        if expectation.amount is None:
            continue
        free = [e for e in index.fitting(expectation) if e.id not in owner]
        if free:
            best = min(free, key=lambda e: (abs((e.amount or 0) - (expectation.amount or 0)), e.id))
            candidates.append(Claim(expectation, best))
    unclaimed = tuple(
        sorted({e.id: e for e in events if e.id not in owner}.values(), key=lambda e: e.id)
    )
    return MatchResult(claims, moved, tuple(candidates), tuple(blocked), unclaimed)


def _augment(
    root: Expectation,
    exact: Callable[[Expectation], list[ObservedEvent]],
    owner: dict[str, Expectation],
    current: dict[int, ObservedEvent],
) -> bool:
    """Give `root` an exact event: a free one, or one whose holder can move to another exact
    event of its own (an augmenting path, searched depth first without recursion)."""
    visited: set[str] = set()
    stack: list[tuple[Expectation, Iterator[ObservedEvent]]] = [(root, iter(exact(root)))]
    path: list[ObservedEvent] = []
    while stack:
        _, options = stack[-1]
        for event in options:
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
            stack.append((holder, iter(exact(holder))))
            break
        else:
            stack.pop()
            if path:
                path.pop()
    return False


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

    @property
    def taken(self) -> set[str]:
        return {c.event.id for c in (*self.claims, *self.moved)}


def settle_ledgers(
    pending: Iterable[Expectation],
    events: Iterable[ObservedEvent],
    held: Iterable[Claim] = (),
    candidates: Iterable[Claim] = (),
    blocked: Iterable[Expectation] = (),
) -> Settlement:
    """Apply the rules one ledger at a time: match each ledger's events, then settle what its
    close makes overdue, so cutting ledgers into batches changes nothing. `held` are exact
    claims made before (they may move), `candidates` the pending expectations' best
    candidates so far (still unclaimed), `blocked` those of `pending` left blocked before.

    An event left unclaimed by its own ledger's round stays so for exact claims: every pending
    expectation it fits was tried in that round, and pending ones only get fewer."""
    pending_by_id = {x.id: x for x in pending}
    by_key: dict[tuple[str, str, str], list[Expectation]] = defaultdict(list)
    for x in pending_by_id.values():
        by_key[(x.contract_id, x.event_name, x.key)].append(x)
    holding = {c.expectation.id: c for c in held}
    matched_before = set(holding)
    best = {c.expectation.id: c for c in candidates}
    settled: dict[int, Claim] = {}
    taken: set[str] = set()
    blocked_now = {x.id: pending_by_id[x.id] for x in blocked if x.id in pending_by_id}
    by_ledger: dict[int, list[ObservedEvent]] = defaultdict(list)
    for event in sorted(events, key=lambda e: e.id):
        by_ledger[event.ledger].append(event)
    by_deadline = sorted(pending_by_id.values(), key=priority)
    due = 0
    for ledger, arriving in sorted(by_ledger.items()):
        # Only these can gain: those an arriving event may fit, and those whose exact event
        # someone holds (a holder may now move to an arriving one).
        roots = dict(blocked_now)
        for event in arriving:
            for key in event.match_keys():
                for x in by_key.get((event.contract_id, event.name or "", key), ()):
                    if x.id in pending_by_id:
                        roots[x.id] = x
        result = match_events(roots.values(), arriving, holding.values())
        for claim in (*result.claims, *result.moved):
            holding[claim.expectation.id] = settled[claim.expectation.id] = claim
            taken.add(claim.event.id)
            pending_by_id.pop(claim.expectation.id, None)
            best.pop(claim.expectation.id, None)
            blocked_now.pop(claim.expectation.id, None)
        blocked_now.update((x.id, x) for x in result.blocked)
        for claim in result.candidates:
            known = best.get(claim.expectation.id)
            if known is None or known.event.id in taken or _closer(claim, known):
                best[claim.expectation.id] = claim
        while due < len(by_deadline) and by_deadline[due].deadline_ledger <= ledger:
            expectation = by_deadline[due]
            due += 1
            if pending_by_id.pop(expectation.id, None) is None:
                continue
            blocked_now.pop(expectation.id, None)
            candidate = best.pop(expectation.id, None)
            if candidate is not None and candidate.event.id not in taken:
                settled[expectation.id] = candidate
                taken.add(candidate.event.id)
    return Settlement(
        claims=tuple(c for x, c in settled.items() if x not in matched_before),
        moved=tuple(c for x, c in settled.items() if x in matched_before),
        candidates=tuple(
            c for x, c in best.items() if x in pending_by_id and c.event.id not in taken
        ),
        blocked=tuple(blocked_now.values()),
    )


def _closer(claim: Claim, known: Claim) -> bool:
    mine = (abs(claim.difference or 0), claim.event.id)
    return mine < (abs(known.difference or 0), known.event.id)


def overdue(pending: Iterable[Expectation], through_ledger: int) -> list[Expectation]:
    """Expectations whose deadline ledger is processed (through_ledger) and still unmet."""
    return sorted((e for e in pending if e.deadline_ledger <= through_ledger), key=lambda e: e.id)
