"""Operator actions (admin token): restart, pause and resume the worker, rescan a range,
accept lost ledgers; and the audit log of all of them.

Handlers that touch the controls are async: the controls belong to the event loop the
worker runs on. Database writes (the audit) go to a thread.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, model_validator
from starlette.concurrency import run_in_threadpool

from stellar_reconciler.api.auth import Admin, ReadAccess
from stellar_reconciler.api.context import ApiContext, context
from stellar_reconciler.api.errors import invalid_param
from stellar_reconciler.api.params import LedgerField, Limit
from stellar_reconciler.api.reconciliation import RangeRequest, submit_job

router = APIRouter(tags=["operations"])
Ctx = Annotated[ApiContext, Depends(context)]


class GapConsentRequest(BaseModel):
    through_ledger: LedgerField | None = Field(
        default=None, description="Skip lost ledgers up to this"
    )
    through_oldest: bool = Field(
        default=False,
        strict=True,
        description="Skip whatever the RPC has lost when the worker resumes",
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
    ctx.status.paused = True
    ctx.status.notify()
    await run_in_threadpool(actor.audit, ctx, "pause_worker", None)
    return _worker_state(ctx)


@router.post("/api/worker/resume", summary="Resume after a pause")
async def resume_worker(ctx: Ctx, actor: Admin) -> dict[str, Any]:
    ctx.status.paused = False
    ctx.status.notify()
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
    "/api/gaps/acknowledge",
    summary="Consent to skip ledgers the RPC no longer keeps (carried out by the worker)",
)
def acknowledge_gap(ctx: Ctx, actor: Admin, body: GapConsentRequest) -> dict[str, Any]:
    checkpoint = ctx.store.checkpoint().ledger
    if checkpoint is None:
        raise invalid_param("through_ledger", "nothing is indexed yet", "body")
    if body.through_ledger is not None and body.through_ledger <= checkpoint:
        raise invalid_param(
            "through_ledger", f"must be after the checkpoint ({checkpoint})", "body"
        )
    consent_id = ctx.store.gaps.consent(
        body.through_ledger, body.note, actor.name, actor.remote_addr
    )
    return {"consent_id": consent_id, "checkpoint": checkpoint, **body.model_dump()}


@router.get("/api/audit", dependencies=[ReadAccess], summary="Operator actions, newest first")
def audit_log(ctx: Ctx, limit: Limit = 100) -> dict[str, Any]:
    return {"entries": ctx.store.audit.listing(limit)}
