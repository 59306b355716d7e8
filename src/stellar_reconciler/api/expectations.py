"""/api/expectations and /api/reconciliation: the application's expected records and how
they fared against the chain."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool
from stellar_sdk import StrKey

from stellar_reconciler.api.auth import Admin, ReadAccess
from stellar_reconciler.api.context import ApiContext, context
from stellar_reconciler.api.edge import BODY_LIMIT_KEY
from stellar_reconciler.api.errors import ApiError, invalid_param
from stellar_reconciler.api.params import MAX_ROW_ID, Digits, Limit
from stellar_reconciler.errors import ExpectationConflictError, ExpectationInputError
from stellar_reconciler.expectation_spec import ExpectationSpec
from stellar_reconciler.store import Expectations

router = APIRouter(tags=["expectations"])
Ctx = Annotated[ApiContext, Depends(context)]

MAX_RECORDS = 10_000
# 10,000 records at up to ~1.6 KiB each (a typical record is about 400 bytes).
MAX_BODY_BYTES = 16 * 1024 * 1024
_SPEC = TypeAdapter(ExpectationSpec)
_SPEC_SCHEMA = ExpectationSpec.model_json_schema()
_BODY_SCHEMA = {
    "oneOf": [
        _SPEC_SCHEMA,
        {"type": "array", "items": _SPEC_SCHEMA, "minItems": 1, "maxItems": MAX_RECORDS},
    ]
}
_RECORD_EXAMPLE = {
    "external_id": "invoice-1042",
    "contract_id": "CDLZFC3SYJYDZT7K67VZ75HPJVIEUVNIXF47ZG2FB2RMQQVU2HHGCYSC",
    "event_name": "transfer",
    "from": "GAFCZPBOMB2PKPM6PKCXMITLXUL22A2T4PBYMKQS3VPYFI32B5RTHEKL",
    "to": "GBNTF3YUJCXYIFQ7G2NU3MXBPC65RUGHBEXIUBIUFAYTTYLUA5QCPHBF",
    "amount": "1250000000",
    "tolerance": "0",
    "deadline_ledgers": 720,
}
Status = Literal[
    "pending",
    "matched",
    "amount_mismatch",
    "missing_expected",
    "failed_on_chain",
    "not_found",
    "amount_unreadable",
    "cancelled",
    "partially_matched",
]


def repository(ctx: Ctx) -> Expectations:
    return ctx.store.expectations


Repo = Annotated[Expectations, Depends(repository)]


def _specs(payload: Any) -> tuple[list[ExpectationSpec], bool]:
    """The records of a request body (one object or a list) and whether it was a list; each
    bad field becomes one 422 detail entry with its location."""
    many = isinstance(payload, list)
    items = payload if many else [payload]
    if many and not 1 <= len(items) <= MAX_RECORDS:
        raise ApiError(
            422,
            f"body: a list of 1 to {MAX_RECORDS:,} records, got {len(items):,}; split it",
            [{"loc": ["body"], "msg": f"must hold 1 to {MAX_RECORDS} records", "type": "too_long"}],
        )
    specs: list[ExpectationSpec] = []
    detail: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        where: list[str | int] = ["body", index] if many else ["body"]
        try:
            specs.append(_SPEC.validate_python(item))
        except ValidationError as exc:
            detail.extend(
                {
                    "loc": [*where, *e["loc"]],
                    "msg": e["msg"].removeprefix("Value error, "),
                    "type": e["type"],
                }
                for e in exc.errors()
            )
    if detail:
        shown = "; ".join(
            f"{'.'.join(str(p) for p in d['loc'][1:]) or 'body'}: {d['msg']}" for d in detail[:5]
        )
        more = f" (and {len(detail) - 5} more)" if len(detail) > 5 else ""
        raise ApiError(422, shown + more, detail)
    return specs, many


@router.post(
    "/api/expectations",
    summary="Post expected records (one object, or a list of up to 10,000)",
    description=(
        "Tells the service what the application expects to see on chain. Each record names "
        "an event by `contract_id` and `event_name`, may pin it with `tx_hash`, `topics` "
        '(position to value, e.g. {"2": "G..."}) or `from`/`to` (topics 1 and 2 of a SAC '
        "`transfer`), may expect an `amount` (integer, smallest unit) within `tolerance`, and "
        "needs a deadline: `deadline_ledger` (absolute) or `deadline_ledgers` (after the "
        "current checkpoint), the last ledger the event may appear in; once that ledger is "
        "processed without it, the record is `missing_expected`. Events already stored are "
        "matched at once.\n\n"
        "An event is claimed by at most one record and a record by at most one event: among "
        "records that fit, one within tolerance wins, then the first created. Events of "
        "failed contract calls never match. Records without `tx_hash` look back about a day "
        "(17,280 ledgers) for stored events.\n\n"
        "A record with `tx_hash` whose deadline passes without an event asks the network "
        "what became of its transaction: `failed_on_chain` (with `result_code`), `not_found`, "
        "or `missing_expected` (`tx_status` says what the node answered).\n\n"
        "Re-posting an `external_id` with identical content returns the stored record (200); "
        "with different content it is a 409 and nothing is created. One object answers with "
        "the record; a list with `{created, existing, expectations}`. With `dry_run=true` "
        "nothing is stored (200): each record comes back as posting it now would leave it "
        "(`status`, `event_id`, or its closest `candidate_event_id`), with the same 409 and "
        "422 answers. Needs the admin token.\n\n"
        "**Paid by a sum.** `allow_partial: true` lets several events (instalments) settle "
        "the record: `partially_matched` with `settled_amount`, `outstanding_amount` and "
        "`event_ids` until their sum reaches `amount` (within `tolerance`), then `matched`. "
        "Records posted with one `group_id` are settled as a whole, by one event carrying "
        "their summed amount or by several events together: see "
        "`GET /api/expectation-groups/{group_id}`. An event that would take a sum past "
        "amount + tolerance is left to other records; at the deadline a sum still short is "
        "`amount_mismatch` (against that overshooting event when still free, else with "
        "what is outstanding), or `missing_expected` when nothing arrived. Both need an "
        "`amount` above 0 and take no `tx_hash`; a record takes `allow_partial` or "
        "`group_id`, not both; every record of a group shares `contract_id`, `event_name` "
        "and deadline, and a settled group takes no new record (422 otherwise)."
    ),
    status_code=201,
    responses={
        200: {"description": "Every record existed already with this content"},
        201: {"description": "At least one record was created"},
        401: {"description": "Missing or wrong bearer token"},
        403: {"description": "ADMIN_TOKEN is not configured"},
        409: {"description": "An external_id exists with different content"},
        422: {"description": "A field is invalid; `detail` lists each with its location"},
    },
    openapi_extra={
        BODY_LIMIT_KEY: MAX_BODY_BYTES,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _BODY_SCHEMA, "example": _RECORD_EXAMPLE}},
        },
    },
)
async def post_expectations(
    ctx: Ctx,
    actor: Admin,
    expectations: Repo,
    payload: Annotated[Any, Body(include_in_schema=False)],
    dry_run: Annotated[
        bool, Query(description="Answer what each record would match now; store nothing")
    ] = False,
) -> JSONResponse:
    specs, many = _specs(payload)
    try:
        if dry_run:
            tried = await run_in_threadpool(ctx.store.lifecycle.dry_run, specs)
            body: dict[str, Any] = {
                "dry_run": True,
                "created": tried.created,
                "existing": tried.existing,
            }
            answer = tried.records[0] if not many else {**body, "expectations": tried.records}
            return JSONResponse(answer)
        created = await run_in_threadpool(expectations.create, specs)
    except ExpectationConflictError as exc:
        conflicts = [{"external_id": eid, "differs": fields} for eid, fields in exc.conflicts]
        raise ApiError(409, str(exc), conflicts) from exc
    except ExpectationInputError as exc:
        problems: list[Any] = [
            {
                "loc": ["body", i, name] if many else ["body", name],
                "msg": msg,
                "type": "value_error",
            }
            for i, name, msg in exc.problems
        ]
        raise ApiError(422, str(exc), problems) from exc
    if created.created:
        target = specs[0].external_id if len(specs) == 1 else f"{len(specs)} records"
        counts = {"created": created.created, "existing": created.existing}
        await run_in_threadpool(actor.audit, ctx, "expectations.create", target, counts)
    status = 201 if created.created else 200
    if not many:
        return JSONResponse(created.records[0], status_code=status)
    body = {
        "created": created.created,
        "existing": created.existing,
        "expectations": created.records,
    }
    return JSONResponse(body, status_code=status)


@router.get(
    "/api/expectations",
    dependencies=[ReadAccess],
    summary="Expected records in creation order, with their status",
    description=(
        "`status` is `pending` (waiting for its event), `matched` (with `event_id`), "
        "`amount_mismatch` (with `event_id`, `found_amount` and `difference` = found - "
        "expected), `missing_expected` (its deadline ledger passed without the event), "
        "`failed_on_chain` (its `tx_hash` failed: `result_code`), `not_found` (the network "
        "never saw its `tx_hash`), `amount_unreadable` (an event fitted but its amount could "
        "not be read, a contract upgrade having changed its value: `unreadable_event_id`, "
        "`unreadable_reason`), `cancelled` (`cancelled_at`, `cancelled_by`) or "
        "`partially_matched` (a sum record: `settled_amount`, `outstanding_amount`, "
        "`event_ids` so far)."
    ),
)
def list_expectations(
    expectations: Repo,
    status: Annotated[Status | None, Query(description="Only records in this status")] = None,
    contract_id: Annotated[str | None, Query(description="Contract strkey (C...)")] = None,
    limit: Limit = 100,
    cursor: Annotated[
        int | None,
        Query(ge=0, le=MAX_ROW_ID, description="next_cursor of the previous page"),
        Digits,
    ] = None,
) -> dict[str, Any]:
    if contract_id is not None and not StrKey.is_valid_contract(contract_id):
        raise invalid_param("contract_id", "must be a contract strkey: C followed by 55 characters")
    records, next_cursor = expectations.listing(status, contract_id, cursor, limit)
    return {"expectations": records, "next_cursor": next_cursor}


@router.get(
    "/api/expectations/{external_id:path}",
    dependencies=[ReadAccess],
    summary="One expected record by its external id",
    responses={404: {"description": "No record has this external_id"}},
)
def get_expectation(
    expectations: Repo, external_id: Annotated[str, Path(min_length=1, max_length=128)]
) -> dict[str, Any]:
    record = expectations.get(external_id)
    if record is None:
        raise ApiError(404, f"no expected record has external_id {external_id!r}")
    return record


@router.get(
    "/api/reconciliation",
    dependencies=[ReadAccess],
    summary="Expected records by status, match rate and the oldest open items",
    description=(
        "`match_rate` is matched / every settled record but cancelled ones (matched, "
        "amount_mismatch, missing_expected, failed_on_chain, not_found, amount_unreadable), "
        "null while none is decided. `open_discrepancies` counts the open missing_expected, "
        "amount_mismatch, unexpected, failed_on_chain, not_found and amount_unreadable "
        "discrepancies (see /api/discrepancies). `oldest_pending` is the oldest record still "
        "waiting, `recently_settled` the 5 records settled last, newest first (each explained "
        "at /api/expectations/{external_id}/explain)."
    ),
)
def reconciliation(expectations: Repo) -> dict[str, Any]:
    return expectations.summary()
