"""Where the recorded real Stellar RPC responses (and the OpenRPC spec) are found.

They are shared data kept beside the project, not in it: STELLAR_FIXTURES_DIR if set, else
../shared/fixtures/stellar-rpc next to the checkout, else /work/shared/fixtures/stellar-rpc
(where a fresh clone in a temporary directory finds them on the team's machines).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

_CANDIDATES = [
    os.environ.get("STELLAR_FIXTURES_DIR", ""),
    str(Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "stellar-rpc"),
    "/work/shared/fixtures/stellar-rpc",
]


def _find() -> Path:
    for candidate in _CANDIDATES:
        if candidate and (Path(candidate) / "openrpc.json").is_file():
            return Path(candidate)
    raise FileNotFoundError(
        "recorded Stellar RPC fixtures not found; set STELLAR_FIXTURES_DIR to the folder "
        "holding openrpc.json and the *.result.json files"
    )


FIXTURES = _find()


def load(name: str) -> Any:
    """A fixture file parsed as JSON."""
    return json.loads((FIXTURES / name).read_text())
