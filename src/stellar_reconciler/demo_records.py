"""The demo's expected records: at least one of every status a record can reach, built from
what the simulated network really emitted, so the dashboard has verdicts to show and explain.

Each record says which status it must end in (`DemoBook.expected`); a test holds the real
service to that. Records are posted once the service has caught up: those whose deadline is
the checkpoint settle at once (by look-back), the pinned ones after the worker's next
getTransaction poll, and two stay pending, the oldest open items. An instalment plan stays
partially_matched: its instalments so far are in the history, the last one is still due.

The demo's token contract is upgraded near the end of the history (demo.py): transfers
before the upgrade carry an i128 amount and serve the records that need one; one transfer
after it, whose amount is decimal text, settles its record amount_unreadable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from stellar_sdk import StrKey

from stellar_reconciler.decode import decode_scval_b64
from stellar_reconciler.expectation_spec import ExpectationSpec
from stellar_reconciler.matching import (
    AMOUNT_MISMATCH,
    AMOUNT_UNREADABLE,
    FAILED_ON_CHAIN,
    MATCHED,
    MISSING_EXPECTED,
    NOT_FOUND,
    PARTIALLY_MATCHED,
    PENDING,
)
from stellar_reconciler.simnet import SimNetwork
from stellar_reconciler.store import Store
from stellar_reconciler.store.candidates import LOOKBACK_LEDGERS

# How far off the within-tolerance record is, and the tolerance it allows.
NEAR_MISS = 3
TOLERANCE = 5
# What the mismatching record expects beyond what was paid.
SHORTFALL = 250_000
# Pending records wait this many ledgers (half an hour at the demo's 2 s a ledger).
PENDING_LEDGERS = 900
# Transfers the records are built on: matched, matched twice more, within tolerance, mismatch.
_TRANSFERS_NEEDED = 4
# The upgraded token's decimal text has this many places (simnet's `string` shape): the
# amount in the smallest unit is the text times ten to this power.
UPGRADED_DECIMALS = 7


@dataclass
class DemoBook:
    specs: list[ExpectationSpec] = field(default_factory=list)
    # Transactions the network is told to serve as failed on chain.
    failed: list[str] = field(default_factory=list)
    # The status each record must end in.
    expected: dict[str, str] = field(default_factory=dict)

    def add(self, status: str, **fields: Any) -> None:
        spec = ExpectationSpec.model_validate(fields)
        self.specs.append(spec)
        self.expected[spec.external_id] = status


def _hash_of(label: str) -> str:
    return hashlib.sha256(f"stellar-reconciler demo {label}".encode()).hexdigest()


# An account nobody on the simulated network uses: a payment to it never comes.
NOBODY = StrKey.encode_ed25519_public_key(hashlib.sha256(b"demo: nobody").digest())


def _successful_transfers(recorded: Sequence[dict[str, Any]], token: str) -> list[dict[str, Any]]:
    return [
        e
        for e in recorded
        if e["contractId"] == token
        and e["inSuccessfulContractCall"]
        and decode_scval_b64(e["topic"][0]) == "transfer"
    ]


def _alone_in_their_transaction(transfers: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The transfers that are the only one of their transaction, newest first."""
    per_tx: dict[str, int] = {}
    for e in transfers:
        per_tx[e["txHash"]] = per_tx.get(e["txHash"], 0) + 1
    return [e for e in reversed(transfers) if per_tx[e["txHash"]] == 1]


def _pair(event: dict[str, Any]) -> tuple[str, str]:
    sender, recipient = (str(decode_scval_b64(t)) for t in event["topic"][1:3])
    return sender, recipient


def _amount(event: dict[str, Any]) -> int:
    return int(str(decode_scval_b64(event["value"])))


def _instalments(
    transfers: Sequence[dict[str, Any]], taken_pairs: set[tuple[str, str]]
) -> list[dict[str, Any]]:
    """The transfers of the pair (sender, recipient) paid most recently among those paid two
    times or more, oldest first; none when no pair repeats. Pairs in `taken_pairs` (other
    records') are passed over, so the plan claims no other record's transfer."""
    by_pair: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for e in transfers:
        by_pair.setdefault(_pair(e), []).append(e)
    repeated = [
        paid for pair, paid in by_pair.items() if len(paid) >= 2 and pair not in taken_pairs
    ]
    return max(repeated, key=lambda paid: paid[-1]["id"], default=[])


def demo_book(
    recorded: Sequence[dict[str, Any]],
    token: str,
    checkpoint: int,
    upgrade_ledger: int | None = None,
) -> DemoBook:
    """The records, over `recorded` (getEvents entries up to `checkpoint`, the service's);
    transfers from `upgrade_ledger` on carry their amount as decimal text."""
    everything = _successful_transfers(recorded, token)
    upgraded_from = upgrade_ledger if upgrade_ledger is not None else checkpoint + 1
    readable = [e for e in everything if e["ledger"] < upgraded_from]
    upgraded = [e for e in everything if e["ledger"] >= upgraded_from]
    transfers = _alone_in_their_transaction(readable)
    if len(transfers) < _TRANSFERS_NEEDED:
        return DemoBook()
    book = DemoBook()

    def paid(external_id: str, event: dict[str, Any], status: str, **more: Any) -> None:
        sender, recipient = _pair(event)
        fields = {
            "external_id": external_id,
            "contract_id": token,
            "event_name": "transfer",
            "from": sender,
            "to": recipient,
            "amount": str(decode_scval_b64(event["value"])),
            "deadline_ledger": checkpoint,
        }
        book.add(status, **{**fields, **more})

    first, second, near, short = used = transfers[:_TRANSFERS_NEEDED]
    paid("demo/invoice/1001", first, MATCHED)
    paid("demo/invoice/1002", second, MATCHED, tx_hash=second["txHash"])
    paid(
        "demo/invoice/1003-fx",
        near,
        MATCHED,
        amount=str(_amount(near) + NEAR_MISS),
        tolerance=str(TOLERANCE),
    )
    paid("demo/invoice/1004-short", short, AMOUNT_MISMATCH, amount=str(_amount(short) + SHORTFALL))
    paid("demo/invoice/1005-unpaid", first, MISSING_EXPECTED, to=NOBODY)
    failed = _hash_of("failed payout")
    book.failed.append(failed)
    for external_id, tx_hash, status in (
        ("demo/payout/2001-failed", failed, FAILED_ON_CHAIN),
        ("demo/payout/2002-never-sent", _hash_of("never sent"), NOT_FOUND),
    ):
        book.add(
            status,
            external_id=external_id,
            contract_id=token,
            event_name="transfer",
            tx_hash=tx_hash,
            amount="1000000",
            deadline_ledger=checkpoint,
        )
    for number in (3001, 3002):
        paid(
            f"demo/subscription/{number}",
            first,
            PENDING,
            to=NOBODY,
            deadline_ledger=None,
            deadline_ledgers=PENDING_LEDGERS,
        )
    # Paid so far by every transfer of its pair, one more instalment of the last one's size
    # still due: open until its deadline. (Transfers after the upgrade carry no readable
    # amount, so none of them is ever summed into it.)
    instalments = _instalments(readable, {_pair(e) for e in used})
    if instalments:
        due = sum(_amount(e) for e in instalments) + _amount(instalments[-1])
        paid(
            "demo/plan/4001-instalments",
            instalments[-1],
            PARTIALLY_MATCHED,
            amount=str(due),
            allow_partial=True,
            deadline_ledger=None,
            deadline_ledgers=PENDING_LEDGERS,
        )
    # Paid after the contract upgrade: the transfer fits, its amount cannot be read.
    after_upgrade = _alone_in_their_transaction(upgraded)
    if after_upgrade:
        late = after_upgrade[0]
        text = str(decode_scval_b64(late["value"]))
        paid(
            "demo/invoice/1006-upgraded",
            late,
            AMOUNT_UNREADABLE,
            tx_hash=late["txHash"],
            amount=str(int(Decimal(text).scaleb(UPGRADED_DECIMALS))),
        )
    return book


def load_demo_records(net: SimNetwork, store: Store, checkpoint: int) -> DemoBook:
    """Tell the network which transactions failed, then post the records (blocking)."""
    first = max(net.first_ledger, checkpoint - LOOKBACK_LEDGERS + 1)
    book = demo_book(
        net.record_events(first, checkpoint),
        net.token_contract_id,
        checkpoint,
        net.config.upgrade_ledger,
    )
    for tx_hash in book.failed:
        net.transactions.fail(tx_hash)
    if book.specs:
        store.expectations.create(book.specs)
    return book
