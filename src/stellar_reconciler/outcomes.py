"""OutcomeChecker: asks getTransaction about pinned records that got no event, once per poll.

Only records the store marked due are asked about (deadline passed unmatched, or a failed
call of their transaction seen), at most `limit` per poll, so a backlog of thousands costs a
few calls a poll and never delays indexing. A fault of the RPC leaves the records due for the
next poll; a node that cannot answer getTransaction at all settles them missing_expected.
"""

from __future__ import annotations

import asyncio

import structlog

from stellar_reconciler.errors import RpcError, RpcRequestError, RpcTransientError
from stellar_reconciler.rpc import StellarRpc
from stellar_reconciler.store import TxOutcomes

log = structlog.get_logger("stellar_reconciler.outcomes")

# With checks off, due records still settle (missing_expected), this many per poll.
SETTLE_UNASKED_PER_POLL = 500


class OutcomeChecker:
    def __init__(self, rpc: StellarRpc, outcomes: TxOutcomes, limit: int) -> None:
        self.rpc = rpc
        self.outcomes = outcomes
        self.limit = limit

    async def check(self) -> dict[str, int]:
        """Ask about the records due (up to the limit); returns how many settled per status."""
        settled: dict[str, int] = {}
        if self.limit == 0:
            due = await asyncio.to_thread(self.outcomes.due, SETTLE_UNASKED_PER_POLL)
            for record in due:
                why = "TX_OUTCOME_CHECKS_PER_POLL is 0, so it was not asked"
                status = await asyncio.to_thread(self.outcomes.settle, record, None, why)
                if status is not None:
                    settled[status] = settled.get(status, 0) + 1
            return settled
        due = await asyncio.to_thread(self.outcomes.due, self.limit)
        for record in due:
            why = ""
            try:
                outcome = await self.rpc.get_transaction(record.tx_hash)
            except RpcTransientError as exc:
                log.warning("tx_outcome_deferred", external_id=record.external_id, error=str(exc))
                break
            except RpcRequestError as exc:
                # -32601: the node does not serve getTransaction; -32602: it refuses the hash.
                outcome, why = None, str(exc)
            except RpcError as exc:
                log.warning("tx_outcome_unreadable", external_id=record.external_id, error=str(exc))
                continue
            status = await asyncio.to_thread(self.outcomes.settle, record, outcome, why)
            if status is not None:
                settled[status] = settled.get(status, 0) + 1
                log.info(
                    "tx_outcome",
                    external_id=record.external_id,
                    tx_hash=record.tx_hash,
                    tx_status=outcome.status if outcome else None,
                    result_code=outcome.result_code if outcome else None,
                    status=status,
                )
        return settled
