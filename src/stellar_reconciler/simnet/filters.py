"""Event filters of getEvents: decoding, validation and matching as stellar-rpc does them.

Filters are ORed; inside one filter the type set, contract ids and topic filters are ANDed,
and the topic filters of one filter are ORed. A topic filter is 1-4 segments, each a base64
ScVal (exact match), `*` (any one topic) or, in last place only, `**` (zero or more topics).
Without `**` an event must have exactly as many topics as the filter has segments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stellar_sdk import StrKey

from stellar_reconciler.simnet import codec, params
from stellar_reconciler.simnet.jsonrpc import RpcError, invalid_params

ANY_ONE = "*"
ZERO_OR_MORE = "**"
MAX_FILTERS = 5
MAX_CONTRACT_IDS = 5
MAX_TOPIC_FILTERS = 5
MAX_SEGMENTS = 4
FILTER_TYPES = frozenset({"contract", "system"})


@dataclass(frozen=True, slots=True)
class TopicFilter:
    """Segments as given: canonical base64 ScVals or the wildcards `*` / `**`."""

    segments: tuple[str, ...]

    @property
    def flexible(self) -> bool:
        return bool(self.segments) and self.segments[-1] == ZERO_OR_MORE

    @property
    def fixed(self) -> tuple[str, ...]:
        return self.segments[:-1] if self.flexible else self.segments

    def problem(self) -> str | None:
        if not self.segments:
            return "topic must have at least 1 segment"
        for position, segment in enumerate(self.fixed, start=1):
            if segment == ZERO_OR_MORE:
                return (
                    f"segment {position} invalid: wildcard '**' is only allowed as the last segment"
                )
        if len(self.fixed) > MAX_SEGMENTS:
            return f"topic cannot have more than {MAX_SEGMENTS} segments"
        return None

    def matches(self, topics: tuple[str, ...]) -> bool:
        fixed = self.fixed
        if len(topics) < len(fixed) or (not self.flexible and len(topics) != len(fixed)):
            return False
        pairs = zip(fixed, topics, strict=False)
        return all(segment in (ANY_ONE, topic) for segment, topic in pairs)


@dataclass(frozen=True, slots=True)
class EventFilter:
    types: frozenset[str]
    contract_ids: tuple[str, ...]
    topics: tuple[TopicFilter, ...]

    def problem(self) -> str | None:
        if not self.types <= FILTER_TYPES:
            return "filter type invalid: if set, type must be either 'system' or 'contract'"
        if len(self.contract_ids) > MAX_CONTRACT_IDS:
            return f"maximum {MAX_CONTRACT_IDS} contract IDs per filter"
        if len(self.topics) > MAX_TOPIC_FILTERS:
            return f"maximum {MAX_TOPIC_FILTERS} topics per filter"
        for position, contract_id in enumerate(self.contract_ids, start=1):
            if not StrKey.is_valid_contract(contract_id):
                return f"contract ID {position} invalid"
        for position, topic in enumerate(self.topics, start=1):
            trouble = topic.problem()
            if trouble:
                return f"topic {position} invalid: {trouble}"
        return None

    def matches(self, event_type: str, contract_id: str, topics: tuple[str, ...]) -> bool:
        if self.types and event_type not in self.types:
            return False
        if self.contract_ids and contract_id not in self.contract_ids:
            return False
        return not self.topics or any(t.matches(topics) for t in self.topics)

    def could_match(self, contract_ids: frozenset[str]) -> bool:
        """False when no event of a ledger with these contracts can match (a cheap skip)."""
        return not self.contract_ids or not contract_ids.isdisjoint(self.contract_ids)


def matches_any(
    filters: list[EventFilter], event_type: str, contract_id: str, topics: tuple[str, ...]
) -> bool:
    """stellar-rpc semantics: no filters match everything; otherwise any filter may match."""
    return not filters or any(f.matches(event_type, contract_id, topics) for f in filters)


def decode_filters(raw: Any) -> list[EventFilter]:
    """Decode the `filters` param; shape errors are -32602 "invalid parameters: ..."."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _shape(raw, "filters", "[]protocol.EventFilter")
    return [_decode_filter(item) for item in raw]


def _decode_filter(raw: Any) -> EventFilter:
    if raw is None:
        return EventFilter(frozenset(), (), ())
    if not isinstance(raw, dict):
        raise _shape(raw, "filters", "protocol.EventFilter")
    types: frozenset[str] = frozenset()
    joined = raw.get("type")
    if joined is not None:
        if not isinstance(joined, str):
            raise params.value_error(joined, "string")
        types = frozenset(joined.split(",")) if joined else frozenset()
    contract_ids = raw.get("contractIds") or []
    if not isinstance(contract_ids, list) or not all(isinstance(c, str) for c in contract_ids):
        raise _shape(contract_ids, "filters.contractIds", "[]string")
    topics = raw.get("topics") or []
    if not isinstance(topics, list):
        raise _shape(topics, "filters.topics", "[]protocol.TopicFilter")
    return EventFilter(types, tuple(contract_ids), tuple(_decode_topic(t) for t in topics))


def _decode_topic(raw: Any) -> TopicFilter:
    if raw is None:
        return TopicFilter(())
    if not isinstance(raw, list):
        raise _shape(raw, "filters.topics", "protocol.TopicFilter")
    return TopicFilter(tuple(_decode_segment(segment) for segment in raw))


def _decode_segment(raw: Any) -> str:
    if not isinstance(raw, str):
        raise params.value_error(raw, "string")
    if raw in (ANY_ONE, ZERO_OR_MORE):
        return raw
    try:
        # The canonical form lets equal ScVals compare equal as strings.
        return codec.canonical(raw)
    except ValueError as exc:
        raise invalid_params(f"invalid parameters: segment {raw!r}: {exc}") from None


def _shape(value: Any, field: str, go_type: str) -> RpcError:
    return params.type_error(value, f"GetEventsRequest.{field}", go_type)
