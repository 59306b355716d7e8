"""Catch-up progress in the log of a real `reconciler run`: a line at the start and one on
reaching the tip, with rates, and no more than one every 10 seconds in between, however many
batches are committed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from stellar_reconciler.progress import LOG_EVERY_SECONDS
from stellar_reconciler.simnet import FaultKind, SimNetConfig, SimNetwork, serve_in_thread
from tests.integration.harness import wait_for_sync

RECONCILER = Path(sys.executable).parent / "reconciler"


def log_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for text in path.read_text(encoding="utf-8").splitlines():
        if text.startswith("{"):
            lines.append(json.loads(text))
    return lines


def test_catch_up_logs_progress_not_per_batch(tmp_path: Path) -> None:
    """1,200 ledgers in batches of 20: dozens of batches, but progress lines only at the
    start, every 10 s and at the end, the last one finished with rates and no ETA."""
    net = SimNetwork(
        SimNetConfig(seed=9, first_ledger=100, prebuilt_ledgers=1_200, events_per_ledger=3)
    )
    net.faults.add(FaultKind.SLOW, method="getEvents", times=None, delay=0.01)
    stderr = tmp_path / "stderr.log"
    with serve_in_thread(net) as rpc_url, stderr.open("w") as sink:
        env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'reconciler.db'}",
            "STELLAR_RPC_URL": rpc_url,
            "BIND_ADDR": "127.0.0.1:0",
            "BATCH_MAX_LEDGERS": "20",
            "CATCH_UP_PROCESS_LEDGERS": "0",
            "VERIFY_EVERY_LEDGERS": "0",
        }
        started = time.monotonic()
        process = subprocess.Popen([str(RECONCILER), "run"], env=env, stderr=sink)
        try:
            wait_for_sync(
                lambda: any(
                    line.get("event") == "catch_up_progress" and line["finished"]
                    for line in log_lines(stderr)
                ),
                timeout=120,
                what="the catch-up's last progress line",
            )
            elapsed = time.monotonic() - started
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=30)
    lines = log_lines(stderr)
    progress = [line for line in lines if line.get("event") == "catch_up_progress"]
    batches = [line for line in lines if line.get("event") == "batch_committed"]
    assert len(batches) >= 1_200 // 20
    assert len(progress) <= 2 + elapsed / LOG_EVERY_SECONDS
    first, last = progress[0], progress[-1]
    assert first["finished"] is False and 0 < first["done"] <= 20 and first["remaining"] >= 1_150
    assert last["finished"] is True and last["eta_s"] is None
    assert last["done"] + last["remaining"] >= 1_199
    assert last["ledgers_per_s"] > 0 and last["events_per_s"] > 0
