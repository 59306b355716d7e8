"""GET .../explain: the evidence behind an expected record's status or a discrepancy, as data,
or as a page (api/explain_page.py) when the Accept header prefers text/html, as a browser
following the dashboard's links does. The answer varies by Accept and says so (`Vary`).

Included before the expectations and lifecycle routers: `/api/expectations/{external_id:path}`
takes any path, slashes included, and would otherwise read `a/explain` as the record
`a/explain`. The explain path is GET only, whatever the method: a PATCH or DELETE there is a
405, never a change to a record named `a/explain`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from stellar_reconciler.api.auth import ReadAccess
from stellar_reconciler.api.context import ApiContext, context
from stellar_reconciler.api.dashboard import PAGE_HEADERS
from stellar_reconciler.api.errors import ApiError
from stellar_reconciler.api.explain_page import (
    discrepancy_page,
    expectation_page,
    relative_root,
    wants_html,
)
from stellar_reconciler.api.params import RowIdPath

router = APIRouter(tags=["expectations"])
Ctx = Annotated[ApiContext, Depends(context)]

_RECORD = (
    "The record; `verdict` (status and one sentence); `window` (the ledgers its events may come "
    "from: its look-back to its deadline, or any age for a `tx_hash`, listed some ledgers past "
    "the deadline so a late payment shows); every `candidates` entry with its `verdict` "
    "(`taken`, `best_candidate` or `rejected`), `reasons` in words and `differences` per field "
    "(`field`, `expected`, `found`, `by`: found - expected for an amount, ledgers past the "
    "deadline for `ledger`; `label` says sender, recipient or asset), and `claimed_by` when "
    "another record holds it; `chosen`: the settled event's ledger, its hash, whether its hash "
    "links with the stored neighbours (`chain.holds`), the findings about it and how far "
    "re-verification has come (`re_verification`). The same rules as matching decide each "
    "difference. The 50 closest candidates are listed; `candidates_considered` counts all."
)


RECORD_PATH = "/api/expectations/{external_id:path}/explain"
_VARY = {"vary": "Accept"}
# The alternative answer, for the OpenAPI document.
_AS_PAGE = {
    "description": "The explanation; as a readable HTML page when Accept prefers text/html "
    "(a browser's navigation), else as JSON",
    "content": {"text/html": {"schema": {"type": "string"}}},
}


def _answer(request: Request, response: Response, found: dict[str, Any], page: Any) -> Any:
    """JSON, or the page when the client prefers HTML; either way marked as varying by Accept."""
    if wants_html(request.headers.get("accept")):
        prefix = relative_root(request.scope.get("raw_path") or request.url.path)
        return HTMLResponse(page(found, prefix), headers={**PAGE_HEADERS, **_VARY})
    response.headers.update(_VARY)
    return found


@router.get(
    RECORD_PATH,
    dependencies=[ReadAccess],
    summary="Why an expected record has its status: every candidate event and its verdict",
    description=_RECORD + " No external id ends in `/explain` (refused when posted).",
    responses={200: _AS_PAGE, 404: {"description": "No record has this external_id"}},
)
async def explain_expectation(
    ctx: Ctx,
    request: Request,
    response: Response,
    external_id: Annotated[str, Path(min_length=1, max_length=128)],
) -> dict[str, Any]:
    found = await run_in_threadpool(ctx.store.explanations.expectation, external_id)
    if found is None:
        raise ApiError(
            404,
            f"no expected record has external_id {external_id!r}; GET /api/expectations lists them",
        )
    answer: dict[str, Any] = _answer(request, response, found, expectation_page)
    return answer


@router.api_route(
    RECORD_PATH,
    # Every other method, so the edge's 405 (which names every route's methods on the path)
    # never offers the lifecycle routes' PATCH and DELETE here.
    methods=["POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"],
    include_in_schema=False,
)
def explain_is_read_only() -> None:
    refusal = ApiError(405, "an explanation is read only; use GET")
    refusal.headers = {"Allow": "GET"}
    raise refusal


@router.get(
    "/api/discrepancies/{discrepancy_id}/explain",
    dependencies=[ReadAccess],
    summary="The evidence behind a discrepancy",
    description=(
        "The discrepancy; for one about an expected record (missing_expected, "
        "amount_mismatch, failed_on_chain, not_found) the record's explanation under "
        "`expectation` (as GET /api/expectations/{external_id}/explain); for `unexpected` "
        "the event and every record of its contract and name that was waiting for it, with "
        "the fields that differ; for ledger findings (and `unexpected`) each named ledger "
        "with its hash links and re-verification under `ledgers`."
    ),
    responses={200: _AS_PAGE, 404: {"description": "No discrepancy has this id"}},
)
async def explain_discrepancy(
    ctx: Ctx, request: Request, response: Response, discrepancy_id: RowIdPath
) -> dict[str, Any]:
    found = await run_in_threadpool(ctx.store.explanations.discrepancy, discrepancy_id)
    if found is None:
        raise ApiError(404, f"no discrepancy {discrepancy_id}; GET /api/discrepancies lists them")
    answer: dict[str, Any] = _answer(request, response, found, discrepancy_page)
    return answer
