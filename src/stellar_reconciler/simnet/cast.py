"""Cast: the accounts, contracts and assets of the simulated network, derived from the seed.

Each piece is built once with stellar-sdk (keys, strkeys, ScVal encodings) and then shared by
every event that mentions it, so a million events reuse a few hundred encoded values.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from stellar_sdk import Asset, Keypair, StrKey, scval

from stellar_reconciler.simnet import codec

ACCOUNT_POOL = 64
CONTRACT_POOL = 16
ASSET_CODES = ("USDC", "EURC")

TOKEN_SYMBOLS = ("transfer", "mint", "fee")
ESCROW_SYMBOLS = (
    "job_posted",
    "job_funded",
    "milestone_released",
    "dispute_opened",
    "dispute_resolved",
    "escrow_refunded",
)
# Map keys and dispute reasons used in escrow event values.
VALUE_SYMBOLS = (
    "amount",
    "budget",
    "client",
    "freelancer",
    "funder",
    "milestone",
    "milestones",
    "opened_by",
    "reason",
    "late_delivery",
    "quality",
    "non_payment",
    "executable_update",
)


@dataclass(frozen=True, slots=True)
class Party:
    """An address that appears in events: its strkey and its ScVal (bytes and base64)."""

    strkey: str
    scval: bytes
    topic: str


@dataclass(frozen=True, slots=True)
class Cast:
    accounts: tuple[Party, ...]
    contracts: tuple[Party, ...]
    token: Party
    escrow: Party
    native: Party
    assets: tuple[str, ...]
    asset_topics: tuple[str, ...]
    # symbol name -> (ScVal bytes, base64)
    symbols: dict[str, tuple[bytes, str]]
    node: Keypair

    def symbol(self, name: str) -> bytes:
        return self.symbols[name][0]

    def symbol_topic(self, name: str) -> str:
        return self.symbols[name][1]


def derive(seed: int, label: str, index: int = 0) -> bytes:
    """32 deterministic bytes for (seed, label, index)."""
    return hashlib.sha256(f"simnet:{seed}:{label}:{index}".encode()).digest()


def build_cast(seed: int, passphrase: str) -> Cast:
    """Derive every party of the network from `seed`; the same seed gives the same cast."""
    accounts = tuple(
        _party(Keypair.from_raw_ed25519_seed(derive(seed, "account", i)).public_key)
        for i in range(ACCOUNT_POOL)
    )
    contracts = tuple(
        _party(StrKey.encode_contract(derive(seed, "contract", i))) for i in range(CONTRACT_POOL)
    )
    token = _party(StrKey.encode_contract(derive(seed, "token-contract")))
    escrow = _party(StrKey.encode_contract(derive(seed, "escrow-contract")))
    # The native asset's contract id is fixed by the passphrase, as on every real network.
    native = _party(Asset.native().contract_id(passphrase))
    # Account 0 issues the credit assets (and administers the token contract).
    assets = ("native", *(f"{code}:{accounts[0].strkey}" for code in ASSET_CODES))
    asset_topics = tuple(codec.b64(codec.sdk(scval.to_string(a))) for a in assets)
    symbols: dict[str, tuple[bytes, str]] = {}
    for name in (*TOKEN_SYMBOLS, *ESCROW_SYMBOLS, *VALUE_SYMBOLS):
        encoded = codec.sdk(scval.to_symbol(name))
        symbols[name] = (encoded, codec.b64(encoded))
    node = Keypair.from_raw_ed25519_seed(derive(seed, "validator"))
    return Cast(
        accounts=accounts,
        contracts=(escrow, *contracts),
        token=token,
        escrow=escrow,
        native=native,
        assets=assets,
        asset_topics=asset_topics,
        symbols=symbols,
        node=node,
    )


def _party(strkey: str) -> Party:
    """A G... account or C... contract address with its ScVal encoding."""
    encoded = codec.sdk(scval.to_address(strkey))
    return Party(strkey, encoded, codec.b64(encoded))
