"""One JSON shape for every error the API returns:
{"error": message, "detail": [{"loc": [...], "msg": ..., "type": ...}, ...]}.

`detail` is empty when the error is not about one input (401, 404, 409, 503, ...)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from stellar_reconciler.errors import DatabaseUnavailableError

# What FastAPI answers when a body is not UTF-8 (or otherwise cannot be decoded as JSON).
_BODY_PARSE_FAILURE = "There was an error parsing the body"


class ErrorDetail(BaseModel):
    loc: list[str | int] = Field(description="Where: query, path or body, then the field")
    msg: str = Field(description="What is wrong with it")
    type: str = Field(description="A machine-readable kind, e.g. int_parsing or value_error")


class ErrorBody(BaseModel):
    """Every error answer of this API other than 422."""

    error: str = Field(description="What went wrong and what to do, for a person")
    detail: list[Any] = Field(
        description="Empty, or what the error is about (for a 409: the conflicting records)"
    )


class ValidationErrorBody(BaseModel):
    """A 422: the request was understood but an input is invalid."""

    error: str = Field(description="Every invalid input and what is wrong with it")
    detail: list[ErrorDetail] = Field(description="One entry per invalid input")


class ApiError(Exception):
    """An error with an HTTP status and a message for the caller."""

    def __init__(self, status_code: int, message: str, detail: list[Any] | None = None) -> None:
        self.status_code = status_code
        self.message = message
        self.detail = detail or []
        self.headers: dict[str, str] | None = None
        super().__init__(status_code, message, detail)

    def __str__(self) -> str:
        return self.message


def invalid_param(name: str, message: str, location: str = "query") -> ApiError:
    entry = {"loc": [location, name], "msg": message, "type": "value_error"}
    return ApiError(422, f"{name}: {message}", [entry])


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(
        {"error": error.message, "detail": error.detail},
        status_code=error.status_code,
        headers=error.headers,
    )


def _describe(errors: Any) -> str:
    parts = []
    for error in errors:
        loc = [str(p) for p in error.get("loc", ()) if p not in ("query", "body", "path")]
        parts.append(f"{'.'.join(loc) or 'request'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def _invalid_json() -> ApiError:
    message = "the body is not valid JSON in UTF-8: send a JSON object as the endpoint documents"
    return ApiError(
        422, f"body: {message}", [{"loc": ["body"], "msg": message, "type": "json_invalid"}]
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [
            {
                "loc": list(e.get("loc", ())),
                "msg": str(e.get("msg", "invalid")).removeprefix("Value error, "),
                "type": e.get("type", "value_error"),
            }
            for e in exc.errors()
        ]
        return JSONResponse({"error": _describe(detail), "detail": detail}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == _BODY_PARSE_FAILURE:
            return error_response(_invalid_json())
        return JSONResponse(
            {"error": str(exc.detail), "detail": []},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(DatabaseUnavailableError)
    async def _database_down(_request: Request, exc: DatabaseUnavailableError) -> JSONResponse:
        # The database is unreachable or locked: a condition to wait out, not a bug.
        return JSONResponse({"error": str(exc), "detail": []}, status_code=503)
