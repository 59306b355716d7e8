"""Helpers for tests that talk to the simulated network (or check any Stellar RPC answer).

- `rpc`: one JSON-RPC call over an httpx.Client, returning the decoded envelope;
- `schema_problems`: a minimal JSON Schema check (type, properties, required, items, enum,
  lengths, pattern, $ref) against the result schemas of the official OpenRPC spec;
- `shape_problems`: same keys and same JSON types as a recorded real answer.

Fixtures are looked for in $STELLAR_RPC_FIXTURES, then in tests/fixtures/stellar-rpc of the
checkout, where the repository carries them (see their SOURCES.md).
"""

from __future__ import annotations

import json
import os
import re
from functools import cache
from pathlib import Path
from typing import Any

import httpx

_REPO = Path(__file__).resolve().parents[3]
_CANDIDATES = (_REPO / "tests" / "fixtures" / "stellar-rpc",)


def fixtures_dir() -> Path | None:
    """Where the recorded Stellar RPC fixtures and openrpc.json are, if anywhere."""
    configured = os.environ.get("STELLAR_RPC_FIXTURES")
    candidates = [Path(configured)] if configured else []
    candidates += _CANDIDATES
    return next((path for path in candidates if (path / "openrpc.json").is_file()), None)


def load_fixture(name: str) -> Any:
    directory = fixtures_dir()
    if directory is None:
        raise FileNotFoundError("no Stellar RPC fixtures found (set STELLAR_RPC_FIXTURES)")
    return json.loads((directory / name).read_text())


@cache
def _openrpc() -> dict[str, Any]:
    spec: dict[str, Any] = load_fixture("openrpc.json")
    return spec


def result_schema(method: str) -> dict[str, Any]:
    """The `result` schema of `method` in the official OpenRPC spec."""
    for entry in _openrpc()["methods"]:
        if entry["name"] == method:
            schema: dict[str, Any] = entry["result"]["schema"]
            return schema
    raise KeyError(f"{method} is not in openrpc.json")


def rpc(client: httpx.Client, url: str, method: str, params: Any = None, ident: Any = 1) -> Any:
    """POST one JSON-RPC request; the decoded response body (envelope included)."""
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": ident, "method": method}
    if params is not None:
        body["params"] = params
    response = client.post(url, json=body)
    response.raise_for_status()
    return response.json()


def result(client: httpx.Client, url: str, method: str, params: Any = None) -> Any:
    """The `result` of a call that must succeed (AssertionError with the error otherwise)."""
    envelope = rpc(client, url, method, params)
    assert "error" not in envelope, envelope["error"]
    return envelope["result"]


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}


def schema_problems(value: Any, schema: dict[str, Any], path: str = "result") -> list[str]:
    """Where `value` breaks `schema` (empty when it conforms)."""
    if "$ref" in schema:
        schema = _resolve(schema["$ref"])
    problems: list[str] = []
    expected = schema.get("type")
    if expected is not None:
        names = expected if isinstance(expected, list) else [expected]
        kinds = tuple(t for name in names for t in _TYPES[name])
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            return [f"{path}: {type(value).__name__} is not {expected}"]
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, str):
        problems += _string_problems(value, schema, path)
    if isinstance(value, dict):
        problems += [
            f"{path}: lacks {key!r}" for key in schema.get("required", ()) if key not in value
        ]
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                problems += schema_problems(value[key], sub, f"{path}.{key}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            problems.append(f"{path}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            problems.append(f"{path}: more than {schema['maxItems']} items")
        if isinstance(schema.get("items"), dict):
            for index, item in enumerate(value):
                problems += schema_problems(item, schema["items"], f"{path}[{index}]")
    return problems


def _string_problems(value: str, schema: dict[str, Any], path: str) -> list[str]:
    problems = []
    if len(value) < schema.get("minLength", 0):
        problems.append(f"{path}: shorter than {schema['minLength']}")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        problems.append(f"{path}: longer than {schema['maxLength']}")
    if "pattern" in schema and not re.search(schema["pattern"], value):
        problems.append(f"{path}: {value!r} does not match {schema['pattern']}")
    return problems


def _resolve(ref: str) -> dict[str, Any]:
    node: Any = _openrpc()
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    resolved: dict[str, Any] = node
    return resolved


def shape_problems(actual: Any, recorded: Any, path: str = "result") -> list[str]:
    """Where `actual` differs from a recorded answer in keys or JSON types (not values).

    Lists are compared item by item against the recorded list's first item.
    """
    if _json_type(actual) != _json_type(recorded):
        return [f"{path}: {_json_type(actual)} where the recording has {_json_type(recorded)}"]
    problems: list[str] = []
    if isinstance(actual, dict):
        if set(actual) != set(recorded):
            missing, extra = (
                sorted(set(recorded) - set(actual)),
                sorted(set(actual) - set(recorded)),
            )
            problems.append(f"{path}: missing keys {missing}, extra keys {extra}")
        for key in set(actual) & set(recorded):
            problems += shape_problems(actual[key], recorded[key], f"{path}.{key}")
    elif isinstance(actual, list) and recorded:
        for index, item in enumerate(actual):
            problems += shape_problems(item, recorded[0], f"{path}[{index}]")
    return problems


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if value is None:
        return "null"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__
