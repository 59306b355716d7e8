"""The network record: which Stellar network the stored data came from."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from stellar_reconciler.errors import NetworkMismatchError
from stellar_reconciler.store.database import read_connection, write_transaction
from stellar_reconciler.store.schema import network


class NetworkRecord:
    """The passphrase recorded the first time the service learned it; one per database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def passphrase(self) -> str | None:
        with read_connection(self.engine) as conn:
            value = conn.execute(
                select(network.c.passphrase).where(network.c.id == 1)
            ).scalar_one_or_none()
        return None if value is None else str(value)

    def check(self, offered: str, rpc_url: str) -> None:
        """Raise NetworkMismatchError when a different passphrase is recorded; write nothing."""
        recorded = self.passphrase()
        if recorded is not None and recorded != offered:
            raise NetworkMismatchError(recorded, offered, rpc_url)

    def record(self, offered: str, rpc_url: str) -> None:
        """Record `offered` if nothing is recorded yet; refuse it if another one is."""
        try:
            with write_transaction(self.engine) as conn:
                recorded = conn.execute(
                    select(network.c.passphrase).where(network.c.id == 1)
                ).scalar_one_or_none()
                if recorded is None:
                    conn.execute(
                        insert(network).values(
                            id=1, passphrase=offered, recorded_at=datetime.now(UTC)
                        )
                    )
                    return
        except IntegrityError:
            # Two processes recorded at once (PostgreSQL lets both read "nothing"); the row
            # that won is the one to compare with.
            recorded = self.passphrase()
        if recorded != offered:
            raise NetworkMismatchError(str(recorded), offered, rpc_url)
