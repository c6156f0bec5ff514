"""Engines, sessions and schema migrations of the campaign state store.

The database URL comes from ``FLEETWAVE_DB_URL``; unset, it is a SQLite file at
``.fleetwave/fleetwave.db`` under the working directory. SQLite runs in WAL mode with a
busy timeout and foreign keys on, and every write transaction begins ``IMMEDIATE`` so two
processes never dead-end upgrading a read lock. PostgreSQL URLs use psycopg 3
(``postgresql+psycopg://user:pass@host:5432/db``). Alembic migrations ship inside the
package (``fleetwave/store/migrations``) and run without an ``alembic.ini``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlmodel import Session

from fleetwave.store.errors import DatabaseConfigError, SchemaOutOfDateError

__all__ = [
    "DB_URL_ENV",
    "DEFAULT_SQLITE_PATH",
    "current_revision",
    "default_db_url",
    "ensure_schema_current",
    "get_engine",
    "head_revision",
    "safe_url",
    "session_scope",
    "upgrade_schema",
]

log = logging.getLogger(__name__)

DB_URL_ENV = "FLEETWAVE_DB_URL"
DEFAULT_SQLITE_PATH = Path(".fleetwave") / "fleetwave.db"
SQLITE_BUSY_TIMEOUT_MS = 30_000
_MIGRATIONS = Path(__file__).with_name("migrations")


def default_db_url() -> str:
    """``FLEETWAVE_DB_URL`` if set, else the SQLite file ``.fleetwave/fleetwave.db`` in the CWD."""
    url = os.environ.get(DB_URL_ENV, "").strip()
    if url:
        return url
    return f"sqlite:///{(Path.cwd() / DEFAULT_SQLITE_PATH).as_posix()}"


def safe_url(engine_or_url: Engine | str | sa.URL) -> str:
    """The URL with its password masked, fit for logs and error messages."""
    if isinstance(engine_or_url, Engine):
        return engine_or_url.url.render_as_string(hide_password=True)
    try:
        return make_url(engine_or_url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def get_engine(url: str | None = None, *, schema: str | None = None, echo: bool = False) -> Engine:
    """Build an engine for ``url`` (default: :func:`default_db_url`).

    ``schema`` (PostgreSQL only) puts every table in that schema via ``search_path``; tests
    use it to give each session its own schema. Raises :class:`DatabaseConfigError` for a
    malformed URL or an unsupported backend.
    """
    raw = url or default_db_url()
    try:
        parsed = make_url(raw)
    except ArgumentError as exc:
        raise DatabaseConfigError(
            f"{DB_URL_ENV} is not a database URL ({safe_url(raw)})",
            hint="use sqlite:///path/to/file.db or postgresql+psycopg://user@host:5432/db",
        ) from exc
    backend = parsed.get_backend_name()
    if backend == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3, not psycopg2
    try:
        if backend == "sqlite":
            return _sqlite_engine(parsed, echo=echo)
        if backend == "postgresql":
            return _pg_engine(parsed, schema=schema, echo=echo)
    except NoSuchModuleError as exc:
        raise DatabaseConfigError(
            f"no driver for database URL {safe_url(parsed)}",
            hint="use sqlite:/// or postgresql+psycopg://",
        ) from exc
    raise DatabaseConfigError(
        f"unsupported database {backend!r} in {safe_url(parsed)}",
        hint="fleetwave supports SQLite and PostgreSQL",
    )


def _sqlite_engine(url: sa.URL, *, echo: bool) -> Engine:
    db = url.database or ""
    if db and db != ":memory:" and not db.startswith("file:"):
        Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        url,
        echo=echo,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, open transactions (see _on_begin).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # IMMEDIATE takes the write lock up front: a transaction that reads then writes can
        # never fail with SQLITE_BUSY half way (busy_timeout waits for the lock instead).
        mode = conn.get_execution_options().get("fleetwave_sqlite_begin", "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _pg_engine(url: sa.URL, *, schema: str | None, echo: bool) -> Engine:
    connect_args: dict[str, Any] = {"connect_timeout": 10}
    if schema:
        if not schema.replace("_", "").isalnum():
            raise DatabaseConfigError(f"invalid schema name {schema!r}", hint="use [A-Za-z0-9_]")
        connect_args["options"] = f"-c search_path={schema}"
    return sa.create_engine(url, echo=echo, pool_pre_ping=True, connect_args=connect_args)


@contextmanager
def session_scope(engine: Engine, *, read_only: bool = False) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on any exception.

    Objects stay usable after the block (``expire_on_commit=False``). ``read_only`` on SQLite
    begins a deferred transaction so readers never wait for a writer; a read-only scope that
    succeeds ends by closing the session, which releases its transaction without expiring
    (as a rollback would) the rows it returned, so they stay readable after the block.
    """
    bind = engine.execution_options(fleetwave_sqlite_begin="DEFERRED") if read_only else engine
    session = Session(bind=bind, expire_on_commit=False)
    try:
        yield session
        if not read_only:
            session.commit()
    except OperationalError as exc:
        session.rollback()
        raise _unreachable(engine, exc) from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _unreachable(engine: Engine, exc: OperationalError) -> Exception:
    text = str(exc.orig) if exc.orig is not None else str(exc)
    if "connection" in text.lower() or "unable to open" in text.lower():
        return DatabaseConfigError(
            f"cannot reach the database at {safe_url(engine)}: {text.splitlines()[0]}",
            hint=f"check {DB_URL_ENV} and that the server is running",
        )
    return exc


# --------------------------------------------------------------------------------------
# migrations
# --------------------------------------------------------------------------------------


def _alembic_config(connection: sa.Connection | None = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest migration revision this fleetwave ships."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None, "fleetwave ships at least one migration"
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None for an empty database."""
    from alembic.runtime.migration import MigrationContext

    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except OperationalError as exc:
        raise _unreachable(engine, exc) from exc


def upgrade_schema(engine: Engine, revision: str = "head") -> str:
    """Migrate the database to ``revision`` (default: the newest); returns the revision reached."""
    from alembic import command

    try:
        with engine.begin() as conn:
            command.upgrade(_alembic_config(conn), revision)
    except OperationalError as exc:
        raise _unreachable(engine, exc) from exc
    reached = current_revision(engine)
    log.info("database %s is at schema revision %s", safe_url(engine), reached)
    return reached or ""


def ensure_schema_current(engine: Engine) -> None:
    """Refuse to run against a database whose schema is not at this fleetwave's head.

    Raises :class:`SchemaOutOfDateError` (whose message says to run ``fleetwave db upgrade``).
    """
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise SchemaOutOfDateError(url=safe_url(engine), current=current, head=head)
