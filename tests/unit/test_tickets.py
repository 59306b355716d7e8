"""Short-lived tickets: valid from issue for their lifetime, and only when issued."""

from __future__ import annotations

from stellar_reconciler.api.live import TICKET_SECONDS
from stellar_reconciler.api.tickets import MAX_TICKETS, Tickets


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_ticket_is_valid_for_its_lifetime_only() -> None:
    """A ticket is valid from issue until `lifetime` later; an unknown one never is."""
    clock = Clock(100.0)
    tickets = Tickets(TICKET_SECONDS, clock)
    ticket = tickets.issue()
    clock.now = 100.0 + TICKET_SECONDS - 1
    assert tickets.valid(ticket)
    assert not tickets.valid(ticket + "x")
    clock.now = 100.0 + TICKET_SECONDS
    assert not tickets.valid(ticket)
    assert tickets.issue() != ticket


def test_the_oldest_ticket_is_forgotten_past_the_cap() -> None:
    """At MAX_TICKETS live tickets, issuing one more forgets the oldest and no other."""
    tickets = Tickets(60.0, Clock(0.0))
    issued = [tickets.issue() for _ in range(MAX_TICKETS + 1)]
    assert not tickets.valid(issued[0])
    assert all(tickets.valid(ticket) for ticket in issued[1:])
