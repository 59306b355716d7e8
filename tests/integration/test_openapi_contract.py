"""The OpenAPI document is true: schemathesis drives a running service (real uvicorn on
loopback, worker following the simulated network, ADMIN_TOKEN set so operator endpoints are
exercised) with every check and its stateful phase, seeded and bounded."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import httpx
import pytest

from stellar_reconciler.simnet import SimNetConfig, SimNetwork, serve_in_thread
from stellar_reconciler.store.discrepancies import NewDiscrepancy
from tests.integration.harness import running_service, settings_for, wait_for

ADMIN = "admin-token-0123456789"
SEED = 20261204
# Examples per operation: bounded so the run stays well under a minute per database.
EXAMPLES = {"sqlite": 20, "postgres": 10}
# The Server-Sent Events streams never end: tests/integration/test_live_stream.py owns
# /api/stream and tests/integration/test_event_stream.py owns /api/events/stream.
EXCLUDED_PATHS = ["/api/stream", "/api/events/stream"]
RUN_DEADLINE = 300.0
CONFIG = Path(__file__).with_name("schemathesis.toml")


@pytest.mark.slow
async def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    database_url: str, tmp_path: Path
) -> None:
    """All checks, all phases (stateful included): 0 failures, so every status, header,
    content type and body the service sends is one the document promises."""
    net = SimNetwork(
        SimNetConfig(seed=91, first_ledger=50, prebuilt_ledgers=40, events_per_ledger=3)
    )
    examples = EXAMPLES["postgres" if database_url.startswith("postgresql") else "sqlite"]
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, admin_token=ADMIN)
        async with running_service(settings) as (service, base):
            await wait_for(lambda: service.status.last_processed_ledger == net.latest_ledger)
            # Something for the links to lead to: open discrepancies (to read and resolve).
            for key in ("k1", "k2", "k3"):
                await asyncio.to_thread(
                    service.store.discrepancies.open,
                    NewDiscrepancy("unexpected", key, "an event nobody expected"),
                )
            command = [
                str(Path(sys.executable).parent / "st"),
                f"--config-file={CONFIG}",
                "run",
                f"{base}/openapi.json",
                "--checks=all",
                "--phases=examples,coverage,fuzzing,stateful",
                f"--max-examples={examples}",
                f"--seed={SEED}",
                "--workers=1",
                "--generation-database=none",
                "--request-timeout=20",
                "--no-color",
                "--output-truncate=false",
                f"--header=Authorization: Bearer {ADMIN}",
                *(f"--exclude-path={path}" for path in EXCLUDED_PATHS),
            ]
            process = await asyncio.create_subprocess_exec(
                *command,
                cwd=tmp_path,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            output, _ = await asyncio.wait_for(process.communicate(), RUN_DEADLINE)
            # The service survived whatever schemathesis did (pause, restart, verify ...).
            async with httpx.AsyncClient(base_url=base) as http:
                assert (await http.get("/api/status")).status_code == 200
    report = output.decode(errors="replace")
    assert process.returncode == 0, report[-20000:]
    generated = re.search(r"([0-9]+) generated", report)
    assert generated is not None and int(generated[1]) > 200, report[-5000:]
