"""GET .../explain: the evidence behind an expected record's status or a discrepancy, as data,
or as a page (api/explain_page.py) when the Accept header prefers text/html, as a browser
following the dashboard's links does. The answer varies by Accept and says so (`Vary`).

A followed link sends no Authorization header, so when READ_TOKEN is set the page (and only
the page: the JSON still needs the header) also opens with `?ticket=`, a short-lived ticket
from POST /api/explain/ticket, which the dashboard buys with its token when a link is
clicked. The page passes the ticket on to its links to other explanations.

Included before the expectations and lifecycle routers: `/api/expectations/{external_id:path}`
takes any path, slashes included, and would otherwise read `a/explain` as the record
`a/explain`. The explain path is GET only, whatever the method: a PATCH or DELETE there is a
405, never a change to a record named `a/explain`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from stellar_reconciler.api.auth import ReadAccess, require_read, unauthorized
from stellar_reconciler.api.context import ApiContext, context
from stellar_reconciler.api.dashboard import PAGE_HEADERS
from stellar_reconciler.api.errors import ApiError
from stellar_reconciler.api.explain_page import discrepancy_page, expectation_page
from stellar_reconciler.api.params import RowIdPath
from stellar_reconciler.api.tickets import Tickets

router = APIRouter(tags=["expectations"])
Ctx = Annotated[ApiContext, Depends(context)]
# Longer than the stream's minute: the ticket also opens the links of the page it opened,
# and a person reads the page before following one. Still only pages, and only to read.
PAGE_TICKET_SECONDS = 300.0

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


def install_explain(app: FastAPI) -> None:
    app.state.page_tickets = Tickets(PAGE_TICKET_SECONDS)
    app.include_router(router)


def explain_access(
    request: Request,
    ctx: Ctx,
    ticket: Annotated[
        str | None,
        Query(
            description=(
                "Only for the page (Accept prefers text/html) when READ_TOKEN is set: a "
                "ticket from POST /api/explain/ticket, since a followed link sends no token"
            )
        ),
    ] = None,
) -> str | None:
    """Read access as everywhere (a token in the header decides, ticket or not), or a valid
    ticket for the page; the ticket the page passes on to its links (None when it was not
    opened with one)."""
    if ticket is None or not ctx.read_token or "authorization" in request.headers:
        require_read(request, ctx)
        return None
    if not wants_html(request.headers.get("accept")):
        raise unauthorized(
            "a ticket opens only the explanation page (Accept: text/html); for the JSON "
            "send 'Authorization: Bearer <READ_TOKEN>'"
        )
    tickets: Tickets = request.app.state.page_tickets
    if not tickets.valid(ticket):
        raise unauthorized(
            "the explanation ticket is unknown or expired: open the explanation again from "
            "the dashboard (or ask POST /api/explain/ticket for another)"
        )
    return ticket


PageTicket = Annotated[str | None, Depends(explain_access)]


def _answer(
    request: Request, response: Response, found: dict[str, Any], page: Any, ticket: str | None
) -> Any:
    """JSON, or the page when the client prefers HTML; either way marked as varying by Accept."""
    if wants_html(request.headers.get("accept")):
        prefix = relative_root(request.scope.get("raw_path") or request.url.path)
        return HTMLResponse(page(found, prefix, ticket), headers={**PAGE_HEADERS, **_VARY})
    response.headers.update(_VARY)
    return found


class PageTicketAnswer(BaseModel):
    ticket: str = Field(description="Pass as .../explain?ticket= (with Accept: text/html)")
    expires_in_seconds: float = Field(description="Seconds the ticket opens pages for")


@router.post(
    "/api/explain/ticket",
    dependencies=[ReadAccess],
    summary="A short-lived ticket that opens explanation pages, so no token goes in a link",
    responses={401: {"description": "READ_TOKEN is set and no valid token was given"}},
)
def page_ticket(request: Request) -> PageTicketAnswer:
    tickets: Tickets = request.app.state.page_tickets
    return PageTicketAnswer(ticket=tickets.issue(), expires_in_seconds=tickets.lifetime)


@router.get(
    RECORD_PATH,
    summary="Why an expected record has its status: every candidate event and its verdict",
    description=_RECORD + " No external id ends in `/explain` (refused when posted).",
    responses={200: _AS_PAGE, 404: {"description": "No record has this external_id"}},
)
async def explain_expectation(
    ctx: Ctx,
    request: Request,
    response: Response,
    external_id: Annotated[str, Path(min_length=1, max_length=128)],
    ticket: PageTicket,
) -> dict[str, Any]:
    found = await run_in_threadpool(ctx.store.explanations.expectation, external_id)
    if found is None:
        raise ApiError(
            404,
            f"no expected record has external_id {external_id!r}; GET /api/expectations lists them",
        )
    answer: dict[str, Any] = _answer(request, response, found, expectation_page, ticket)
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
    ctx: Ctx,
    request: Request,
    response: Response,
    discrepancy_id: RowIdPath,
    ticket: PageTicket,
) -> dict[str, Any]:
    found = await run_in_threadpool(ctx.store.explanations.discrepancy, discrepancy_id)
    if found is None:
        raise ApiError(404, f"no discrepancy {discrepancy_id}; GET /api/discrepancies lists them")
    answer: dict[str, Any] = _answer(request, response, found, discrepancy_page, ticket)
    return answer


def wants_html(accept: str | None) -> bool:
    """True when an Accept header prefers text/html to JSON, as a browser's navigation does
    (`text/html,...,*/*;q=0.8`); a client that names neither, `*/*` or no header gets JSON."""
    html_q, json_q = 0.0, 0.0
    json_rank = 3  # how specific the range json_q came from: 0 exact ... 3 none
    for part in (accept or "").split(","):
        media, *params = (p.strip() for p in part.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        media = media.lower()
        if media in ("text/html", "application/xhtml+xml"):
            html_q = max(html_q, quality)
        rank = {"application/json": 0, "application/*": 1, "*/*": 2}.get(media)
        if rank is not None and rank <= json_rank:
            json_q = quality if rank < json_rank else max(json_q, quality)
            json_rank = rank
    return html_q > json_q


def relative_root(raw_path: bytes | str) -> str:
    """The relative link from a page at `raw_path` (as sent, percent-encoded) to the root."""
    path = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else raw_path
    return "../" * max(path.split("?", 1)[0].count("/") - 1, 0)
