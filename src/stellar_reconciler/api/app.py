"""The FastAPI application factory."""

from __future__ import annotations

from fastapi import FastAPI

from stellar_reconciler import __version__
from stellar_reconciler.api import (
    admin,
    dashboard,
    data,
    docs,
    expectations,
    live,
    monitoring,
    reconciliation,
)
from stellar_reconciler.api.context import ApiContext
from stellar_reconciler.api.errors import install_error_handlers


def create_app(ctx: ApiContext) -> FastAPI:
    app = FastAPI(
        title="stellar-reconciler",
        version=__version__,
        description=(
            "Indexes Soroban contract events from Stellar RPC exactly once and reconciles them. "
            'Errors are JSON objects of the form {"error": message, "detail": [...]}. '
            "The dashboard at / uses only the endpoints below."
        ),
        # /docs is served from files in the package (api/docs.py); ReDoc would need a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.context = ctx
    install_error_handlers(app)
    app.include_router(monitoring.router)
    app.include_router(data.router)
    app.include_router(reconciliation.router)
    app.include_router(expectations.router)
    app.include_router(admin.router)
    live.install_live(app, ctx)
    app.include_router(docs.router)
    dashboard.install_dashboard(app)
    return app
