"""The leader's lease: one holder of the advisory lock on PostgreSQL, fenced transactions, and
one `reconciler run` per SQLite file."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from stellar_reconciler.errors import DatabaseInUseError, NotLeaderError
from stellar_reconciler.store import AdvisoryLease, FileLease, advertised_url, instance_name
from stellar_reconciler.store.database import create_database_engine, write_transaction
from tests.conftest import PostgresTemplate


@pytest.fixture
def postgres_url(postgres_template: PostgresTemplate) -> Iterator[str]:
    url = postgres_template.clone()
    yield url
    postgres_template.drop(url)


def eventually(attempt: Callable[[], bool], within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while not attempt():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_connection_name_carries_the_advertised_url() -> None:
    """The URL survives the round trip; names of other programs carry none."""
    name = instance_name("http://10.1.2.3:3000/")
    assert advertised_url(name) == "http://10.1.2.3:3000/"
    assert len(instance_name("http://" + "x" * 80)) <= 63
    assert advertised_url("psql") is None
    assert advertised_url(None) is None


@pytest.mark.postgres
def test_one_replica_holds_the_lock_and_the_others_see_who(postgres_url: str) -> None:
    """The first lease wins, the second is refused and names the first; closing hands over."""
    first = AdvisoryLease(postgres_url, instance_name("http://a:1/"), lease_secs=10)
    second = AdvisoryLease(postgres_url, instance_name("http://b:2/"), lease_secs=10)
    try:
        assert first.try_acquire()
        assert not second.try_acquire()
        assert advertised_url(second.holder()) == "http://a:1/"
        assert first.holds() and not second.holds()
        first.close()
        # The server ends the closed session a moment later; a standby simply tries again.
        assert eventually(second.try_acquire) and second.holds()
        assert not first.holds()
    finally:
        first.close()
        second.close()


@pytest.mark.postgres
def test_a_transaction_is_fenced_once_the_lease_has_ended(postgres_url: str) -> None:
    """The fence passes while the lease holds the lock and raises NotLeaderError after."""
    lease = AdvisoryLease(postgres_url, instance_name("http://a:1/"), lease_secs=10)
    engine = create_database_engine(postgres_url)
    try:
        assert lease.try_acquire()
        with write_transaction(engine) as conn:
            lease.fence(conn)
        held_by = lease.pid
        lease.close()
        lease.pid = held_by
        with pytest.raises(NotLeaderError), write_transaction(engine) as conn:
            lease.fence(conn)
    finally:
        lease.close()
        engine.dispose()


@pytest.mark.postgres
def test_a_silent_leader_loses_the_lock_after_its_lease(postgres_url: str) -> None:
    """A holder that sends nothing for LEADER_LEASE_SECS is cut off and another may lead."""
    silent = AdvisoryLease(postgres_url, instance_name("http://a:1/"), lease_secs=2)
    waiting = AdvisoryLease(postgres_url, instance_name("http://b:2/"), lease_secs=2)
    try:
        assert silent.try_acquire()
        assert not waiting.try_acquire()
        time.sleep(2)
        assert eventually(waiting.try_acquire)
        assert not silent.holds()
    finally:
        silent.close()
        waiting.close()


@pytest.mark.postgres
def test_a_new_leader_ends_the_open_writes_of_the_former(postgres_url: str) -> None:
    """A write transaction left open by another replica is ended, so it can never commit."""
    former = instance_name("http://a:1/")
    engine = create_database_engine(postgres_url, application_name=former)
    lease = AdvisoryLease(postgres_url, instance_name("http://b:2/"), lease_secs=10)
    try:
        conn = engine.connect()
        conn.execute(text("CREATE TABLE IF NOT EXISTS scratch (n int)"))
        conn.commit()
        conn.execute(text("INSERT INTO scratch VALUES (1)"))
        assert lease.try_acquire()
        assert lease.evict_writers(former) == 1
        with pytest.raises(Exception, match="terminat"):
            conn.commit()
        conn.invalidate()
        with engine.connect() as check:
            assert check.execute(text("SELECT count(*) FROM scratch")).scalar() == 0
    finally:
        lease.close()
        engine.dispose()


@pytest.mark.postgres
def test_a_service_on_another_database_of_the_server_is_not_ours(
    postgres_template: PostgresTemplate,
) -> None:
    """Two services on two databases of one server: each leads its own, neither sees the
    other as its leader, and a takeover ends no write of the other database."""
    ours_url, theirs_url = postgres_template.clone(), postgres_template.clone()
    theirs = AdvisoryLease(theirs_url, instance_name("http://theirs:1/"), lease_secs=10)
    ours = AdvisoryLease(ours_url, instance_name("http://ours:2/"), lease_secs=10)
    their_engine = create_database_engine(theirs_url, application_name=instance_name("http://t:3/"))
    try:
        assert theirs.try_acquire()
        assert ours.holder() is None
        with their_engine.connect() as conn:
            conn.execute(text("CREATE TABLE scratch (n int)"))
            conn.commit()
            conn.execute(text("INSERT INTO scratch VALUES (1)"))
            assert ours.try_acquire()
            assert ours.evict_writers(None) == 0
            conn.commit()
        assert advertised_url(ours.holder()) == "http://ours:2/"
        assert advertised_url(theirs.holder()) == "http://theirs:1/"
    finally:
        ours.close()
        theirs.close()
        their_engine.dispose()
        postgres_template.drop(ours_url)
        postgres_template.drop(theirs_url)


def test_a_second_process_on_one_sqlite_file_is_refused(tmp_path: Path) -> None:
    """The file lock is exclusive; the refusal names the holder and what to do."""
    first = FileLease.beside(str(tmp_path / "r.db"))
    second = FileLease.beside(str(tmp_path / "r.db"))
    first.acquire()
    try:
        with pytest.raises(DatabaseInUseError, match="own DATABASE_URL"):
            second.acquire()
    finally:
        first.release()
    second.acquire()
    second.release()
