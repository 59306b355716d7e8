"""Request params read with the rules of Go's encoding/json, which stellar-rpc decodes them with.

Unknown keys are ignored, key names match case-insensitively when no exact match exists, null
leaves a field at its zero value, and a value of the wrong JSON type is refused with Go's
wording, prefixed by jrpc2's "invalid parameters: " (code -32602). Params sent as an array are
refused because stellar-rpc disables positional arguments.
"""

from __future__ import annotations

from typing import Any

from stellar_reconciler.simnet.jsonrpc import RpcError, invalid_params


def request_object(params: Any, go_type: str) -> dict[str, Any]:
    """The params object; an array (positional params) is refused like stellar-rpc does."""
    if params is None:
        return {}
    if isinstance(params, list):
        raise invalid_params(
            "invalid parameters: json: cannot unmarshal array into Go value of type "
            f"protocol.{go_type}"
        )
    if not isinstance(params, dict):
        raise invalid_params(
            f"invalid parameters: json: cannot unmarshal {json_kind(params)} into Go value "
            f"of type protocol.{go_type}"
        )
    return params


def field(obj: dict[str, Any], name: str) -> Any:
    """obj[name], falling back to a case-insensitive match as Go does; None when absent."""
    if name in obj:
        return obj[name]
    folded = name.casefold()
    for key, value in obj.items():
        if key.casefold() == folded:
            return value
    return None


def uint(value: Any, where: str, bits: int = 32) -> int:
    """A JSON number decoded into a Go uintN field (`where` is e.g. GetEventsRequest.endLedger)."""
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << bits:
        return value
    go_type = "uint" if bits == 64 else f"uint{bits}"
    raise type_error(value, where, go_type)


def string(value: Any, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    raise type_error(value, where, "string")


def struct(value: Any, where: str, go_type: str) -> dict[str, Any] | None:
    """A nested JSON object (None when absent or null)."""
    if value is None:
        return None
    if isinstance(value, dict):
        return value
    raise type_error(value, where, go_type)


def json_kind(value: Any) -> str:
    """How Go's encoding/json names a JSON value in an UnmarshalTypeError."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return f"number {value}"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def type_error(value: Any, where: str, go_type: str) -> RpcError:
    """A struct field of the wrong JSON type (`where` is e.g. GetEventsRequest.endLedger)."""
    return invalid_params(
        f"invalid parameters: json: cannot unmarshal {json_kind(value)} into Go struct field "
        f"{where} of type {go_type}"
    )


def value_error(value: Any, go_type: str) -> RpcError:
    """A value decoded by a custom unmarshaller (cursor, topic segment) of the wrong type."""
    kind = json_kind(value).split(" ")[0]
    return invalid_params(
        f"invalid parameters: json: cannot unmarshal {kind} into Go value of type {go_type}"
    )
