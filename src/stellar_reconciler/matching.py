"""Expected records and how contract events satisfy them. Pure: no I/O, so Hypothesis can test it.

An expectation names an event by contract id and event name (its first topic), may pin it
further by transaction hash and topic values, may carry an amount with an absolute tolerance,
and has a deadline ledger: the last ledger the event may appear in.

The rules, which `match_events` applies and the property tests check:

- Events are considered in id order, which is ledger order. An event is claimed by at most
  one pending expectation, and an expectation claims at most one event, so feeding the same
  events in one batch or in many gives the same outcome.
- An expectation fits an event when the contract, name, transaction hash and every given
  topic agree, the event is no later than the deadline, it was emitted by a successful call
  (a failed call moved nothing), and, when an amount is expected, the event has one.
- Among the pending expectations that fit an event, one whose amount is within tolerance
  wins over one whose amount is not; among equals, the first created wins.
- The claim is `matched` when |found - expected| <= tolerance, else `amount_mismatch` with
  difference = found - expected. Amounts are integers in the token's smallest unit (i128),
  never floats, so the comparison is exact.
- A pending expectation whose deadline ledger has been processed becomes `missing_expected`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from stellar_reconciler.models import Event, Json

PENDING = "pending"
MATCHED = "matched"
AMOUNT_MISMATCH = "amount_mismatch"
MISSING_EXPECTED = "missing_expected"
STATUSES = (PENDING, MATCHED, AMOUNT_MISMATCH, MISSING_EXPECTED)

I128_MIN = -(2**127)
I128_MAX = 2**127 - 1
_INTEGER = re.compile(r"[+-]?[0-9]+")
# 2**127 has 39 digits: a longer number cannot be an i128 (and is never handed to int()).
_I128_DIGITS = 39
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
        if not _INTEGER.fullmatch(value.strip()):
            raise ValueError(
                f"{value!r} is not a whole number: amounts are integers in the token's smallest "
                'unit (for example stroops), written as digits such as "12500000"'
            )
        if len(value.strip().lstrip("+-").lstrip("0")) > _I128_DIGITS:
            raise ValueError("is outside the i128 range that Soroban amounts use")
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
    """An expectation settled by an event: matched or amount_mismatch."""

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
    claims: tuple[Claim, ...]
    # Events no expectation claimed, in id order.
    unclaimed: tuple[ObservedEvent, ...]


@dataclass
class _Bucket:
    """Pending expectations sharing (contract, name, key), indexed for quick choice."""

    in_order: deque[Expectation] = field(default_factory=deque)
    # Zero-tolerance expectations by amount: an exact amount is found without a scan.
    exact: dict[int, list[Expectation]] = field(default_factory=lambda: defaultdict(list))
    # Expectations with a tolerance or no amount: any of them may be within tolerance.
    loose: list[Expectation] = field(default_factory=list)

    def add(self, expectation: Expectation) -> None:
        self.in_order.append(expectation)
        if expectation.amount is not None and expectation.tolerance == 0:
            self.exact[expectation.amount].append(expectation)
        else:
            self.loose.append(expectation)

    def within(self, event: ObservedEvent, taken: set[int]) -> Expectation | None:
        """The first-created expectation that fits the event with its amount in tolerance."""
        best = None
        if event.amount is not None:
            best = _first(self.exact.get(event.amount, ()), event, taken, within=True)
        loose = _first(self.loose, event, taken, within=True)
        if loose is not None and (best is None or loose.id < best.id):
            best = loose
        return best

    def any_fit(self, event: ObservedEvent, taken: set[int]) -> Expectation | None:
        # Settled and expired ones at the front are dropped: events come in ledger order.
        while self.in_order and (
            self.in_order[0].id in taken or self.in_order[0].deadline_ledger < event.ledger
        ):
            self.in_order.popleft()
        return _first(self.in_order, event, taken, within=False)


def _first(
    candidates: Iterable[Expectation], event: ObservedEvent, taken: set[int], within: bool
) -> Expectation | None:
    for expectation in candidates:
        if expectation.id in taken or not expectation.fits(event):
            continue
        if not within or expectation.within_tolerance(event.amount):
            return expectation
    return None


def match_events(pending: Iterable[Expectation], events: Iterable[ObservedEvent]) -> MatchResult:
    """Settle pending expectations against events by the rules in this module's docstring."""
    buckets: dict[tuple[str, str, str], _Bucket] = defaultdict(_Bucket)
    for expectation in sorted(pending, key=lambda e: e.id):
        buckets[(expectation.contract_id, expectation.event_name, expectation.key)].add(expectation)
    taken: set[int] = set()
    claims: list[Claim] = []
    unclaimed: list[ObservedEvent] = []
    for event in sorted(events, key=lambda e: e.id):
        chosen = None
        if event.successful and event.name is not None and buckets:
            found = [
                buckets[(event.contract_id, event.name, key)]
                for key in event.match_keys()
                if (event.contract_id, event.name, key) in buckets
            ]
            chosen = _earliest(bucket.within(event, taken) for bucket in found)
            if chosen is None:
                chosen = _earliest(bucket.any_fit(event, taken) for bucket in found)
        if chosen is None:
            unclaimed.append(event)
            continue
        taken.add(chosen.id)
        claims.append(Claim(chosen, event))
    return MatchResult(tuple(claims), tuple(unclaimed))


def _earliest(candidates: Iterable[Expectation | None]) -> Expectation | None:
    present = [c for c in candidates if c is not None]
    return min(present, key=lambda e: e.id) if present else None


def overdue(pending: Iterable[Expectation], through_ledger: int) -> list[Expectation]:
    """Expectations whose deadline ledger is processed (through_ledger) and still unmet."""
    return sorted((e for e in pending if e.deadline_ledger <= through_ledger), key=lambda e: e.id)
