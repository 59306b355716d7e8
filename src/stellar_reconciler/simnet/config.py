"""SimNetConfig: every knob of the simulated network, validated once, frozen afterwards."""

from __future__ import annotations

from dataclasses import dataclass

# A network passphrase names a network publicly; it is not a secret.
DEFAULT_PASSPHRASE = "Stellar Reconciler Simulated Network ; 2026"  # noqa: S105
# 2026-01-01T00:00:00Z: a fixed genesis keeps every answer identical from run to run.
DEFAULT_GENESIS_CLOSE_TIME = 1_767_225_600
# Seven days of five-second ledgers, the stellar-rpc default history retention window.
DEFAULT_RETENTION_WINDOW = 120_960
# Close-time step when ledgers are closed by hand: mainnet closes a ledger about every 5 s.
MANUAL_CLOSE_TIME_STEP = 5
# What token transfers carry from the upgrade ledger on (a contract upgrade changing its
# events' value): `map` {amount: i128} (the amount still readable), `string` the amount as
# decimal text with 7 places ("12.5000000": not a whole number of the smallest unit),
# `renamed` {value: i128} (no `amount` field).
UPGRADE_SHAPES = ("map", "string", "renamed")


class SimNetConfigError(ValueError):
    """A SimNetConfig field is out of range; the message names the field and the bound."""


@dataclass(frozen=True, slots=True)
class SimNetConfig:
    """What the simulated network looks like; the same config and seed give the same chain.

    Ledgers `first_ledger .. first_ledger + prebuilt_ledgers - 1` exist at start. A ledger
    carries events only when `(sequence - first_ledger) % event_every == 0`; it then carries
    on average `events_per_ledger` events (between half and one and a half times that many).
    `ledger_interval` None or 0 means ledgers close only when asked to.
    """

    seed: int = 7
    first_ledger: int = 1000
    prebuilt_ledgers: int = 200
    ledger_interval: float | None = None
    events_per_ledger: int = 5
    event_every: int = 1
    retention_window: int = DEFAULT_RETENTION_WINDOW
    meta_padding_bytes: int = 0
    protocol_version: int = 23
    network_passphrase: str = DEFAULT_PASSPHRASE
    genesis_close_time: int = DEFAULT_GENESIS_CLOSE_TIME
    # Transaction-level `fee` events (charge before all transactions, refund after them),
    # as emitted since protocol 23; they count towards events_per_ledger.
    fee_events: bool = True
    # Every Nth event-carrying ledger (by offset) also carries one `system` event; 0 = never.
    system_event_every: int = 0
    default_events_limit: int = 100
    max_events_limit: int = 10_000
    default_ledgers_limit: int = 50
    max_ledgers_limit: int = 200
    # From this ledger on, token transfers carry their value in `upgrade_shape`; None: never.
    upgrade_ledger: int | None = None
    upgrade_shape: str = "map"

    def __post_init__(self) -> None:
        _at_least("first_ledger", self.first_ledger, 1)
        _at_least("prebuilt_ledgers", self.prebuilt_ledgers, 1)
        _at_least("events_per_ledger", self.events_per_ledger, 0)
        _at_least("event_every", self.event_every, 1)
        _at_least("retention_window", self.retention_window, 1)
        _at_least("meta_padding_bytes", self.meta_padding_bytes, 0)
        _at_least("protocol_version", self.protocol_version, 1)
        _at_least("system_event_every", self.system_event_every, 0)
        _at_least("default_events_limit", self.default_events_limit, 1)
        _at_least("max_events_limit", self.max_events_limit, self.default_events_limit)
        _at_least("default_ledgers_limit", self.default_ledgers_limit, 1)
        _at_least("max_ledgers_limit", self.max_ledgers_limit, self.default_ledgers_limit)
        if self.upgrade_ledger is not None:
            _at_least("upgrade_ledger", self.upgrade_ledger, self.first_ledger)
        if self.upgrade_shape not in UPGRADE_SHAPES:
            raise SimNetConfigError(
                f"upgrade_shape must be one of {', '.join(UPGRADE_SHAPES)}, "
                f"got {self.upgrade_shape!r}"
            )
        if self.ledger_interval is not None and self.ledger_interval < 0:
            raise SimNetConfigError(
                f"ledger_interval must be None, 0 (manual) or a positive number of seconds, "
                f"got {self.ledger_interval}"
            )
        # A ledger sequence is a uint32 and the event id packs it into the top of an int64.
        last = self.first_ledger + self.prebuilt_ledgers - 1
        if last >= 2**31:
            raise SimNetConfigError(f"the last prebuilt ledger {last} must stay below 2^31")

    @property
    def manual(self) -> bool:
        """True when ledgers close only on request (close_ledger(s) or the control API)."""
        return not self.ledger_interval

    @property
    def close_time_step(self) -> int:
        """Seconds between consecutive close times (whole seconds, as in a ledger header)."""
        if self.manual or self.ledger_interval is None:
            return MANUAL_CLOSE_TIME_STEP
        # Close times must strictly increase, so sub-second intervals still advance by 1 s.
        return max(1, round(self.ledger_interval))


def _at_least(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SimNetConfigError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise SimNetConfigError(f"{name} must be at least {minimum}, got {value}")
