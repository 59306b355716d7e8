"""The recorded real Stellar RPC responses (and the OpenRPC spec) the tests check against.

They are shared data kept beside the project; `simnet.testing.fixtures_dir` says where it
looks (STELLAR_RPC_FIXTURES first). Missing fixtures fail the tests that need them loudly.
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
