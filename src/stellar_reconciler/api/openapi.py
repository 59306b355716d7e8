"""The OpenAPI document: FastAPI's, completed with what it cannot see.

FastAPI derives an operation from its handler's signature, so it does not know the answers
that come from elsewhere: the token checks (401/403, and the edge runs them before the body),
the body cap (413), a database that is down (503), the error shape our handlers use, HEAD on
the probe paths, or that /metrics is Prometheus text. Every one of those is added here, from
the routes themselves, so a new route is described by the same rules. The test suite runs
schemathesis against the document to keep it true.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from stellar_reconciler.api.auth import require_read
from stellar_reconciler.api.edge import HEAD_PATHS, body_limit, depends_on, needs_admin
from stellar_reconciler.api.errors import ErrorBody, ValidationErrorBody
from stellar_reconciler.api.explain import explain_access

SECURITY_SCHEME = "bearer"
_REF = "#/components/schemas/{model}"
_ERROR = {"application/json": {"schema": {"$ref": _REF.format(model="ErrorBody")}}}
_INVALID = {"application/json": {"schema": {"$ref": _REF.format(model="ValidationErrorBody")}}}
_UNAUTHORIZED = {
    "description": "The bearer token is missing or wrong",
    "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
    "content": _ERROR,
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _ERROR}


def _complete(operation: dict[str, Any], route: APIRoute, method: str) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    if "422" in responses or method in ("post", "put", "patch"):
        responses["422"] = {
            "description": "An input is invalid; `detail` names each with its location",
            "content": _INVALID,
        }
    if needs_admin(route):
        operation["security"] = [{SECURITY_SCHEME: []}]
        responses["401"] = _UNAUTHORIZED
        responses["403"] = _error("ADMIN_TOKEN is not configured: this endpoint is disabled")
    elif any(depends_on(route.dependant, check) for check in (require_read, explain_access)):
        # Open unless READ_TOKEN is set: either no credentials or the bearer token.
        operation["security"] = [{}, {SECURITY_SCHEME: []}]
        responses["401"] = _UNAUTHORIZED
    if method in ("post", "put", "patch", "delete"):
        responses["413"] = _error(f"The body is larger than {body_limit(route):,} bytes")
    if "{" in route.path:
        responses.setdefault("404", _error("Nothing has this id"))
    for status in ("404", "409"):
        if status in responses:
            responses[status].setdefault("content", _ERROR)
    responses.setdefault("503", _error("The database is unreachable: try again shortly"))


# Where one answer names something another operation takes (OpenAPI links): clients and
# schemathesis's stateful phase follow them. (source path, method, status) -> links.
_LINKS: dict[tuple[str, str, str], dict[str, tuple[str, str, str, str]]] = {
    ("/api/discrepancies", "get", "200"): {
        "GetDiscrepancy": (
            "/api/discrepancies/{discrepancy_id}",
            "get",
            "discrepancy_id",
            "$response.body#/discrepancies/0/id",
        ),
        "ResolveDiscrepancy": (
            "/api/discrepancies/{discrepancy_id}/resolve",
            "post",
            "discrepancy_id",
            "$response.body#/discrepancies/0/id",
        ),
    },
    ("/api/jobs", "get", "200"): {
        "GetJob": ("/api/jobs/{job_id}", "get", "job_id", "$response.body#/jobs/0/id"),
    },
    ("/api/verify", "post", "202"): {
        "GetJob": ("/api/jobs/{job_id}", "get", "job_id", "$response.body#/id"),
    },
    ("/api/rescans", "post", "202"): {
        "GetJob": ("/api/jobs/{job_id}", "get", "job_id", "$response.body#/id"),
    },
    ("/api/expectations", "get", "200"): {
        "GetExpectation": (
            "/api/expectations/{external_id}",
            "get",
            "external_id",
            "$response.body#/expectations/0/external_id",
        ),
    },
}


def _add_links(paths: dict[str, Any]) -> None:
    for (path, method, status), links in _LINKS.items():
        response = paths.get(path, {}).get(method, {}).get("responses", {}).get(status)
        if response is None:
            continue
        for name, (target, target_method, parameter, value) in links.items():
            operation_id = paths.get(target, {}).get(target_method, {}).get("operationId")
            if operation_id is not None:
                response.setdefault("links", {})[name] = {
                    "operationId": operation_id,
                    "parameters": {parameter: value},
                }


def build_openapi(app: FastAPI, routes: list[APIRoute]) -> dict[str, Any]:
    document = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for model in (ErrorBody, ValidationErrorBody):
        schemas.update(model.model_json_schema(ref_template=_REF).pop("$defs", {}))
        schemas[model.__name__] = model.model_json_schema(ref_template=_REF)
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    document["components"]["securitySchemes"] = {
        SECURITY_SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "description": "ADMIN_TOKEN for state-changing endpoints; READ_TOKEN (or "
            "ADMIN_TOKEN) for /api reads when READ_TOKEN is set",
        }
    }
    paths: dict[str, Any] = document.get("paths", {})
    for route in routes:
        if not route.include_in_schema:
            continue
        for method in route.methods or ():
            operation = paths.get(route.path_format, {}).get(method.lower())
            if operation is not None:
                _complete(operation, route, method.lower())
    _add_links(paths)
    metrics = paths.get("/metrics", {}).get("get")
    if metrics is not None:
        metrics["responses"]["200"] = {
            "description": "Prometheus text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    for path in HEAD_PATHS:
        get = paths.get(path, {}).get("get")
        if get is not None:
            paths[path]["head"] = {
                "summary": f"{get.get('summary', path)} (headers only)",
                "operationId": f"head_{get.get('operationId', path.strip('/'))}",
                "tags": get.get("tags", []),
                "responses": {
                    status: {"description": answer["description"]}
                    for status, answer in get["responses"].items()
                },
            }
    return document


def install_openapi(app: FastAPI, routes: list[APIRoute]) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app, routes)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override
