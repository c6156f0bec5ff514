"""Engines, sessions and schema migrations of the campaign state store.

Where the store is (:func:`store_location`), first match wins:

1. ``FLEETWAVE_DB_URL`` (or a command's ``--db``): any SQLite or PostgreSQL URL. A SQLite
   path must be absolute (``sqlite:////srv/fleetwave/fleetwave.db``; ``~`` is expanded): a
   relative one would put the store wherever the command happens to run, so it is refused.
2. ``FLEETWAVE_HOME``: the SQLite file ``$FLEETWAVE_HOME/fleetwave.db``.
3. the user's data directory: ``$XDG_DATA_HOME/fleetwave/fleetwave.db``, else
   ``~/.local/share/fleetwave/fleetwave.db``.

Never the working directory: two runs of a campaign from two directories must see one
store, or the second would send its in-flight devices a second task. A run refuses a
database without fleetwave's schema and an in-memory one (:func:`open_store_for_run`)
unless asked for a new store. SQLite runs in WAL mode with a busy timeout and foreign keys
on, and every write transaction begins ``IMMEDIATE`` so two processes never dead-end
upgrading a read lock; read-only engines (``get_engine(read_only=True)``, used by
``status`` and ``report``) open the file with ``mode=ro`` and never write, so they work on a
read-only file or directory. PostgreSQL URLs use psycopg 3
(``postgresql+psycopg://user:pass@host:5432/db``). Alembic migrations ship inside the
package (``fleetwave/store/migrations``) and run without an ``alembic.ini``. Database
errors a user can fix (a malformed URL, a file that is not a database, a read-only file, a
directory that cannot be created) become one-line store errors.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DatabaseError,
    IntegrityError,
    NoSuchModuleError,
)
from sqlalchemy.pool import StaticPool
from sqlmodel import Session

from fleetwave.store.errors import (
    DatabaseConfigError,
    DatabaseReadOnlyError,
    NoStoreError,
    SchemaOutOfDateError,
)

__all__ = [
    "DB_FILENAME",
    "DB_URL_ENV",
    "HOME_ENV",
    "StoreLocation",
    "current_revision",
    "default_db_url",
    "ensure_schema_current",
    "get_engine",
    "head_revision",
    "is_memory_url",
    "open_store_for_run",
    "require_existing_store",
    "safe_url",
    "session_scope",
    "sqlite_path",
    "store_fingerprint",
    "store_home",
    "store_location",
    "translate_error",
    "twin_engine",
    "upgrade_schema",
]

log = logging.getLogger(__name__)

DB_URL_ENV = "FLEETWAVE_DB_URL"
HOME_ENV = "FLEETWAVE_HOME"
DB_FILENAME = "fleetwave.db"
SQLITE_BUSY_TIMEOUT_MS = 30_000
_MIGRATIONS = Path(__file__).with_name("migrations")
# the ``schema`` an engine was made with (PostgreSQL), for its twin and its fingerprint
_SCHEMAS: weakref.WeakKeyDictionary[Engine, str] = weakref.WeakKeyDictionary()
_URL_HINT = "write sqlite:////absolute/path/fleetwave.db or postgresql+psycopg://user@host:5432/db"


@dataclass(frozen=True)
class StoreLocation:
    """Where the store is: its URL (may carry a password: show :attr:`shown`) and why there."""

    url: str
    source: str

    @property
    def shown(self) -> str:
        """The URL without its password."""
        return safe_url(self.url)

    def describe(self) -> str:
        """``<url> (<source>)``, for messages."""
        return f"{self.shown} ({self.source})"


def store_home() -> Path:
    """The directory of the default SQLite store (see the module docstring); never the CWD."""
    raw = os.environ.get(HOME_ENV, "").strip()
    if raw:
        home = Path(raw).expanduser()
        if not home.is_absolute():
            raise DatabaseConfigError(
                f"{HOME_ENV}={raw} is a relative path: the store would move with the "
                "working directory",
                hint=f"set {HOME_ENV} to an absolute path, e.g. {Path.cwd() / raw}",
            )
        return home
    xdg = os.environ.get("XDG_DATA_HOME", "").strip()
    if xdg and Path(xdg).is_absolute():  # the XDG spec says to ignore a relative value
        return Path(xdg) / "fleetwave"
    return Path.home() / ".local" / "share" / "fleetwave"


def store_location(url: str | None = None) -> StoreLocation:
    """The store's URL and where it came from: ``url`` (a ``--db`` option), then
    ``FLEETWAVE_DB_URL``, then ``FLEETWAVE_HOME``, then the user's data directory."""
    if url:
        return StoreLocation(url, "--db")
    env = os.environ.get(DB_URL_ENV, "").strip()
    if env:
        return StoreLocation(env, DB_URL_ENV)
    home = store_home()
    if os.environ.get(HOME_ENV, "").strip():
        source = HOME_ENV
    elif (
        os.environ.get("XDG_DATA_HOME", "").strip()
        and Path(os.environ["XDG_DATA_HOME"].strip()).is_absolute()
    ):
        source = "default store under XDG_DATA_HOME"
    else:
        source = f"default store; {DB_URL_ENV} and {HOME_ENV} are unset"
    return StoreLocation(f"sqlite:///{(home / DB_FILENAME).as_posix()}", source)


def default_db_url() -> str:
    """``FLEETWAVE_DB_URL`` if set, else ``fleetwave.db`` under ``FLEETWAVE_HOME``, else
    under the user's data directory (``~/.local/share/fleetwave``); never under the CWD."""
    return store_location().url


def safe_url(engine_or_url: Engine | str | sa.URL) -> str:
    """The URL with its password masked, fit for logs and error messages."""
    if isinstance(engine_or_url, Engine):
        return engine_or_url.url.render_as_string(hide_password=True)
    try:
        return make_url(engine_or_url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def store_fingerprint(engine_or_url: Engine | str | sa.URL) -> str:
    """A short hash naming the store (backend, user, host, port, database, schema; a SQLite
    file by its real path), the same for every process on it (an in-memory one is this
    engine's alone); no password goes into it, and the URL cannot be read back from it."""
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else _parse(engine_or_url)
    backend = url.get_backend_name()
    database = url.database or ""
    if backend == "sqlite" and is_memory_url(url):  # one process's, one engine's database
        database = f":memory:{os.getpid()}:{id(engine_or_url)}"
    elif backend == "sqlite" and not database.startswith("file:"):
        database = os.path.realpath(Path(database).expanduser())
    schema = _SCHEMAS.get(engine_or_url, "") if isinstance(engine_or_url, Engine) else ""
    parts = [backend, url.username or "", url.host or "", str(url.port or ""), database, schema]
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return f"sha256:{digest[:16]}"


def _parse(raw: str | sa.URL) -> sa.URL:
    try:
        return make_url(raw)
    except ArgumentError as exc:
        raise DatabaseConfigError(f"{safe_url(raw)} is not a database URL", hint=_URL_HINT) from exc


def is_memory_url(url: str | sa.URL) -> bool:
    """Whether ``url`` is an in-memory SQLite database (``sqlite://``, ``sqlite:///:memory:``)."""
    parsed = _parse(url)
    if parsed.get_backend_name() != "sqlite" or parsed.host:
        return False
    db = parsed.database or ""
    return (
        db in ("", ":memory:")
        or db.startswith("file::memory:")
        or parsed.query.get("mode") == "memory"
    )


def sqlite_path(url: str | sa.URL) -> Path | None:
    """The file of a SQLite ``url`` (``~`` expanded); None for PostgreSQL or in-memory.

    Raises :class:`DatabaseConfigError` for a SQLite URL with a host part (``sqlite://x.db``)
    or a relative path: the store must not depend on the working directory.
    """
    parsed = _parse(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    if parsed.host:
        raise DatabaseConfigError(
            f"{safe_url(parsed)} is not a valid SQLite URL: {parsed.host!r} is where the host "
            "goes, and SQLite has none",
            hint=f"write three slashes before the path: sqlite:///{Path.cwd() / parsed.host}",
        )
    if is_memory_url(parsed):
        return None
    db = parsed.database or ""
    if db.startswith("file:"):  # a SQLite URI: file:path or file:///path
        db = db[len("file:") :]
        if db.startswith("//"):
            db = db[2:]
    path = Path(db).expanduser()
    if not path.is_absolute():
        raise DatabaseConfigError(
            f"the SQLite path in {safe_url(parsed)} is relative: the store would depend on "
            "the working directory",
            hint=f"write an absolute path, e.g. sqlite:///{Path.cwd() / path}, or unset "
            f"{DB_URL_ENV} to use the default store (`fleetwave db current` shows it)",
        )
    return path


def get_engine(
    url: str | None = None,
    *,
    schema: str | None = None,
    echo: bool = False,
    read_only: bool = False,
) -> Engine:
    """Build an engine for ``url`` (default: :func:`default_db_url`).

    ``schema`` (PostgreSQL only) puts every table in that schema via ``search_path``; tests
    use it to give each session its own schema. ``read_only`` (SQLite) opens the file with
    ``mode=ro``, creates nothing (no directory, no file) and never writes. Raises
    :class:`DatabaseConfigError` for a malformed URL, an unsupported backend, a relative
    SQLite path or a directory that cannot be created.
    """
    raw = url or default_db_url()
    parsed = _parse(raw)
    backend = parsed.get_backend_name()
    if backend == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3, not psycopg2
    try:
        if backend == "sqlite":
            return _sqlite_engine(parsed, echo=echo, read_only=read_only)
        if backend == "postgresql":
            return _pg_engine(parsed, schema=schema, echo=echo)
    except NoSuchModuleError as exc:
        raise DatabaseConfigError(
            f"no driver for database URL {safe_url(parsed)}",
            hint="use sqlite:/// or postgresql+psycopg://",
        ) from exc
    except ArgumentError as exc:
        raise DatabaseConfigError(
            f"{safe_url(parsed)} is not a valid database URL: {str(exc).splitlines()[0]}",
            hint=_URL_HINT,
        ) from exc
    raise DatabaseConfigError(
        f"unsupported database {backend!r} in {safe_url(parsed)}",
        hint="fleetwave supports SQLite and PostgreSQL",
    )


def twin_engine(engine: Engine) -> Engine:
    """Another engine on ``engine``'s database with its own connection pool, so a server
    thread's requests never take the connections a run needs (dispose it when done); an
    in-memory database, which only ``engine`` reaches, is ``engine`` itself; the twin of
    an engine made with ``schema`` uses that schema too."""
    if is_memory_url(engine.url):
        return engine
    return get_engine(engine.url.render_as_string(hide_password=False), schema=_SCHEMAS.get(engine))


def _sqlite_engine(url: sa.URL, *, echo: bool, read_only: bool) -> Engine:
    path = sqlite_path(url)
    kwargs: dict[str, Any] = {}
    if path is None:
        # One shared connection: each new connection to :memory: would be another database.
        kwargs["poolclass"] = StaticPool
    else:
        is_uri = (url.database or "").startswith("file:")
        if not is_uri:
            url = url.set(database=str(path))  # ~ expanded
        if read_only and not is_uri:
            kwargs["creator"] = _read_only_connector(path)
        elif not read_only:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseConfigError(
                    f"cannot create the directory {path.parent} of the SQLite database "
                    f"{path}: {exc.strerror or exc}",
                    hint=f"choose a writable place: set {DB_URL_ENV} or {HOME_ENV}",
                ) from exc
    engine = sa.create_engine(
        url,
        echo=echo,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        **kwargs,
    )
    begin_default = "DEFERRED" if read_only else "IMMEDIATE"

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, open transactions (see _on_begin).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        if not read_only:  # a reader takes the journal mode the writers set
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # IMMEDIATE takes the write lock up front: a transaction that reads then writes can
        # never fail with SQLITE_BUSY half way (busy_timeout waits for the lock instead).
        mode = conn.get_execution_options().get("fleetwave_sqlite_begin", begin_default)
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _read_only_connector(path: Path) -> Any:
    """A connection factory opening ``path`` read-only (``mode=ro``).

    A WAL database needs its ``-shm`` file, which SQLite creates beside the database; in a
    directory this user cannot write (and with no ``-shm`` left by a writer) that fails, so
    the file is then opened as ``immutable``: no writer can be changing it there either.
    """
    base = f"file:{quote(str(path))}"

    def connect() -> sqlite3.Connection:
        timeout = SQLITE_BUSY_TIMEOUT_MS / 1000
        conn = sqlite3.connect(
            f"{base}?mode=ro", uri=True, timeout=timeout, check_same_thread=False
        )
        try:
            conn.execute("PRAGMA schema_version").fetchone()
            return conn
        except sqlite3.OperationalError:
            conn.close()
            if not path.is_file() or _writable(path.parent):
                raise
        log.info("%s: directory not writable, reading the database as immutable", path)
        return sqlite3.connect(
            f"{base}?mode=ro&immutable=1", uri=True, timeout=timeout, check_same_thread=False
        )

    return connect


def _pg_engine(url: sa.URL, *, schema: str | None, echo: bool) -> Engine:
    connect_args: dict[str, Any] = {"connect_timeout": 10}
    if schema:
        if not schema.replace("_", "").isalnum():
            raise DatabaseConfigError(f"invalid schema name {schema!r}", hint="use [A-Za-z0-9_]")
        connect_args["options"] = f"-c search_path={schema}"
    engine = sa.create_engine(url, echo=echo, pool_pre_ping=True, connect_args=connect_args)
    if schema:
        _SCHEMAS[engine] = schema
    return engine


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK)


def require_existing_store(location: StoreLocation) -> None:
    """Raise :class:`NoStoreError` if ``location`` is an in-memory database or a SQLite file
    that does not exist; creates nothing. (Whether it has the schema is checked on open.)"""
    path = sqlite_path(location.url)  # a malformed or relative SQLite URL: a clear error first
    if is_memory_url(location.url):
        raise NoStoreError(
            f"{location.describe()} is an in-memory database: it holds no campaigns",
            hint=f"point {DB_URL_ENV} at the store you run campaigns with",
        )
    if path is not None and not path.exists():
        raise NoStoreError(
            f"no fleetwave store at {path} ({location.source})",
            hint=f"run `fleetwave db upgrade` to create it, or set {DB_URL_ENV} or "
            f"{HOME_ENV} to the store you used before",
        )


def open_store_for_run(url: str | None = None, *, new_store: bool = False) -> Engine:
    """An engine on the store a campaign run may write to; the schema must be current.

    Refused (:class:`NoStoreError`) unless ``new_store``: a SQLite file that does not exist,
    a database without fleetwave's schema, and any in-memory database (what a run records
    there is lost when it ends, so the next run would re-send in-flight devices). With
    ``new_store`` such a store gets the schema. An old schema is always refused
    (:class:`SchemaOutOfDateError`: run ``fleetwave db upgrade``).
    """
    location = store_location(url)
    fix = (
        "run `fleetwave db upgrade` to create it, or `fleetwave run FILE --new-store` to start "
        f"a new store there; or set {DB_URL_ENV} or {HOME_ENV} to the store you used before"
    )
    path = sqlite_path(location.url)  # a malformed or relative SQLite URL: a clear error first
    if is_memory_url(location.url) and not new_store:
        raise NoStoreError(
            f"{location.describe()} is an in-memory database: what a run records there is lost "
            "when it ends, and the next run would send its in-flight devices a second task",
            hint=f"point {DB_URL_ENV} at a file (`fleetwave db upgrade` creates it), or use "
            "`fleetwave run FILE --new-store` for a throw-away store",
        )
    if path is not None and not path.exists() and not new_store:
        raise NoStoreError(f"no fleetwave store at {path} ({location.source})", hint=fix)
    engine = get_engine(location.url)
    try:
        if current_revision(engine) is None:
            if not new_store:
                raise NoStoreError(
                    f"the database at {location.describe()} has no fleetwave schema (empty)",
                    hint=fix,
                )
            upgrade_schema(engine)
            log.warning("new store at %s", location.describe())
        ensure_schema_current(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


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
    except DatabaseError as exc:
        session.rollback()
        mapped = translate_error(engine, exc)
        if mapped is exc:
            raise
        raise mapped from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def translate_error(engine: Engine, exc: DatabaseError) -> Exception:
    """A :class:`StoreError` saying what is wrong with the database and where, for the
    errors a user can fix (unreachable, not a database, read-only); else ``exc`` itself."""
    if isinstance(exc, IntegrityError):
        return exc
    text = str(exc.orig) if exc.orig is not None else str(exc)
    first = text.splitlines()[0] if text else type(exc).__name__
    low = first.lower()
    if engine.url.get_backend_name() == "sqlite" and engine.url.database not in (None, ""):
        path = Path(engine.url.database or "")
        if "malformed" in low:
            return DatabaseConfigError(
                f"the SQLite database {path} is damaged: {first}",
                hint="restore it from a backup (sqlite3 .recover may save its rows)",
            )
        if "file is not a database" in low:
            return DatabaseConfigError(
                f"{path} is not a fleetwave store: {first}",
                hint=f"point {DB_URL_ENV} or --db at a fleetwave store, or move the file "
                "away and run `fleetwave db upgrade`",
            )
        if "readonly" in low or "read-only" in low or "unable to open" in low:
            return _sqlite_open_error(path, first)
        return exc
    if "connection" in low or "unable to open" in low:
        return DatabaseConfigError(
            f"cannot reach the database at {safe_url(engine)}: {first}",
            hint=f"check {DB_URL_ENV} and that the server is running",
        )
    if "read-only" in low or "readonly" in low:
        return DatabaseReadOnlyError(
            f"the database at {safe_url(engine)} is read-only: {first}",
            hint="connect as a user who may write, or use a writable database",
        )
    return exc


def _sqlite_open_error(path: Path, first: str) -> Exception:
    """Say why SQLite could not open or write ``path``: which file or directory is at fault."""
    directory = path.parent
    read_only_hint = (
        "make it writable for this user or choose another store with "
        f"{DB_URL_ENV} or {HOME_ENV}; `fleetwave status` and `fleetwave report` can read it "
        "as it is"
    )
    if not directory.is_dir():
        return DatabaseConfigError(
            f"cannot open the SQLite database {path}: directory {directory} does not exist",
            hint="run `fleetwave db upgrade` to create the store, or fix the path",
        )
    if path.exists() and not _writable(path):
        return DatabaseReadOnlyError(
            f"the SQLite database {path} is read-only ({first})", hint=read_only_hint
        )
    if not _writable(directory):
        return DatabaseReadOnlyError(
            f"the directory {directory} of the SQLite database {path} is read-only: SQLite "
            f"must create {path.name}-wal and {path.name}-shm there ({first})",
            hint=read_only_hint,
        )
    for side in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        if side.exists() and not _writable(side):
            return DatabaseReadOnlyError(
                f"{side} beside the SQLite database is read-only ({first})", hint=read_only_hint
            )
    if "readonly" in first.lower() or "read-only" in first.lower():
        return DatabaseReadOnlyError(
            f"the SQLite database {path} is read-only ({first})", hint=read_only_hint
        )
    return DatabaseConfigError(
        f"cannot open the SQLite database {path}: {first}",
        hint=f"check the path in {DB_URL_ENV} and that this user may read and write it",
    )


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
    except DatabaseError as exc:
        mapped = translate_error(engine, exc)
        if mapped is exc:
            raise
        raise mapped from exc


def upgrade_schema(engine: Engine, revision: str = "head") -> str:
    """Migrate the database to ``revision`` (default: the newest); returns the revision reached."""
    from alembic import command

    try:
        with engine.begin() as conn:
            command.upgrade(_alembic_config(conn), revision)
    except DatabaseError as exc:
        mapped = translate_error(engine, exc)
        if mapped is exc:
            raise
        raise mapped from exc
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
