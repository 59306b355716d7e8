"""GET / (the monitoring dashboard) and /static/ (its files, shipped inside the package).

The page is plain HTML that holds no data: everything on it comes from the public API
(/api/stream and the endpoints its buttons call), so two loads of the same state render
the same DOM and the page cannot disagree with what the API says.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
router = APIRouter(include_in_schema=False)
# The page loads only its own files (no inline script or style) and talks only to this
# service, so the policy can be this narrow; no other site may frame it (clickjacking of the
# operator buttons).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "cache-control": "no-cache",
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-frame-options": "DENY",
}


class RevalidatedStaticFiles(StaticFiles):
    """Static files a browser must revalidate (a cheap 304) before reuse, so a page never
    mixes the scripts of two service versions after an upgrade."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["cache-control"] = "no-cache"
        return response


@router.get("/", response_class=HTMLResponse)
def dashboard() -> HTMLResponse:
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    return HTMLResponse(html, headers=PAGE_HEADERS)


def install_dashboard(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", RevalidatedStaticFiles(directory=STATIC_DIR), name="static")
