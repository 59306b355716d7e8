"""Explanations: the evidence behind a record's verdict or a discrepancy, read, never written.

One read connection gathers the record, the events it could have matched (its look-back
window to its deadline, and some ledgers past it, where a late payment shows up), who holds
each, and the ledger of the event it settled on with that ledger's hash links and
re-verification. The verdicts themselves are explanation.py's (pure).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, and_, or_, select

from stellar_reconciler.explanation import Holder, judge, observed_json, summary
from stellar_reconciler.matching import PENDING, Expectation, ObservedEvent
from stellar_reconciler.models import iso_utc
from stellar_reconciler.store.bulk import chunks
from stellar_reconciler.store.candidates import LOOKBACK_LEDGERS, first_event_id, observed_events
from stellar_reconciler.store.claimants import expectation_of
from stellar_reconciler.store.database import read_connection
from stellar_reconciler.store.discrepancies import discrepancy_json
from stellar_reconciler.store.expectations import expectation_json
from stellar_reconciler.store.schema import (
    checkpoints,
    discrepancies,
    events,
    expectations,
    ledgers,
)
from stellar_reconciler.store.sum_records import with_parts

# Events after the deadline still listed (rejected as late): a payment that came an hour late
# (at 5 s a ledger) is the likeliest story of a missing record.
LATE_LEDGERS = 720
# At most this many events are read per record, the latest first (a busy contract emits far
# more in a day's look-back); the record's own event is always among them.
MAX_SCANNED = 5_000
# Candidates listed in full; the rest are counted.
MAX_SHOWN = 50
# Records listed as considered for one unexpected event.
MAX_RECORDS = 50
# Kinds that speak about stored ledgers themselves, not about expected records.
_LEDGER_KINDS = ("chain_break", "source_mismatch", "gap", "retention_gap", "closed_period_changed")
_BLOCKING = ("chain_break", "source_mismatch", "closed_period_changed")
_RECORD_KINDS = ("missing_expected", "amount_mismatch", "failed_on_chain", "not_found")
_VERIFIED_MARKER = "verified"


class Explanations:
    """Read-only queries behind the two .../explain endpoints (api/explain.py)."""

    def __init__(self, engine: Engine, stream: str) -> None:
        self.engine = engine
        self.stream = stream

    def expectation(self, external_id: str) -> dict[str, Any] | None:
        with read_connection(self.engine) as conn:
            row = conn.execute(
                select(expectations).where(expectations.c.external_id == external_id)
            ).one_or_none()
            return self._expectation(conn, row) if row is not None else None

    def discrepancy(self, discrepancy_id: int) -> dict[str, Any] | None:
        with read_connection(self.engine) as conn:
            row = conn.execute(
                select(discrepancies).where(discrepancies.c.id == discrepancy_id)
            ).one_or_none()
            if row is None:
                return None
            body: dict[str, Any] = {"discrepancy": discrepancy_json(row)}
            if row.kind in _RECORD_KINDS and row.subject is not None:
                record = conn.execute(
                    select(expectations).where(expectations.c.external_id == row.subject)
                ).one_or_none()
                body["expectation"] = self._expectation(conn, record) if record else None
            elif row.kind == "unexpected" and row.subject is not None:
                body["unexpected_event"] = self._unexpected(conn, row.subject)
            if row.kind in _LEDGER_KINDS or row.kind == "unexpected":
                bounds = {row.first_ledger, row.last_ledger} - {None}
                body["ledgers"] = [self._ledger(conn, int(n)) for n in sorted(bounds)]
            return body

    # --- a record ------------------------------------------------------------------------

    def _expectation(self, conn: Connection, row: Any) -> dict[str, Any]:
        (shown,) = with_parts(conn, expectation_json, [row])
        record = {**shown, "candidate_event_id": row.candidate_event_id}
        parts: list[str] = record.get("event_ids") or []
        unreadable = (
            (row.unreadable_event_id, row.unreadable_reason)
            if row.unreadable_event_id is not None
            else None
        )
        wanted = expectation_of(row)
        checkpoint = self._marker(conn, self.stream)[0]
        window = self._window(row, checkpoint)
        own = [row.event_id, row.candidate_event_id, row.unreadable_event_id, *parts]
        scanned, complete = self._candidates(conn, wanted, window, own)
        # The sum's own parts (a group's are the group's) are never another record's hold.
        holders = {
            k: v
            for k, v in self._holders(conn, [e.id for e in scanned], row.id).items()
            if k not in parts
        }
        judged = sorted(
            (
                judge(
                    wanted,
                    row.status,
                    event,
                    taken_id=row.event_id,
                    candidate_id=row.candidate_event_id,
                    holder=holders.get(event.id),
                    look_back_from=window["first_ledger"],
                    part_ids=parts,
                    unreadable=unreadable,
                )
                for event in scanned
            ),
            key=lambda j: j.sort_key(),
        )
        # The record's own event; for a sum, the latest part; for an unreadable amount, the
        # event it settled on; while pending, its closest candidate.
        chosen_id = (
            row.event_id
            or max(parts, default=None)
            or row.unreadable_event_id
            or (row.candidate_event_id if row.status == PENDING else None)
        )
        chosen = next((j.event for j in judged if j.event.id == chosen_id), None)
        counts: dict[str, int] = {}
        for j in judged:
            counts[j.verdict] = counts.get(j.verdict, 0) + 1
        return {
            "expectation": record,
            "verdict": {"status": row.status, "summary": summary(record, len(judged), checkpoint)},
            "window": {**window, "complete": complete},
            "candidates": [j.as_json() for j in judged[:MAX_SHOWN]],
            "candidates_considered": len(judged),
            "candidates_by_verdict": counts,
            "chosen": (
                {"event_id": chosen.id, "ledger": self._ledger(conn, chosen.ledger)}
                if chosen is not None
                else None
            ),
            "discrepancies": self._record_discrepancies(conn, row.external_id),
        }

    @staticmethod
    def _window(row: Any, checkpoint: int | None) -> dict[str, Any]:
        """The ledgers whose events the record could match: from its look-back (the
        checkpoint when it was posted, exact for a relative deadline, else today's) to its
        deadline; a record pinned to a transaction finds that transaction's events at any age."""
        last = row.deadline_ledger
        late_through = last + LATE_LEDGERS
        if checkpoint is not None:
            late_through = min(late_through, max(checkpoint, last))
        if row.tx_hash is not None:
            return {
                "by": "tx_hash",
                "first_ledger": None,
                "look_back_exact": True,
                "deadline_ledger": last,
                "listed_through_ledger": late_through,
            }
        if row.deadline_ledgers is not None:
            posted_at, exact = row.deadline_ledger - row.deadline_ledgers, True
        else:
            posted_at, exact = checkpoint if checkpoint is not None else last, False
        return {
            "by": "contract_and_event_name",
            "first_ledger": max(posted_at - LOOKBACK_LEDGERS + 1, 0),
            "look_back_exact": exact,
            "deadline_ledger": last,
            "listed_through_ledger": late_through,
        }

    def _candidates(
        self,
        conn: Connection,
        wanted: Expectation,
        window: dict[str, Any],
        own_ids: Sequence[str | None],
    ) -> tuple[list[ObservedEvent], bool]:
        """The events the record was judged against, latest first up to MAX_SCANNED, and
        whether that is all of them; the record's own events (`own_ids`) always among them."""
        upper = events.c.id < first_event_id(window["listed_through_ledger"] + 1)
        if wanted.tx_hash is not None:
            where = and_(events.c.tx_hash == wanted.tx_hash, upper)
        else:
            where = and_(
                events.c.contract_id == wanted.contract_id,
                events.c.name == wanted.event_name,
                events.c.id >= first_event_id(window["first_ledger"]),
                upper,
            )
        latest_first = select(events).where(where).order_by(events.c.id.desc())
        rows = list(conn.execute(latest_first.limit(MAX_SCANNED + 1)))
        complete = len(rows) <= MAX_SCANNED
        found = {e.id: e for e in observed_events(rows[:MAX_SCANNED])}
        for own in own_ids:
            if own is not None and own not in found:
                found.update(
                    (e.id, e)
                    for e in observed_events(conn.execute(select(events).where(events.c.id == own)))
                )
        return list(found.values()), complete

    @staticmethod
    def _holders(conn: Connection, event_ids: Sequence[str], own_id: int) -> dict[str, Holder]:
        found: dict[str, Holder] = {}
        for chunk in chunks(sorted(event_ids)):
            rows = conn.execute(
                select(
                    expectations.c.event_id, expectations.c.external_id, expectations.c.status
                ).where(expectations.c.event_id.in_(chunk), expectations.c.id != own_id)
            )
            found.update((r.event_id, Holder(r.external_id, r.status)) for r in rows)
        return found

    @staticmethod
    def _record_discrepancies(conn: Connection, external_id: str) -> list[dict[str, Any]]:
        rows = conn.execute(
            select(discrepancies)
            .where(discrepancies.c.kind.in_(_RECORD_KINDS), discrepancies.c.subject == external_id)
            .order_by(discrepancies.c.id)
        )
        return [{"id": r.id, "kind": r.kind, "open": r.resolved_at is None} for r in rows]

    # --- an unexpected event -------------------------------------------------------------

    def _unexpected(self, conn: Connection, event_id: str) -> dict[str, Any] | None:
        """The event no record claimed, and the records of its contract and name that were
        waiting when it came (deadline at or after its ledger), each with why it is not theirs."""
        found = list(observed_events(conn.execute(select(events).where(events.c.id == event_id))))
        if not found:
            return None
        event = found[0]
        rows = list(
            conn.execute(
                select(expectations)
                .where(
                    expectations.c.contract_id == event.contract_id,
                    expectations.c.event_name == event.name,
                    expectations.c.deadline_ledger >= event.ledger,
                )
                .order_by(expectations.c.id.desc())
                .limit(MAX_RECORDS)
            )
        )
        holder = self._holders(conn, [event.id], 0).get(event.id)
        considered = []
        for row in rows:
            wanted = expectation_of(row)
            shown = [d.as_json(wanted.tolerance) for d in wanted.differences(event)]
            considered.append(
                {
                    "external_id": row.external_id,
                    "status": row.status,
                    "event_id": row.event_id,
                    "differences": shown,
                }
            )
        return {
            "event": observed_json(event),
            "claimed_by": (
                {"external_id": holder.external_id, "status": holder.status} if holder else None
            ),
            "records_considered": considered,
        }

    # --- ledgers -------------------------------------------------------------------------

    def _marker(self, conn: Connection, stream: str) -> tuple[int | None, Any]:
        found = conn.execute(
            select(checkpoints.c.ledger, checkpoints.c.updated_at).where(
                checkpoints.c.stream == stream
            )
        ).one_or_none()
        return (int(found.ledger), found.updated_at) if found is not None else (None, None)

    def _ledger(self, conn: Connection, sequence: int) -> dict[str, Any]:
        """A stored ledger, whether its hash links with its stored neighbours, the open
        findings that doubt it, and how far periodic re-verification has come."""
        rows = {
            r.sequence: r
            for r in conn.execute(
                select(ledgers).where(ledgers.c.sequence.between(sequence - 1, sequence + 1))
            )
        }
        own = rows.get(sequence)
        doubts = conn.execute(
            select(discrepancies)
            .where(
                discrepancies.c.kind.in_(_LEDGER_KINDS),
                discrepancies.c.first_ledger <= sequence,
                or_(
                    discrepancies.c.last_ledger >= sequence,
                    discrepancies.c.last_ledger.is_(None),
                ),
            )
            .order_by(discrepancies.c.id)
        )
        findings = [
            {
                "id": d.id,
                "kind": d.kind,
                "open": d.resolved_at is None,
                "resolved_at": iso_utc(d.resolved_at),
                "resolution": d.resolution,
            }
            for d in doubts
        ]
        verified_through, moved_at = self._marker(conn, f"{self.stream}:{_VERIFIED_MARKER}")
        covered = verified_through is not None and sequence <= verified_through
        re_verification = {
            "verified_through_ledger": verified_through,
            "covers_ledger": covered,
            # The marker moves once per verified range, so this is when the range that
            # covered this ledger (or a later one) was checked.
            "verified_by": iso_utc(moved_at) if covered else None,
        }
        if own is None:
            return {
                "sequence": sequence,
                "stored": False,
                "chain": {"holds": None, "previous_links": None, "next_links": None},
                "findings": findings,
                "re_verification": re_verification,
            }
        before, after = rows.get(sequence - 1), rows.get(sequence + 1)
        previous_links = before.hash == own.previous_hash if before is not None else None
        next_links = after.previous_hash == own.hash if after is not None else None
        doubted = any(f["open"] and f["kind"] in _BLOCKING for f in findings)
        return {
            "sequence": sequence,
            "stored": True,
            "hash": own.hash,
            "previous_hash": own.previous_hash,
            "closed_at": iso_utc(own.closed_at),
            "chain": {
                "holds": previous_links is not False and next_links is not False and not doubted,
                "previous_links": previous_links,
                "next_links": next_links,
            },
            "findings": findings,
            "re_verification": re_verification,
        }
