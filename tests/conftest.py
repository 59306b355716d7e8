"""Shared fixtures: a fresh database per test on SQLite and on PostgreSQL.

PostgreSQL databases are cloned from a migrated template (CREATE DATABASE ... TEMPLATE), which
takes milliseconds, so every test starts from an empty, fully migrated schema. Without a
reachable PostgreSQL the PostgreSQL half is skipped with a message saying how to enable it,
unless REQUIRE_POSTGRES=1 (as CI sets), which turns the skip into a failure.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from stellar_reconciler.config import sqlalchemy_url
from stellar_reconciler.store import Store
from stellar_reconciler.store.database import create_database_engine
from stellar_reconciler.store.migrate import upgrade

ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
_counter = itertools.count()
_HOW_TO_ENABLE = (
    "PostgreSQL is not reachable at TEST_POSTGRES_URL={url} ({error}); start it (see README) or "
    "point TEST_POSTGRES_URL at a server where this user may CREATE DATABASE"
)


def _with_database(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


class PostgresTemplate:
    """A migrated template database and cheap clones of it."""

    def __init__(self) -> None:
        self.prefix = f"reconciler_test_{os.getpid()}"
        self.template = f"{self.prefix}_tmpl"
        self.created: list[str] = []

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)

    def setup(self) -> None:
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.template}"')
            conn.execute(f'CREATE DATABASE "{self.template}"')
        engine = create_database_engine(sqlalchemy_url(_with_database(ADMIN_URL, self.template)))
        try:
            upgrade(engine)
        finally:
            engine.dispose()

    def clone(self) -> str:
        name = f"{self.prefix}_{next(_counter)}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        self.created.append(name)
        return sqlalchemy_url(_with_database(ADMIN_URL, name))

    def drop(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def teardown(self) -> None:
        with self._admin() as conn:
            for name in [*self.created, self.template]:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[PostgresTemplate]:
    template = PostgresTemplate()
    try:
        template.setup()
    except psycopg.OperationalError as exc:
        message = _HOW_TO_ENABLE.format(url=ADMIN_URL, error=str(exc).splitlines()[0])
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    yield template
    template.teardown()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database: a SQLite file, or a PostgreSQL clone of the template."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'reconciler.db'}"
        engine = create_database_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url
        return
    template: PostgresTemplate = request.getfixturevalue("postgres_template")
    url = template.clone()
    yield url
    template.drop(url)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """A Store on a fresh database, closed after the test."""
    opened = Store.open(database_url)
    yield opened
    opened.close()
