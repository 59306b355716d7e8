"""Bearer tokens: ADMIN_TOKEN guards every state-changing endpoint, READ_TOKEN (when set) the
read endpoints under /api/. /health and /metrics stay open for monitors.

Without ADMIN_TOKEN the state-changing endpoints are disabled (403), so a service that was
never given a secret cannot be changed by whoever reaches its port; a wrong or missing token
is a 401. Tokens are compared in constant time, as bytes, so any header a client can send
(non-ASCII included) is simply a wrong token.

The admin check runs twice on purpose: once in the HTTP edge (api/edge.py), before a byte of
the body is read, and again as the route's dependency, which names the actor for the audit.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from stellar_reconciler.api.context import ApiContext, context
from stellar_reconciler.api.errors import ApiError

# The audit log names the role, not the token: there is one admin token, so a per-token
# identifier would tell apart only rotations, and any digest of it would let a reader of the
# log test guesses offline.
ADMIN_ACTOR = "admin"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who made a change, for the audit log: never the token itself."""

    name: str
    remote_addr: str | None

    def audit(self, ctx: ApiContext, action: str, target: str | None, detail: Any = None) -> None:
        ctx.store.audit.record(self.name, action, target, detail, self.remote_addr)


def _bearer(headers: Mapping[str, str]) -> str | None:
    header = headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _matches(given: str | None, expected: str) -> bool:
    if not expected or given is None:
        return False
    # Header values arrive decoded as latin-1, so encoding them back gives the bytes sent.
    return hmac.compare_digest(given.encode("latin-1"), expected.encode("utf-8"))


def unauthorized(message: str) -> ApiError:
    error = ApiError(401, message)
    error.headers = {"WWW-Authenticate": "Bearer"}
    return error


def admin_refusal(ctx: ApiContext, headers: Mapping[str, str]) -> ApiError | None:
    """Why a request may not change state (403 when no ADMIN_TOKEN is configured, 401 when
    the token is missing or wrong, 409 on a standby, naming the leader), or None when it holds
    ADMIN_TOKEN and this replica leads."""
    if not ctx.admin_token:
        return ApiError(
            403,
            "state-changing endpoints are disabled: start the service with ADMIN_TOKEN set",
        )
    given = _bearer(headers)
    if given is None:
        return unauthorized("this endpoint needs 'Authorization: Bearer <ADMIN_TOKEN>'")
    if not _matches(given, ctx.admin_token):
        return unauthorized("the bearer token is not the ADMIN_TOKEN")
    if ctx.status.role == "standby":
        # Refused rather than forwarded: the caller learns where to go, and a request is never
        # carried out by a replica other than the one it was sent to.
        leader = ctx.status.leader_url
        where = f"send it to the leader at {leader}" if leader else "no replica leads right now"
        return ApiError(409, f"this replica is a standby and changes nothing: {where}")
    return None


def require_admin(request: Request, ctx: Annotated[ApiContext, Depends(context)]) -> Actor:
    """The caller holds ADMIN_TOKEN; 403 when none is configured, 401 when it is wrong."""
    refusal = admin_refusal(ctx, request.headers)
    if refusal is not None:
        raise refusal
    return Actor(ADMIN_ACTOR, request.client.host if request.client else None)


def require_read(request: Request, ctx: Annotated[ApiContext, Depends(context)]) -> None:
    """Open unless READ_TOKEN is set; then the read token or the admin token is needed."""
    if not ctx.read_token:
        return
    given = _bearer(request.headers)
    if given is None:
        raise unauthorized("READ_TOKEN is set: send 'Authorization: Bearer <READ_TOKEN>'")
    if not (_matches(given, ctx.read_token) or _matches(given, ctx.admin_token)):
        raise unauthorized("the bearer token is neither the READ_TOKEN nor the ADMIN_TOKEN")


Admin = Annotated[Actor, Depends(require_admin)]
ReadAccess = Depends(require_read)
