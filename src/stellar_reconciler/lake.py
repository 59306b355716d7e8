"""The SEP-54 data lake: ledger metadata as objects in S3, GCS or a directory.

A lake holds one configuration object at its root (`.config.json`: network passphrase,
ledgers per batch, batches per partition, compression) and one zstd-compressed
`LedgerCloseMetaBatch` per batch, under keys whose names start with the reversed (2^32 - 1
minus the first ledger) hex sequence, so newer ledgers list first:

    FFFFFFFF--0-63999/FFFFFFF5--10.xdr.zst      (a partition of 64,000 one-ledger batches)

SEP-54 names the suffix `.xdr.zst`; lakes Galexie wrote earlier use `.xdr.zstd` (as the real
object in the test fixtures does), so the suffix is read off the lake's listing, as the Go
SDK's datastore does. SEP-54 does not vouch for what it stores, so every ledger read here is
hash-checked against its header and chained to the one before it.

The object store is `obstore` (the Rust `object_store` crate behind a small Python API): one
library for S3, GCS and local directories, credentials from the standard environment, async
reads, and no fsspec layer to configure per backend.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import re
import time
from collections import deque
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Protocol

import obstore
import zstandard
from obstore.exceptions import BaseError, NotFoundError
from obstore.store import ObjectStore, from_url

from stellar_reconciler.config import redact_url
from stellar_reconciler.errors import (
    LakeChainError,
    LakeError,
    LakeNetworkMismatchError,
    LakeObjectCorruptError,
    LakeObjectMissingError,
    LakeUnreachableError,
    MetaDecodeError,
)
from stellar_reconciler.meta_ledger import MetaLedger
from stellar_reconciler.metaevents import batch_ledgers

CONFIG_KEY = ".config.json"
DEFAULT_EXTENSION = "zst"
# The base name of a batch object: reversed start, start, optional end, `.xdr.` and a suffix.
_BATCH_NAME = re.compile(r"^[0-9A-F]{8}--[0-9]+(?:-[0-9]+)?\.xdr\.([A-Za-z0-9_-]+)$")
# How many keys one look at the lake's listing reads to find a batch object's suffix.
_LISTING_PAGE = 100
MAX_SEQUENCE = 0xFFFFFFFF
GENESIS_LEDGER = 2
# A decompressed batch larger than this is refused rather than held in memory (mainnet
# ledgers are about 1-2 MB of XDR each; a 64-ledger batch stays well below this).
MAX_BATCH_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class LakeLayout:
    """What the lake's configuration object says, and the object keys that follow from it."""

    network_passphrase: str
    ledgers_per_batch: int
    batches_per_partition: int
    compression: str = "zstd"
    ledgers_path: str = ""
    # The object name suffix after `.xdr.`: SEP-54 says `zst`; lakes written by Galexie
    # before it adopted SEP-54's name use `zstd`. Found by listing the lake (Lake.layout).
    extension: str = DEFAULT_EXTENSION

    @classmethod
    def parse(cls, raw: bytes, key: str = CONFIG_KEY) -> LakeLayout:
        try:
            config = json.loads(raw)
            layout = cls(
                network_passphrase=str(config["networkPassphrase"]),
                ledgers_per_batch=int(config["ledgersPerBatch"]),
                batches_per_partition=int(config["batchesPerPartition"]),
                compression=str(config.get("compression", "zstd")),
                ledgers_path=str(config.get("ledgersPath", "")).strip("/"),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise LakeObjectCorruptError(
                key,
                "is not a SEP-54 configuration object (JSON with networkPassphrase, "
                f"ledgersPerBatch, batchesPerPartition): {exc}",
            ) from exc
        if layout.ledgers_per_batch < 1 or layout.batches_per_partition < 1:
            raise LakeObjectCorruptError(
                key, "ledgersPerBatch and batchesPerPartition must be >= 1"
            )
        if layout.compression != "zstd":
            raise LakeObjectCorruptError(
                key, f"compression {layout.compression!r} is not supported (zstd is)"
            )
        return layout

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "networkPassphrase": self.network_passphrase,
                "compression": self.compression,
                "ledgersPerBatch": self.ledgers_per_batch,
                "batchesPerPartition": self.batches_per_partition,
            },
            indent=2,
        ).encode()

    def batch_range(self, sequence: int) -> tuple[int, int]:
        """First and last ledger of the batch holding `sequence`."""
        first = sequence - sequence % self.ledgers_per_batch
        return first, first + self.ledgers_per_batch - 1

    def batch_key(self, sequence: int) -> str:
        """The object key of the batch holding ledger `sequence`, as SEP-54 names it."""
        first, last = self.batch_range(sequence)
        name = _reversed_name(first, last, self.ledgers_per_batch == 1)
        parts = [self.ledgers_path] if self.ledgers_path else []
        per_partition = self.ledgers_per_batch * self.batches_per_partition
        if self.batches_per_partition > 1:
            start = sequence - sequence % per_partition
            parts.append(_reversed_name(start, start + per_partition - 1, False))
        parts.append(f"{name}.xdr.{self.extension}")
        return "/".join(parts)


def _reversed_name(first: int, last: int, single: bool) -> str:
    head = f"{MAX_SEQUENCE - first:08X}--{first}"
    return head if single else f"{head}-{last}"


def open_store(url: str, endpoint_url: str = "", anonymous: bool = False) -> ObjectStore:
    """An obstore store for LAKE_URL (`s3://bucket/prefix`, `gs://bucket/prefix`, `file:///dir`).

    Credentials come from the standard environment (AWS_*, GOOGLE_*), which obstore reads
    itself; `anonymous` sends unsigned requests, as public buckets (AWS Open Data) want.
    """
    config: dict[str, Any] = {}
    options: dict[str, Any] = {}
    if url.startswith(("s3://", "gs://")) and anonymous:
        config["skip_signature"] = True
    if url.startswith("s3://") and endpoint_url:
        config["endpoint"] = endpoint_url
        if endpoint_url.startswith("http://"):
            options["allow_http"] = True
    try:
        # obstore's config types are TypedDicts per backend; a plain dict serves them all.
        return from_url(url, config=config or None, client_options=options or None)  # type: ignore[arg-type]
    except (BaseError, ValueError) as exc:
        # obstore's message repeats the URL with any credentials in it; name the kind only.
        raise LakeUnreachableError(
            CONFIG_KEY,
            f"cannot open {redact_url(url)} ({type(exc).__name__}); LAKE_URL must be "
            "s3://bucket/prefix, gs://bucket/prefix or file:///dir",
        ) from None


class LakeObserver(Protocol):
    """Told of every object read: `outcome` is ok, missing or error; `size` its bytes."""

    def lake_fetch(self, outcome: str, seconds: float, size: int) -> None: ...


class Lake:
    """Reads ledgers out of a lake, checked against the network and chained by hash."""

    def __init__(
        self,
        store: ObjectStore,
        expected_passphrase: str,
        prefetch: int = 4,
        observer: LakeObserver | None = None,
    ) -> None:
        if prefetch < 1:
            raise ValueError("prefetch must be at least 1")
        self._observer = observer
        self._store = store
        self._expected = expected_passphrase
        self._prefetch = prefetch
        self._layout: LakeLayout | None = None
        self.bytes_fetched = 0
        self.objects_requested = 0

    async def layout(self) -> LakeLayout:
        """The lake's configuration, read once; refuses a lake of another network."""
        if self._layout is None:
            layout = LakeLayout.parse(await self._get(CONFIG_KEY), CONFIG_KEY)
            if layout.network_passphrase != self._expected:
                raise LakeNetworkMismatchError(
                    CONFIG_KEY, layout.network_passphrase, self._expected
                )
            extension = await asyncio.to_thread(self._listed_extension, layout.ledgers_path)
            self._layout = dataclasses.replace(layout, extension=extension)
        return self._layout

    def _listed_extension(self, prefix: str) -> str:
        """The suffix of the first batch object the listing shows (the default when none).

        One page of the listing is enough: keys list the configuration object and then the
        newest partition first. (obstore's synchronous listing, run in a thread: its async
        stream aborts the interpreter at exit in the version tested.)
        """
        try:
            stream = obstore.list(self._store, prefix or None, chunk_size=_LISTING_PAGE)
            page = next(stream, [])
        except (BaseError, OSError) as exc:
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise LakeUnreachableError(prefix or "/", f"could not be listed: {first_line}") from exc
        for item in page:
            match = _BATCH_NAME.match(item["path"].rsplit("/", 1)[-1])
            if match:
                return match.group(1)
        return DEFAULT_EXTENSION

    async def batch(self, sequence: int) -> list[MetaLedger]:
        """Every ledger of the batch holding `sequence`, decompressed and hash-checked."""
        layout = await self.layout()
        key = layout.batch_key(sequence)
        return self._decode(key, await self._get(key), layout)

    async def ledgers(
        self, first: int, last: int, previous_hash: str | None = None
    ) -> AsyncGenerator[MetaLedger, None]:
        """Ledgers first..last in order, each chained to the one before (and the first to
        `previous_hash` when given). At most `prefetch` objects are in flight or waiting."""
        layout = await self.layout()
        starts = range(layout.batch_range(first)[0], last + 1, layout.ledgers_per_batch)
        pending: deque[tuple[str, asyncio.Task[bytes]]] = deque()
        upcoming = iter(starts)
        expected_previous = previous_hash
        try:
            while True:
                while len(pending) < self._prefetch:
                    start = next(upcoming, None)
                    if start is None:
                        break
                    key = layout.batch_key(start)
                    pending.append((key, asyncio.ensure_future(self._get(key))))
                if not pending:
                    return
                key, task = pending.popleft()
                # Decompressing and walking a mainnet batch takes milliseconds of CPU; off the
                # event loop, the prefetches and anything else on the loop keep going.
                decoded = await asyncio.to_thread(self._decode, key, await task, layout)
                for ledger in decoded:
                    header = ledger.header
                    if not first <= header.sequence <= last:
                        continue
                    if expected_previous is not None and header.previous_hash != expected_previous:
                        raise LakeChainError(
                            key,
                            f"ledger {header.sequence}'s previous hash {header.previous_hash} "
                            f"is not the hash of ledger {header.sequence - 1} "
                            f"({expected_previous}); the lake copy cannot be trusted here",
                        )
                    expected_previous = header.hash
                    yield ledger
        finally:
            for _, task in pending:
                task.cancel()

    def _decode(self, key: str, raw: bytes, layout: LakeLayout) -> list[MetaLedger]:
        try:
            with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)) as reader:
                data = reader.read(MAX_BATCH_BYTES + 1)
        except zstandard.ZstdError as exc:
            raise LakeObjectCorruptError(key, f"is not valid zstd: {exc}") from exc
        if len(data) > MAX_BATCH_BYTES:
            raise LakeObjectCorruptError(key, f"decompresses to more than {MAX_BATCH_BYTES} bytes")
        try:
            ledgers = batch_ledgers(data)
        except MetaDecodeError as exc:
            raise LakeObjectCorruptError(
                key, f"is not a whole LedgerCloseMetaBatch (truncated or corrupt): {exc}"
            ) from exc
        held = [ledger.header.sequence for ledger in ledgers]
        first, last = layout.batch_range(held[0] if held else 0)
        # The network's first ledger is 2, so the oldest batch may start there.
        expected = list(range(max(first, GENESIS_LEDGER), last + 1))
        if layout.batch_key(first) != key or held != expected:
            shown = f"{held[0]}-{held[-1]}" if held else "none"
            raise LakeObjectCorruptError(
                key, f"holds ledgers {shown}, not the whole batch its name says"
            )
        return ledgers

    async def _get(self, key: str) -> bytes:
        self.objects_requested += 1
        started = time.monotonic()
        try:
            data = await self._read(key)
        except LakeObjectMissingError:
            self._observe("missing", started, 0)
            raise
        except LakeError:
            self._observe("error", started, 0)
            raise
        self._observe("ok", started, len(data))
        self.bytes_fetched += len(data)
        return data

    async def _read(self, key: str) -> bytes:
        try:
            result = await obstore.get_async(self._store, key)
            return bytes(await result.bytes_async())
        except FileNotFoundError as exc:
            raise LakeObjectMissingError(key, "is not in the lake") from exc
        except NotFoundError as exc:
            raise LakeObjectMissingError(key, "is not in the lake") from exc
        except (BaseError, OSError) as exc:
            # obstore appends a multi-line debug dump; its first line says what happened.
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise LakeUnreachableError(key, f"could not be read: {first_line}") from exc

    def _observe(self, outcome: str, started: float, size: int) -> None:
        if self._observer is not None:
            self._observer.lake_fetch(outcome, time.monotonic() - started, size)


__all__ = ["CONFIG_KEY", "Lake", "LakeError", "LakeLayout", "LakeObserver", "open_store"]
