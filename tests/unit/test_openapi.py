"""The OpenAPI document describes what the service answers, beyond what FastAPI infers."""

from __future__ import annotations

from typing import Any

import pytest

from stellar_reconciler.api import create_app
from stellar_reconciler.api.context import ApiContext
from stellar_reconciler.api.edge import DEFAULT_BODY_LIMIT
from stellar_reconciler.api.expectations import MAX_BODY_BYTES


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    # Building the document reads no context: a placeholder stands in for the service.
    app = create_app(ApiContext.__new__(ApiContext))
    return app.openapi()


ADMIN_OPERATIONS = [
    ("/api/worker/restart", "post"),
    ("/api/worker/pause", "post"),
    ("/api/verify", "post"),
    ("/api/expectations", "post"),
    ("/api/discrepancies/{discrepancy_id}/resolve", "post"),
]


def test_admin_operations_need_the_bearer_scheme(document: dict[str, Any]) -> None:
    """Operator endpoints require the bearer scheme and document 401, 403 and 413."""
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, method in ADMIN_OPERATIONS:
        operation = document["paths"][path][method]
        assert operation["security"] == [{"bearer": []}], path
        assert {"401", "403", "413", "422", "503"} <= set(operation["responses"]), path


def test_reads_document_the_optional_token_and_404(document: dict[str, Any]) -> None:
    """Reads may go without a token (unless READ_TOKEN is set); path ids document 404; a
    second resolve documents its 409."""
    operation = document["paths"]["/api/discrepancies/{discrepancy_id}"]["get"]
    assert operation["security"] == [{}, {"bearer": []}]
    assert {"200", "401", "404", "422", "503"} <= set(operation["responses"])
    assert "security" not in document["paths"]["/health"]["get"]
    resolve = document["paths"]["/api/discrepancies/{discrepancy_id}/resolve"]["post"]
    assert resolve["responses"]["409"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ErrorBody"
    )


def test_statuses_media_types_and_error_shapes(document: dict[str, Any]) -> None:
    """Restart says 202, /metrics says text/plain, 422 bodies carry loc, msg and type."""
    restart = document["paths"]["/api/worker/restart"]["post"]["responses"]
    assert "202" in restart and "200" not in restart
    metrics = document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]
    detail = document["components"]["schemas"]["ErrorDetail"]
    assert set(detail["required"]) == {"loc", "msg", "type"}
    invalid = document["paths"]["/api/verify"]["post"]["responses"]["422"]
    assert invalid["content"]["application/json"]["schema"]["$ref"].endswith("/ValidationErrorBody")
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_body_caps_and_head_are_documented(document: dict[str, Any]) -> None:
    """The bulk endpoint states its larger cap; HEAD is an operation on the probe paths."""
    post = document["paths"]["/api/expectations"]["post"]
    assert post["x-max-body-bytes"] == MAX_BODY_BYTES
    assert (
        f"{DEFAULT_BODY_LIMIT:,}"
        in document["paths"]["/api/verify"]["post"]["responses"]["413"]["description"]
    )
    assert set(document["paths"]["/health"]) == {"get", "head"}
    assert set(document["paths"]["/metrics"]) == {"get", "head"}


def test_explanations_are_documented_reads_with_404(document: dict[str, Any]) -> None:
    """Both explain endpoints are reads (optional token) that document their 404, and the
    record's is a path of its own, not swallowed by /api/expectations/{external_id}."""
    for path in (
        "/api/expectations/{external_id}/explain",
        "/api/discrepancies/{discrepancy_id}/explain",
    ):
        operation = document["paths"][path]["get"]
        assert operation["security"] == [{}, {"bearer": []}], path
        assert {"200", "404"} <= set(operation["responses"]), path
