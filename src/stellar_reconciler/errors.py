"""The service's error tree.

Every error a user can meet carries a message that says what went wrong and what to do next.
Callers catch the narrowest class they can act on; anything else is allowed to stop the service.
"""

from __future__ import annotations


class ReconcilerError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(ReconcilerError):
    """A setting has a value the service cannot use; start-up stops with exit code 2."""

    def __init__(self, variable: str, value: str, expected: str) -> None:
        self.variable = variable
        self.value = value
        self.expected = expected
        super().__init__(f"{variable}={value!r} is not valid: expected {expected}")


class StoreError(ReconcilerError):
    """The database refused an operation in a way a retry will not fix."""


class DatabaseUnavailableError(StoreError):
    """The database cannot be reached right now (down, restarting, locked); worth waiting out."""


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


class RpcError(ReconcilerError):
    """Base of every failure talking to Stellar RPC."""

    retryable: bool = False

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


class GapConsentRefusedError(StoreError):
    """A consent to lose ledgers that cannot be given or withdrawn now (the API answers 409)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class GapConsentNotFoundError(StoreError):
    """No gap consent has this id (the API answers 404)."""

    def __init__(self, consent_id: int) -> None:
        self.consent_id = consent_id
        super().__init__(consent_id)

    def __str__(self) -> str:
        return f"no gap consent {self.consent_id}; GET /api/gaps lists them"


class MetaDecodeError(ReconcilerError):
    """Ledger metadata that does not parse or does not check out (a header whose hash is wrong)."""


class LakeError(ReconcilerError):
    """Base of every failure reading the SEP-54 data lake; names the object key involved."""

    def __init__(self, key: str, detail: str) -> None:
        self.key = key
        self.detail = detail
        super().__init__(key, detail)

    def __str__(self) -> str:
        return f"lake object {self.key!r}: {self.detail}"


class LakeUnreachableError(LakeError):
    """The object store did not answer (network, credentials, endpoint); worth retrying later."""


class LakeObjectMissingError(LakeError):
    """No object for a ledger in the lake: not published yet, or LAKE_URL points elsewhere."""


class LakeObjectCorruptError(LakeError):
    """The object is there but is not a whole, valid LedgerCloseMetaBatch (truncated, corrupt)."""


class LakeNetworkMismatchError(LakeError):
    """The lake holds another network's ledgers than the RPC the service follows."""

    def __init__(self, key: str, lake_passphrase: str, expected_passphrase: str) -> None:
        self.lake_passphrase = lake_passphrase
        self.expected_passphrase = expected_passphrase
        super().__init__(
            key,
            f"the lake is of network {lake_passphrase!r} but the RPC serves "
            f"{expected_passphrase!r}; point LAKE_URL at the lake of the same network",
        )

    def __reduce__(self) -> tuple[type[LakeNetworkMismatchError], tuple[str, str, str]]:
        return (type(self), (self.key, self.lake_passphrase, self.expected_passphrase))


class LakeChainError(LakeError):
    """Ledgers of the lake whose hashes do not chain: the lake copy cannot be trusted."""
