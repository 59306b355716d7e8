"""The service's error tree.

Every error a user can meet carries a message that says what went wrong and what to do next.
Callers catch the narrowest class they can act on; anything else is allowed to stop the service.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stellar_reconciler.models import Batch


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

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickle calls a class again with `args`, and most subclasses take other arguments
        # than the message they pass on; rebuilding from args and attributes fits them all
        # and keeps attributes set after __init__ (ChainBreakError.valid_prefix), so errors
        # cross from the fetch child to its parent as themselves.
        return _restore, (type(self), self.args, dict(vars(self)))


def _restore(
    kind: type[ReconcilerError], args: tuple[Any, ...], state: dict[str, Any]
) -> ReconcilerError:
    """Unpickle a ReconcilerError without calling its __init__ again."""
    error = kind.__new__(kind)
    error.args = args
    vars(error).update(state)
    return error


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


class ServiceError(ReconcilerError):
    """The service cannot run as configured."""


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


class StopDeadlineError(ReconcilerError):
    """Shutdown could not wait for something (a database commit, most likely) that did not
    let go, so the process leaves without it; an unfinished transaction is rolled back."""

    def __init__(self, seconds: float, waiting_for: str) -> None:
        self.seconds = seconds
        self.waiting_for = waiting_for
        super().__init__(
            f"stopped after {seconds:g}s while still waiting for {waiting_for}; a batch that "
            "had not committed is rolled back by the database"
        )


class RpcError(ReconcilerError):
    """Base of every failure talking to Stellar RPC."""

    retryable: bool = False
    # What went wrong, in one word, for logs and metrics: dns, refused, timeout, tls,
    # connection, http_status, malformed, jsonrpc, transient, protocol.
    fault: str = "protocol"
    exit_code = ExitCode.UNAVAILABLE

    def __init__(self, method: str, message: str) -> None:
        self.method = method
        super().__init__(f"{method}: {message}")


class RpcTransientError(RpcError):
    """A fault worth retrying: overload, timeouts, dropped connections, 5xx, 429."""

    retryable = True
    fault = "transient"

    def __init__(self, method: str, message: str, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(method, message)


# What an operator should check, by the kind of fault that left no HTTP answer.
_UNREACHABLE_ADVICE = {
    "dns": "its host name does not resolve; check the host in STELLAR_RPC_URL and this "
    "machine's DNS",
    "refused": "the connection was refused (nothing listens there); check STELLAR_RPC_URL "
    "and that the RPC is running",
    "timeout": "no answer in time; the RPC may be overloaded, or a firewall drops the "
    "packets (RPC_TIMEOUT_SECS sets the wait)",
    "tls": "the TLS handshake failed; check the certificate, and http:// against https:// "
    "in STELLAR_RPC_URL",
    "connection": "the connection failed or was dropped before an answer",
}


class RpcUnreachableError(RpcTransientError):
    """No HTTP answer at all: the host name does not resolve, nothing listens, the TLS
    handshake fails, the connection drops, or no answer comes in time."""

    def __init__(self, method: str, url: str, fault: str, detail: str) -> None:
        self.url = url
        self.fault = fault
        self.detail = detail
        advice = _UNREACHABLE_ADVICE.get(fault, _UNREACHABLE_ADVICE["connection"])
        super().__init__(method, f"{url}: {advice} ({detail})")


class FetchProcessLostError(RpcTransientError):
    """The fetch process died or had to be stopped; a new one is started on the next fetch."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            "fetch process",
            f"{reason}; the range is fetched again by a new fetch process. If this repeats, "
            "check the service's memory limit, or set CATCH_UP_PROCESS_LEDGERS=0 to fetch in "
            "the service's own process",
        )


class RpcRequestError(RpcError):
    """The RPC rejected the request itself (-32600/-32601/-32602): sending it again at once
    cannot help, though a node behind a load balancer may answer differently later."""

    fault = "jsonrpc"

    def __init__(self, method: str, code: int, message: str, url: str | None = None) -> None:
        self.code = code
        self.rpc_message = message
        self.url = url
        where = f" from {url}" if url else ""
        super().__init__(method, f"JSON-RPC error {code}{where}: {message}")


class RpcProtocolError(RpcError):
    """The RPC answered something that does not follow the Stellar RPC protocol."""


class RpcHttpStatusError(RpcProtocolError):
    """An HTTP status no retry inside one call will change (401, 403, 404, 520...)."""

    fault = "http_status"

    def __init__(self, method: str, url: str, status: int) -> None:
        self.url = url
        self.status = status
        if status in (401, 403):
            advice = "the endpoint refuses us; check the API key or credentials in STELLAR_RPC_URL"
        else:
            advice = "check that STELLAR_RPC_URL points at a Stellar RPC endpoint"
        super().__init__(method, f"HTTP {status} from {url}: {advice}")


class RpcMalformedError(RpcProtocolError):
    """HTTP 200 with a body that is not a JSON-RPC answer: HTML, empty or cut short."""

    fault = "malformed"

    def __init__(self, method: str, url: str, what: str) -> None:
        self.url = url
        self.what = what
        super().__init__(
            method,
            f"malformed answer from {url}: {what}; a proxy or load balancer in front of the "
            "RPC may be answering instead of it",
        )


class LedgerOutOfRangeError(RpcRequestError):
    """The ledger asked for is outside what this RPC node retains (-32600, "ledger range")."""


class ChainBreakError(ReconcilerError):
    """A ledger's previous hash does not match the hash of the ledger before it."""

    def __init__(self, sequence: int, expected: str, found: str) -> None:
        self.sequence = sequence
        self.expected = expected
        self.found = found
        # The ledgers of the batch before the break, which do chain: still worth committing.
        self.valid_prefix: Batch | None = None
        super().__init__(
            f"hash chain broken at ledger {sequence}: its previous hash is {found} but ledger "
            f"{sequence - 1} has hash {expected}; the RPC serves a different history than the "
            "one indexed. Check STELLAR_RPC_URL and the network, resolve the chain_break "
            "discrepancy, then restart the worker"
        )


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


class ExpectationConflictError(ReconcilerError):
    """An external id exists already with other content; nothing was created."""

    def __init__(self, conflicts: list[tuple[str, list[str]]]) -> None:
        self.conflicts = conflicts
        shown = "; ".join(f"{eid!r} differs in {', '.join(f)}" for eid, f in conflicts[:5])
        more = f" (and {len(conflicts) - 5} more)" if len(conflicts) > 5 else ""
        super().__init__(
            f"external_id already used with different content: {shown}{more}; an expected "
            "record cannot be changed once posted: post it under a new external_id"
        )


class ExpectationInputError(ReconcilerError):
    """Records that cannot be created as given; `problems` are (index in the request, field,
    message)."""

    def __init__(self, problems: list[tuple[int, str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"record {i}: {f}: {m}" for i, f, m in problems[:5]))


class MetaDecodeError(ReconcilerError):
    """Ledger metadata that does not parse or does not check out (a header whose hash is wrong)."""


class DecodeError(ValueError):
    """An XDR payload that stellar-sdk cannot parse; the RPC answer is malformed."""


class UnsupportedScValError(Exception):
    """The bytes are not an ScVal this reader handles; decode them with stellar-sdk instead."""


class XdrSkipError(ValueError):
    """The bytes do not follow the XDR layout of the type being skipped."""


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

    exit_code = ExitCode.UNAVAILABLE


class LakeObjectMissingError(LakeError):
    """No object for a ledger in the lake: not published yet, or LAKE_URL points elsewhere."""


class LakeObjectCorruptError(LakeError):
    """The object is there but is not a whole, valid LedgerCloseMetaBatch (truncated, corrupt)."""


class LakeNetworkMismatchError(LakeError):
    """The lake holds another network's ledgers than the RPC the service follows."""

    exit_code = ExitCode.CONFIG

    def __init__(self, key: str, lake_passphrase: str, expected_passphrase: str) -> None:
        self.lake_passphrase = lake_passphrase
        self.expected_passphrase = expected_passphrase
        super().__init__(
            key,
            f"the lake is of network {lake_passphrase!r} but the RPC serves "
            f"{expected_passphrase!r}; point LAKE_URL at the lake of the same network",
        )


class LakeChainError(LakeError):
    """Ledgers of the lake whose hashes do not chain: the lake copy cannot be trusted."""


class ProofRangeError(ReconcilerError):
    """A proof was asked for a range that is not wholly indexed (or not a range at all)."""

    exit_code = ExitCode.CONFIG


class BackfillRangeError(ReconcilerError):
    """A backfill asked for ledgers it may not write or cannot read (after the checkpoint, or
    older than the RPC keeps with no lake configured); nothing was written."""

    exit_code = ExitCode.CONFIG


class BackfillChunksFailedError(ReconcilerError):
    """Chunks of a backfill run failed: nothing of each was written; the others were. Running
    the same backfill again writes only what is still missing."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        shown = "; ".join(errors[:5]) + (f"; and {len(errors) - 5} more" if len(errors) > 5 else "")
        super().__init__(
            f"{len(errors)} backfill chunk(s) failed, nothing of them written: {shown}. Fix the "
            "cause and run the same backfill again: it writes only what is still missing"
        )


class ExpectationLifecycleError(ReconcilerError):
    """An expected record cannot be changed as asked; `status` is the HTTP answer's."""

    status = 409


class ExpectationNotFoundError(ExpectationLifecycleError):
    status = 404

    def __init__(self, external_id: str) -> None:
        super().__init__(
            f"no expected record has external_id {external_id!r}; list them with "
            "GET /api/expectations"
        )


class ExpectationSettledError(ExpectationLifecycleError):
    """The record is settled already (or waits for its transaction's outcome)."""

    def __init__(self, external_id: str, status: str, what: str) -> None:
        self.record_status = status
        super().__init__(
            f"expected record {external_id!r} is {status}: it cannot {what} any more; to "
            "expect the payment again, post a new record under a new external_id"
        )


class ExpectationGroupNotFoundError(ExpectationLifecycleError):
    status = 404

    def __init__(self, group_id: str) -> None:
        super().__init__(
            f"no expected record has group_id {group_id!r}; records posted with a group_id "
            "form its group (GET /api/expectations lists them)"
        )


class ExpectationGroupMemberError(ExpectationLifecycleError):
    """One member of a group cannot change alone: the group settles as a whole."""

    def __init__(self, external_id: str, group_id: str, what: str) -> None:
        self.group_id = group_id
        super().__init__(
            f"expected record {external_id!r} is a member of group {group_id!r}, which is "
            f"settled as a whole, so it cannot {what} alone: cancel the whole group with "
            f"DELETE /api/expectation-groups/{group_id}, then post its records again (under "
            "new external_ids and a new group_id) with the deadline you want"
        )


class ExpectationDeadlineError(ExpectationLifecycleError):
    """The new deadline cannot apply (already processed, or no checkpoint to count from)."""

    status = 422


class DatabaseInUseError(SetupError):
    """Another `reconciler run` already writes to this SQLite file; a second would race it."""


class NotLeaderError(ReconcilerError):
    """A change that only the leader makes reached a standby or a replica that lost its lease."""
