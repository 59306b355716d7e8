"""/api/expectation-groups: a group of expected records (one `group_id`) as one thing, its
status, amounts and members; cancelling it as a whole (partial.py says how groups settle)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from starlette.concurrency import run_in_threadpool

from stellar_reconciler.api.auth import Admin, ReadAccess
from stellar_reconciler.api.context import ApiContext, context
from stellar_reconciler.api.errors import ApiError
from stellar_reconciler.errors import ExpectationLifecycleError

router = APIRouter(tags=["expectations"])
Ctx = Annotated[ApiContext, Depends(context)]
GroupId = Annotated[str, Path(min_length=1, max_length=128)]
_GROUP = (
    "`status` is the group's (its members share it): `pending`, `partially_matched`, "
    "`matched`, `amount_mismatch`, `missing_expected` or `cancelled`. `amount` and "
    "`tolerance` are its members' sums; `settled_amount` is what its events (`event_ids`) "
    "brought so far, `outstanding_amount` what is still owed, `difference` = found - "
    "expected. Each member shows its share of the sum (filled in deadline, then external id "
    "order)."
)


@router.get(
    "/api/expectation-groups/{group_id:path}",
    dependencies=[ReadAccess],
    summary="A group of expected records, settled as a whole",
    description=_GROUP,
    responses={404: {"description": "No record has this group_id"}},
)
def get_group(ctx: Ctx, group_id: GroupId) -> dict[str, Any]:
    try:
        return ctx.store.groups.get(group_id)
    except ExpectationLifecycleError as exc:
        raise ApiError(exc.status, str(exc)) from exc


@router.delete(
    "/api/expectation-groups/{group_id:path}",
    summary="Cancel every record of an open group",
    description=(
        "Every member becomes `cancelled` (who and when are kept), and the events the group "
        "took so far are let go for other records; the audit log records it. Cancelling it "
        "again answers the same group. A settled group (matched, amount_mismatch, "
        "missing_expected) is a 409. Needs the admin token.\n\n" + _GROUP
    ),
    responses={
        401: {"description": "Missing or wrong bearer token"},
        403: {"description": "ADMIN_TOKEN is not configured"},
        404: {"description": "No record has this group_id"},
        409: {"description": "The group is settled already"},
    },
)
async def cancel_group(ctx: Ctx, actor: Admin, group_id: GroupId) -> dict[str, Any]:
    try:
        group, changed = await run_in_threadpool(ctx.store.groups.cancel, group_id, actor.name)
    except ExpectationLifecycleError as exc:
        raise ApiError(exc.status, str(exc)) from exc
    if changed:
        await run_in_threadpool(actor.audit, ctx, "expectation_groups.cancel", group_id)
    return group
