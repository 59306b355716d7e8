"""One JSON shape for every error the API returns: {"error": message, "detail": [...]}."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from stellar_reconciler.errors import DatabaseUnavailableError


class ApiError(Exception):
    """An error with an HTTP status and a message for the caller."""

    def __init__(self, status_code: int, message: str, detail: list[Any] | None = None) -> None:
        self.status_code = status_code
        self.message = message
        self.detail = detail or []
        self.headers: dict[str, str] | None = None
        super().__init__(message)


def invalid_param(name: str, message: str, location: str = "query") -> ApiError:
    return ApiError(422, f"{name}: {message}", [{"loc": [location, name], "msg": message}])


def _describe(errors: Any) -> str:
    parts = []
    for error in errors:
        loc = [str(p) for p in error.get("loc", ()) if p not in ("query", "body", "path")]
        parts.append(f"{'.'.join(loc) or 'request'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            {"error": exc.message, "detail": exc.detail},
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in exc.errors()
        ]
        return JSONResponse({"error": _describe(exc.errors()), "detail": detail}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"error": str(exc.detail), "detail": []},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(DatabaseUnavailableError)
    async def _database_down(_request: Request, exc: DatabaseUnavailableError) -> JSONResponse:
        # The database is unreachable or locked: a condition to wait out, not a bug.
        return JSONResponse({"error": str(exc), "detail": []}, status_code=503)
