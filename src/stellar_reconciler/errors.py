"""The service's error tree.

Every error a user can meet carries a message that says what went wrong and what to do next.
Callers catch the narrowest class they can act on; anything else is allowed to stop the service.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    """What the `reconciler` command's exit status means; the README lists the same table."""

    OK = 0
    # Something ran and failed: a discrepancy that could not be repaired, a rejected import.
    FAILED = 1
    # A setting (or a command-line option) is wrong, or conflicts with what the database holds.
    CONFIG = 2
    # The RPC or the database could not be reached; trying again later may work.
    UNAVAILABLE = 3
    # There is no database, or it holds nothing yet: nothing to show or verify.
    NOTHING_STORED = 4


class ReconcilerError(Exception):
    """Base class of every error this package raises on purpose."""

    exit_code: ExitCode = ExitCode.FAILED


class ConfigError(ReconcilerError):
    """A setting has a value the service cannot use; start-up stops with exit code 2."""

    exit_code = ExitCode.CONFIG

    def __init__(self, variable: str, value: str, expected: str, reason: str = "") -> None:
        self.variable = variable
        self.value = value
        self.expected = expected
        self.reason = reason
        why = f"{reason}; " if reason else ""
        super().__init__(f"{variable}={value!r} is not valid: {why}expected {expected}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.variable, self.value, self.expected, self.reason))


class SetupError(ReconcilerError):
    """The settings conflict with this machine or this database (a port in use, a database
    filled from another network); start-up stops with exit code 2 before writing anything."""

    exit_code = ExitCode.CONFIG


class AddressInUseError(SetupError):
    """The HTTP server's address cannot be bound."""

    def __init__(self, address: str, advice: str, detail: str) -> None:
        self.address = address
        self.advice = advice
        self.detail = detail
        super().__init__(address, advice, detail)

    def __str__(self) -> str:
        return f"cannot listen on {self.address} ({self.detail}); {self.advice}"


class NetworkMismatchError(SetupError):
    """The RPC serves another network than the one the database was filled from."""

    def __init__(self, recorded: str, offered: str, rpc_url: str) -> None:
        self.recorded = recorded
        self.offered = offered
        self.rpc_url = rpc_url
        super().__init__(recorded, offered, rpc_url)

    def __str__(self) -> str:
        return (
            f"the database holds data of network {self.recorded!r} but the RPC at "
            f"{self.rpc_url} serves {self.offered!r}; point DATABASE_URL at a new database, "
            "or fix STELLAR_RPC_URL"
        )


class NothingStoredError(ReconcilerError):
    """A read-only command found no database, or nothing in it."""

    exit_code = ExitCode.NOTHING_STORED


class StoreError(ReconcilerError):
    """The database refused an operation in a way a retry will not fix."""


class DatabaseUnavailableError(StoreError):
    """The database cannot be reached right now (down, restarting, locked); worth waiting out."""

    exit_code = ExitCode.UNAVAILABLE


class CheckpointConflictError(StoreError):
    """Another writer moved the checkpoint first; this batch was rolled back whole."""

    def __init__(self, stream: str, expected: int | None, found: int | None) -> None:
        self.stream = stream
        self.expected = expected
        self.found = found
        super().__init__(
            f"checkpoint of stream {stream!r} is {found}, expected {expected}: another writer "
            "is indexing into this database; run a single `reconciler run` per DATABASE_URL"
        )


class StreamMismatchError(StoreError):
    """The database was filled with other event filters than the ones configured now."""

    exit_code = ExitCode.CONFIG


class SchemaOutdatedError(StoreError):
    """A read-only command met a database whose schema is older than this version's."""

    exit_code = ExitCode.CONFIG


class RpcError(ReconcilerError):
    """Base of every failure talking to Stellar RPC."""

    retryable: bool = False
    exit_code = ExitCode.UNAVAILABLE

    def __init__(self, method: str, message: str) -> None:
        self.method = method
        super().__init__(f"{method}: {message}")


class RpcTransientError(RpcError):
    """A fault worth retrying: overload, timeouts, dropped connections, 5xx, 429."""

    retryable = True

    def __init__(self, method: str, message: str, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(method, message)


class RpcRequestError(RpcError):
    """The RPC rejected the request itself (-32600/-32601/-32602): retrying cannot help."""

    def __init__(self, method: str, code: int, message: str) -> None:
        self.code = code
        self.rpc_message = message
        super().__init__(method, f"JSON-RPC error {code}: {message}")


class RpcProtocolError(RpcError):
    """The RPC answered something that does not follow the Stellar RPC protocol."""


class LedgerOutOfRangeError(RpcRequestError):
    """The ledger asked for is outside what this RPC node retains (-32600, "ledger range")."""
