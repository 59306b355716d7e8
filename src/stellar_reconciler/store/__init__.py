"""Persistence: schema, migrations and the repository, on SQLite and PostgreSQL alike."""

from stellar_reconciler.store.repository import DEFAULT_STREAM, BatchHook, EventQuery, Store

__all__ = ["DEFAULT_STREAM", "BatchHook", "EventQuery", "Store"]
