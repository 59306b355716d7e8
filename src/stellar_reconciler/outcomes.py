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
from stellar_reconciler.store import Answer, DueRecord, TxOutcomes

log = structlog.get_logger("stellar_reconciler.outcomes")

# With checks off, due records still settle (missing_expected), this many per poll.
SETTLE_UNASKED_PER_POLL = 500
# getTransaction calls in flight at once (the RPC client keeps 8 connections).
CONCURRENT_CALLS = 4


class OutcomeChecker:
    def __init__(self, rpc: StellarRpc, outcomes: TxOutcomes, limit: int) -> None:
        self.rpc = rpc
        self.outcomes = outcomes
        self.limit = limit

    async def check(self) -> dict[str, int]:
        """Ask about the records due (up to the limit) and settle what the answers decide, in
        one transaction; returns how many settled per status."""
        if self.limit == 0:
            due = await asyncio.to_thread(self.outcomes.due, SETTLE_UNASKED_PER_POLL)
            why = "TX_OUTCOME_CHECKS_PER_POLL is 0, so it was not asked"
            answers = [Answer(record, None, why) for record in due]
        else:
            due = await asyncio.to_thread(self.outcomes.due, self.limit)
            answers = await self._ask(due)
        statuses = await asyncio.to_thread(self.outcomes.settle_all, answers)
        settled: dict[str, int] = {}
        for answer, status in zip(answers, statuses, strict=True):
            if status is None:
                continue
            settled[status] = settled.get(status, 0) + 1
            outcome = answer.outcome
            log.info(
                "tx_outcome",
                external_id=answer.record.external_id,
                tx_hash=answer.record.tx_hash,
                tx_status=outcome.status if outcome else None,
                result_code=outcome.result_code if outcome else None,
                status=status,
            )
        return settled

    async def _ask(self, due: list[DueRecord]) -> list[Answer]:
        """Ask about each record, a few calls at a time (against a remote node a poll's
        worth one by one would hold up indexing); after an overload answer the calls not yet
        started wait for the next poll instead of adding to the load."""
        slots = asyncio.Semaphore(CONCURRENT_CALLS)
        overloaded = False

        async def one(record: DueRecord) -> Answer | None:
            nonlocal overloaded
            async with slots:
                if overloaded:
                    return None
                try:
                    return Answer(record, await self.rpc.get_transaction(record.tx_hash))
                except RpcTransientError as exc:
                    overloaded = True
                    log.warning(
                        "tx_outcome_deferred", external_id=record.external_id, error=str(exc)
                    )
                except RpcRequestError as exc:
                    # -32601: the node does not serve getTransaction; -32602: it refuses it.
                    return Answer(record, None, str(exc))
                except RpcError as exc:
                    log.warning(
                        "tx_outcome_unreadable", external_id=record.external_id, error=str(exc)
                    )
                return None

        answers = await asyncio.gather(*(one(record) for record in due))
        return [answer for answer in answers if answer is not None]
