"""Redactor: each secret replaced in every form it is written in, JSON left well-formed."""

from __future__ import annotations

import json

from stellar_reconciler.redaction import Redactor, url_secrets


def test_url_secrets_are_user_info_and_query_values() -> None:
    """User name, password and every query value; host, path and names are not secrets."""
    found = url_secrets("https://alice:p%40ss@rpc.example/v1?apikey=k1&x=2")
    assert set(found) - {""} == {"alice", "p%40ss", "k1", "2"}


def test_percent_encoded_and_json_escaped_forms_are_replaced() -> None:
    """A password with '@' and '"' is caught raw, percent-encoded and JSON-escaped."""
    redactor = Redactor(['p@ss"word'])
    assert redactor.text('raw p@ss"word') == "raw ***"
    assert redactor.text("url p%40ss%22word") == "url ***"
    assert redactor.text(json.dumps({"e": 'p@ss"word'})) == '{"e": "***"}'


def test_json_is_redacted_string_by_string() -> None:
    """A numeric secret is removed from strings but numbers and structure stay intact."""
    redactor = Redactor(["4242"])
    text = json.dumps({"ledger": 142420, "reason": "key 4242 rejected", "4242": [4242]})
    document = json.loads(redactor.json_text(text))
    assert document == {"ledger": 142420, "reason": "key *** rejected", "***": [4242]}


def test_short_values_are_not_treated_as_secrets() -> None:
    """Values under four characters would mangle ordinary text; they are left alone."""
    redactor = Redactor(["ab", ""])
    assert not redactor
    assert redactor.text("abcabc") == "abcabc"
