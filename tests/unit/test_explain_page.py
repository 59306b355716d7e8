"""The explanation page (api/explain_page.py): every value escaped wherever it comes from, the
sections a person reads, links relative to the page, and which Accept headers get it."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stellar_reconciler.api.explain import relative_root, wants_html
from stellar_reconciler.api.explain_page import discrepancy_page, expectation_page, tag

HOSTILE = "<script>alert('x')</script>\"'&<img src=x onerror=alert(1)>"
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"


class Parsed(HTMLParser):
    """The elements, attributes and text of a page, as a browser's parser sees them."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []
        self.text: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.extend(attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def ledger(sequence: int) -> dict[str, Any]:
    return {
        "sequence": sequence,
        "stored": True,
        "hash": "ab" * 32,
        "previous_hash": "cd" * 32,
        "closed_at": "2026-01-01T00:00:00Z",
        "chain": {"holds": True, "previous_links": True, "next_links": None},
        "findings": [{"id": 4, "kind": "source_mismatch", "open": False, "resolution": HOSTILE}],
        "re_verification": {
            "verified_through_ledger": sequence + 5,
            "covers_ledger": True,
            "verified_by": "2026-01-01T00:01:00Z",
        },
    }


def explanation(text: str) -> dict[str, Any]:
    """An explanation whose every string a record or the chain could set is `text`."""
    event = {
        "id": "0000004294967296-0000000001",
        "ledger": 1001,
        "contract_id": text,
        "event_name": text,
        "tx_hash": text,
        "topics": [text, text],
        "amount": text,
        "in_successful_contract_call": True,
    }
    difference = {"field": "recipient", "label": text, "expected": text, "found": text}
    return {
        "expectation": {
            "external_id": text,
            "status": "matched",
            "amount": text,
            "topics": {"1": text},
        },
        "verdict": {"status": "matched", "summary": text},
        "window": {"by": "tx_hash", "first_ledger": None, "deadline_ledger": 1010},
        "candidates": [
            {
                "event": event,
                "verdict": "taken",
                "reasons": [text],
                "differences": [difference],
                "claimed_by": {"external_id": text, "status": text},
            }
        ],
        "candidates_considered": 1,
        "candidates_by_verdict": {"taken": 1},
        "chosen": {"event_id": event["id"], "ledger": ledger(1001)},
        "discrepancies": [{"id": 7, "kind": "amount_mismatch", "open": True}],
    }


def test_hostile_values_are_text_never_markup() -> None:
    """A record id, topics, reasons and a finding's resolution holding markup appear as text:
    no script or img element, no event handler attribute, the text intact."""
    page = expectation_page(explanation(HOSTILE), "../../")
    parsed = Parsed(page)
    assert "script" not in parsed.tags and "img" not in parsed.tags
    assert not any(name.startswith("on") for name, _ in parsed.attributes)
    assert HOSTILE in "".join(parsed.text)


@given(st.text())
def test_any_text_comes_back_as_itself(text: str) -> None:
    """Whatever the text (quotes, ampersands, angle brackets, any code point), an element
    holding it parses back to exactly it, and attribute values stay inside their quotes."""
    parsed = Parsed(str(tag("p", {"title": text}, text)))
    assert parsed.tags == ["p"]
    assert parsed.attributes == [("title", text)]
    assert "".join(parsed.text) == text


def test_a_record_page_has_each_section_and_relative_links() -> None:
    """The verdict, the record, the window, the chosen event's ledger with its hash, chain and
    re-verification, the candidates with their verdicts, and links to the record's
    discrepancies, the stylesheet and the dashboard, relative to the page."""
    page = expectation_page(explanation("inv-1"), "../../../")
    for section in ("verdict", "record", "window", "chosen", "candidates"):
        assert f'<section id="{section}">' in page
    assert 'data-verdict="taken"' in page
    assert "ab" * 32 in page
    assert 'data-chain="holds"' in page and 'data-verified="yes"' in page
    assert 'href="../../../api/discrepancies/7/explain"' in page
    assert 'href="../../../static/explain.css"' in page
    assert "<script" not in page and "style=" not in page


def unexpected_event(waiting: str) -> dict[str, Any]:
    """An `unexpected` discrepancy's explanation: its event, and record `waiting` pending."""
    return {
        "discrepancy": {"id": 9, "kind": "unexpected"},
        "unexpected_event": {
            "event": {"id": "e1"},
            "claimed_by": None,
            "records_considered": [
                {"external_id": waiting, "status": "pending", "differences": []}
            ],
        },
    }


def test_a_discrepancy_page_shows_its_record_or_its_ledgers() -> None:
    """A record's discrepancy shows the discrepancy and the record's sections; a ledger
    finding shows each named ledger; an unexpected event links the records it was not."""
    about_record = discrepancy_page(
        {"discrepancy": {"id": 7, "kind": "amount_mismatch"}, "expectation": explanation("a/b")},
        "../../../",
    )
    assert "Discrepancy #7: amount_mismatch" in about_record
    assert '<section id="candidates">' in about_record
    about_ledgers = discrepancy_page(
        {"discrepancy": {"id": 8, "kind": "gap"}, "ledgers": [ledger(5), ledger(9)]}, ""
    )
    assert 'data-ledger="5"' in about_ledgers and 'data-ledger="9"' in about_ledgers
    unexpected = discrepancy_page(
        {**unexpected_event("inv/2 x"), "ledgers": [ledger(3)]}, "../../../"
    )
    assert 'href="../../../api/expectations/inv/2%20x/explain"' in unexpected


def test_a_page_opened_with_a_ticket_passes_it_to_its_explanation_links_only() -> None:
    """With a ticket, the links to other explanations (a record's discrepancy, an unexpected
    event's records) carry it, encoded; the stylesheet and the dashboard links do not."""
    ticket = "t+/=ticket"
    record = expectation_page(explanation("inv-1"), "../../../", ticket)
    assert 'href="../../../api/discrepancies/7/explain?ticket=t%2B%2F%3Dticket"' in record
    assert 'href="../../../static/explain.css"' in record
    assert 'href="../../../" class="back"' in record
    unexpected = discrepancy_page(unexpected_event("inv/2"), "../../../", ticket)
    assert 'href="../../../api/expectations/inv/2/explain?ticket=t%2B%2F%3Dticket"' in unexpected
    assert "ticket" not in expectation_page(explanation("inv-1"), "../../../")


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        (BROWSER, True),
        ("text/html", True),
        ("application/xhtml+xml", True),
        (None, False),
        ("", False),
        ("*/*", False),
        ("application/json", False),
        ("application/json, text/html", False),
        ("text/html;q=0.5, application/json", False),
        ("text/html, application/json;q=0.5", True),
        ("text/html;q=0", False),
        ("text/html;q=oops", False),
        ("application/*;q=0.2, text/html;q=0.3", True),
    ],
)
def test_html_goes_to_clients_that_prefer_it(accept: str | None, html: bool) -> None:
    """A browser's navigation gets the page; no header, */*, JSON named first or preferred,
    or HTML at q=0 gets JSON."""
    assert wants_html(accept) is html


@pytest.mark.parametrize(
    ("path", "prefix"),
    [
        ("/api/discrepancies/5/explain", "../../../"),
        ("/api/expectations/inv-1/explain", "../../../"),
        ("/api/expectations/demo/invoice/1001/explain", "../../../../../"),
        ("/api/expectations/a%2Fb/explain", "../../../"),
    ],
)
def test_links_lead_back_to_the_root_from_where_the_page_is(path: str, prefix: str) -> None:
    """The relative way up counts the path as sent: an encoded slash is no folder."""
    assert relative_root(path.encode()) == prefix
