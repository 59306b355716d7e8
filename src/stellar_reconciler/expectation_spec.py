"""ExpectationSpec: an expected record as the application gives it, validated.

The API body and each CSV row go through this one model, so both refuse the same things with
the same messages. What the fields mean for matching is in matching.py.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StrictBool,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from stellar_sdk import StrKey

from stellar_reconciler.matching import normalize_value, parse_amount
from stellar_reconciler.models import Json

MAX_LEDGER = 2**32 - 1
# Soroban events carry at most four topics; position 0 is the event name.
TOPIC_POSITIONS = ("1", "2", "3")
_SYMBOL = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_TX_HASH = re.compile(r"^[0-9a-fA-F]{64}$")
# The path of a record's explanation (api/explain.py): an id ending so could not be addressed.
RESERVED_SUFFIX = "/explain"


def _is_address(value: str) -> bool:
    return bool(
        StrKey.is_valid_ed25519_public_key(value)
        or StrKey.is_valid_contract(value)
        or StrKey.is_valid_med25519_public_key(value)
    )


Amount = Annotated[
    int,
    BeforeValidator(parse_amount),
    WithJsonSchema(
        {
            "anyOf": [{"type": "string", "pattern": r"^[+-]?[0-9]{1,40}$"}, {"type": "integer"}],
            "description": "A whole number in the token's smallest unit (i128); send large "
            'values as strings, e.g. "170000000000000000000"',
        }
    ),
]


class ExpectationSpec(BaseModel):
    """An expected record as the application gives it (API body or CSV row)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    external_id: str = Field(
        min_length=1, max_length=128, description="Your id for this record; unique"
    )
    contract_id: str = Field(description="Contract strkey (C...) that emits the event")
    event_name: str = Field(description="The event's first topic, a symbol such as transfer")
    tx_hash: str | None = Field(
        default=None, description="Hash of the transaction that must emit the event (64 hex)"
    )
    topics: Annotated[
        dict[str, JsonValue] | None,
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "object", "propertyNames": {"enum": list(TOPIC_POSITIONS)}},
                    {"type": "null"},
                ]
            }
        ),
    ] = Field(
        default=None,
        description='Topic values by position, e.g. {"1": "G...from", "2": "G...to"}; '
        "position 0 is the event name. Numbers match their decimal text.",
    )
    from_: str | None = Field(
        default=None,
        alias="from",
        description="Shorthand for topic 1, the sender of a SAC transfer (an address)",
    )
    to: str | None = Field(
        default=None, description="Shorthand for topic 2, the recipient of a SAC transfer"
    )
    amount: Amount | None = Field(
        default=None,
        description="Expected amount: the event value, or its `amount` field when it is a map",
    )
    tolerance: Amount = Field(
        default=0, description="Allowed absolute difference from amount (same unit, >= 0)"
    )
    deadline_ledger: int | None = Field(
        default=None, ge=1, le=MAX_LEDGER, description="Last ledger the event may appear in"
    )
    deadline_ledgers: int | None = Field(
        default=None,
        ge=1,
        le=10_000_000,
        description="Deadline relative to the service's checkpoint when the record is created",
    )
    allow_partial: StrictBool = Field(
        default=False,
        description="Settled by several events (instalments) until their sum reaches amount; "
        "partially_matched meanwhile",
    )
    group_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="Records with one group_id are settled as a whole by the sum of their "
        "amounts: one event paying them all, or several events together",
    )

    @field_validator("external_id", "group_id")
    @classmethod
    def _printable(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and (value != value.strip() or not value.isprintable()):
            raise ValueError("must be printable text without leading or trailing spaces")
        if info.field_name == "external_id" and (value or "").endswith(RESERVED_SUFFIX):
            raise ValueError(
                f"must not end in {RESERVED_SUFFIX!r}: GET /api/expectations/{{external_id}}"
                f"{RESERVED_SUFFIX} is the record's explanation; choose another id"
            )
        return value

    @field_validator("contract_id")
    @classmethod
    def _contract(cls, value: str) -> str:
        if not StrKey.is_valid_contract(value):
            raise ValueError("must be a contract strkey: C followed by 55 characters")
        return value

    @field_validator("event_name")
    @classmethod
    def _symbol(cls, value: str) -> str:
        if not _SYMBOL.match(value):
            raise ValueError("must be a symbol: 1-64 letters, digits or underscores")
        return value

    @field_validator("tx_hash")
    @classmethod
    def _hash(cls, value: str | None) -> str | None:
        if value is not None and not _TX_HASH.match(value):
            raise ValueError("must be a transaction hash: 64 hexadecimal characters")
        return value.lower() if value is not None else None

    @field_validator("topics")
    @classmethod
    def _positions(cls, value: dict[str, JsonValue] | None) -> dict[str, JsonValue] | None:
        for key in value or {}:
            if key not in TOPIC_POSITIONS:
                raise ValueError(f"position {key!r} is not 1, 2 or 3 (position 0 is event_name)")
        return value

    @field_validator("from_", "to")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None and not _is_address(value):
            raise ValueError("must be an address strkey (G..., C... or M...)")
        return value

    @field_validator("tolerance")
    @classmethod
    def _non_negative(cls, value: int) -> int:
        if value < 0:
            raise ValueError("must be 0 or more")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ExpectationSpec:
        if (self.deadline_ledger is None) == (self.deadline_ledgers is None):
            raise ValueError(
                "give exactly one of deadline_ledger (an absolute ledger) or deadline_ledgers "
                "(ledgers after the service's current checkpoint)"
            )
        if self.tolerance and self.amount is None:
            raise ValueError("tolerance needs an amount to apply to")
        self._settles_by_sum()
        given = self.topics or {}
        for alias, position, value in (("from", "1", self.from_), ("to", "2", self.to)):
            if value is not None and position in given and given[position] != value:
                raise ValueError(f"{alias} and topics[{position!r}] disagree; give one of them")
        return self

    def _settles_by_sum(self) -> None:
        """What a partial record or a group member needs (partial.py): a positive amount to
        sum events up to, and no transaction hash (instalments come in several
        transactions); a group settles by its sum already, so it takes no allow_partial."""
        if not (self.allow_partial or self.group_id is not None):
            return
        what = "allow_partial" if self.allow_partial else "group_id"
        if self.allow_partial and self.group_id is not None:
            raise ValueError(
                "give allow_partial or group_id, not both: a group is settled by the sum of "
                "its events already (several transfers may pay it)"
            )
        if self.amount is None or self.amount <= 0:
            raise ValueError(
                f"{what} needs an amount above 0: events are summed up to it (amounts of "
                "0 or less cannot be paid in parts)"
            )
        if self.tx_hash is not None:
            raise ValueError(
                f"{what} cannot be pinned to one tx_hash: its events may come in several "
                "transactions; pin them with from/to or topics instead"
            )

    def topic_values(self) -> tuple[tuple[int, Json], ...]:
        """Every topic constraint, `from`/`to` folded in, by position, normalised."""
        merged: dict[int, Json] = {int(k): v for k, v in (self.topics or {}).items()}
        if self.from_ is not None:
            merged[1] = self.from_
        if self.to is not None:
            merged[2] = self.to
        return tuple((p, normalize_value(merged[p])) for p in sorted(merged))
