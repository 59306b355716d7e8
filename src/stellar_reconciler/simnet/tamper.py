"""TamperBook: events the network misreports, to exercise reconciliation.

Two event-level lies are kept here (ledger-level ones, a broken hash chain and a shrunken
retention window, change the chain itself and live on SimNetwork):

- drop: the event is left out of the first getEvents answer that would include it, as if it
  did not exist (the scan goes on, so the page is otherwise complete); later answers have it;
- alter: the first answer carries the true value, every later one a different value.

The network's record (`SimNetwork.record_events`) always holds the truth.

A LieSchedule tells these lies on ledgers as they close, spaced out in time, so a person
watching the demo sees each one found and repaired in turn.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

from stellar_reconciler.simnet import codec


class TamperBook:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._drops: set[str] = set()
        self._dropped: list[str] = []
        self._alters: dict[str, str | None] = {}
        self._reads: Counter[str] = Counter()

    @property
    def active(self) -> bool:
        """Cheap check so untampered pages skip computing event ids."""
        return bool(self._drops or self._alters)

    def drop_event(self, event_id: str) -> None:
        with self._lock:
            self._drops.add(event_id)

    def alter_event(self, event_id: str, value: str | None = None) -> None:
        """From the second read on, serve `value` (base64 ScVal) instead of the true value.

        Without `value`, an i128 is served one greater and any other ScVal wrapped in a vec.
        """
        if value is not None:
            codec.canonical(value)  # refuse a replacement that is not an ScVal
        with self._lock:
            self._alters[event_id] = value
            self._reads[event_id] = 0

    def clear(self) -> None:
        with self._lock:
            self._drops.clear()
            self._alters.clear()
            self._reads.clear()

    def take_drop(self, event_id: str) -> bool:
        """True (once) when this serving of the event must leave it out."""
        with self._lock:
            if event_id in self._drops:
                self._drops.discard(event_id)
                self._dropped.append(event_id)
                return True
        return False

    def served_value(self, event_id: str, true_value: str) -> str | None:
        """The value to serve instead of `true_value` on this read, or None for the truth."""
        with self._lock:
            if event_id not in self._alters:
                return None
            self._reads[event_id] += 1
            if self._reads[event_id] < 2:
                return None
            replacement = self._alters[event_id]
        return replacement or altered(true_value)

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {
                "pendingDrops": sorted(self._drops),
                "dropped": list(self._dropped),
                "altered": {
                    event_id: {"value": value, "reads": self._reads[event_id]}
                    for event_id, value in self._alters.items()
                },
            }


@dataclass(frozen=True, slots=True)
class LieSchedule:
    """Lies on ledgers closed after `start`: the first `first_after` ledgers later, the second
    `second_after`, then one every `every`; they alternate between a dropped and an altered
    event. A ledger without events is skipped: the lie waits for the next one."""

    start: int
    first_after: int
    second_after: int
    every: int

    def __post_init__(self) -> None:
        if not 0 < self.first_after < self.second_after or self.every < 1:
            raise ValueError(
                "a lie schedule needs 0 < first_after < second_after and every >= 1, got "
                f"{self.first_after}, {self.second_after}, {self.every}"
            )

    def due(self, sequence: int, told: int) -> Literal["drop", "alter"] | None:
        """The lie to tell on ledger `sequence`, when `told` lies have been told so far."""
        after = self.first_after if told == 0 else self.second_after + (told - 1) * self.every
        if sequence - self.start < after:
            return None
        return "drop" if told % 2 == 0 else "alter"


def altered(true_value: str) -> str:
    """A different but valid ScVal: i128 + 1, or the value wrapped in a one-element vec."""
    data = codec.unb64(true_value)
    amount = codec.i128_value(data)
    if amount is not None and amount < (1 << 127) - 1:
        return codec.b64(codec.i128(amount + 1))
    return codec.b64(codec.vec([data]))
