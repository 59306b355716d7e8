"""The FastAPI application factory."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import APIRoute

from stellar_reconciler import __version__
from stellar_reconciler.api import (
    admin,
    dashboard,
    data,
    docs,
    event_stream,
    expectations,
    explain,
    groups,
    lifecycle,
    live,
    monitoring,
    proofs,
    reconciliation,
)
from stellar_reconciler.api.context import ApiContext
from stellar_reconciler.api.edge import EdgeMiddleware
from stellar_reconciler.api.errors import install_error_handlers
from stellar_reconciler.api.openapi import install_openapi


def create_app(ctx: ApiContext) -> FastAPI:
    app = FastAPI(
        title="stellar-reconciler",
        version=__version__,
        description=(
            "Indexes Soroban contract events from Stellar RPC exactly once and reconciles them. "
            'Errors are JSON objects of the form {"error": message, "detail": [...]}; in a 422 '
            "each detail entry names one invalid input by `loc`, `msg` and `type`. "
            "Request bodies are capped (413): 64 KiB, or what an operation's "
            "`x-max-body-bytes` says. "
            "The dashboard at / uses only the endpoints below."
        ),
        # /docs is served from files in the package (api/docs.py); ReDoc would need a CDN.
        docs_url=None,
        redoc_url=None,
        # Starlette's redirect builds an absolute Location from the Host header (an open
        # redirect); a wrong path is a 404 instead.
        redirect_slashes=False,
    )
    app.state.context = ctx
    install_error_handlers(app)
    app.include_router(monitoring.router)
    app.include_router(data.router)
    event_stream.install_event_stream(app)
    app.include_router(reconciliation.router)
    # Before expectations: its {external_id:path} would swallow .../explain.
    explain.install_explain(app)
    app.include_router(expectations.router)
    app.include_router(proofs.router)
    app.include_router(lifecycle.router)
    app.include_router(groups.router)
    app.include_router(admin.router)
    live.install_live(app, ctx)
    app.include_router(docs.router)
    dashboard.install_dashboard(app)
    # The routes as declared: FastAPI wraps included routers in private types, and the edge
    # and the OpenAPI completion need each route with its dependencies.
    routes = [
        route
        for router in (
            monitoring.router,
            data.router,
            event_stream.router,
            reconciliation.router,
            explain.router,
            expectations.router,
            proofs.router,
            lifecycle.router,
            groups.router,
            admin.router,
            live.router,
            docs.router,
            dashboard.router,
        )
        for route in router.routes
        if isinstance(route, APIRoute)
    ]
    install_openapi(app, routes)
    app.add_middleware(EdgeMiddleware, routes=routes, ctx=ctx)
    return app
