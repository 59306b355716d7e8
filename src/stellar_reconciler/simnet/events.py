"""Contract events: what each simulated ledger emits, generated from the seed and stored compactly.

A ledger's events are kept column by column (one tuple per field) in the order stellar-rpc
serves them, which is the order of their ids: transaction-level `fee` charges first
(transaction 0, one counter for the whole ledger), then each transaction's operation events,
then `fee` refunds (transaction TX_MASK). Topic and value ScVals are stored already
base64-encoded, and topics tuples are shared between events, so serving a page only formats
strings and a million events fit in a few hundred megabytes.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from typing import Any

from stellar_sdk import xdr

from stellar_reconciler.simnet import codec
from stellar_reconciler.simnet.cast import Cast, Party
from stellar_reconciler.simnet.config import SimNetConfig
from stellar_reconciler.simnet.cursor import TX_MASK

CONTRACT = "contract"
SYSTEM = "system"

# One event row: type, contract id, tx, op, index, tx hash, successful, topics, value.
Row = tuple[str, str, int, int, int, str, bool, tuple[str, ...], str]
# What an operation emits: type, contract id, topics, value.
Emission = tuple[str, str, tuple[str, ...], str]

# About 3% of transactions fail: they still pay a fee but emit no contract events.
FAILED_TX_RATE = 0.03
REFUND_RATE = 0.5
# One amount in a hundred exceeds 2^64, so clients must not squeeze i128 into 64 bits.
HUGE_AMOUNT_RATE = 0.01
MAX_AMOUNT = 10**12


class LedgerEvents:
    """The events of one ledger, column by column, in id order."""

    __slots__ = (
        "closed_at",
        "contract_ids",
        "contract_set",
        "indexes",
        "ops",
        "sequence",
        "successful",
        "topics",
        "tx_hashes",
        "txs",
        "types",
        "values",
    )

    def __init__(self, sequence: int, closed_at: str, rows: list[Row]) -> None:
        self.sequence = sequence
        self.closed_at = closed_at
        columns = tuple(zip(*rows, strict=True))
        self.types: tuple[str, ...] = columns[0]
        self.contract_ids: tuple[str, ...] = columns[1]
        self.txs: tuple[int, ...] = columns[2]
        self.ops: tuple[int, ...] = columns[3]
        self.indexes: tuple[int, ...] = columns[4]
        self.tx_hashes: tuple[str, ...] = columns[5]
        self.successful: tuple[bool, ...] = columns[6]
        self.topics: tuple[tuple[str, ...], ...] = columns[7]
        self.values: tuple[str, ...] = columns[8]
        self.contract_set = frozenset(self.contract_ids)

    def __len__(self) -> int:
        return len(self.values)

    def event_id(self, i: int) -> str:
        toid = (self.sequence << 32) | (self.txs[i] << 12) | self.ops[i]
        return f"{toid:019d}-{self.indexes[i]:010d}"

    def position(self, i: int) -> tuple[int, int, int]:
        """(tx, op, index): with the ledger, the event's cursor."""
        return (self.txs[i], self.ops[i], self.indexes[i])

    def fragment(self, i: int, value: str | None = None) -> str:
        """The event as getEvents serves it with base64 XDR, already serialised as JSON.

        Every interpolated field is a number, a strkey, hex, base64 or an ISO time, none of
        which needs JSON escaping.
        """
        toid = (self.sequence << 32) | (self.txs[i] << 12) | self.ops[i]
        topics = '","'.join(self.topics[i])
        return (
            f'{{"type":"{self.types[i]}","ledger":{self.sequence},'
            f'"ledgerClosedAt":"{self.closed_at}","contractId":"{self.contract_ids[i]}",'
            f'"id":"{toid:019d}-{self.indexes[i]:010d}","operationIndex":{self.ops[i]},'
            f'"transactionIndex":{self.txs[i]},"txHash":"{self.tx_hashes[i]}",'
            f'"inSuccessfulContractCall":{"true" if self.successful[i] else "false"},'
            f'"topic":["{topics}"],"value":"{value or self.values[i]}"}}'
        )

    def json_fragment(self, i: int, to_json: Callable[[str], str], value: str | None = None) -> str:
        """The event as served with xdrFormat "json": topicJson/valueJson replace topic/value."""
        record = self.record(i)
        del record["topic"], record["value"]
        head = json.dumps(record, separators=(",", ":"))[:-1]
        topics = ",".join(to_json(t) for t in self.topics[i])
        return f'{head},"topicJson":[{topics}],"valueJson":{to_json(value or self.values[i])}}}'

    def record(self, i: int) -> dict[str, Any]:
        """The event as a plain dict, with the same keys and JSON types as getEvents."""
        return {
            "type": self.types[i],
            "ledger": self.sequence,
            "ledgerClosedAt": self.closed_at,
            "contractId": self.contract_ids[i],
            "id": self.event_id(i),
            "operationIndex": self.ops[i],
            "transactionIndex": self.txs[i],
            "txHash": self.tx_hashes[i],
            "inSuccessfulContractCall": self.successful[i],
            "topic": list(self.topics[i]),
            "value": self.values[i],
        }


def scval_json(b64: str) -> str:
    """Stellar XDR-JSON of one base64 ScVal, compact, as stellar-sdk renders it."""
    rendered: str = xdr.SCVal.from_xdr(b64).to_json()
    return json.dumps(json.loads(rendered), separators=(",", ":"))


class EventFactory:
    """Generates a ledger's events from (seed, sequence) alone, so any ledger can be rebuilt."""

    def __init__(self, config: SimNetConfig, cast: Cast) -> None:
        self._config = config
        self._cast = cast
        self._recipients = cast.accounts * 4 + cast.contracts
        # Topics without per-event parts recur; sharing one tuple per distinct topic list
        # keeps a million events small.
        self._shared_topics: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._escrow_kinds: tuple[Callable[[random.Random, Party], Emission], ...] = (
            self._job_posted,
            self._job_funded,
            self._milestone_released,
            self._dispute_opened,
            self._dispute_resolved,
            self._escrow_refunded,
        )

    def carries_events(self, sequence: int) -> bool:
        config = self._config
        offset = sequence - config.first_ledger
        return config.events_per_ledger > 0 and offset % config.event_every == 0

    def generate(self, sequence: int, closed_at: str) -> LedgerEvents | None:
        """The events of ledger `sequence`, or None when it carries none."""
        if not self.carries_events(sequence):
            return None
        config = self._config
        rng = random.Random(config.seed * 4_294_967_296 + sequence)
        mean = config.events_per_ledger
        budget = rng.randint(mean - mean // 2, mean + mean // 2)
        ordinal = (sequence - config.first_ledger) // config.event_every
        upgraded = config.upgrade_ledger is not None and sequence >= config.upgrade_ledger
        system_due = config.system_event_every > 0 and ordinal % config.system_event_every == 0
        fee_symbol = self._cast.symbol_topic("fee")
        native = self._cast.native.strkey
        fees: list[Row] = []
        ops: list[Row] = []
        refunds: list[Row] = []
        tx = 0
        while budget > 0:
            tx += 1
            tx_hash = hashlib.sha256(f"{config.seed}:{sequence}:{tx}".encode()).hexdigest()
            payer = rng.choice(self._cast.accounts)
            fee_topics = self._share((fee_symbol, payer.topic))
            refund = False
            fee = 0
            if config.fee_events:
                failed = budget == 1 or rng.random() < FAILED_TX_RATE
                fee = rng.randint(100, 2_000_000)
                charge = codec.b64(codec.i128(fee))
                fees.append(
                    (CONTRACT, native, 0, 0, len(fees), tx_hash, not failed, fee_topics, charge)
                )
                budget -= 1
                if failed:
                    continue
                refund = budget >= 3 and rng.random() < REFUND_RATE
            count = min(rng.randint(1, 4), budget - refund)
            for index in range(count):
                if system_due:
                    kind, contract, topics, value = self._system_event(rng)
                    system_due = False
                else:
                    kind, contract, topics, value = self._operation_event(rng, payer, upgraded)
                ops.append((kind, contract, tx, 0, index, tx_hash, True, topics, value))
            budget -= count
            if refund:
                back = codec.b64(codec.i128(-rng.randint(1, fee)))
                refunds.append(
                    (CONTRACT, native, TX_MASK, 0, len(refunds), tx_hash, True, fee_topics, back)
                )
                budget -= 1
        return LedgerEvents(sequence, closed_at, fees + ops + refunds)

    def _share(self, topics: tuple[str, ...]) -> tuple[str, ...]:
        return self._shared_topics.setdefault(topics, topics)

    def _amount(self, rng: random.Random) -> int:
        if rng.random() < HUGE_AMOUNT_RATE:
            return rng.randint(1 << 64, 1 << 70)
        return rng.randint(1, MAX_AMOUNT)

    def _operation_event(
        self, rng: random.Random, payer: Party, upgraded: bool = False
    ) -> Emission:
        draw = rng.random()
        if draw < 0.55:
            kind, contract, topics, value = self._token_event(rng, "transfer", payer)
            if upgraded:
                value = self._upgraded_value(value)
            return kind, contract, topics, value
        if draw < 0.65:
            return self._token_event(rng, "mint", self._cast.accounts[0])
        return rng.choice(self._escrow_kinds)(rng, payer)

    def _token_event(self, rng: random.Random, name: str, source: Party) -> Emission:
        cast = self._cast
        recipient = rng.choice(self._recipients)
        asset = cast.asset_topics[rng.randrange(len(cast.asset_topics))]
        topics = self._share((cast.symbol_topic(name), source.topic, recipient.topic, asset))
        return CONTRACT, cast.token.strkey, topics, codec.b64(codec.i128(self._amount(rng)))

    def _upgraded_value(self, value: str) -> str:
        """A transfer's i128 value in the shape the upgraded contract emits (the same amount,
        drawn before, so the chain's randomness does not change)."""
        amount = codec.i128_value(codec.unb64(value))
        assert amount is not None  # transfers carry an i128 before the upgrade
        shape = self._config.upgrade_shape
        if shape == "string":
            whole, fraction = divmod(amount, 10**7)
            return codec.b64(codec.text(codec.SCV_STRING, f"{whole}.{fraction:07d}"))
        key = "amount" if shape == "map" else "value"
        return codec.b64(codec.scmap([(codec.text(codec.SCV_SYMBOL, key), codec.i128(amount))]))

    def _escrow(self, name: str, job: int, *parties: Party) -> tuple[str, ...]:
        job_topic = codec.b64(codec.u64(job))
        return (self._cast.symbol_topic(name), job_topic, *(p.topic for p in parties))

    def _entries(self, **values: bytes) -> str:
        # Keyword order is the call order; callers list keys alphabetically, which is ScVal
        # order for symbols, so the map is valid for Soroban.
        sym = self._cast.symbol
        return codec.b64(codec.scmap([(sym(key), value) for key, value in values.items()]))

    def _job_posted(self, rng: random.Random, client: Party) -> Emission:
        job = rng.randrange(1, 1 << 40)
        value = self._entries(
            budget=codec.i128(self._amount(rng)),
            client=client.scval,
            milestones=codec.u32(rng.randint(1, 8)),
        )
        return CONTRACT, self._cast.escrow.strkey, self._escrow("job_posted", job, client), value

    def _job_funded(self, rng: random.Random, client: Party) -> Emission:
        job = rng.randrange(1, 1 << 40)
        value = self._entries(amount=codec.i128(self._amount(rng)), funder=client.scval)
        return CONTRACT, self._cast.escrow.strkey, self._escrow("job_funded", job), value

    def _milestone_released(self, rng: random.Random, client: Party) -> Emission:
        job = rng.randrange(1, 1 << 40)
        freelancer = rng.choice(self._cast.accounts)
        value = self._entries(
            amount=codec.i128(self._amount(rng)),
            freelancer=freelancer.scval,
            milestone=codec.u32(rng.randint(1, 8)),
        )
        topics = self._escrow("milestone_released", job, freelancer)
        return CONTRACT, self._cast.escrow.strkey, topics, value

    def _dispute_opened(self, rng: random.Random, client: Party) -> Emission:
        job = rng.randrange(1, 1 << 40)
        reason = rng.choice(("late_delivery", "quality", "non_payment"))
        value = self._entries(
            milestone=codec.u32(rng.randint(1, 8)),
            opened_by=client.scval,
            reason=self._cast.symbol(reason),
        )
        return CONTRACT, self._cast.escrow.strkey, self._escrow("dispute_opened", job), value

    def _dispute_resolved(self, rng: random.Random, client: Party) -> Emission:
        job = rng.randrange(1, 1 << 40)
        winner = rng.choice((client, rng.choice(self._cast.accounts)))
        split = [codec.i128(self._amount(rng)), codec.i128(self._amount(rng))]
        value = codec.b64(codec.vec([winner.scval, *split]))
        return CONTRACT, self._cast.escrow.strkey, self._escrow("dispute_resolved", job), value

    def _escrow_refunded(self, rng: random.Random, client: Party) -> Emission:
        job = rng.randrange(1, 1 << 40)
        value = codec.b64(codec.i128(self._amount(rng)))
        topics = self._escrow("escrow_refunded", job, client)
        return CONTRACT, self._cast.escrow.strkey, topics, value

    def _system_event(self, rng: random.Random) -> Emission:
        # A simulated host-level notice about the escrow contract's code being replaced.
        escrow = self._cast.escrow
        topics = self._share((self._cast.symbol_topic("executable_update"), escrow.topic))
        old = rng.randint(1, 1000)
        value = codec.b64(codec.vec([codec.u32(old), codec.u32(old + 1)]))
        return SYSTEM, escrow.strkey, topics, value
