"""Expected records and how contract events satisfy them. Pure: no I/O, so Hypothesis can test it.

An expectation names an event by contract id and event name (its first topic), may pin it
further by transaction hash and topic values, may carry an amount with an absolute tolerance,
and has a deadline ledger: the last ledger the event may appear in.

The rules, which `assignment` applies (and the store's settlement through it) and the property
tests check:

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
  `missing_expected`; one pinned to a transaction hash first asks the network what became
  of that transaction (store/outcomes.py): `failed_on_chain`, `not_found` or missing.
- Events are settled ledger by ledger, so cutting them into batches changes nothing.

`Expectation.differences` names every field in which an event falls short of a record, and is
empty exactly when `fits` and `within_tolerance` both hold (a property test holds them to
that): the explanations of /api/.../explain are computed by it, so they cannot tell another
story than the matcher. `fits` stays a short-circuiting test because matching calls it for
every indexed candidate.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from stellar_reconciler.models import Event, Json

PENDING = "pending"
MATCHED = "matched"
AMOUNT_MISMATCH = "amount_mismatch"
MISSING_EXPECTED = "missing_expected"
# A record pinned to a transaction that settled without an event: what getTransaction said.
FAILED_ON_CHAIN = "failed_on_chain"
NOT_FOUND = "not_found"
# A record whose fitting event carries its amount in a form that cannot be read any more (a
# contract upgrade changed the value's shape): settled at its deadline, saying why.
AMOUNT_UNREADABLE = "amount_unreadable"
# Withdrawn by the application (DELETE /api/expectations/...): never claims an event.
CANCELLED = "cancelled"
# Some of the sum of its events arrived, not all (partial.py: allow_partial and groups).
PARTIALLY_MATCHED = "partially_matched"
STATUSES = (
    PENDING,
    MATCHED,
    AMOUNT_MISMATCH,
    MISSING_EXPECTED,
    FAILED_ON_CHAIN,
    NOT_FOUND,
    AMOUNT_UNREADABLE,
    CANCELLED,
    PARTIALLY_MATCHED,
)

I128_MIN = -(2**127)
I128_MAX = 2**127 - 1
_INTEGER = re.compile(r"[+-]?[0-9]+")
# 2**127 has 39 digits: a longer number cannot be an i128 (and is never handed to int()).
_I128_DIGITS = 39
# A topic value longer than this goes into a match key as its digest, keeping keys short.
_MAX_KEY_VALUE = 120
# What topics 1-3 of a token (SAC) event are, so an explanation can say "sender" not "topic 1".
_TRANSFER_TOPICS = {1: "sender", 2: "recipient", 3: "asset"}


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

    def differences(self, event: ObservedEvent) -> tuple[Difference, ...]:
        """Every way `event` falls short of this record, in the order `fits` checks them;
        empty exactly when the event fits and its amount is within tolerance."""
        found: list[Difference] = []
        if not event.successful:
            found.append(Difference("in_successful_contract_call", True, False))
        if event.ledger > self.deadline_ledger:
            by = event.ledger - self.deadline_ledger
            found.append(Difference("ledger", self.deadline_ledger, event.ledger, by))
        if event.contract_id != self.contract_id:
            found.append(Difference("contract_id", self.contract_id, event.contract_id))
        if event.name != self.event_name:
            found.append(Difference("event_name", self.event_name, event.name))
        if self.tx_hash is not None and event.tx_hash != self.tx_hash:
            found.append(Difference("tx_hash", self.tx_hash, event.tx_hash))
        for position, value in self.topics:
            actual = event.topics[position] if position < len(event.topics) else None
            if position >= len(event.topics) or actual != value:
                label = _TRANSFER_TOPICS.get(position) if self.event_name == "transfer" else None
                found.append(Difference(f"topics.{position}", value, actual, label=label))
        if self.amount is not None:
            if event.amount is None:
                found.append(Difference("amount", str(self.amount), None))
            elif abs(event.amount - self.amount) > self.tolerance:
                by = event.amount - self.amount
                found.append(Difference("amount", str(self.amount), str(event.amount), by))
        return tuple(found)


@dataclass(frozen=True, slots=True)
class Difference:
    """One field in which an event differs from what a record expects. `by` measures it where
    a measure means something: found - expected for an amount, ledgers past the deadline."""

    field: str
    expected: Json
    found: Json
    by: int | None = None
    # What the field is to a person (sender, recipient, asset), when known.
    label: str | None = None

    @property
    def settles_as_mismatch(self) -> bool:
        """An amount outside tolerance: the one difference a record may still settle on (as
        amount_mismatch, at its deadline); any other means the event is not this record's."""
        return self.field == "amount" and self.found is not None

    def reason(self, tolerance: int = 0) -> str:
        """The difference in words, for a person reading an explanation."""
        name = self.label or self.field
        if self.field == "in_successful_contract_call":
            return "emitted by a failed contract call, which moved nothing"
        if self.field == "ledger":
            return f"{self.by} ledger(s) after the deadline, ledger {self.expected}"
        if self.field == "amount" and self.found is None:
            return "carries no amount"
        if self.field == "amount":
            return (
                f"amount {self.found} differs from {self.expected} by {self.by}, "
                f"outside the tolerance of {tolerance}"
            )
        return f"{name} is {canonical(self.found)}, not {canonical(self.expected)}"

    def as_json(self, tolerance: int = 0) -> dict[str, Json]:
        body: dict[str, Json] = {
            "field": self.field,
            "expected": self.expected,
            "found": self.found,
            "reason": self.reason(tolerance),
        }
        if self.label is not None:
            body["label"] = self.label
        if self.by is not None:
            # Text, like every amount in the API: an i128 difference exceeds JSON's safe range.
            body["by"] = str(self.by) if self.field == "amount" else self.by
        return body


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


def overdue(pending: Iterable[Expectation], through_ledger: int) -> list[Expectation]:
    """Expectations whose deadline ledger is processed (through_ledger) and still unmet."""
    return sorted((e for e in pending if e.deadline_ledger <= through_ledger), key=lambda e: e.id)
