"""10,000 expected records of every kind, posted in a shuffled order before and after the
events they name, settle exactly as constructed against the simulated network, on SQLite and
PostgreSQL, through the real service's HTTP API."""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from stellar_sdk import Keypair

from stellar_reconciler.decode import decode_scval_b64
from stellar_reconciler.simnet import SimNetConfig, SimNetwork, serve_in_thread
from tests.integration.harness import settings_for, wait_for
from tests.integration.test_expectations import ADMIN, AUTH, service_with_expectations, tx_of

log = logging.getLogger(__name__)
# How many records of each kind; they add up to 10,000.
KINDS = {
    "exact": 2000,
    "tolerance": 1000,
    "mismatch": 1000,
    "missing": 1000,
    "failed": 500,
    "never_seen": 500,
    "late": 1000,
    "competing": 1500,
    # A record that settles amount_mismatch on a transfer, then a record posted later that
    # names that transfer exactly: it takes it, and the first is missing.
    "mismatch_displaced": 250,
    "takes_from_mismatch": 250,
    # Instalment records the history pays in full, and ones it leaves short (deadline ahead).
    "partial": 400,
    "partial_open": 100,
    # Pairs of records in one group, paid together by one transfer.
    "grouped": 500,
}
POST_CHUNK = 2500


class MixedPlan:
    """Records of every kind over one network's history, each with the status it must end in
    and the event it must claim; `early` are posted before catch-up, `late` after it."""

    def __init__(self, net: SimNetwork, rng: random.Random) -> None:
        self.net, self.rng = net, rng
        self.early: list[dict[str, Any]] = []
        self.late: list[dict[str, Any]] = []
        self.kinds: dict[str, str] = {}
        self._numbered: Counter[str] = Counter()
        self.statuses: dict[str, str] = {}
        self.claims: dict[str, str] = {}
        self.parts: dict[str, list[str]] = {}
        transfers = self._transfers()
        # Sum records take any transfer between their two accounts, so theirs are set apart.
        reserved = self._sums()
        transfers = [e for e in transfers if self._pair(e) not in reserved]
        # Each kind takes events of its own, so no two records are built on the same one.
        pool = iter(transfers)
        self._exact(pool)
        self._competing(transfers)
        self._late(transfers)
        self._displacing(transfers)
        self._unsettled()

    def _transfers(self) -> list[dict[str, Any]]:
        """Successful token transfers that a record pinned to (transaction, from, to) finds alone,
        and whose (from, to, amount) no other one repeats: a record naming those fits one."""
        recorded = self.net.record_events(self.net.first_ledger, self.net.latest_ledger)
        decoded = [
            {
                "id": e["id"],
                "ledger": e["ledger"],
                "tx": e["txHash"],
                "topics": [decode_scval_b64(t) for t in e["topic"]],
                "value": decode_scval_b64(e["value"]),
            }
            for e in recorded
            if e["inSuccessfulContractCall"] and e["contractId"] == self.net.token_contract_id
        ]
        transfers = [e for e in decoded if e["topics"][0] == "transfer"]
        self.by_pair: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for e in transfers:
            self.by_pair.setdefault(self._pair(e), []).append(e)
        fits = Counter((e["tx"], *e["topics"][1:3]) for e in decoded)
        keys = Counter(self._key(e) for e in transfers)
        return [
            e
            for e in transfers
            if fits[(e["tx"], *e["topics"][1:3])] == 1 and keys[self._key(e)] == 1
        ]

    @staticmethod
    def _pair(event: dict[str, Any]) -> tuple[str, str]:
        return event["topics"][1], event["topics"][2]

    def _sums(self) -> set[tuple[str, str]]:
        """Instalment records paid by the first two transfers between two accounts (or left
        short of all of them), and groups of two records paid by one transfer."""
        pairs = [p for p, found in self.by_pair.items() if len(found) >= 2]
        wanted = KINDS["partial"] + KINDS["partial_open"] + KINDS["grouped"] // 2
        assert len(pairs) >= wanted, "the network is too small for sum records"
        chosen = pairs[:wanted]
        ahead = self.net.latest_ledger + 1000
        for n, pair in enumerate(chosen):
            found = self.by_pair[pair]
            loose = {
                "contract_id": self.net.token_contract_id,
                "event_name": "transfer",
                "from": pair[0],
                "to": pair[1],
            }
            if n < KINDS["partial"]:
                paid = found[:2]
                total = sum(int(e["value"]) for e in paid)
                x = self._add(
                    "partial",
                    "matched",
                    None,
                    **loose,
                    amount=str(total),
                    allow_partial=True,
                    deadline_ledger=self.net.latest_ledger,
                )
                self.parts[x] = [e["id"] for e in paid]
            elif n < KINDS["partial"] + KINDS["partial_open"]:
                total = sum(int(e["value"]) for e in found)
                x = self._add(
                    "partial_open",
                    "partially_matched",
                    None,
                    **loose,
                    amount=str(total + 1),
                    allow_partial=True,
                    deadline_ledger=ahead,
                )
                self.parts[x] = [e["id"] for e in found]
            else:
                whole = int(found[0]["value"])
                share = self.rng.randint(1, whole - 1)
                for amount in (share, whole - share):
                    self._add(
                        "grouped",
                        "matched",
                        None,
                        **loose,
                        amount=str(amount),
                        group_id=f"group-{n:05d}",
                        deadline_ledger=self.net.latest_ledger,
                    )
        return set(chosen)

    @staticmethod
    def _key(event: dict[str, Any]) -> tuple[str, str, int]:
        return event["topics"][1], event["topics"][2], int(event["value"])

    def _exact(self, pool: Iterator[dict[str, Any]]) -> None:
        for _ in range(KINDS["exact"]):
            event = next(pool)
            self._add("exact", "matched", event, **self._pinned(event, int(event["value"])))
        for _ in range(KINDS["tolerance"]):
            event = next(pool)
            tolerance = self.rng.randint(1, 10**6)
            off = self.rng.choice((tolerance, -tolerance, self.rng.randint(-tolerance, tolerance)))
            fields = self._pinned(event, int(event["value"]) - off, tolerance)
            self._add("tolerance", "matched", event, **fields)
        for _ in range(KINDS["mismatch"]):
            event = next(pool)
            tolerance = self.rng.choice((0, self.rng.randint(1, 10**6)))
            off = (tolerance + self.rng.randint(1, 10**9)) * self.rng.choice((-1, 1))
            fields = self._pinned(event, int(event["value"]) + off, tolerance)
            # Settled at the deadline, which therefore lies inside the history.
            fields["deadline_ledger"] = min(fields["deadline_ledger"], self.net.latest_ledger)
            self._add("mismatch", "amount_mismatch", event, **fields)
        self.used = {self.claims[x] for x in self.claims}

    def _competing(self, transfers: list[dict[str, Any]]) -> None:
        """Pairs of unpinned records between the same two accounts, each naming one of two
        transfers by amount: best match gives each its own, whichever is posted first."""
        by_pair: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for e in transfers:
            if e["id"] not in self.used:
                by_pair.setdefault((e["topics"][1], e["topics"][2]), []).append(e)
        pairs = [events[:2] for events in by_pair.values() if len(events) >= 2]
        assert len(pairs) >= KINDS["competing"] // 2, "the network is too small for competing"
        for first, second in pairs[: KINDS["competing"] // 2]:
            for event in (first, second):
                self._add("competing", "matched", event, **self._loose(event))
                self.used.add(event["id"])

    def _late(self, transfers: list[dict[str, Any]]) -> None:
        """Unpinned records posted after their event was stored, where an earlier transfer
        between the same accounts with another amount lies unclaimed in the store too."""
        seen: dict[tuple[str, str], dict[str, Any]] = {}
        chosen = 0
        for e in transfers:
            pair = (e["topics"][1], e["topics"][2])
            if pair in seen and e["id"] not in self.used and seen[pair]["id"] not in self.used:
                self._add("late", "matched", e, late=True, **self._loose(e, deadline_ledgers=50))
                self.used.update((e["id"], seen.pop(pair)["id"]))
                chosen += 1
                if chosen == KINDS["late"]:
                    return
            elif e["id"] not in self.used:
                seen.setdefault(pair, e)
        raise AssertionError("the network is too small for late registrations")

    def _displacing(self, transfers: list[dict[str, Any]]) -> None:
        """A loose record whose only fitting transfer (the first between two accounts, its
        deadline that transfer's ledger) carries another amount, so it settles amount_mismatch
        on it; after catch-up, a record naming that transfer's amount is posted and takes it."""
        first_of: dict[tuple[str, str], str] = {}
        later_ledger: dict[tuple[str, str], int | None] = {}
        for pair, events in self.by_pair.items():
            first_of[pair] = events[0]["id"]
            later_ledger[pair] = min((int(x["ledger"]) for x in events[1:]), default=None)
        chosen = 0
        for e in transfers:
            pair = self._pair(e)
            later = later_ledger[pair]
            alone = later is None or later > e["ledger"]
            if first_of[pair] != e["id"] or e["id"] in self.used or not alone:
                continue
            off = self.rng.randint(1, 10**9) * self.rng.choice((-1, 1))
            wrong = {
                **self._loose(e, deadline_ledger=e["ledger"]),
                "amount": str(int(e["value"]) + off),
            }
            self._add("mismatch_displaced", "missing_expected", None, **wrong)
            self._add(
                "takes_from_mismatch",
                "matched",
                e,
                late=True,
                **self._loose(e, deadline_ledgers=50),
            )
            self.used.add(e["id"])
            chosen += 1
            if chosen == KINDS["takes_from_mismatch"]:
                return
        raise AssertionError("the network is too small for records taking from mismatches")

    def _unsettled(self) -> None:
        """Records no event satisfies: to an account that never receives anything, and pinned
        to transactions that failed on chain or that the network never saw."""
        latest = self.net.latest_ledger
        for n in range(KINDS["missing"]):
            stranger = Keypair.from_raw_ed25519_seed(hashlib.sha256(b"nobody-%d" % n).digest())
            self._add(
                "missing",
                "missing_expected",
                None,
                contract_id=self.net.token_contract_id,
                event_name="transfer",
                to=stranger.public_key,
                amount=self.rng.randint(1, 10**12),
                deadline_ledger=self.rng.randint(self.net.first_ledger, latest),
            )
        for kind, status, count in (
            ("failed", "failed_on_chain", KINDS["failed"]),
            ("never_seen", "not_found", KINDS["never_seen"]),
        ):
            for n in range(count):
                tx_hash = tx_of(f"{kind}-{n}")
                if kind == "failed":
                    self.net.transactions.fail(tx_hash)
                self._add(
                    kind,
                    status,
                    None,
                    contract_id=self.net.token_contract_id,
                    event_name="transfer",
                    tx_hash=tx_hash,
                    amount=self.rng.randint(1, 10**12),
                    deadline_ledger=self.rng.randint(self.net.first_ledger, latest),
                )

    def _pinned(self, event: dict[str, Any], amount: int, tolerance: int = 0) -> dict[str, Any]:
        return {
            "contract_id": self.net.token_contract_id,
            "event_name": "transfer",
            "tx_hash": event["tx"],
            "from": event["topics"][1],
            "to": event["topics"][2],
            "amount": str(amount),
            "tolerance": str(tolerance),
            "deadline_ledger": event["ledger"] + self.rng.choice((0, 1, 50)),
        }

    def _loose(self, event: dict[str, Any], **deadline: int) -> dict[str, Any]:
        return {
            "contract_id": self.net.token_contract_id,
            "event_name": "transfer",
            "from": event["topics"][1],
            "to": event["topics"][2],
            "amount": str(event["value"]),
            **(deadline or {"deadline_ledger": self.net.latest_ledger}),
        }

    def _add(
        self,
        kind: str,
        status: str,
        event: dict[str, Any] | None,
        late: bool = False,
        **fields: Any,
    ) -> str:
        external_id = f"{kind}-{self._numbered[kind]:05d}"
        self._numbered[kind] += 1
        (self.late if late else self.early).append({"external_id": external_id, **fields})
        self.kinds[external_id] = kind
        self.statuses[external_id] = status
        if event is not None:
            self.claims[external_id] = event["id"]
        return external_id


async def post_all(http: httpx.AsyncClient, records: list[dict[str, Any]]) -> None:
    start = 0
    while start < len(records):
        end = min(start + POST_CHUNK, len(records))
        # Never between two members of one group.
        while (
            0 < end < len(records)
            and records[end].get("group_id") is not None
            and (records[end]["group_id"] == records[end - 1].get("group_id"))
        ):
            end += 1
        response = await http.post("/api/expectations", json=records[start:end])
        assert response.status_code == 201, response.text[:500]
        start = end


async def all_records(http: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    cursor: str | None = None
    while True:
        params = {"limit": "1000", **({"cursor": cursor} if cursor else {})}
        page = (await http.get("/api/expectations", params=params)).json()
        found.update((r["external_id"], r) for r in page["expectations"])
        cursor = page.get("next_cursor")
        if not cursor:
            return found


@pytest.mark.slow
async def test_ten_thousand_records_of_every_kind_settle_as_constructed(database_url: str) -> None:
    """Exact, within tolerance, mismatching, missing, failed, never seen, competing and late
    records, and late ones taking their event from an amount mismatch, shuffled and posted in
    chunks, end in exactly their planned status and claim
    exactly their planned event; the summary counts agree."""
    net = SimNetwork(
        SimNetConfig(seed=53, first_ledger=1000, prebuilt_ledgers=1000, events_per_ledger=60)
    )
    rng = random.Random(53)
    plan = MixedPlan(net, rng)
    assert Counter(plan.kinds.values()) == KINDS
    assert len(plan.statuses) == 10_000
    # Shuffled, except that a group's members travel in one request, as an application
    # posts them: a group partly posted takes what fits its part (store/partials.py).
    units: dict[str, list[dict[str, Any]]] = {}
    for item in plan.early:
        units.setdefault(item.get("group_id") or item["external_id"], []).append(item)
    shuffled = list(units.values())
    rng.shuffle(shuffled)
    early = [item for unit in shuffled for item in unit]
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, admin_token=ADMIN)
        async with (
            service_with_expectations(settings) as (service, base, timed),
            httpx.AsyncClient(base_url=base, headers=AUTH, timeout=60) as http,
        ):
            started = time.perf_counter()
            # Half before the first ledger is read, half while catch-up runs.
            half = sum(len(unit) for unit in shuffled[: len(shuffled) // 2])
            await post_all(http, early[:half])
            await post_all(http, early[half:])
            await wait_for(
                lambda: service.status.last_processed_ledger == net.latest_ledger, 180, "catch-up"
            )
            catch_up_seconds = time.perf_counter() - started
            posted = time.perf_counter()
            await post_all(http, plan.late)
            late_seconds = time.perf_counter() - posted
            await wait_for(lambda: not service.store.outcomes.due(1), 120, "outcome checks")
            records = await all_records(http)
            summary = (await http.get("/api/reconciliation")).json()
    wrong = {
        x: (plan.kinds[x], plan.statuses[x], r["status"])
        for x, r in records.items()
        if r["status"] != plan.statuses[x]
    }
    assert not wrong, f"{len(wrong)} records settled otherwise: {list(wrong.items())[:5]}"
    claimed = {x: r["event_id"] for x, r in records.items() if r["event_id"]}
    assert {x: claimed.get(x) for x in plan.claims} == plan.claims
    assert {x: records[x]["event_ids"] for x in plan.parts} == plan.parts
    for x, r in records.items():
        if plan.kinds[x] == "mismatch":
            assert r["difference"] not in (None, "0"), r
    counts = Counter(plan.statuses.values())
    assert {k: v for k, v in summary["expectations"].items() if v} == {**counts, "total": 10_000}
    numbers = {
        "catch_up_seconds_with_posting": round(catch_up_seconds, 1),
        "catch_up_events_per_second": round(timed.events / catch_up_seconds),
        "matcher_seconds_in_batches": round(timed.seconds, 2),
        "matcher_events_per_second": round(timed.events / max(timed.seconds, 1e-9)),
        "late_records_per_second": round(KINDS["late"] / late_seconds),
    }
    log.info("mixed_records %s %s", database_url.split(":")[0], numbers)
