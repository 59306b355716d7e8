"""The simulated node speaks JSON-RPC 2.0 over HTTP the way stellar-rpc does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stellar_reconciler.simnet import SimNetConfig, SimNetwork, serve_in_thread
from stellar_reconciler.simnet.testing import rpc

METHODS = ["getHealth", "getNetwork", "getLatestLedger", "getLedgers", "getEvents"]
KNOWN_CODES = {-32700, -32600, -32601, -32602, -32603}


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve_in_thread(SimNetwork(SimNetConfig(prebuilt_ledgers=50))) as base:
        yield base


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as http:
        yield http


def post(client: httpx.Client, url: str, body: Any) -> httpx.Response:
    return client.post(url, content=json.dumps(body), headers={"content-type": "application/json"})


def test_only_post_is_accepted(client: httpx.Client, url: str) -> None:
    """GET on the endpoint is 405 and advertises POST application/json."""
    response = client.get(url)
    assert response.status_code == 405
    assert response.headers["accept-post"] == "application/json"


@pytest.mark.parametrize("content_type", ["text/plain", "application/json; charset=latin-1", ""])
def test_content_type_must_be_json(client: httpx.Client, url: str, content_type: str) -> None:
    """A body that is not declared application/json (utf-8) is refused with 415."""
    body = b'{"jsonrpc":"2.0","id":1,"method":"getHealth"}'
    response = client.post(url, content=body, headers={"content-type": content_type})
    assert response.status_code == 415


def test_malformed_json_is_a_parse_error(client: httpx.Client, url: str) -> None:
    """A body that is not JSON answers -32700 with a null id (never HTTP 500)."""
    response = client.post(
        url, content=b'{"jsonrpc": "2.0", "id": 1,', headers={"content-type": "application/json"}
    )
    assert response.status_code == 200
    assert response.json() == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32700, "message": "invalid request value"},
    }


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ({"id": 1, "method": "getHealth"}, -32600, "invalid version marker"),
        ({"jsonrpc": "1.0", "id": 1, "method": "getHealth"}, -32600, "invalid version marker"),
        (
            {"jsonrpc": "2.0", "id": 1, "method": "getHealth", "extra": 1},
            -32600,
            "extra fields in request",
        ),
        (
            {"jsonrpc": "2.0", "id": 1, "method": "getHealth", "params": 5},
            -32600,
            "parameters must be array or object",
        ),
        ({"jsonrpc": "2.0", "id": 1, "method": 5}, -32700, "invalid method name"),
        ({"jsonrpc": "2.0", "id": 1, "method": ""}, -32600, "empty method name"),
        ({"jsonrpc": "2.0", "id": {"a": 1}, "method": "getHealth"}, -32600, "invalid request ID"),
        ([], -32600, "empty request batch"),
        (7, -32700, "request is not a JSON object"),
    ],
)
def test_invalid_envelopes_are_refused(
    client: httpx.Client, url: str, body: Any, code: int, message: str
) -> None:
    """Envelope mistakes answer the JSON-RPC code and message jrpc2 uses."""
    answer = post(client, url, body).json()
    assert answer["error"]["code"] == code
    assert answer["error"]["message"] == message


def test_unknown_method_is_32601_naming_it(client: httpx.Client, url: str) -> None:
    """An unknown method answers -32601 with the method name as data."""
    answer = rpc(client, url, "getTransactionz")
    assert answer["error"] == {
        "code": -32601,
        "message": "method not found",
        "data": "getTransactionz",
    }


@pytest.mark.parametrize("method", METHODS)
def test_positional_params_are_refused(client: httpx.Client, url: str, method: str) -> None:
    """Params as an array are refused with -32602, as stellar-rpc disables positional params."""
    answer = rpc(client, url, method, [1000])
    assert answer["error"]["code"] == -32602
    assert "cannot unmarshal array" in answer["error"]["message"]


def test_ids_are_echoed_whatever_their_type(client: httpx.Client, url: str) -> None:
    """String and numeric ids come back as sent."""
    assert rpc(client, url, "getHealth", ident="abc-1")["id"] == "abc-1"
    assert rpc(client, url, "getHealth", ident=42)["id"] == 42


def test_batches_answer_each_call_in_order(client: httpx.Client, url: str) -> None:
    """A batch gets one answer per call (notifications excepted), in order."""
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "getHealth"},
        {"jsonrpc": "2.0", "method": "getNetwork"},
        {"jsonrpc": "2.0", "id": 2, "method": "nope"},
        {"jsonrpc": "2.0", "id": 3, "method": "getNetwork"},
    ]
    answers = post(client, url, batch).json()
    assert [a["id"] for a in answers] == [1, 2, 3]
    assert answers[0]["result"]["status"] == "healthy"
    assert answers[1]["error"]["code"] == -32601
    assert "passphrase" in answers[2]["result"]


def test_notifications_alone_get_no_content(client: httpx.Client, url: str) -> None:
    """A request without an id is a notification: 204 and no body."""
    response = post(client, url, {"jsonrpc": "2.0", "method": "getHealth"})
    assert response.status_code == 204
    assert response.content == b""


def test_oversized_bodies_are_refused(client: httpx.Client, url: str) -> None:
    """Bodies over 512 KiB are refused before parsing."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "getHealth", "params": {"pad": "x" * 600_000}}
    assert post(client, url, body).status_code == 413


def test_other_paths_are_not_found(client: httpx.Client, url: str) -> None:
    """Only the root answers JSON-RPC; the control API is under /_simnet/."""
    assert client.post(url + "rpc", json={}).status_code == 404
    assert client.get(url + "_simnet/status").status_code == 200


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
param_keys = st.sampled_from(
    ["startLedger", "endLedger", "filters", "pagination", "xdrFormat", "cursor", "limit"]
)
params = st.dictionaries(param_keys, json_values, max_size=4) | json_values


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(method=st.sampled_from(METHODS), params=params)
def test_no_params_make_the_node_fail(
    client: httpx.Client, url: str, method: str, params: Any
) -> None:
    """Whatever params are sent, the answer is HTTP 200 with a result or a known error code."""
    response = post(client, url, {"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    assert response.status_code == 200
    answer = response.json()
    assert "result" in answer or answer["error"]["code"] in KNOWN_CODES
