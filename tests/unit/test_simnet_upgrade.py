"""The simulated contract upgrade: from --upgrade-ledger on, token transfers carry their
amount in another value shape, and nothing else about the chain changes."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from stellar_reconciler.decode import decode_scval_b64
from stellar_reconciler.simnet import SimNetConfig, SimNetwork
from stellar_reconciler.simnet.cli import simnet_command
from stellar_reconciler.simnet.config import SimNetConfigError

BASE = SimNetConfig(seed=5, first_ledger=1000, prebuilt_ledgers=12, events_per_ledger=10)


def transfers(net: SimNetwork) -> list[tuple[str, int, object]]:
    return [
        (e["id"], e["ledger"], decode_scval_b64(e["value"]))
        for e in net.record_events(net.first_ledger, net.latest_ledger)
        if e["contractId"] == net.token_contract_id
        and decode_scval_b64(e["topic"][0]) == "transfer"
    ]


@pytest.mark.parametrize(
    ("kind", "rendered"),
    [
        ("map", lambda amount: {"amount": str(amount)}),
        ("string", lambda amount: f"{amount // 10**7}.{amount % 10**7:07d}"),
        ("renamed", lambda amount: {"value": str(amount)}),
    ],
)
def test_transfers_change_shape_from_the_upgrade_ledger(kind: str, rendered: object) -> None:
    """Before ledger 1006 transfers are the i128 of the plain network; from it, the same
    amounts in the chosen shape; every event id is unchanged."""
    plain = transfers(SimNetwork(BASE))
    upgraded = transfers(
        SimNetwork(SimNetConfig(**{**_fields(BASE), "upgrade_ledger": 1006, "upgrade_shape": kind}))
    )
    assert [t[0] for t in upgraded] == [t[0] for t in plain]
    assert any(ledger >= 1006 for _, ledger, _ in plain)
    for (_, ledger, before), (_, _, after) in zip(plain, upgraded, strict=True):
        expected = rendered(int(before)) if ledger >= 1006 else before  # type: ignore[operator]
        assert after == expected


def _fields(config: SimNetConfig) -> dict[str, object]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


def test_the_status_names_the_upgrade() -> None:
    """/_simnet/status tells when transfers change shape and to what; null without one."""
    assert SimNetwork(BASE).describe()["upgrade"] is None
    upgraded = SimNetwork(SimNetConfig(**{**_fields(BASE), "upgrade_ledger": 1006}))
    assert upgraded.describe()["upgrade"] == {"ledger": 1006, "shape": "map"}


def test_bad_upgrade_settings_are_refused_naming_the_field() -> None:
    """An unknown shape or an upgrade ledger before the first ledger is a SimNetConfigError."""
    with pytest.raises(SimNetConfigError, match="upgrade_shape must be one of map, string"):
        SimNetConfig(upgrade_ledger=1005, upgrade_shape="float")
    with pytest.raises(SimNetConfigError, match="upgrade_ledger must be at least 1000"):
        SimNetConfig(upgrade_ledger=5)


def test_the_cli_refuses_an_unknown_upgrade_shape_before_serving() -> None:
    """`--upgrade-shape float` exits 2 with the accepted shapes, before binding a port."""
    app = typer.Typer()
    app.command()(simnet_command)
    result = CliRunner().invoke(
        app, ["--port", "1", "--upgrade-ledger", "1010", "--upgrade-shape", "float"]
    )
    assert result.exit_code == 2
    assert "map, string, renamed" in result.output
