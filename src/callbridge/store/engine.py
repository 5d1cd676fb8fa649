"""Opening a database: the engine, SQLite's settings for several processes, migrations.

SQLite is shared by the server and the CLI commands, each its own process. So:

* WAL journal: readers never block the writer nor the writer the readers.
* A busy timeout: a writer waits for another process's write to finish instead of failing
  at once with "database is locked".
* SQLAlchemy, not the sqlite3 module, emits BEGIN (the sqlite3 module's legacy mode starts no
  transaction for SELECT or DDL). Transactions that write begin with ``BEGIN IMMEDIATE``,
  taking the write lock up front: a deferred transaction that reads and then writes cannot
  wait for the lock (SQLite returns SQLITE_BUSY at once to avoid a deadlock).

PostgreSQL needs none of this; concurrent start-ups serialise their migrations on an
advisory lock instead.

The SQLite file holds the webhook signing key and login token digests, so it is created 0600
(its WAL and shared-memory files take its mode) and its data directory 0700. An existing
database (and the ``callbridge.db`` data directory around it) that others could read is
tightened on open, with a warning: it may come from a release before this one.

Within one process, migrations also run one at a time (:func:`migrate`): Alembic keeps the
running migration's context in module-level proxies (``alembic.context``, ``alembic.op``), and
async SQLAlchemy runs each migration in a greenlet on the event loop's thread, so two stores
opened at once would interleave their migrations in those proxies (seen as ``KeyError:
'script'`` and tables created twice). The database's lock cannot prevent that: on SQLite,
switching a new file to WAL may fail with "database is locked" without waiting, before any
transaction has begun.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import weakref
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.util.exc import CommandError
from sqlalchemy import Connection, event, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from callbridge.store.errors import SchemaError, StoreError

__all__ = ["MIGRATIONS_DIR", "alembic_config", "create_engine", "migrate", "writer"]

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS = 10_000
_WRITE = "callbridge_write"  # execution option: this transaction will write
# pg_advisory_xact_lock key for migrations: any constant unique to this application.
_PG_MIGRATION_LOCK = 0x63616C6C  # "call"
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
# The database of a data directory (config.database_url_for): only its directory is made
# private; a database named otherwise may live in a directory shared with other things.
DATA_DIR_DATABASE = "callbridge.db"


def create_engine(database_url: str) -> AsyncEngine:
    """An engine for ``database_url``; for a SQLite file, its directory is created."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        # pre_ping: a pooled connection may have died with a database restart.
        return _create(url, pool_pre_ping=True)
    _make_private(url)
    engine = _create(url)
    event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
    event.listen(engine.sync_engine, "begin", _sqlite_on_begin)
    return engine


def _create(url: URL, **options: Any) -> AsyncEngine:
    try:
        return create_async_engine(url, **options)
    except ImportError as exc:
        extra = (
            " (pip install 'callbridge[postgres]')"
            if url.get_backend_name() == "postgresql"
            else ""
        )
        raise StoreError(
            f"the database driver {url.get_driver_name()!r} is not installed{extra}"
        ) from exc


def writer(engine: AsyncEngine) -> AsyncEngine:
    """The same engine (and pool), for transactions that write."""
    return engine.execution_options(**{_WRITE: True})


def _make_private(url: URL) -> None:
    """Create the SQLite file's directory (0700) and the file (0600), or tighten them."""
    database = url.database or ""
    if database in ("", ":memory:") or url.query.get("uri") or database.startswith("file:"):
        return
    path = Path(database).expanduser()
    directory = path.parent
    if not directory.exists():
        directory.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    elif path.name == DATA_DIR_DATABASE:
        _tighten(directory, PRIVATE_DIR)
    try:  # an empty file is an empty SQLite database; SQLite would create it with the umask
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE))
    except FileExistsError:
        pass
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if file.exists():
            _tighten(file, PRIVATE_FILE)


def _tighten(path: Path, mode: int) -> None:
    """Take group and world access away from ``path`` if this user owns it (never from a
    sticky directory such as /tmp)."""
    st = path.stat()
    if st.st_uid != os.geteuid() or st.st_mode & stat.S_ISVTX or not st.st_mode & 0o077:
        return
    log.warning(
        "%s could be read by other users (mode %o): changed to %o",
        path,
        stat.S_IMODE(st.st_mode),
        mode,
    )
    path.chmod(mode)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN, see _sqlite_on_begin
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")  # persistent: stored in the file
        # WAL + NORMAL: a commit is in the WAL before it returns, so a killed process (kill -9,
        # a crash) loses nothing; fsync waits for checkpoints, so power loss or an OS crash
        # may roll back the last commits (never corrupting the file). FULL cost ~2.6 ms of
        # fsync per commit here and capped webhook delivery (docs/benchmarks.md); PostgreSQL
        # is the choice where power loss must lose nothing (docs/operations.md).
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _sqlite_on_begin(connection: Connection) -> None:
    immediate = connection.get_execution_options().get(_WRITE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, built in code: no alembic.ini is needed on disk."""
    config = Config()
    # ConfigParser interpolates '%': a path containing one must be escaped.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


_MIGRATING: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


async def migrate(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` in one transaction.

    Several processes may start at once: on SQLite the write lock taken by BEGIN IMMEDIATE
    makes the others wait, on PostgreSQL an advisory lock does; the later ones then find the
    schema current and do nothing. In one process, one migration runs at a time (see the
    module docstring).
    """
    lock = _MIGRATING.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    async with lock:
        await _migrate(engine, revision)


async def _migrate(engine: AsyncEngine, revision: str) -> None:
    async with writer(engine).begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
            )
        try:
            await conn.run_sync(_upgrade, revision)
        except CommandError as exc:
            # Typically a database written by a newer callbridge ("Can't locate revision").
            raise SchemaError(
                f"cannot migrate the database schema ({exc}); "
                "was it written by a newer version of callbridge?"
            ) from exc


def _upgrade(connection: Connection, revision: str) -> None:
    before = MigrationContext.configure(connection).get_current_revision()
    command.upgrade(alembic_config(connection), revision)
    after = MigrationContext.configure(connection).get_current_revision()
    if after != before:
        log.info("database schema migrated from %s to %s", before or "nothing", after)
