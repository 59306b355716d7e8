"""/api/proofs: a ledger range's proof bundle, the same file `reconciler proof export` writes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from stellar_reconciler import proof
from stellar_reconciler.api.auth import ReadAccess
from stellar_reconciler.api.context import ApiContext, context
from stellar_reconciler.api.errors import ApiError, invalid_param
from stellar_reconciler.api.params import MAX_LEDGER, Digits
from stellar_reconciler.errors import ProofRangeError

router = APIRouter(tags=["reconciliation"], dependencies=[ReadAccess])
Ctx = Annotated[ApiContext, Depends(context)]

# A bundle is built in memory; longer ranges are for the command line, which writes a file.
MAX_PROOF_LEDGERS = 10_000
RequiredLedger = Annotated[int, Query(ge=1, le=MAX_LEDGER, description="A ledger sequence"), Digits]


@router.get(
    "/api/proofs",
    summary="The proof bundle of a stored ledger range (docs/proofs.md)",
    response_class=Response,
    responses={
        200: {
            "description": "The bundle: canonical JSON, check it with `reconciler proof verify`",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        422: {"description": "The range is not wholly indexed, reversed or too long"},
    },
)
def get_proof(ctx: Ctx, from_ledger: RequiredLedger, to_ledger: RequiredLedger) -> Response:
    if from_ledger > to_ledger:
        raise invalid_param("to_ledger", f"must be at least from_ledger ({from_ledger})")
    if to_ledger - from_ledger + 1 > MAX_PROOF_LEDGERS:
        raise invalid_param(
            "to_ledger",
            f"the range may span at most {MAX_PROOF_LEDGERS:,} ledgers here; export longer "
            "ranges with `reconciler proof export --from A --to B --output FILE`",
        )
    try:
        material = ctx.store.periods.material(from_ledger, to_ledger)
    except ProofRangeError as exc:
        detail = [
            {"loc": ["query", name], "msg": str(exc), "type": "value_error"}
            for name in ("from_ledger", "to_ledger")
        ]
        raise ApiError(422, str(exc), detail) from exc
    bundle = proof.assemble(material, ctx.proof_settings)
    return Response(proof.encode(bundle), media_type="application/json")
