"""plan_next: where the worker goes from its checkpoint, decided from five facts and no I/O.

The RPC keeps only its newest ledgers (the retention window, which slides one ledger per
close), so the ledger after the checkpoint may already be gone. Then the worker skips the
lost run only when an operator's consent names this very gap, and otherwise stops and reports
the exact run. Either way it never asks for a ledger below the RPC's oldest, and never skips
one the RPC still has.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from stellar_reconciler.models import BlockKind


class Start(Enum):
    """How the checkpoint of a stream may move before anything is indexed."""

    # START_LEDGER=oldest: nothing has been promised while the database is empty, so the
    # checkpoint follows the window until the first commit.
    OLDEST_WHILE_EMPTY = "oldest_while_empty"
    # Anything else: the checkpoint is a promise, and lost ledgers after it are a gap.
    FIXED = "fixed"


@dataclass(frozen=True, slots=True)
class Consent:
    """An operator's consent to lose ledgers, as the plan needs it."""

    id: int
    # The first missing ledger of the gap it accepts: it applies to that gap and no other.
    first_ledger: int
    # None: up to whatever the RPC has lost when the worker carries it out.
    through_ledger: int | None
    requested_by: str


@dataclass(frozen=True, slots=True)
class Proceed:
    """Index first..last (first is checkpoint + 1; all of it within the window)."""

    first: int
    last: int


@dataclass(frozen=True, slots=True)
class Idle:
    """Nothing new: the checkpoint is at (or past) the network's tip."""

    next_ledger: int


@dataclass(frozen=True, slots=True)
class Rebase:
    """Move an empty stream's checkpoint to just before the RPC's oldest ledger."""

    checkpoint: int


@dataclass(frozen=True, slots=True)
class Skip:
    """Record first..last as lost and move the checkpoint to last, as `consent` allows."""

    first: int
    last: int
    consent: Consent


@dataclass(frozen=True, slots=True)
class Blocked:
    """Ledgers first..last are gone from the RPC and nothing allows skipping them."""

    first: int
    last: int
    kind: BlockKind

    @property
    def oldest_available(self) -> int:
        return self.last + 1


Plan = Proceed | Idle | Rebase | Skip | Blocked


def plan_next(
    checkpoint: int, tip: int, oldest: int, start: Start, consent: Consent | None
) -> Plan:
    """The worker's next step from `checkpoint`, given the RPC's `tip` (latest ledger) and
    `oldest` ledger, the stream's start rule and the live gap consent, if any."""
    next_ledger = checkpoint + 1
    if next_ledger < oldest:
        last_lost = oldest - 1
        if start is Start.OLDEST_WHILE_EMPTY:
            return Rebase(checkpoint=last_lost)
        if consent is not None and consent.first_ledger == next_ledger:
            last = last_lost if consent.through_ledger is None else consent.through_ledger
            last = min(last, last_lost)
            if last >= next_ledger:
                return Skip(first=next_ledger, last=last, consent=consent)
        return Blocked(first=next_ledger, last=last_lost, kind=BlockKind.RETENTION_GAP)
    if next_ledger > tip:
        return Idle(next_ledger=next_ledger)
    return Proceed(first=next_ledger, last=tip)
