"""Store fixtures: every test gets a fresh, migrated database on SQLite and on PostgreSQL.

SQLite is a real file in ``tmp_path``. PostgreSQL (``FLEETWAVE_TEST_PG_URL``) gets one schema
per test, named after this test session, dropped afterwards, so parallel runs never collide.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from fleetwave import store

PG_ENV = "FLEETWAVE_TEST_PG_URL"
SESSION_TOKEN = uuid.uuid4().hex[:8]
NOW = datetime(2026, 1, 5, 0, 0, 0, tzinfo=UTC)


@dataclass
class TestDB:
    """A migrated database: its URL, its schema (PostgreSQL), and an engine on it."""

    __test__ = False

    backend: str
    url: str
    schema: str | None
    engine: Engine


def _pg_url() -> str:
    url = os.environ.get(PG_ENV, "").strip()
    if not url:
        pytest.skip(f"{PG_ENV} is not set (PostgreSQL store tests need it)")
    return url


@pytest.fixture(scope="session")
def _pg_admin() -> Iterator[Engine]:
    engine = store.get_engine(_pg_url())
    yield engine
    with engine.begin() as conn:
        leftovers = (
            conn.execute(
                sa.text("SELECT nspname FROM pg_namespace WHERE nspname LIKE :p"),
                {"p": f"fw_store_{SESSION_TOKEN}_%"},
            )
            .scalars()
            .all()
        )
        for schema in leftovers:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


def _make_db(request: pytest.FixtureRequest, backend: str, tmp_path) -> Iterator[TestDB]:  # type: ignore[no-untyped-def]
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
        engine = store.get_engine(url)
        store.upgrade_schema(engine)
        yield TestDB(backend, url, None, engine)
        engine.dispose()
        return
    admin: Engine = request.getfixturevalue("_pg_admin")
    schema = f"fw_store_{SESSION_TOKEN}_{uuid.uuid4().hex[:8]}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = _pg_url()
    engine = store.get_engine(url, schema=schema)
    try:
        store.upgrade_schema(engine)
        yield TestDB(backend, url, schema, engine)
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


BACKENDS = [pytest.param("sqlite", id="sqlite"), pytest.param("pg", id="pg", marks=pytest.mark.pg)]


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path) -> Iterator[TestDB]:  # type: ignore[no-untyped-def]
    """A fresh migrated database, once per backend."""
    yield from _make_db(request, request.param, tmp_path)


@pytest.fixture
def engine(db: TestDB) -> Engine:
    return db.engine
