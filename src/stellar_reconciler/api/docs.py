"""GET /docs: Swagger UI from files shipped in the package, so the API documentation works
on a machine without internet access (FastAPI's default loads it from a CDN)."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)
VENDOR = "/static/vendor/swagger-ui"


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    app: FastAPI = request.app
    root = request.scope.get("root_path", "")
    return get_swagger_ui_html(
        openapi_url=f"{root}{app.openapi_url}",
        title=f"{app.title}: API documentation",
        swagger_js_url=f"{root}{VENDOR}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{VENDOR}/swagger-ui.css",
        swagger_favicon_url=f"{root}{VENDOR}/favicon-32x32.png",
        # No validator badge: it would send the schema to validator.swagger.io.
        swagger_ui_parameters={"validatorUrl": None},
    )
