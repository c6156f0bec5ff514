"""Migrations: the shipped revision builds exactly the models' schema; old schemas are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

from fleetwave import store
from tests.integration.store.conftest import TestDB


def test_migrated_schema_matches_models(db: TestDB) -> None:
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, SQLModel.metadata)
    assert diff == []
    assert store.current_revision(db.engine) == store.head_revision()
    store.ensure_schema_current(db.engine)


def test_wal_busy_timeout_and_foreign_keys_on_sqlite(db: TestDB) -> None:
    if db.backend != "sqlite":
        pytest.skip("SQLite pragmas")
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_upgrade_is_idempotent_and_downgrade_is_refused(db: TestDB) -> None:
    assert store.upgrade_schema(db.engine) == store.head_revision()
    from alembic import command

    with db.engine.begin() as conn:
        command.downgrade(store.db._alembic_config(conn), "base")
    with pytest.raises(store.SchemaOutOfDateError) as err:
        store.ensure_schema_current(db.engine)
    assert err.value.code == "schema_out_of_date"
    assert "fleetwave db upgrade" in str(err.value)
    store.upgrade_schema(db.engine)
    store.ensure_schema_current(db.engine)


def test_empty_database_is_refused_with_a_hint(tmp_path: Path) -> None:
    engine = store.get_engine(f"sqlite:///{tmp_path / 'sub' / 'x.db'}")
    try:
        with pytest.raises(store.SchemaOutOfDateError, match="none \\(empty\\)"):
            store.ensure_schema_current(engine)
    finally:
        engine.dispose()
    assert (tmp_path / "sub").is_dir()  # the parent directory is created


def test_default_url_never_depends_on_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (store.DB_URL_ENV, store.HOME_ENV, "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    seen = set()
    for cwd in (tmp_path, tmp_path / "elsewhere"):
        cwd.mkdir(exist_ok=True)
        monkeypatch.chdir(cwd)
        seen.add(store.default_db_url())
    assert seen == {f"sqlite:///{tmp_path}/user/.local/share/fleetwave/fleetwave.db"}
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert store.default_db_url() == f"sqlite:///{tmp_path}/xdg/fleetwave/fleetwave.db"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/xdg")  # ignored, as the XDG spec says
    assert store.default_db_url().endswith("/user/.local/share/fleetwave/fleetwave.db")
    monkeypatch.setenv(store.HOME_ENV, str(tmp_path / "fw-home"))
    location = store.store_location()
    assert location.url == f"sqlite:///{tmp_path}/fw-home/fleetwave.db"
    assert location.source == store.HOME_ENV
    monkeypatch.setenv(store.DB_URL_ENV, "postgresql+psycopg://u:s3cret@h:5432/d")
    assert store.default_db_url() == "postgresql+psycopg://u:s3cret@h:5432/d"
    assert "s3cret" not in store.safe_url(store.default_db_url())
    assert "s3cret" not in store.store_location().describe()


def test_relative_store_paths_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(store.HOME_ENV, "rel-home")
    with pytest.raises(store.DatabaseConfigError, match="FLEETWAVE_HOME=rel-home is a relative"):
        store.default_db_url()
    for url in ("sqlite:///rel.db", "sqlite:///file:rel.db?mode=ro&uri=true"):
        with pytest.raises(store.DatabaseConfigError, match="is relative") as err:
            store.get_engine(url)
        assert f"sqlite:///{tmp_path}/rel.db" in str(err.value)  # the absolute form to write
    assert list(tmp_path.iterdir()) == []


def test_home_in_a_sqlite_path_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    engine = store.get_engine("sqlite:///~/stores/x.db")
    try:
        store.upgrade_schema(engine)
    finally:
        engine.dispose()
    assert (tmp_path / "stores" / "x.db").is_file()


@pytest.mark.parametrize(
    "url, match",
    [
        ("not a url", "not a database URL"),
        ("sqlite://x.db", "not a valid SQLite URL: 'x.db' is where the host goes"),
        ("mysql://u@h/d", "unsupported database 'mysql'"),
        ("postgresql+nosuchdriver://u:pw@h/d", "no driver"),
    ],
)
def test_bad_urls_are_clear_errors(url: str, match: str) -> None:
    with pytest.raises(store.DatabaseConfigError, match=match) as err:
        store.get_engine(url)
    assert "pw" not in str(err.value)


def test_unreachable_postgres_is_a_clear_error() -> None:
    # port 1 on localhost: nothing listens there
    engine = store.get_engine("postgresql+psycopg://u:topsecret@127.0.0.1:1/d")
    try:
        with pytest.raises(store.DatabaseConfigError, match="cannot reach") as err:
            store.current_revision(engine)
        assert "topsecret" not in str(err.value)
    finally:
        engine.dispose()


def test_tables_exist(db: TestDB) -> None:
    names = set(sa.inspect(db.engine).get_table_names())
    assert {"campaign", "wave", "chunk", "device_run", "device_claim", "event"} <= names


def test_migration_0002_keys_operation_ids_by_connection(db: TestDB) -> None:
    """A store at 0001 with a submitted chunk upgrades in place: the chunk keeps its id with
    an empty connection key, and the same id may then exist once per connection."""
    from alembic import command

    with db.engine.begin() as conn:
        command.downgrade(store.db._alembic_config(conn), "0001_initial")
    assert store.current_revision(db.engine) == "0001_initial"
    ts = "2026-01-05 00:00:00"
    with db.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO campaign (id, name, spec, spec_hash, status, created_at, updated_at)"
                " VALUES (1, 'old', '{}', 'h', 'running', :ts, :ts)"
            ),
            {"ts": ts},
        )
        conn.execute(
            sa.text(
                "INSERT INTO chunk (id, campaign_id, wave_index, round, seq, kind, package_kind,"
                " file_id, policy, device_ids, device_count, status, operation_id, created_at,"
                " updated_at) VALUES (1, 1, 0, 1, 0, 'upgrade', 'firmware', 'f', '{}', '[\"d1\"]',"
                " 1, 'submitted', 'op-1', :ts, :ts)"
            ),
            {"ts": ts},
        )
    store.upgrade_schema(db.engine)
    store.ensure_schema_current(db.engine)
    with store.session_scope(db.engine) as s:
        old = store.get_chunk(s, chunk_id=1)
        assert (old.connection_key, old.operation_id, old.collided_operation_id) == (
            "",
            "op-1",
            None,
        )
    insert = sa.text(
        "INSERT INTO chunk (id, campaign_id, wave_index, round, seq, kind, package_kind, file_id,"
        " policy, device_ids, device_count, status, operation_id, connection_key, created_at,"
        " updated_at) VALUES (:seq + 1, 1, 0, 1, :seq, 'upgrade', 'firmware', 'f', '{}', '[]', 0,"
        " 'submitted', 'op-1', :key, :ts, :ts)"
    )
    with db.engine.begin() as conn:  # the same id on another connection: allowed now
        conn.execute(insert, {"seq": 1, "key": "iodm:h:443/app", "ts": ts})
    with (
        pytest.raises(sa.exc.IntegrityError, match=r"connection_key|uq_chunk_connection_operation"),
        db.engine.begin() as conn,
    ):
        conn.execute(insert, {"seq": 2, "key": "iodm:h:443/app", "ts": ts})
