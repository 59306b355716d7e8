"""Parameter types that accept only what they say: integers written as plain digits (no
`1.0`, `1_000`, `+5` or trailing newline), booleans that are JSON booleans, and bounds that
the database columns can hold, so no value reaches SQL that the column would reject."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import BeforeValidator, Field

# Ids are INTEGER columns (4 bytes on PostgreSQL); ledger sequences are uint32 on Stellar.
MAX_ROW_ID = 2**31 - 1
MAX_LEDGER = 2**32 - 1
_DIGITS = re.compile(r"[0-9]{1,20}")


def _digits_only(value: Any) -> Any:
    """A query or path value must be a whole number in plain digits; a bare int passes (the
    bounds check follows)."""
    if isinstance(value, str) and not _DIGITS.fullmatch(value):
        raise ValueError("must be a whole number written in digits only, such as 1000")
    return value


Digits = BeforeValidator(_digits_only)
LedgerQuery = Annotated[
    int | None, Query(ge=1, le=MAX_LEDGER, description="A ledger sequence"), Digits
]
Limit = Annotated[int, Query(ge=1, le=1000, description="Items per page"), Digits]
RowIdPath = Annotated[int, Path(ge=1, le=MAX_ROW_ID), Digits]
# JSON bodies: strict, so `true` is not 1 and "5" is not 5.
LedgerField = Annotated[int, Field(strict=True, ge=1, le=MAX_LEDGER)]
