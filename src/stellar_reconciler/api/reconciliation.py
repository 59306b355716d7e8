"""/api/discrepancies, /api/gaps, /api/verify and /api/jobs: what did not agree, and checks."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, model_validator
from starlette.concurrency import run_in_threadpool

from stellar_reconciler.api.auth import Actor, Admin, ReadAccess
from stellar_reconciler.api.context import ApiContext, context
from stellar_reconciler.api.errors import ApiError, invalid_param
from stellar_reconciler.api.params import MAX_ROW_ID, Digits, LedgerField, Limit, RowIdPath
from stellar_reconciler.control import JobKind
from stellar_reconciler.store import KINDS

router = APIRouter(tags=["reconciliation"])
Ctx = Annotated[ApiContext, Depends(context)]


class ResolveRequest(BaseModel):
    note: str = Field(min_length=1, max_length=2000, description="Why it is resolved")


class RangeRequest(BaseModel):
    from_ledger: LedgerField
    to_ledger: LedgerField

    @model_validator(mode="after")
    def _ordered(self) -> RangeRequest:
        if self.from_ledger > self.to_ledger:
            raise ValueError("from_ledger must not be after to_ledger")
        return self


def check_stored_range(ctx: ApiContext, request: RangeRequest, any_age: bool = False) -> None:
    """A range to re-read must be behind the checkpoint, and (unless `any_age`, as for a
    backfill, which reads the lake) still inside what the RPC keeps."""
    checkpoint = ctx.status.last_processed_ledger
    if checkpoint is None or request.to_ledger > checkpoint:
        raise invalid_param(
            "to_ledger", f"must not be after the last processed ledger ({checkpoint})", "body"
        )
    tip = ctx.status.tip
    if not any_age and tip is not None and request.from_ledger < tip.oldest_ledger:
        raise invalid_param(
            "from_ledger",
            f"is older than the RPC keeps (oldest available: {tip.oldest_ledger})",
            "body",
        )


@router.get("/api/discrepancies", dependencies=[ReadAccess], summary="Discrepancies, newest first")
def list_discrepancies(
    ctx: Ctx,
    kind: Annotated[
        str | None,
        Query(description=f"One of {', '.join(KINDS)}", json_schema_extra={"enum": list(KINDS)}),
    ] = None,
    is_open: Annotated[
        bool | None, Query(alias="open", description="true: open only; false: resolved only")
    ] = None,
    limit: Limit = 100,
    before_id: Annotated[
        int | None, Query(ge=1, le=MAX_ROW_ID, description="Page: ids below this one"), Digits
    ] = None,
) -> dict[str, Any]:
    if kind is not None and kind not in KINDS:
        raise invalid_param("kind", f"must be one of {', '.join(KINDS)}")
    rows = ctx.store.discrepancies.listing(kind, is_open, limit, before_id)
    return {
        "discrepancies": rows,
        "open_counts": ctx.store.discrepancies.open_counts(),
        "next_before_id": rows[-1]["id"] if len(rows) == limit else None,
    }


@router.get("/api/discrepancies/{discrepancy_id}", dependencies=[ReadAccess])
def get_discrepancy(ctx: Ctx, discrepancy_id: RowIdPath) -> dict[str, Any]:
    found = ctx.store.discrepancies.get(discrepancy_id)
    if found is None:
        raise ApiError(404, f"no discrepancy {discrepancy_id}")
    return found


@router.post(
    "/api/discrepancies/{discrepancy_id}/resolve",
    summary="Close an open discrepancy with a note (admin token)",
    responses={409: {"description": "The discrepancy is already resolved"}},
)
def resolve_discrepancy(
    ctx: Ctx, actor: Admin, discrepancy_id: RowIdPath, body: ResolveRequest
) -> dict[str, Any]:
    found = ctx.store.discrepancies.get(discrepancy_id)
    if found is None:
        raise ApiError(404, f"no discrepancy {discrepancy_id}")
    if not found["open"]:
        raise ApiError(409, f"discrepancy {discrepancy_id} is already resolved")
    ctx.store.discrepancies.resolve(discrepancy_id, actor.name, body.note)
    actor.audit(ctx, "resolve_discrepancy", str(discrepancy_id), {"note": body.note})
    # Live views show the change now, not at the next sample (notify belongs to the loop).
    ctx.status.notify_threadsafe()
    return ctx.store.discrepancies.get(discrepancy_id) or {}


@router.get("/api/gaps", dependencies=[ReadAccess], summary="Missing ledger ranges in the store")
def list_gaps(ctx: Ctx) -> dict[str, Any]:
    first, last, count = ctx.store.ledger_bounds()
    tip = ctx.status.tip
    gaps = [
        {
            "first_ledger": a,
            "last_ledger": b,
            "ledgers": b - a + 1,
            "within_retention": tip is not None and a >= tip.oldest_ledger,
        }
        for a, b in ctx.store.gaps.find()
    ]
    acknowledged = [
        {"first_ledger": g.first_ledger, "last_ledger": g.last_ledger, "note": g.note}
        for g in ctx.store.gaps.acknowledged()
    ]
    pending = ctx.store.gaps.pending_gap()
    return {
        "stored": {"first_ledger": first, "last_ledger": last, "ledgers": count},
        "gaps": gaps,
        "acknowledged": acknowledged,
        # The retention gap the worker is stopped at, and every consent with its state.
        "retention_gap": pending.as_json() if pending is not None else None,
        "consents": ctx.store.consents.listing(),
    }


@router.post(
    "/api/verify",
    status_code=202,
    summary="Re-verify a stored range against the RPC, filling gaps and repairing differences",
)
async def verify(ctx: Ctx, actor: Admin, body: RangeRequest) -> JSONResponse:
    return await submit_job(ctx, actor, "verify", body)


async def submit_job(
    ctx: ApiContext, actor: Actor, kind: JobKind, body: RangeRequest
) -> JSONResponse:
    """Queue a range job and audit it. Async because the job queue belongs to the event loop;
    the audit write goes to a thread."""
    check_stored_range(ctx, body, any_age=kind == "backfill")
    job = ctx.controls.submit(kind, body.from_ledger, body.to_ledger, actor.name)
    target = f"{body.from_ledger}-{body.to_ledger}"
    await run_in_threadpool(actor.audit, ctx, kind, target, {"job": job.id})
    return JSONResponse(job.as_json(), status_code=202)


@router.get("/api/jobs", dependencies=[ReadAccess], summary="Recent rescans and verifications")
def list_jobs(ctx: Ctx) -> dict[str, Any]:
    return {"jobs": [job.as_json() for job in ctx.controls.jobs()]}


@router.get("/api/jobs/{job_id}", dependencies=[ReadAccess], summary="One job and its progress")
def get_job(ctx: Ctx, job_id: RowIdPath) -> dict[str, Any]:
    job = ctx.controls.job(job_id)
    if job is None:
        raise ApiError(404, f"no job {job_id} (finished jobs are kept for a while only)")
    return job.as_json()
