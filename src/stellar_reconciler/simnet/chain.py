"""LedgerChain: headers, hashes and close metas of the simulated ledgers.

Each header is a real `LedgerHeader` built with stellar-sdk and kept as XDR bytes (about 430
bytes a ledger); `hash = sha256(header XDR)` and every header's previousLedgerHash is the hash
of the ledger before it. A ledger's `LedgerCloseMeta` (v1, empty transaction set) is assembled
on demand from the stored header, with optional padding, so metas of hundreds of KB cost no
memory.
"""

from __future__ import annotations

import hashlib
import struct

from stellar_sdk import Keypair, xdr

from stellar_reconciler.simnet.cast import Cast, derive
from stellar_reconciler.simnet.config import SimNetConfig

# LedgerHeader XDR starts with ledgerVersion (uint32) then previousLedgerHash (32 bytes).
_PREV_HASH = slice(4, 36)
# stellar-core's skip list refresh intervals (the list holds bucket list hashes of ledgers
# roughly SKIP_1, SKIP_2, SKIP_3 and SKIP_4 ledgers back).
SKIP_1, SKIP_2, SKIP_3, SKIP_4 = 50, 5_000, 50_000, 500_000
TOTAL_COINS = 10**18  # 100 billion lumens in stroops
BASE_FEE = 100
BASE_RESERVE = 5_000_000
MAX_TX_SET_SIZE = 1_000
# An evicted-key entry (LedgerKey of an account) is 40 bytes of XDR; padding is made of them.
PADDING_KEY_SIZE = 40
_ZERO_HASH = b"\x00" * 32
# The transaction result set of an empty ledger: an XDR array of length 0 and ext v0.
_EMPTY_RESULT_SET_HASH = hashlib.sha256(b"\x00" * 8).digest()


class LedgerChain:
    """Append-only list of ledger headers with their hashes; sequence `first` is index 0."""

    def __init__(self, config: SimNetConfig, cast: Cast) -> None:
        self.first = config.first_ledger
        self._config = config
        self._cast = cast
        self._headers: list[bytes] = []
        self._hashes: list[bytes] = []
        self._skip_list = [_ZERO_HASH] * 4
        self._node_id = xdr.NodeID(
            xdr.PublicKey(
                xdr.PublicKeyType.PUBLIC_KEY_TYPE_ED25519,
                xdr.Uint256(cast.node.raw_public_key()),
            )
        )
        self._network_id = hashlib.sha256(config.network_passphrase.encode()).digest()
        self._tx_set_template = _empty_tx_set()
        self._padding_block = b"".join(_account_key(party.strkey) for party in cast.accounts)
        self._genesis_parent = derive(config.seed, "genesis-parent")

    @property
    def latest(self) -> int:
        return self.first + len(self._headers) - 1

    def close_time(self, sequence: int) -> int:
        return self._config.genesis_close_time + (sequence - self.first) * (
            self._config.close_time_step
        )

    def header(self, sequence: int) -> bytes:
        """The bare LedgerHeader XDR (what getLatestLedger's headerXdr holds)."""
        return self._headers[sequence - self.first]

    def hash(self, sequence: int) -> bytes:
        return self._hashes[sequence - self.first]

    def history_entry(self, sequence: int) -> bytes:
        """LedgerHeaderHistoryEntry XDR: hash, header, ext v0 (getLedgers' headerXdr)."""
        index = sequence - self.first
        return self._hashes[index] + self._headers[index] + b"\x00\x00\x00\x00"

    def append(self) -> int:
        """Close the next ledger; returns its sequence."""
        sequence = self.first + len(self._headers)
        parent = self._hashes[-1] if self._hashes else self._genesis_parent
        header = self._build_header(sequence, parent)
        self._headers.append(header)
        self._hashes.append(hashlib.sha256(header).digest())
        return sequence

    def break_at(self, sequence: int) -> None:
        """Give ledger `sequence` a previousLedgerHash that is not its parent's hash.

        Later ledgers are re-hashed so they chain onto the altered ledger: the only broken
        link is the one into `sequence`, and every read from now on serves it the same way.
        """
        index = sequence - self.first
        if not 0 <= index < len(self._headers):
            raise ValueError(f"ledger {sequence} has not closed")
        bogus = derive(self._config.seed, "broken-link", sequence)
        self._relink(index, bogus)
        for later in range(index + 1, len(self._headers)):
            self._relink(later, self._hashes[later - 1])

    def meta(self, sequence: int) -> bytes:
        """LedgerCloseMeta v1 XDR for the ledger, padded with evicted keys when configured."""
        index = sequence - self.first
        header = self._headers[index]
        tx_set = self._tx_set_template[:4] + header[_PREV_HASH] + self._tx_set_template[36:]
        padding = self._padding(self._config.meta_padding_bytes)
        return b"".join(
            (
                struct.pack(">ii", 1, 0),  # LedgerCloseMeta v1, LedgerCloseMetaExt v0
                self.history_entry(sequence),
                tx_set,
                struct.pack(">III", 0, 0, 0),  # txProcessing, upgradesProcessing, scpInfo
                struct.pack(">Q", 10_000_000 + index * 1_024),  # live Soroban state size
                struct.pack(">I", len(padding) // PADDING_KEY_SIZE),
                padding,  # evictedKeys
                struct.pack(">I", 0),  # unused
            )
        )

    def _padding(self, size: int) -> bytes:
        keys = -(-size // PADDING_KEY_SIZE)
        block_keys = len(self._padding_block) // PADDING_KEY_SIZE
        whole, rest = divmod(keys, block_keys)
        return self._padding_block * whole + self._padding_block[: rest * PADDING_KEY_SIZE]

    def _relink(self, index: int, parent: bytes) -> None:
        header = self._headers[index]
        header = header[:4] + parent + header[36:]
        self._headers[index] = header
        self._hashes[index] = hashlib.sha256(header).digest()

    def _build_header(self, sequence: int, parent: bytes) -> bytes:
        config = self._config
        offset = sequence - self.first
        close_time = self.close_time(sequence)
        tx_set = self._tx_set_template[:4] + parent + self._tx_set_template[36:]
        tx_set_hash = hashlib.sha256(tx_set).digest()
        bucket_list_hash = derive(config.seed, "bucket-list", sequence)
        self._advance_skip_list(sequence, bucket_list_hash)
        # The validator signs (network id, ENVELOPE_TYPE_SCPVALUE, tx set hash, close time).
        signed = (
            self._network_id
            + struct.pack(">i", xdr.EnvelopeType.ENVELOPE_TYPE_SCPVALUE.value)
            + tx_set_hash
            + struct.pack(">Q", close_time)
        )
        signature = xdr.LedgerCloseValueSignature(
            self._node_id, xdr.Signature(self._cast.node.sign(signed))
        )
        value = xdr.StellarValue(
            xdr.Hash(tx_set_hash),
            xdr.TimePoint(xdr.Uint64(close_time)),
            [],
            xdr.StellarValueExt(
                xdr.StellarValueType.STELLAR_VALUE_SIGNED, lc_value_signature=signature
            ),
        )
        header = xdr.LedgerHeader(
            ledger_version=xdr.Uint32(config.protocol_version),
            previous_ledger_hash=xdr.Hash(parent),
            scp_value=value,
            tx_set_result_hash=xdr.Hash(_EMPTY_RESULT_SET_HASH),
            bucket_list_hash=xdr.Hash(bucket_list_hash),
            ledger_seq=xdr.Uint32(sequence),
            total_coins=xdr.Int64(TOTAL_COINS),
            fee_pool=xdr.Int64(36_000_000_000 + offset * 12_345),
            inflation_seq=xdr.Uint32(0),
            id_pool=xdr.Uint64(1_000 + offset * 3),
            base_fee=xdr.Uint32(BASE_FEE),
            base_reserve=xdr.Uint32(BASE_RESERVE),
            max_tx_set_size=xdr.Uint32(MAX_TX_SET_SIZE),
            skip_list=[xdr.Hash(h) for h in self._skip_list],
            ext=xdr.LedgerHeaderExt(0),
        )
        encoded: bytes = header.to_xdr_bytes()
        return encoded

    def _advance_skip_list(self, sequence: int, bucket_list_hash: bytes) -> None:
        # stellar-core refreshes the skip list every SKIP_1 ledgers, shifting older entries
        # down only when the ledger SKIP_1 back sits on a coarser boundary.
        if sequence % SKIP_1:
            return
        skip = self._skip_list
        back = sequence - SKIP_1
        if back > 0 and back % SKIP_2 == 0:
            back = sequence - SKIP_2 - SKIP_1
            if back > 0 and back % SKIP_3 == 0:
                back = sequence - SKIP_3 - SKIP_2 - SKIP_1
                if back > 0 and back % SKIP_4 == 0:
                    skip[3] = skip[2]
                skip[2] = skip[1]
            skip[1] = skip[0]
        skip[0] = bucket_list_hash


def _empty_tx_set() -> bytes:
    """GeneralizedTransactionSet v1 with no transactions, with a zero previousLedgerHash.

    Protocol 23 sets have a classic phase (v0) and a parallel Soroban phase (v1). The parent
    hash sits at bytes 4..36 and is patched per ledger.
    """
    phases = [
        xdr.TransactionPhase(0, v0_components=[]),
        xdr.TransactionPhase(1, parallel_txs_component=xdr.ParallelTxsComponent(None, [])),
    ]
    tx_set = xdr.GeneralizedTransactionSet(1, xdr.TransactionSetV1(xdr.Hash(_ZERO_HASH), phases))
    encoded: bytes = tx_set.to_xdr_bytes()
    return encoded


def _account_key(strkey: str) -> bytes:
    account_id = Keypair.from_public_key(strkey).xdr_account_id()
    key = xdr.LedgerKey(xdr.LedgerEntryType.ACCOUNT, account=xdr.LedgerKeyAccount(account_id))
    encoded: bytes = key.to_xdr_bytes()
    return encoded
