"""/health, /metrics and /api/status: what operators and their monitors read."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from stellar_reconciler import __version__
from stellar_reconciler.api.auth import ReadAccess
from stellar_reconciler.api.context import ApiContext, context
from stellar_reconciler.errors import DatabaseUnavailableError
from stellar_reconciler.metrics import CONTENT_TYPE
from stellar_reconciler.models import iso_utc

router = APIRouter()
Ctx = Annotated[ApiContext, Depends(context)]


@router.get(
    "/health",
    summary="Health: 200 when healthy, 503 when not",
    responses={503: {"description": "Unhealthy: starting, degraded or stalled; `reason` says why"}},
    tags=["monitoring"],
)
def health(ctx: Ctx) -> JSONResponse:
    body = ctx.status.health()
    return JSONResponse(body, status_code=200 if body["healthy"] else 503)


@router.get("/metrics", summary="Prometheus metrics", tags=["monitoring"])
def metrics(ctx: Ctx) -> Response:
    # From memory only: Prometheus must keep its series while the database is down.
    return Response(ctx.metrics.render(), media_type=CONTENT_TYPE)


@router.get(
    "/api/status",
    summary="Health plus network, uptime and settings",
    tags=["monitoring"],
    dependencies=[ReadAccess],
)
def status(ctx: Ctx) -> dict[str, Any]:
    body = ctx.status.health()
    network = ctx.status.network
    tip = ctx.status.tip
    try:
        first, last, stored = ctx.store.ledger_bounds()
        latest = ctx.store.chunks.latest_run()
        body["backfill"] = ctx.store.chunks.summary(latest) if latest is not None else None
        body["database_error"] = None
    except DatabaseUnavailableError as exc:
        # What is known from memory still answers; the stored range waits for the database.
        first, last, stored = None, None, None
        body["backfill"] = None
        body["database_error"] = str(exc)
    body.update(
        {
            "service_name": ctx.service_name,
            "version": __version__,
            "network_passphrase": network.passphrase if network else None,
            "protocol_version": network.protocol_version if network else None,
            "oldest_ledger": tip.oldest_ledger if tip else None,
            "uptime_seconds": round(ctx.status.uptime_seconds(), 3),
            "started_at": iso_utc(ctx.status.started_at),
            "worker_running": ctx.status.worker_running,
            "paused": ctx.status.paused,
            "ledger_seconds": round(ctx.status.ledger_secs, 3),
            "stored": {"first_ledger": first, "last_ledger": last, "ledgers": stored},
            "settings": ctx.safe_settings,
        }
    )
    return body


@router.get(
    "/api/telemetry",
    summary="The last 15 minutes of samples (ledgers, events, lag, CPU, memory, RPC calls)",
    tags=["monitoring"],
    dependencies=[ReadAccess],
)
def telemetry(ctx: Ctx) -> dict[str, Any]:
    return {"interval_seconds": ctx.telemetry.interval, "samples": ctx.telemetry.samples()}
