"""Redactor: each secret replaced in every form it is written in, JSON left well-formed."""

from __future__ import annotations

import json

from stellar_reconciler.config import Secret, Settings, Shown, settings_about
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


def test_settings_secrets_include_every_url_and_token() -> None:
    """Passwords in the RPC, database, webhook and NATS URLs (each NATS server of a list)
    and the three tokens are all redacted."""
    secrets = ("a" * 20, "r" * 16, "w" * 16, "dbpassword", "rpckeyvalue", "natspass1", "natspass2")
    settings = Settings.from_env(
        admin_token=secrets[0],
        read_token=secrets[1],
        webhook_urls="http://hook:hookpass@127.0.0.1:9/a",
        webhook_secret=secrets[2],
        database_url="postgres://u:dbpassword@h:5432/db",
        stellar_rpc_url="https://rpc.example/v1?apikey=rpckeyvalue",
        nats_url="nats://u:natspass1@127.0.0.1:4222, nats://u:natspass2@127.0.0.1:4223",
        lake_endpoint_url="http://minio:lakepass1@127.0.0.1:9000",
    )
    redactor = Redactor.from_settings(settings)
    said = redactor.text(" ".join((*secrets, "hookpass", "lakepass1")))
    assert said == " ".join(["***"] * (len(secrets) + 2))


def test_every_setting_shown_only_as_set_or_not_is_a_redacted_secret() -> None:
    """A setting /api/status shows only as whether it is set is a secret, so its field marks
    it for the Redactor too, and every URL setting has its user info and query redacted."""
    for name, about in settings_about().items():
        if about.shown is Shown.WHETHER_SET:
            assert about.secret is Secret.VALUE, name
        if name.endswith(("_url", "_urls")) and name != "advertise_url":
            assert about.secret is Secret.URLS, name
