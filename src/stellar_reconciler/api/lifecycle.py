"""DELETE and PATCH /api/expectations/{external_id}: cancel a pending record, move its deadline.

Both need the admin token and are written to the audit log; the store refuses a settled
record (409) and a deadline that cannot apply (422). Database writes go to a thread.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from stellar_reconciler.api.auth import Admin
from stellar_reconciler.api.context import ApiContext, context
from stellar_reconciler.api.errors import ApiError
from stellar_reconciler.errors import ExpectationLifecycleError
from stellar_reconciler.expectation_spec import MAX_LEDGER

router = APIRouter(tags=["expectations"])
Ctx = Annotated[ApiContext, Depends(context)]
ExternalId = Annotated[str, Path(min_length=1, max_length=128)]
_ANSWERS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or wrong bearer token"},
    403: {"description": "ADMIN_TOKEN is not configured"},
    404: {"description": "No record has this external_id"},
    409: {
        "description": "The record is settled already (or waits for its transaction), or is "
        "a member of a group, which changes only as a whole"
    },
}


class DeadlineChange(BaseModel):
    """A new deadline: exactly one of an absolute ledger or ledgers after the checkpoint."""

    model_config = ConfigDict(extra="forbid")

    deadline_ledger: int | None = Field(
        default=None, ge=1, le=MAX_LEDGER, description="New last ledger the event may appear in"
    )
    deadline_ledgers: int | None = Field(
        default=None, ge=1, le=10_000_000, description="New deadline: ledgers after the checkpoint"
    )

    @model_validator(mode="after")
    def _one(self) -> DeadlineChange:
        if (self.deadline_ledger is None) == (self.deadline_ledgers is None):
            raise ValueError(
                "give exactly one of deadline_ledger (an absolute ledger) or deadline_ledgers "
                "(ledgers after the service's current checkpoint)"
            )
        return self


def _refused(exc: ExpectationLifecycleError) -> ApiError:
    return ApiError(exc.status, str(exc))


@router.delete(
    "/api/expectations/{external_id:path}",
    summary="Cancel a pending expected record",
    description=(
        "The record stays, with status `cancelled`, `cancelled_at` and `cancelled_by`, and "
        "never claims an event; the audit log records the cancel. Cancelling it again "
        "answers the same record. A settled record (matched, mismatched, missing, failed, "
        "not found) cannot be cancelled: 409. Its external_id stays taken. Needs the admin "
        "token."
    ),
    responses={**_ANSWERS, 200: {"description": "The cancelled record"}},
)
async def cancel_expectation(ctx: Ctx, actor: Admin, external_id: ExternalId) -> dict[str, Any]:
    try:
        done = await run_in_threadpool(ctx.store.lifecycle.cancel, external_id, actor.name)
    except ExpectationLifecycleError as exc:
        raise _refused(exc) from exc
    if done.changed:
        await run_in_threadpool(actor.audit, ctx, "expectations.cancel", external_id)
    return done.record


@router.patch(
    "/api/expectations/{external_id:path}",
    summary="Move a pending expected record's deadline",
    description=(
        'Body: `{"deadline_ledger": N}` (absolute) or `{"deadline_ledgers": N}` (after the '
        "current checkpoint). The new deadline must be after the last processed ledger (422 "
        "otherwise). A settled record, or one past its deadline waiting for its "
        "transaction's outcome, is a 409. A re-post of the original record then differs in "
        "its deadline (409). The audit log records the old and new deadline. Needs the admin "
        "token."
    ),
    responses={
        **_ANSWERS,
        200: {"description": "The record with its new deadline"},
        422: {"description": "The body is invalid, or the deadline cannot apply"},
    },
)
async def change_deadline(
    ctx: Ctx, actor: Admin, external_id: ExternalId, body: DeadlineChange
) -> dict[str, Any]:
    try:
        done = await run_in_threadpool(
            ctx.store.lifecycle.set_deadline,
            external_id,
            body.deadline_ledger,
            body.deadline_ledgers,
        )
    except ExpectationLifecycleError as exc:
        raise _refused(exc) from exc
    after = {k: done.record[k] for k in ("deadline_ledger", "deadline_ledgers")}
    detail = {"from": done.before, "to": after}
    await run_in_threadpool(actor.audit, ctx, "expectations.deadline", external_id, detail)
    return done.record
