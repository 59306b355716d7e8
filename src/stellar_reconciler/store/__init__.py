"""Persistence: schema, migrations and the repository, on SQLite and PostgreSQL alike.

Callers outside this package import from here; its modules are its own business.
"""

from stellar_reconciler.store.discrepancies import BLOCKING_KINDS, KINDS, NewDiscrepancy
from stellar_reconciler.store.expectations import ExpectationMatcher, Expectations
from stellar_reconciler.store.lease import AdvisoryLease, FileLease, advertised_url, instance_name
from stellar_reconciler.store.outbox import Publication
from stellar_reconciler.store.outcomes import Answer, DueRecord, TxOutcomes
from stellar_reconciler.store.periods import ProofMaterial
from stellar_reconciler.store.repository import DEFAULT_STREAM, BatchHook, EventQuery, Store
from stellar_reconciler.store.shapes import ShapeWatch

__all__ = [
    "BLOCKING_KINDS",
    "DEFAULT_STREAM",
    "KINDS",
    "AdvisoryLease",
    "Answer",
    "BatchHook",
    "DueRecord",
    "EventQuery",
    "ExpectationMatcher",
    "Expectations",
    "FileLease",
    "NewDiscrepancy",
    "ProofMaterial",
    "Publication",
    "ShapeWatch",
    "Store",
    "TxOutcomes",
    "advertised_url",
    "instance_name",
]
