"""The recorded real Stellar RPC responses (and the OpenRPC spec) the tests check against.

The repository carries them in tests/fixtures/stellar-rpc (public data recorded from real
Stellar RPC servers; SOURCES.md says where each came from and which values to assert).
"""

from __future__ import annotations

from typing import Any

from stellar_reconciler.simnet.testing import fixtures_dir, load_fixture

FIXTURES = fixtures_dir()
if FIXTURES is None:
    raise FileNotFoundError(
        "recorded Stellar RPC fixtures not found; set STELLAR_RPC_FIXTURES to the folder "
        "holding openrpc.json and the *.result.json files"
    )


def load(name: str) -> Any:
    """A fixture file parsed as JSON."""
    return load_fixture(name)
