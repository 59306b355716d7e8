"""Bearer tokens: ADMIN_TOKEN guards every state-changing endpoint, READ_TOKEN (when set) the
read endpoints under /api/. /health and /metrics stay open for monitors.

Without ADMIN_TOKEN the state-changing endpoints are disabled (403), so a service that was
never given a secret cannot be changed by whoever reaches its port; a wrong or missing token
is a 401. Tokens are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from stellar_reconciler.api.context import ApiContext, context
from stellar_reconciler.api.errors import ApiError


@dataclass(frozen=True, slots=True)
class Actor:
    """Who made a change, for the audit log: never the token itself."""

    name: str
    remote_addr: str | None

    def audit(self, ctx: ApiContext, action: str, target: str | None, detail: Any = None) -> None:
        ctx.store.audit.record(self.name, action, target, detail, self.remote_addr)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _matches(given: str | None, expected: str) -> bool:
    return bool(expected) and given is not None and hmac.compare_digest(given, expected)


def _unauthorized(message: str) -> ApiError:
    error = ApiError(401, message)
    error.headers = {"WWW-Authenticate": "Bearer"}
    return error


def require_admin(request: Request, ctx: Annotated[ApiContext, Depends(context)]) -> Actor:
    """The caller holds ADMIN_TOKEN; 403 when none is configured, 401 when it is wrong."""
    if not ctx.admin_token:
        raise ApiError(
            403,
            "state-changing endpoints are disabled: start the service with ADMIN_TOKEN set",
        )
    given = _bearer(request)
    if given is None:
        raise _unauthorized("this endpoint needs 'Authorization: Bearer <ADMIN_TOKEN>'")
    if not _matches(given, ctx.admin_token):
        raise _unauthorized("the bearer token is not the ADMIN_TOKEN")
    # A short fingerprint tells tokens apart in the audit log without revealing them.
    fingerprint = hashlib.sha256(given.encode()).hexdigest()[:8]
    return Actor(f"admin:{fingerprint}", request.client.host if request.client else None)


def require_read(request: Request, ctx: Annotated[ApiContext, Depends(context)]) -> None:
    """Open unless READ_TOKEN is set; then the read token or the admin token is needed."""
    if not ctx.read_token:
        return
    given = _bearer(request)
    if given is None:
        raise _unauthorized("READ_TOKEN is set: send 'Authorization: Bearer <READ_TOKEN>'")
    if not (_matches(given, ctx.read_token) or _matches(given, ctx.admin_token)):
        raise _unauthorized("the bearer token is neither the READ_TOKEN nor the ADMIN_TOKEN")


Admin = Annotated[Actor, Depends(require_admin)]
ReadAccess = Depends(require_read)
