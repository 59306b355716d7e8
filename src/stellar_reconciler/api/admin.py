"""Operator actions (admin token): restart, pause and resume the worker, rescan a range,
accept (or stop accepting) lost ledgers; and the audit log of all of them.

Handlers that touch the controls are async: the controls belong to the event loop the
worker runs on. Database writes (the audit) go to a thread.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, model_validator
from starlette.concurrency import run_in_threadpool

from stellar_reconciler.api.auth import Admin, ReadAccess
from stellar_reconciler.api.context import ApiContext, context
from stellar_reconciler.api.errors import ApiError
from stellar_reconciler.api.params import LedgerField, Limit
from stellar_reconciler.api.reconciliation import RangeRequest, submit_job
from stellar_reconciler.errors import GapConsentNotFoundError, GapConsentRefusedError

router = APIRouter(tags=["operations"])
Ctx = Annotated[ApiContext, Depends(context)]


class GapConsentRequest(BaseModel):
    through_ledger: LedgerField | None = Field(
        default=None, description="Skip lost ledgers up to this one"
    )
    through_oldest: bool = Field(
        default=False,
        strict=True,
        description="Skip whatever of the pending gap the RPC has lost when the worker resumes",
    )
    note: str = Field(default="outside RPC retention", min_length=1, max_length=2000)

    @model_validator(mode="after")
    def _one_of(self) -> GapConsentRequest:
        if (self.through_ledger is None) == (not self.through_oldest):
            raise ValueError("give exactly one of through_ledger or through_oldest")
        return self


def _worker_state(ctx: ApiContext) -> dict[str, Any]:
    return {
        "running": ctx.status.worker_running,
        "paused": ctx.status.paused,
        "health": ctx.status.health(),
    }


@router.post(
    "/api/worker/restart",
    status_code=202,
    summary="Restart the worker; the HTTP server stays up",
)
async def restart_worker(ctx: Ctx, actor: Admin) -> JSONResponse:
    ctx.controls.request_restart()
    await run_in_threadpool(actor.audit, ctx, "restart_worker", None)
    return JSONResponse({"restart_requested": True, **_worker_state(ctx)}, status_code=202)


@router.post("/api/worker/pause", summary="Stop taking new batches until resumed")
async def pause_worker(ctx: Ctx, actor: Admin) -> dict[str, Any]:
    ctx.controls.pause()
    await run_in_threadpool(actor.audit, ctx, "pause_worker", None)
    return _worker_state(ctx)


@router.post("/api/worker/resume", summary="Resume after a pause")
async def resume_worker(ctx: Ctx, actor: Admin) -> dict[str, Any]:
    ctx.controls.resume()
    await run_in_threadpool(actor.audit, ctx, "resume_worker", None)
    return _worker_state(ctx)


@router.post(
    "/api/rescans",
    status_code=202,
    summary="Re-index a stored ledger range from the RPC, one transaction per batch",
)
async def rescan(ctx: Ctx, actor: Admin, body: RangeRequest) -> JSONResponse:
    return await submit_job(ctx, actor, "rescan", body)


@router.post(
    "/api/backfills",
    status_code=202,
    summary="Fill the ledgers of a range missing from the database, of any age, from the data "
    "lake (LAKE_URL) where the RPC no longer keeps them and from the RPC where it does",
)
async def backfill(ctx: Ctx, actor: Admin, body: RangeRequest) -> JSONResponse:
    return await submit_job(ctx, actor, "backfill", body)


@router.post(
    "/api/gaps/acknowledge",
    summary="Consent to lose the retention gap the worker is stopped at (carried out by it)",
    responses={409: {"description": "No retention gap is pending, or it already has a consent"}},
)
def acknowledge_gap(ctx: Ctx, actor: Admin, body: GapConsentRequest) -> dict[str, Any]:
    try:
        consent = ctx.store.consents.give(
            body.through_ledger, body.note, actor.name, actor.remote_addr
        )
    except GapConsentRefusedError as exc:
        raise ApiError(409, str(exc)) from exc
    ctx.status.notify_threadsafe()
    return {"consent_id": consent["id"], "consent": consent}


@router.delete(
    "/api/gaps/consents/{consent_id}",
    summary="Revoke a gap consent that has not been carried out (pending or expired)",
    responses={
        404: {"description": "No such consent"},
        409: {"description": "Already carried out or revoked"},
    },
)
def revoke_gap_consent(
    ctx: Ctx, actor: Admin, consent_id: Annotated[int, Path(ge=1, le=2**31 - 1)]
) -> dict[str, Any]:
    try:
        consent = ctx.store.consents.revoke(consent_id, actor.name, actor.remote_addr)
    except GapConsentNotFoundError as exc:
        raise ApiError(404, str(exc)) from exc
    except GapConsentRefusedError as exc:
        raise ApiError(409, str(exc)) from exc
    ctx.status.notify_threadsafe()
    return {"consent": consent}


@router.get("/api/audit", dependencies=[ReadAccess], summary="Operator actions, newest first")
def audit_log(ctx: Ctx, limit: Limit = 100) -> dict[str, Any]:
    return {"entries": ctx.store.audit.listing(limit)}
