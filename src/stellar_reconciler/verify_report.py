"""What one verification or gap repair found and did, as the API and the CLI show it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stellar_reconciler.crosscheck import Against
from stellar_reconciler.reconcile import Range


@dataclass
class VerifyReport:
    """What one verification found and did."""

    first_ledger: int
    last_ledger: int
    ledgers_checked: int = 0
    repaired: list[Range] = field(default_factory=list)
    unrepaired: list[Range] = field(default_factory=list)
    chain_breaks: list[int] = field(default_factory=list)
    gaps_filled: list[Range] = field(default_factory=list)
    retention_gaps: list[Range] = field(default_factory=list)
    against: Against = "rpc"
    # One summary per ledger a source was outvoted on (see crosscheck.Finding.summary).
    source_mismatches: list[dict[str, Any]] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (
            self.unrepaired or self.chain_breaks or self.retention_gaps or self.source_mismatches
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "first_ledger": self.first_ledger,
            "last_ledger": self.last_ledger,
            "against": self.against,
            "ledgers_checked": self.ledgers_checked,
            "repaired": [list(r) for r in self.repaired],
            "unrepaired": [list(r) for r in self.unrepaired],
            "chain_breaks": self.chain_breaks,
            "gaps_filled": [list(r) for r in self.gaps_filled],
            "retention_gaps": [list(r) for r in self.retention_gaps],
            "source_mismatches": self.source_mismatches,
            "clean": self.clean,
        }
