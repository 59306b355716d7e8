"""An explanation as a page a person reads: the HTML the explain endpoints answer a browser.

The same data as the JSON (store/explanations.py builds it; nothing is read here): the
record, each candidate event with its verdict and reasons, the chosen event's ledger, hash,
hash links and re-verification; for a discrepancy its fields, then its record, its
unexpected event or its ledgers. Pure: a dict in, a string out.

Every value may come from the chain or from whoever posted a record (an external id, a
topic, a reason quoting an event's value), so nothing is written into the page unescaped:
`tag` escapes every child that is not already `Html` and every attribute value, and only
`tag` makes `Html`. The page has no script and no inline style (the dashboard's
Content-Security-Policy applies); its links are relative, so it works behind a path prefix.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import quote

NONE = "—"
# Record fields shown in this order first; any other field follows in the JSON's order.
_RECORD_FIRST = (
    "external_id",
    "status",
    "contract_id",
    "event_name",
    "tx_hash",
    "topics",
    "amount",
    "tolerance",
    "deadline_ledger",
)


class Html(str):
    """Markup already escaped: made by `tag` only."""

    __slots__ = ()


def tag(name: str, attrs: Mapping[str, Any] | None = None, *children: Any) -> Html:
    """`<name attrs>children</name>`: text children and attribute values escaped; None
    children and attributes left out; a list or tuple child stands for its items."""
    written = "".join(
        f' {key}="{escape(str(value), quote=True)}"'
        for key, value in (attrs or {}).items()
        if value is not None
    )
    return Html(f"<{name}{written}>{_children(children)}</{name}>")


def _children(children: Iterable[Any]) -> str:
    parts: list[str] = []
    for child in children:
        if child is None:
            continue
        if isinstance(child, Html):
            parts.append(child)
        elif isinstance(child, list | tuple):
            parts.append(_children(child))
        else:
            parts.append(escape(str(child), quote=False))
    return "".join(parts)


def text_of(value: Any) -> str:
    """A JSON value as one line of text (escaped later by `tag`)."""
    if value is None:
        return NONE
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=False)
    return str(value)


def record_path(external_id: str) -> str:
    """The API path of a record's explanation, each segment of the id encoded (it may hold
    slashes, which stay)."""
    return "api/expectations/" + "/".join(quote(s, safe="") for s in external_id.split("/"))


def _explain_href(prefix: str, path: str, ticket: str | None) -> str:
    """A link to another explanation. A page opened with a ticket passes it on: a followed
    link sends no token either."""
    query = f"?ticket={quote(ticket, safe='')}" if ticket else ""
    return f"{prefix}{path}/explain{query}"


def _field_rows(fields: Mapping[str, Any], first: Sequence[str] = ()) -> Html:
    keys = [k for k in first if k in fields] + [k for k in fields if k not in first]
    rows = [
        tag("tr", {"data-field": key}, tag("th", None, key), tag("td", None, text_of(fields[key])))
        for key in keys
        if fields[key] is not None
    ]
    return tag("table", {"class": "fields"}, tag("tbody", None, rows))


def _section(section_id: str, title: str, *body: Any) -> Html:
    return tag("section", {"id": section_id}, tag("h2", None, title), *body)


def _ledger(ledger: Mapping[str, Any]) -> Html:
    """A stored ledger: hash, links with its neighbours, findings, re-verification."""
    chain = ledger.get("chain") or {}
    holds = chain.get("holds")
    state = {True: "holds", False: "broken", None: "unknown"}[holds]
    verification = ledger.get("re_verification") or {}
    covered = verification.get("covers_ledger")
    facts = {
        "sequence": ledger.get("sequence"),
        "stored": ledger.get("stored"),
        "hash": ledger.get("hash"),
        "previous_hash": ledger.get("previous_hash"),
        "closed_at": ledger.get("closed_at"),
        "links to the previous ledger": chain.get("previous_links"),
        "the next ledger links to it": chain.get("next_links"),
        "re-verified through ledger": verification.get("verified_through_ledger"),
        "re-verification covers it": covered,
        "re-verified by": verification.get("verified_by"),
    }
    findings = [
        tag(
            "li",
            {"data-kind": f.get("kind")},
            f"#{f.get('id')} {f.get('kind')} ",
            "open" if f.get("open") else f"resolved {text_of(f.get('resolved_at'))}",
            f": {f['resolution']}" if f.get("resolution") else None,
        )
        for f in ledger.get("findings") or []
    ]
    return tag(
        "div",
        {"class": "ledger", "data-ledger": ledger.get("sequence")},
        tag(
            "p",
            None,
            tag("span", {"class": f"chain chain-{state}", "data-chain": state}, f"chain {state}"),
            " ",
            tag(
                "span",
                {"class": "verified", "data-verified": "yes" if covered else "no"},
                "re-verified" if covered else "not re-verified yet",
            ),
        ),
        _field_rows(facts),
        tag("h3", None, "Findings about this ledger"),
        tag("ul", None, findings or tag("li", {"class": "muted"}, "none")),
    )


def _differences(differences: Sequence[Mapping[str, Any]]) -> Html | None:
    if not differences:
        return None
    rows = [
        tag(
            "tr",
            {"data-field": d.get("field")},
            tag("td", None, d.get("label") or d.get("field")),
            tag("td", None, text_of(d.get("expected"))),
            tag("td", None, text_of(d.get("found"))),
            tag("td", None, text_of(d.get("by")) if "by" in d else ""),
        )
        for d in differences
    ]
    head = tag(
        "tr",
        None,
        [tag("th", None, h) for h in ("field", "expected", "found", "by")],
    )
    return tag(
        "table", {"class": "differences"}, tag("thead", None, head), tag("tbody", None, rows)
    )


def _candidate(candidate: Mapping[str, Any]) -> Html:
    event = candidate.get("event") or {}
    verdict = str(candidate.get("verdict"))
    holder = candidate.get("claimed_by")
    return tag(
        "tr",
        {
            "class": f"candidate verdict-{verdict}",
            "data-verdict": verdict,
            "data-event": event.get("id"),
        },
        tag("td", None, tag("strong", {"class": "verdict"}, verdict.replace("_", " "))),
        tag(
            "td",
            None,
            tag("code", {"class": "event-id"}, text_of(event.get("id"))),
            tag("div", {"class": "muted small"}, f"ledger {text_of(event.get('ledger'))}"),
            tag(
                "div",
                {"class": "muted small"},
                "tx ",
                tag("code", None, text_of(event.get("tx_hash"))),
            ),
        ),
        tag("td", None, text_of(event.get("amount"))),
        tag("td", {"class": "small"}, text_of(event.get("topics"))),
        tag(
            "td",
            None,
            tag(
                "ul",
                {"class": "reasons"},
                [tag("li", None, r) for r in candidate.get("reasons") or []],
            ),
            _differences(candidate.get("differences") or []),
            tag(
                "p",
                {"class": "small"},
                f"held by {holder.get('external_id')} ({holder.get('status')})",
            )
            if holder
            else None,
        ),
    )


def _record_sections(explained: Mapping[str, Any], prefix: str, ticket: str | None) -> list[Html]:
    record = explained.get("expectation") or {}
    verdict = explained.get("verdict") or {}
    window = explained.get("window") or {}
    candidates = explained.get("candidates") or []
    considered = explained.get("candidates_considered", len(candidates))
    by_verdict = explained.get("candidates_by_verdict") or {}
    chosen = explained.get("chosen")
    counted = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in by_verdict.items())
    head = tag(
        "tr", None, [tag("th", None, h) for h in ("verdict", "event", "amount", "topics", "why")]
    )
    if candidates:
        listing = tag(
            "table",
            {"class": "candidates"},
            tag("thead", None, head),
            tag("tbody", None, [_candidate(c) for c in candidates]),
        )
    else:
        listing = tag("p", {"class": "muted"}, "No event was a candidate.")
    findings = [
        tag(
            "li",
            {"data-kind": d.get("kind")},
            tag(
                "a",
                {
                    "href": _explain_href(
                        prefix, f"api/discrepancies/{quote(str(d.get('id')), safe='')}", ticket
                    )
                },
                f"#{d.get('id')} {d.get('kind')}",
            ),
            " open" if d.get("open") else " resolved",
        )
        for d in explained.get("discrepancies") or []
    ]
    return [
        _section(
            "verdict",
            "Verdict",
            tag(
                "p",
                {
                    "class": f"status status-{verdict.get('status')}",
                    "data-status": verdict.get("status"),
                },
                text_of(verdict.get("status")),
            ),
            tag("p", {"class": "summary"}, text_of(verdict.get("summary"))),
        ),
        _section("record", "The record", _field_rows(record, _RECORD_FIRST)),
        _section(
            "window",
            "Where its event could come from",
            _field_rows(window),
        ),
        _section(
            "chosen",
            "The chosen event",
            (
                [
                    tag(
                        "p",
                        None,
                        "Event ",
                        tag("code", {"class": "event-id"}, text_of(chosen.get("event_id"))),
                    ),
                    _ledger(chosen.get("ledger") or {}),
                ]
                if chosen
                else tag("p", {"class": "muted"}, "None: the record holds no event.")
            ),
        ),
        _section(
            "candidates",
            "Candidate events",
            tag(
                "p",
                {"class": "muted"},
                f"{considered} considered"
                + (f" ({counted})" if counted else "")
                + (
                    f"; the closest {len(candidates)} are listed"
                    if considered > len(candidates)
                    else ""
                )
                + (
                    "" if window.get("complete", True) else "; the latest events were read, not all"
                ),
            ),
            listing,
        ),
        _section(
            "record-discrepancies",
            "Discrepancies about this record",
            tag("ul", None, findings or tag("li", {"class": "muted"}, "none")),
        ),
    ]


def _unexpected_sections(
    unexpected: Mapping[str, Any], prefix: str, ticket: str | None
) -> list[Html]:
    holder = unexpected.get("claimed_by")
    rows = [
        tag(
            "tr",
            {"data-record": r.get("external_id")},
            tag(
                "td",
                None,
                tag(
                    "a",
                    {"href": _explain_href(prefix, record_path(str(r.get("external_id"))), ticket)},
                    text_of(r.get("external_id")),
                ),
            ),
            tag("td", None, text_of(r.get("status"))),
            tag("td", None, _differences(r.get("differences") or []) or "fits"),
        )
        for r in unexpected.get("records_considered") or []
    ]
    return [
        _section(
            "event", "The event no record claimed", _field_rows(unexpected.get("event") or {})
        ),
        _section(
            "records-considered",
            "Records that were waiting",
            tag("p", None, f"now held by {holder.get('external_id')} ({holder.get('status')})")
            if holder
            else None,
            tag("table", {"class": "records"}, tag("tbody", None, rows))
            if rows
            else tag("p", {"class": "muted"}, "none"),
        ),
    ]


def _page(title: str, prefix: str, sections: Sequence[Html]) -> str:
    head = tag(
        "head",
        None,
        Html('<meta charset="utf-8">'),
        Html('<meta name="viewport" content="width=device-width, initial-scale=1">'),
        tag("title", None, title),
        # The dashboard's colours, type and header; then what only this page has.
        Html(f'<link rel="stylesheet" href="{escape(prefix, quote=True)}static/dashboard.css">'),
        Html(f'<link rel="stylesheet" href="{escape(prefix, quote=True)}static/explain.css">'),
        Html(f'<link rel="icon" href="{escape(prefix, quote=True)}static/favicon.svg">'),
    )
    body = tag(
        "body",
        None,
        tag(
            "header",
            {"class": "top"},
            tag("a", {"href": prefix or "./", "class": "back"}, "← dashboard"),
            tag("h1", None, title),
        ),
        tag(
            "main",
            None,
            sections,
            tag(
                "p",
                {"class": "muted small"},
                "The same explanation as JSON: this URL with 'Accept: application/json' (or none).",
            ),
        ),
    )
    return "<!doctype html>\n" + tag("html", {"lang": "en"}, head, body)


def expectation_page(explained: Mapping[str, Any], prefix: str, ticket: str | None = None) -> str:
    """The page of GET /api/expectations/{external_id}/explain; `prefix` leads back to the
    service's root from the page's URL (as "../../"); `ticket`, when the page was opened
    with one, goes into its links to other explanations."""
    record = explained.get("expectation") or {}
    title = f"Why record {record.get('external_id')} is {record.get('status')}"
    return _page(title, prefix, _record_sections(explained, prefix, ticket))


def discrepancy_page(explained: Mapping[str, Any], prefix: str, ticket: str | None = None) -> str:
    """The page of GET /api/discrepancies/{id}/explain."""
    discrepancy = explained.get("discrepancy") or {}
    title = f"Discrepancy #{discrepancy.get('id')}: {discrepancy.get('kind')}"
    sections = [_section("discrepancy", "The discrepancy", _field_rows(discrepancy))]
    if explained.get("expectation"):
        sections += _record_sections(explained["expectation"], prefix, ticket)
    elif "expectation" in explained:
        sections.append(
            _section(
                "record",
                "The record",
                tag("p", {"class": "muted"}, "No record has this subject any more."),
            )
        )
    if explained.get("unexpected_event"):
        sections += _unexpected_sections(explained["unexpected_event"], prefix, ticket)
    if explained.get("ledgers"):
        sections.append(
            _section("ledgers", "The ledgers it names", [_ledger(n) for n in explained["ledgers"]])
        )
    return _page(title, prefix, sections)
