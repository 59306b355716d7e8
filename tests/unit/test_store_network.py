"""The network record: the passphrase stored once, and another one refused."""

from __future__ import annotations

import pickle

import pytest

from stellar_reconciler.errors import ExitCode, NetworkMismatchError
from stellar_reconciler.store import Store

A = "Network A ; test"
B = "Network B ; test"


def test_first_passphrase_is_recorded_and_the_same_one_accepted(store: Store) -> None:
    """Nothing recorded at first; the first passphrase is recorded and recording it again is
    a no-op."""
    assert store.network.passphrase() is None
    store.network.record(A, "http://rpc/")
    store.network.record(A, "http://rpc/")
    store.network.check(A, "http://rpc/")
    assert store.network.passphrase() == A


def test_another_passphrase_is_refused_and_not_recorded(store: Store) -> None:
    """Recording or checking a different passphrase raises, naming both, and keeps the first."""
    store.network.record(A, "http://rpc/")
    for attempt in (store.network.record, store.network.check):
        with pytest.raises(NetworkMismatchError) as caught:
            attempt(B, "http://rpc/")
        message = str(caught.value)
        assert A in message and B in message
        assert "DATABASE_URL" in message and "STELLAR_RPC_URL" in message
    assert store.network.passphrase() == A


def test_check_on_an_empty_record_writes_nothing(store: Store) -> None:
    """`check` accepts any passphrase while none is recorded, and records nothing."""
    store.network.check(B, "http://rpc/")
    assert store.network.passphrase() is None


def test_network_mismatch_pickles_and_exits_2() -> None:
    """The error crosses process boundaries intact and maps to the configuration exit code."""
    error = NetworkMismatchError(A, B, "http://rpc/")
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 -- bytes this test just made
    assert str(copy) == str(error)
    assert copy.exit_code == ExitCode.CONFIG == 2
