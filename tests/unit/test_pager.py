"""Splitting configured filters to respect getEvents' limits."""

from __future__ import annotations

import pytest
from stellar_sdk import StrKey

from stellar_reconciler.pager import build_filter_sets


def contracts(n: int) -> list[str]:
    return [StrKey.encode_contract(bytes([i]) * 32) for i in range(n)]


def test_no_filters_means_one_unfiltered_stream() -> None:
    """Nothing configured: one stream with no filters (every contract)."""
    assert build_filter_sets([], []) == [[]]


def test_topics_only_make_one_filter() -> None:
    """Topic filters alone travel in one filter object."""
    assert build_filter_sets([], [["AAAA", "*"]]) == [[{"topics": [["AAAA", "*"]]}]]


@pytest.mark.parametrize(
    ("count", "streams", "filters"),
    [(1, 1, 1), (5, 1, 1), (6, 1, 2), (25, 1, 5), (26, 2, 6), (60, 3, 12)],
)
def test_contracts_split_into_filters_of_five_and_streams_of_five(
    count: int, streams: int, filters: int
) -> None:
    """Contract ids go 5 per filter and filters 5 per call; every id appears exactly once."""
    ids = contracts(count)
    sets = build_filter_sets(ids, [["AAAA"]])
    assert len(sets) == streams
    flat = [f for s in sets for f in s]
    assert len(flat) == filters
    assert all(len(s) <= 5 for s in sets)
    assert all(len(f["contractIds"]) <= 5 and f["topics"] == [["AAAA"]] for f in flat)
    assert [c for f in flat for c in f["contractIds"]] == ids
