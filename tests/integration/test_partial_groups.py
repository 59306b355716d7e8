"""Partial records and groups through real HTTP against the running service and the simulated
network, on SQLite and PostgreSQL: settled by sums, served as groups, changed only as a whole,
and refused with clear 422s when they cannot be summed."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from stellar_reconciler.decode import decode_scval_b64
from stellar_reconciler.simnet import SimNetConfig, SimNetwork
from tests.integration.test_expectations import AUTH
from tests.integration.test_lifecycle import CONFIG, caught_up, running


def transfers_by_pair(net: SimNetwork) -> dict[tuple[str, str], list[tuple[str, int]]]:
    """Successful token transfers stored so far, (event id, amount) by (from, to)."""
    pairs: dict[tuple[str, str], list[tuple[str, int]]] = defaultdict(list)
    for e in net.record_events(net.first_ledger, net.latest_ledger):
        topics = [decode_scval_b64(t) for t in e["topic"]]
        if e["contractId"] != net.token_contract_id or not e["inSuccessfulContractCall"]:
            continue
        if topics[0] != "transfer" or len(topics) < 3:
            continue
        amount = decode_scval_b64(e["value"])
        if isinstance(amount, dict):
            amount = amount.get("amount")
        if isinstance(amount, int | str) and int(amount) > 0:
            pairs[(str(topics[1]), str(topics[2]))].append((e["id"], int(amount)))
    return pairs


def record(
    net: SimNetwork, external_id: str, pair: tuple[str, str], amount: int, **fields: Any
) -> dict[str, Any]:
    return {
        "external_id": external_id,
        "contract_id": net.token_contract_id,
        "event_name": "transfer",
        "from": pair[0],
        "to": pair[1],
        "amount": str(amount),
        "deadline_ledger": net.latest_ledger,
        **fields,
    }


async def test_partial_records_and_groups_settle_by_sums_over_http(database_url: str) -> None:
    """Posted after their transfers: a record paid in instalments is matched with every
    event id; one expecting more is partially_matched with what is outstanding; two
    invoices paid by one transfer form a matched group at /api/expectation-groups/{id}."""
    net = SimNetwork(SimNetConfig(**CONFIG, prebuilt_ledgers=40))
    async with running(database_url, net) as (service, http):
        pairs = transfers_by_pair(net)
        several = [p for p, paid in pairs.items() if len(paid) >= 2]
        single = [p for p, paid in pairs.items() if len(paid) == 1 and paid[0][1] >= 2]
        assert len(several) >= 2 and single, "the simulated history has repeated pairs"
        plan, more, group = several[0], several[1], single[0]
        plan_total = sum(a for _, a in pairs[plan])
        more_total = sum(a for _, a in pairs[more])
        ((group_event, group_total),) = pairs[group]
        far = net.latest_ledger + 500
        body = [
            record(net, "plan", plan, plan_total, allow_partial=True),
            record(net, "more", more, more_total + 7, allow_partial=True, deadline_ledger=far),
            record(net, "inv-1", group, 1, group_id="paid-together"),
            record(net, "inv-2", group, group_total - 1, group_id="paid-together"),
        ]
        posted = await http.post("/api/expectations", json=body, headers=AUTH)
        assert posted.status_code == 201, posted.text
        got = {r["external_id"]: r for r in posted.json()["expectations"]}
        assert got["plan"]["status"] == "matched"
        assert got["plan"]["event_ids"] == sorted(i for i, _ in pairs[plan])
        assert (got["more"]["status"], got["more"]["outstanding_amount"]) == (
            "partially_matched",
            "7",
        )
        assert got["more"]["settled_amount"] == str(more_total)
        answer = await http.get("/api/expectation-groups/paid-together")
        assert answer.status_code == 200
        view = answer.json()
        assert (view["status"], view["amount"], view["event_ids"]) == (
            "matched",
            str(group_total),
            [group_event],
        )
        assert [m["status"] for m in view["members"]] == ["matched", "matched"]
        listed = (await http.get("/api/expectations?status=partially_matched")).json()
        assert [r["external_id"] for r in listed["expectations"]] == ["more"]
        summary = (await http.get("/api/reconciliation")).json()
        assert summary["expectations"]["partially_matched"] == 1
        missing = await http.get("/api/expectation-groups/no-such-group")
        assert missing.status_code == 404 and "no-such-group" in missing.json()["error"]
        await caught_up(service, net)


async def test_group_members_change_only_together_and_bad_sums_are_422(database_url: str) -> None:
    """DELETE or PATCH of one member is a 409 naming DELETE /api/expectation-groups/{id};
    that cancels the whole group (audited). allow_partial with a group, a negative amount or
    a tx_hash on a partial record are 422s naming the field's problem."""
    net = SimNetwork(SimNetConfig(**CONFIG, prebuilt_ledgers=20))
    async with running(database_url, net) as (_, http):
        nobody = ("GAFCZPBOMB2PKPM6PKCXMITLXUL22A2T4PBYMKQS3VPYFI32B5RTHEKL",) * 2
        far = {"deadline_ledger": net.latest_ledger + 500, "event_name": "never_emitted"}
        members = [
            record(net, "m1", nobody, 5, group_id="g", **far),
            record(net, "m2", nobody, 6, group_id="g", **far),
        ]
        assert (await http.post("/api/expectations", json=members, headers=AUTH)).status_code == 201
        alone = await http.delete("/api/expectations/m1", headers=AUTH)
        assert alone.status_code == 409
        assert "DELETE /api/expectation-groups/g" in alone.json()["error"]
        moved = await http.patch(
            "/api/expectations/m2", json={"deadline_ledgers": 50}, headers=AUTH
        )
        assert moved.status_code == 409 and "member of group 'g'" in moved.json()["error"]
        cancelled = await http.delete("/api/expectation-groups/g", headers=AUTH)
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        entries = (await http.get("/api/audit")).json()["entries"]
        assert (entries[0]["action"], entries[0]["target"]) == ("expectation_groups.cancel", "g")
        assert (await http.delete("/api/expectation-groups/g")).status_code == 401
        bad = {
            "both": record(net, "b1", nobody, 5, allow_partial=True, group_id="h"),
            "negative": record(net, "b2", nobody, -5, allow_partial=True),
            "tx": record(net, "b3", nobody, 5, allow_partial=True, tx_hash="a" * 64),
        }
        for case, fields in bad.items():
            answer = await http.post("/api/expectations", json=fields, headers=AUTH)
            assert answer.status_code == 422, case
            message = answer.json()["error"]
            assert {"both": "not both", "negative": "above 0", "tx": "tx_hash"}[case] in message
