"""`reconciler run`, with every pause of the cyclic garbage collector timed.

    python -m bench.traced GC_REPORT_PATH

py-spy attributes a collection to whatever line happened to allocate, so it cannot say how
much time the collector itself takes; gc.callbacks can. The report (JSON, written at exit)
has the number of collections and the seconds spent per generation.
"""

from __future__ import annotations

import atexit
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

from stellar_reconciler.cli import main as reconciler_main


def install(report: Path) -> None:
    started: dict[int, float] = {}
    totals = {generation: {"collections": 0, "seconds": 0.0} for generation in range(3)}

    def timing(phase: str, info: dict[str, Any]) -> None:
        generation = info["generation"]
        if phase == "start":
            started[generation] = time.perf_counter()
            return
        totals[generation]["collections"] += 1
        totals[generation]["seconds"] += time.perf_counter() - started.pop(generation, 0.0)

    gc.callbacks.append(timing)
    atexit.register(lambda: report.write_text(json.dumps(totals)))


def main() -> None:
    install(Path(sys.argv[1]))
    sys.argv = ["reconciler", "run"]
    reconciler_main()


if __name__ == "__main__":
    main()
