"""The params of getEvents and getLedgers, decoded and validated in stellar-rpc's order.

Decoding problems (wrong JSON types, bad cursors, bad ScVal segments) and most validation
problems answer -32602; getLedgers' range and limit checks answer -32600, as the server does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stellar_reconciler.simnet import params
from stellar_reconciler.simnet.cursor import Cursor, CursorError
from stellar_reconciler.simnet.filters import MAX_FILTERS, EventFilter, decode_filters
from stellar_reconciler.simnet.jsonrpc import invalid_params, invalid_request

FORMATS = ("", "base64", "json")


def format_problem(xdr_format: str) -> str | None:
    if xdr_format in FORMATS:
        return None
    return f"got '{xdr_format}': expected base64, json for optional 'xdrFormat'"


@dataclass(frozen=True, slots=True)
class EventsQuery:
    start_ledger: int
    end_ledger: int
    filters: list[EventFilter]
    cursor: Cursor | None
    limit: int
    xdr_format: str

    @classmethod
    def decode(cls, raw: Any, max_limit: int) -> EventsQuery:
        """Decode then validate like GetEventsRequest.Valid; raises RpcError(-32602)."""
        obj = params.request_object(raw, "GetEventsRequest")
        start = params.uint(params.field(obj, "startLedger"), "GetEventsRequest.startLedger")
        end = params.uint(params.field(obj, "endLedger"), "GetEventsRequest.endLedger")
        filters = decode_filters(params.field(obj, "filters"))
        pagination = params.struct(
            params.field(obj, "pagination"),
            "GetEventsRequest.pagination",
            "protocol.PaginationOptions",
        )
        cursor: Cursor | None = None
        limit = 0
        if pagination is not None:
            raw_cursor = params.field(pagination, "cursor")
            if raw_cursor is not None:
                if not isinstance(raw_cursor, str):
                    raise params.value_error(raw_cursor, "string")
                try:
                    cursor = Cursor.parse(raw_cursor)
                except CursorError as exc:
                    raise invalid_params(f"invalid parameters: {exc}") from None
            limit = params.uint(
                params.field(pagination, "limit"), "GetEventsRequest.pagination.limit", 64
            )
        xdr_format = params.string(params.field(obj, "xdrFormat"), "GetEventsRequest.xdrFormat")
        query = cls(start, end, filters, cursor, limit, xdr_format)
        problem = query.problem(max_limit)
        if problem:
            raise invalid_params(problem)
        return query

    def problem(self, max_limit: int) -> str | None:
        trouble = format_problem(self.xdr_format)
        if trouble:
            return trouble
        if self.cursor is not None:
            if self.start_ledger or self.end_ledger:
                return "ledger ranges and cursor cannot both be set"
        elif self.start_ledger <= 0:
            return "startLedger must be positive"
        if self.limit > max_limit:
            return f"limit must not exceed {max_limit}"
        if len(self.filters) > MAX_FILTERS:
            return f"maximum {MAX_FILTERS} filters per request"
        for position, event_filter in enumerate(self.filters, start=1):
            trouble = event_filter.problem()
            if trouble:
                return f"filter {position} invalid: {trouble}"
        return None


@dataclass(frozen=True, slots=True)
class LedgersQuery:
    start_ledger: int
    paginated: bool
    cursor: str
    limit: int
    xdr_format: str

    @classmethod
    def decode(cls, raw: Any) -> LedgersQuery:
        obj = params.request_object(raw, "GetLedgersRequest")
        start = params.uint(params.field(obj, "startLedger"), "GetLedgersRequest.startLedger")
        pagination = params.struct(
            params.field(obj, "pagination"),
            "GetLedgersRequest.pagination",
            "protocol.LedgerPaginationOptions",
        )
        cursor = ""
        limit = 0
        if pagination is not None:
            cursor = params.string(
                params.field(pagination, "cursor"), "GetLedgersRequest.pagination.cursor"
            )
            limit = params.uint(
                params.field(pagination, "limit"), "GetLedgersRequest.pagination.limit", 64
            )
        xdr_format = params.string(params.field(obj, "xdrFormat"), "GetLedgersRequest.xdrFormat")
        return cls(start, pagination is not None, cursor, limit, xdr_format)

    def validate(self, max_limit: int, oldest: int, latest: int) -> None:
        """GetLedgersRequest.Validate: its complaints are -32600 (InvalidRequest)."""
        if self.paginated:
            if self.cursor and self.start_ledger:
                raise invalid_request("startLedger and cursor cannot both be set")
            if self.limit > max_limit:
                raise invalid_request(f"limit must not exceed {max_limit}")
        elif self.start_ledger and not oldest <= self.start_ledger <= latest:
            raise invalid_request(
                f"start ledger must be between the oldest ledger: {oldest} and the latest "
                f"ledger: {latest} for this rpc instance"
            )
        trouble = format_problem(self.xdr_format)
        if trouble:
            raise invalid_request(trouble)

    def first_ledger(self, oldest: int, latest: int) -> int:
        """Where the page starts: cursor + 1, or startLedger (-32602 for a bad cursor)."""
        if not self.cursor:
            return self.start_ledger
        if not self.cursor.isascii() or not self.cursor.isdigit():
            raise invalid_params(f'strconv.ParseUint: parsing "{self.cursor}": invalid syntax')
        value = int(self.cursor)
        if value >= 1 << 32:
            raise invalid_params(f'strconv.ParseUint: parsing "{self.cursor}": value out of range')
        start = (value + 1) & 0xFFFFFFFF  # a uint32 in the server, so it can wrap to 0
        if not oldest <= start <= latest:
            raise invalid_params(
                f"cursor ('{self.cursor}') must be between the oldest ledger: {oldest} and the "
                f"latest ledger: {latest} for this rpc instance"
            )
        return start
