"""Cross-source verification: the store, the RPC and the data lake, each checked by the others.

Re-verifying against the RPC alone cannot catch an RPC that lies consistently: the data came
from it. The lake is written by other software (Galexie) from the network's ledger metadata,
so when both cover a range, three sources vote per ledger on (event digest, ledger hash):
the one outvoted by the other two is named. With only two sources (the store and the lake),
the store is the reference and the lake is named; when no two of three agree, none is.

`judge` is pure (no I/O); `LakeSource` turns lake objects into what `judge` compares.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog
from obstore.store import ObjectStore

from stellar_reconciler.config import Settings
from stellar_reconciler.errors import LakeError, LakeObjectMissingError, SetupError
from stellar_reconciler.lake import Lake, LakeObserver, open_store
from stellar_reconciler.meta_ledger import EventSelector
from stellar_reconciler.models import Batch, Event, RawEvent
from stellar_reconciler.reconcile import EventFingerprint, compare_ranges, ledger_digests
from stellar_reconciler.status import ServiceStatus
from stellar_reconciler.store import NewDiscrepancy, Store

log = structlog.get_logger("stellar_reconciler.crosscheck")

Against = Literal["rpc", "lake", "both"]
AGAINST: tuple[Against, ...] = ("rpc", "lake", "both")
STORE, RPC, LAKE = "store", "rpc", "lake"
# What a finding names when no two sources agree on a ledger.
UNDECIDED = "none"
# Ids listed per kind of difference in a discrepancy; the counts are always whole.
MAX_IDS_SHOWN = 20


@dataclass(frozen=True, slots=True)
class SourceRead:
    """What one source says about a ledger range: its selected events and ledger hashes."""

    events: Sequence[EventFingerprint]
    hashes: Mapping[int, str]


@dataclass(frozen=True, slots=True)
class Finding:
    """One ledger on which the sources disagree, and which of them is outvoted."""

    ledger: int
    source: str
    agreeing: tuple[str, ...]
    hashes: Mapping[str, str | None]
    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()

    @property
    def hash_differs(self) -> bool:
        return len(set(self.hashes.values())) > 1

    def summary(self) -> dict[str, Any]:
        """Short enough for a report line: the ledger, who disagrees, and counts."""
        body: dict[str, Any] = {"ledger": self.ledger, "source": self.source}
        if self.hash_differs:
            body["hash"] = "differs"
        for name in ("missing", "extra", "changed"):
            if getattr(self, name):
                body[name] = len(getattr(self, name))
        return body

    def discrepancy(self) -> NewDiscrepancy:
        """A source_mismatch naming the outvoted source; one per (source, ledger), so the same
        disagreement found again on a later run is not opened twice."""
        differs = []
        if self.hash_differs:
            differs.append("the ledger hash")
        for name, what in (("missing", "lacks"), ("extra", "adds"), ("changed", "changes")):
            if getattr(self, name):
                differs.append(f"{what} {len(getattr(self, name))} events")
        what_differs = ", ".join(differs) or "differs"
        if self.source == UNDECIDED:
            message = (
                f"ledger {self.ledger}: the store, the RPC and the lake all differ "
                f"({what_differs}); no two agree, so nothing was changed. Compare with another "
                "RPC provider and resolve this discrepancy once you know which is right"
            )
        else:
            message = (
                f"ledger {self.ledger}: the {self.source} disagrees with "
                f"{' and '.join(self.agreeing)}: its copy {what_differs}. Nothing was changed; "
                f"do not trust the {self.source} for this ledger until it is explained"
            )
        found: dict[str, Any] = {"source": self.source}
        if self.hash_differs:
            found["hashes"] = dict(self.hashes)
        for name in ("missing", "extra", "changed"):
            ids = getattr(self, name)
            if ids:
                found[name] = list(ids[:MAX_IDS_SHOWN])
                found[f"{name}_count"] = len(ids)
        return NewDiscrepancy(
            kind="source_mismatch",
            key=f"source_mismatch:{self.source}:{self.ledger}",
            message=message,
            first_ledger=self.ledger,
            last_ledger=self.ledger,
            subject=self.source,
            expected={"agreeing": list(self.agreeing)},
            found=found,
        )


def judge(first: int, last: int, sources: Mapping[str, SourceRead]) -> list[Finding]:
    """The ledgers of first..last the sources disagree on, each naming who is outvoted.

    Only ledgers the store holds are judged (missing ones are gaps, handled elsewhere).
    `sources` holds the store and one or two others; a vote is the ledger's event digest and
    hash. The differences listed (missing, extra, changed event ids) are those of the named
    source against a source that agrees with the majority (the store when it does)."""
    if STORE not in sources or len(sources) < 2:
        raise ValueError("judge needs the store and at least one other source")
    digests = {name: ledger_digests(read.events, first, last) for name, read in sources.items()}
    by_ledger = {name: _by_ledger(read.events) for name, read in sources.items()}
    findings = []
    for ledger in range(first, last + 1):
        if ledger not in sources[STORE].hashes:
            continue
        votes: dict[tuple[str, str | None], list[str]] = defaultdict(list)
        for name, read in sources.items():
            votes[(digests[name][ledger], read.hashes.get(ledger))].append(name)
        if len(votes) == 1:
            continue
        hashes = {name: read.hashes.get(ledger) for name, read in sources.items()}
        for source, reference, agreeing in _verdicts(list(votes.values())):
            # For "none", the differences shown are the lake's (or the RPC's) from the store.
            shown = [n for n in sources if n != STORE][-1] if source == UNDECIDED else source
            # compare_ranges lists what its second argument has that the first lacks as
            # missing: the named source goes first, the reference second.
            diff = compare_ranges(
                ledger,
                ledger,
                by_ledger[shown].get(ledger, []),
                by_ledger[reference].get(ledger, []),
            ).diffs
            missing, extra, changed = (
                (diff[0].missing, diff[0].unexpected, diff[0].changed) if diff else ((), (), ())
            )
            findings.append(Finding(ledger, source, agreeing, hashes, missing, extra, changed))
    return findings


def _verdicts(groups: list[list[str]]) -> Iterable[tuple[str, str, tuple[str, ...]]]:
    """(named source, the source its differences are listed against, the agreeing sources)."""
    majority = [group for group in groups if len(group) >= 2]
    if majority:
        agreeing = tuple(sorted(majority[0], key=_order))
        reference = STORE if STORE in agreeing else agreeing[0]
        for group in groups:
            if group is not majority[0]:
                for name in group:
                    yield name, reference, agreeing
        return
    names = sorted((name for group in groups for name in group), key=_order)
    if len(names) == 2:
        # Two sources that differ: the store is what is being checked against the other.
        yield next(n for n in names if n != STORE), STORE, (STORE,)
        return
    yield UNDECIDED, STORE, ()


def _order(name: str) -> int:
    return (STORE, RPC, LAKE).index(name) if name in (STORE, RPC, LAKE) else 3


def _by_ledger(events: Iterable[EventFingerprint]) -> dict[int, list[EventFingerprint]]:
    grouped: dict[int, list[EventFingerprint]] = defaultdict(list)
    for event in events:
        grouped[event.ledger].append(event)
    return grouped


def raw_fingerprint(event: RawEvent | Event) -> EventFingerprint:
    return EventFingerprint(
        event.id,
        event.ledger,
        event.contract_id,
        event.type,
        event.tx_hash,
        tuple(event.topics_xdr),
        event.value_xdr,
    )


@dataclass
class LakeSource:
    """The lake as one of the sources: the selected events and hashes of a range, read from
    hash-checked, chained lake objects. The lake is opened for a passphrase on first use
    (the running service learns its network after start-up)."""

    store: ObjectStore
    selector: EventSelector
    prefetch: int = 4
    observer: LakeObserver | None = None
    _lakes: dict[str, Lake] = field(default_factory=dict)

    def lake(self, passphrase: str) -> Lake:
        if passphrase not in self._lakes:
            lake = Lake(self.store, passphrase, self.prefetch, self.observer)
            self._lakes[passphrase] = lake
        return self._lakes[passphrase]

    @classmethod
    def from_settings(
        cls, settings: Settings, observer: LakeObserver | None = None
    ) -> LakeSource | None:
        """The lake LAKE_URL names, filtered by CONTRACT_IDS/EVENT_TOPICS; None without one."""
        if not settings.lake_url:
            return None
        store = open_store(settings.lake_url, settings.lake_endpoint_url, settings.lake_anonymous)
        selector = EventSelector.for_settings(settings)
        return cls(store, selector, settings.lake_prefetch, observer)

    async def read(self, first: int, last: int, passphrase: str) -> SourceRead:
        """Ledgers first..last of the lake; a LakeError (naming the object key) when an
        object is missing, corrupt, of another network, or does not chain."""
        events: list[EventFingerprint] = []
        hashes: dict[int, str] = {}
        async for ledger in self.lake(passphrase).ledgers(first, last):
            hashes[ledger.header.sequence] = ledger.header.hash
            events.extend(raw_fingerprint(e) for e in ledger.events if self.selector.selects(e))
        return SourceRead(events, hashes)


def require_lake(against: Against, configured: bool) -> None:
    if against != "rpc" and not configured:
        raise SetupError(
            f"--against {against} needs a lake: set LAKE_URL (s3://bucket/prefix, "
            "gs://bucket/prefix or file:///dir)"
        )


class CrossCheck:
    """What re-verification needs of the lake: its reads, the store's, and the records."""

    def __init__(
        self, store: Store, lake: LakeSource | None, status: ServiceStatus | None = None
    ) -> None:
        self.store = store
        self.lake = lake
        self.status = status

    def resolve(self, against: Against | None) -> tuple[Against, bool]:
        """The sources to compare and whether a lake failure fails the verification. Unasked
        (periodic checks, API jobs) the lake joins when configured and its failures only warn;
        asked for (`--against lake|both`), a lake that cannot be read is an error."""
        if against is None:
            return ("both" if self.lake is not None else "rpc"), False
        require_lake(against, self.lake is not None)
        return against, True

    async def lake_read(self, first: int, last: int, strict: bool) -> SourceRead | None:
        """The lake's copy of first..last; None when it cannot be read and `strict` is off
        (logged: a lake behind the RPC is normal, a damaged one is a warning)."""
        if self.lake is None:
            return None
        passphrase = await asyncio.to_thread(self.store.network.passphrase)
        if passphrase is None:
            raise SetupError("no network is recorded yet: run the service once before verifying")
        try:
            return await self.lake.read(first, last, passphrase)
        except LakeObjectMissingError as exc:
            if strict:
                raise
            log.info("lake_not_covering", first=first, last=last, key=exc.key)
        except LakeError as exc:
            if strict:
                raise
            log.warning("lake_check_failed", first=first, last=last, error=str(exc))
            if self.status is not None:
                self.status.record_error(f"lake check of ledgers {first}-{last}: {exc}")
        return None

    def stored_read(self, first: int, last: int) -> SourceRead:
        events = self.store.fingerprints(first, last)
        return SourceRead(events, self.store.ledger_hashes(first, last))

    async def against_lake(self, first: int, last: int) -> tuple[int, list[dict[str, Any]]]:
        """The store against the lake alone (the store the reference; a lake that cannot be
        read raises): the stored ledgers checked and the summaries of what was recorded."""
        lake = await self.lake_read(first, last, strict=True)
        if lake is None:
            raise SetupError("--against lake needs a lake: set LAKE_URL")
        stored = await asyncio.to_thread(self.stored_read, first, last)
        sources = {STORE: stored, LAKE: lake}
        findings = judge(first, last, sources)
        found = await asyncio.to_thread(self.record, findings, first, last, sources)
        return len(stored.hashes), found

    async def with_rpc(self, fresh: Batch, lake: SourceRead) -> list[dict[str, Any]] | None:
        """Let the store, a fresh RPC read and the lake vote on each ledger of `fresh`, and
        record who is outvoted. None when the store alone is outvoted: the RPC and the lake
        agree, so the caller repairs from the RPC as it always has. Otherwise nothing is to
        be repaired from the RPC (it may be the one outvoted): the summaries, maybe none."""
        first, last = fresh.first_ledger, fresh.last_ledger
        stored = await asyncio.to_thread(self.stored_read, first, last)
        rpc = SourceRead(
            [raw_fingerprint(e) for e in fresh.events if e.ledger in stored.hashes],
            {ledger.sequence: ledger.hash for ledger in fresh.ledgers},
        )
        sources = {STORE: stored, RPC: rpc, LAKE: lake}
        findings = judge(first, last, sources)
        if findings and all(f.source == STORE for f in findings):
            return None
        return await asyncio.to_thread(self.record, findings, first, last, sources)

    def record(
        self, findings: Sequence[Finding], first: int, last: int, sources: Mapping[str, SourceRead]
    ) -> list[dict[str, Any]]:
        """Open a source_mismatch per finding (unless one is open for it), and resolve the
        open ones this vote clears (see `cleared`); the findings' summaries."""
        for finding in findings:
            self.store.discrepancies.open(finding.discrepancy())
            log.warning("source_mismatch_found", **finding.summary())
        disputed = {finding.ledger for finding in findings}
        for key, ledger in self.store.discrepancies.open_keys("source_mismatch", first, last):
            named = key.split(":")[1] if key.count(":") == 2 else None
            if named is None or ledger in disputed or ledger not in sources[STORE].hashes:
                continue
            if cleared(named, sources):
                self.store.discrepancies.resolve_key(
                    key,
                    "auto",
                    f"a later verification found {', '.join(sources)} in agreement on "
                    f"ledger {ledger}",
                )
                log.info("source_mismatch_cleared", ledger=ledger, source=named)
        return [finding.summary() for finding in findings]


def cleared(named: str, sources: Mapping[str, SourceRead]) -> bool:
    """Whether a vote in which no source was outvoted clears a record naming `named`: the
    named source must have voted, and a record naming the store or no one needs all three
    (the store agreeing with the lake alone says nothing about the RPC)."""
    if named in (STORE, UNDECIDED):
        return len(sources) == 3
    return named in sources


__all__ = [
    "AGAINST",
    "Against",
    "CrossCheck",
    "Finding",
    "LakeSource",
    "SourceRead",
    "judge",
    "require_lake",
]
