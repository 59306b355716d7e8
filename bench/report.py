"""The results table: one column per database, ratios and the issue's targets beside them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Results = dict[str, Any]
Cell = Callable[[str], str]

# The acceptance targets of issue 5, shown beside the measured ratios.
MIN_SPEEDUP = 10.0
MIN_CEILING_SHARE = 0.70
MAX_PEAK_RSS_MB = 300.0
MAX_P95_SECONDS = 1.0


def _rate(part: dict[str, Any] | None, key: str = "events") -> float | None:
    if not part or not part.get("seconds"):
        return None
    return float(part[key]) / float(part["seconds"])


def rates(results: Results, database: str) -> dict[str, float | None]:
    """Events per second of each measurement for one database, and the ratios."""
    catch_up = results.get("catchup", {}).get(database)
    write = results.get("write", {}).get(database)
    found: dict[str, float | None] = {
        "catchup": _rate(catch_up),
        "catchup_ledgers": _rate(catch_up, "ledgers"),
        "baseline": _rate(results.get("baseline", {}).get(database)),
        "baseline_tx": _rate(results.get("baseline_tx", {}).get(database)),
        "fetch": _rate(results.get("fetch")),
        "write": _rate(write),
    }
    ceilings = [r for r in (found["fetch"], found["write"]) if r is not None]
    lower = min(ceilings) if ceilings else None
    catch = found["catchup"]
    found["speedup"] = catch / found["baseline"] if catch and found["baseline"] else None
    kinder = found["baseline_tx"]
    found["speedup_tx"] = catch / kinder if catch and kinder else None
    found["ceiling_share"] = catch / lower if catch and lower else None
    # How far any design could get past the baseline: the lower ceiling caps catch-up.
    found["ceiling_speedup"] = lower / found["baseline"] if lower and found["baseline"] else None
    return found


def _number(value: float | None, digits: int = 0, suffix: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}{suffix}"


def rows(results: Results) -> tuple[list[str], list[tuple[str, list[str], str]]]:
    """(database names, [(label, one cell per database, target)])."""
    databases = list(results["databases"])
    per = {db: rates(results, db) for db in databases}

    def part(phase: str, db: str) -> dict[str, Any]:
        found: dict[str, Any] = results.get(phase, {}).get(db) or {}
        return found

    def each(cell: Cell) -> list[str]:
        return [cell(db) for db in databases]

    baseline_ledgers = next(
        (part("baseline", db).get("ledgers") for db in databases if part("baseline", db)), None
    )
    table: list[tuple[str, list[str], str]] = [
        ("catch-up: events/s", each(lambda db: _number(per[db]["catchup"])), ""),
        ("catch-up: ledgers/s", each(lambda db: _number(per[db]["catchup_ledgers"])), ""),
        ("catch-up: seconds", each(lambda db: _number(part("catchup", db).get("seconds"), 1)), ""),
        (
            "catch-up: peak RSS, MB",
            each(lambda db: _number(part("catchup", db).get("peak_rss_mb"))),
            f"< {MAX_PEAK_RSS_MB:.0f}",
        ),
        (
            "catch-up: most RSS seen at once, MB",
            each(lambda db: _number(part("catchup", db).get("largest_sampled_rss_mb"))),
            "",
        ),
        ("catch-up: service CPU, cores", each(lambda db: _cores(part("catchup", db), "cpu")), ""),
        (
            "catch-up: simnet CPU, cores",
            each(lambda db: _cores(part("catchup", db), "simnet_cpu")),
            "",
        ),
        (
            "catch-up: machine busy, cores",
            each(lambda db: _number(part("catchup", db).get("machine_busy_cores"), 2)),
            "",
        ),
        (
            f"baseline: events/s ({baseline_ledgers or '-'} ledgers)",
            each(lambda db: _number(per[db]["baseline"])),
            "",
        ),
        (
            "baseline, one tx per ledger: events/s",
            each(lambda db: _number(per[db]["baseline_tx"])),
            "",
        ),
        ("fetch+decode ceiling: events/s", each(lambda db: _number(per[db]["fetch"])), ""),
        ("write ceiling: events/s", each(lambda db: _number(per[db]["write"])), ""),
        (
            "catch-up / baseline",
            each(lambda db: _number(per[db]["speedup"], 1, "x")),
            f">= {MIN_SPEEDUP:.0f}x",
        ),
        (
            "catch-up / baseline with one tx per ledger",
            each(lambda db: _number(per[db]["speedup_tx"], 1, "x")),
            "",
        ),
        (
            "lower ceiling / baseline (at most)",
            each(lambda db: _number(per[db]["ceiling_speedup"], 1, "x")),
            "",
        ),
        (
            "catch-up / lower ceiling",
            each(lambda db: _number(_percent(per[db]["ceiling_share"]), 0, "%")),
            f">= {MIN_CEILING_SHARE:.0%}",
        ),
    ]
    for density in results.get("config", {}).get("latency_events_per_ledger", []):
        for quantile, target in (("p50", ""), ("p95", f"< {MAX_P95_SECONDS:.0f}")):
            cells = [
                _number(
                    results.get("latency", {}).get(db, {}).get(str(density), {}).get(quantile), 3
                )
                for db in databases
            ]
            table.append((f"steady state, {density} events/ledger: {quantile}, s", cells, target))
    return databases, table


def _cores(part: dict[str, Any], key: str) -> str:
    if not part.get("seconds") or part.get(key) is None:
        return "-"
    return f"{part[key] / part['seconds']:.2f}"


def _percent(share: float | None) -> float | None:
    return None if share is None else share * 100


def render_text(results: Results) -> str:
    databases, table = rows(results)
    header = ["", *databases, "target"]
    lines = [header, *[[label, *cells, target] for label, cells, target in table]]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for number, line in enumerate(lines):
        cells = [line[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)]
        out.append("  ".join(cells).rstrip())
        if number == 0:
            out.append("-" * len(out[0]))
    return "\n".join(out)


def render_markdown(results: Results) -> str:
    databases, table = rows(results)
    out = [
        "| | " + " | ".join(databases) + " | target |",
        "|---|" + "---:|" * len(databases) + "---|",
    ]
    for label, cells, target in table:
        out.append(f"| {label} | " + " | ".join(cells) + f" | {target} |")
    return "\n".join(out)


def verdicts(results: Results) -> list[str]:
    """One line per acceptance point and database: met, missed, or not measured."""
    lines = []
    for db in results["databases"]:
        per = rates(results, db)
        catch_up = results.get("catchup", {}).get(db) or {}
        latencies = results.get("latency", {}).get(db) or {}
        # (what, the measured value, whether it must stay below the bound, the bound)
        checks: list[tuple[str, float | None, bool, float]] = [
            ("catch-up >= 10x baseline", per["speedup"], False, MIN_SPEEDUP),
            (
                "catch-up >= 70% of the lower ceiling",
                per["ceiling_share"],
                False,
                MIN_CEILING_SHARE,
            ),
            ("peak RSS < 300 MB", catch_up.get("peak_rss_mb"), True, MAX_PEAK_RSS_MB),
        ]
        checks += [
            (
                f"steady-state p95 < 1 s ({density} events/ledger)",
                found.get("p95"),
                True,
                MAX_P95_SECONDS,
            )
            for density, found in latencies.items()
        ]
        for name, value, below, bound in checks:
            if value is None:
                verdict = "not measured"
            else:
                verdict = "met" if (value < bound if below else value >= bound) else "MISSED"
            lines.append(f"{db:>8}: {name}: {verdict}")
    return lines
