"""``callbridge backup DEST``: a consistent copy of a data directory, safe while a server runs.

DEST becomes a complete data directory: ``callbridge serve --data-dir DEST`` serves it.

- The SQLite database is copied with SQLite's online backup API (``sqlite3.Connection.backup``):
  a snapshot of one moment, taken under a read transaction, so a running server (WAL mode:
  readers never block its writer) goes on writing meanwhile. The copy is checked
  (``PRAGMA integrity_check``) and is one file, without ``-wal``/``-shm``.
- Recordings and uploaded media are then copied (``recordings/``, ``media/``). The database
  keeps their absolute paths, so the copy's paths are rewritten to DEST: restoring is the same
  command the other way (``callbridge backup --data-dir DEST /var/lib/callbridge``, with the
  server stopped and the old directory moved aside).
- Left out: the pid file, the media-fetch spool (``fetching/``), half-written uploads
  (``*.upload``) and anything else in the directory (logs, for one).

A file the database names but that is gone by the time it is copied (deleted meanwhile) is
reported; a file written after the snapshot is copied too and is simply not referenced.
PostgreSQL has its own tools: for a ``--database-url`` that is not SQLite the command prints
the ``pg_dump`` to run and exits 1 without copying anything.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
from pathlib import Path

from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError

from callbridge.cli import EXIT_DATABASE, EXIT_OK, CommandError
from callbridge.config import database_url_for

__all__ = ["BackupSummary", "add_backup_command", "backup"]

DATABASE = "callbridge.db"
FILE_DIRS = ("recordings", "media")  # what the server writes that the database points at
PATH_COLUMNS = (("media", "path"), ("recordings", "path"))
_SKIPPED_SUFFIXES = (".upload",)  # an upload still being checked (api/media.py)


class BackupSummary:
    """What :func:`backup` copied."""

    def __init__(self) -> None:
        self.database_bytes = 0
        self.files = 0
        self.file_bytes = 0
        self.missing: list[str] = []  # paths the database names that were not there


def add_backup_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    database: argparse.ArgumentParser,
) -> None:
    """Add ``backup`` to the ``callbridge`` subcommands (``database``: the shared options)."""
    backup_cmd = commands.add_parser(
        "backup",
        parents=[database],
        help="copy the database, recordings and media (safe while the server runs)",
        description="Copy the data directory's database (SQLite online backup), recordings "
        "and media into DEST, a new or empty directory that `callbridge serve --data-dir "
        "DEST` can serve. Restore: stop the server, move the data directory aside and run "
        "`callbridge backup --data-dir DEST DATA_DIR`. For PostgreSQL, use pg_dump.",
    )
    backup_cmd.add_argument("dest", type=Path, metavar="DEST", help="where the copy goes")
    backup_cmd.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    url = args.database_url or database_url_for(args.data_dir)
    source = _sqlite_path(url)
    dest: Path = args.dest.expanduser().absolute()
    summary = backup(args.data_dir, source, dest)
    print(
        f"callbridge: backed up {source} ({summary.database_bytes} bytes) and "
        f"{summary.files} recording and media files ({summary.file_bytes} bytes) to {dest}"
    )
    for path in summary.missing:
        print(f"callbridge: warning: {path} is named in the database but was not there")
    print(f"serve it with: callbridge serve --data-dir {dest}")
    return EXIT_OK


def _sqlite_path(url: str) -> Path:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise CommandError(f"cannot parse --database-url: {exc}") from exc
    if parsed.get_backend_name() != "sqlite":
        shown = parsed.render_as_string(hide_password=True)
        raise CommandError(
            f"{shown} is not SQLite: back PostgreSQL up with its own tools, e.g. "
            f"`pg_dump --format=custom --file=callbridge.dump "
            f"{parsed.set(drivername='postgresql').render_as_string(hide_password=True)}` "
            "(restore with pg_restore), and copy the data directory's recordings/ and media/ "
            "(e.g. rsync -a); see docs/operations.md, Backup and restore",
            EXIT_DATABASE,
        )
    if not parsed.database or parsed.database == ":memory:":
        raise CommandError(f"{url} is an in-memory database: there is nothing to back up")
    return Path(parsed.database).absolute()


def backup(data_dir: Path, database: Path, dest: Path) -> BackupSummary:
    """Copy ``database`` and ``data_dir``'s recordings and media into ``dest`` (module
    docstring).

    :raises CommandError: the source is missing, ``dest`` is not new or empty, or a copy failed.
    """
    data_dir = data_dir.absolute()
    if not database.is_file():
        raise CommandError(f"there is no database at {database}: nothing to back up")
    if dest == data_dir or dest.is_relative_to(data_dir):
        raise CommandError(f"{dest} is inside the data directory {data_dir}: choose another")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise CommandError(f"{dest} exists and is not an empty directory: choose a new one")
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    summary = BackupSummary()
    copy = dest / DATABASE
    try:
        _copy_database(database, copy)
        _rewrite_paths(copy, data_dir, dest)
    except sqlite3.Error as exc:
        raise CommandError(f"cannot back up {database}: {exc}", EXIT_DATABASE) from exc
    summary.database_bytes = copy.stat().st_size
    for name in FILE_DIRS:
        _copy_tree(data_dir / name, dest / name, summary)
    summary.missing = _missing_files(copy)
    return summary


def _copy_database(source: Path, copy: Path) -> None:
    # mode=rw: never create a database where there was none; the timeout waits out a write
    # that holds the lock at the moment the snapshot starts.
    src = sqlite3.connect(f"{source.as_uri()}?mode=rw", uri=True, timeout=30)
    try:
        dst = sqlite3.connect(copy)
        try:
            src.backup(dst)  # all pages in one step: one consistent snapshot
            dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
            (result,) = dst.execute("PRAGMA integrity_check").fetchone()
            if result != "ok":
                raise sqlite3.DatabaseError(f"the copy fails its integrity check: {result}")
        finally:
            dst.close()
    finally:
        src.close()


def _rewrite_paths(copy: Path, old: Path, new: Path) -> None:
    """The copy's recordings and media live under ``new``: say so in its rows."""
    prefix = str(old) + os.sep
    with sqlite3.connect(copy) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        for table, column in PATH_COLUMNS:
            if table not in tables:
                continue  # an older schema
            rows = db.execute(f"SELECT rowid, {column} FROM {table}").fetchall()
            for rowid, stored in rows:
                if not isinstance(stored, str):
                    continue
                # Servers before the data directory was made absolute stored paths relative
                # to their working directory, which held the data directory: "callbridge-
                # data/media/x" belongs under `old` too.
                path = stored if os.path.isabs(stored) else str(old.parent / stored)
                if path.startswith(prefix):
                    moved = str(new / path[len(prefix) :])
                    db.execute(
                        f"UPDATE {table} SET {column} = ? WHERE rowid = ?",
                        (moved, rowid),
                    )
    db.close()


def _copy_tree(source: Path, dest: Path, summary: BackupSummary) -> None:
    """Copy a directory the server may be writing to: files that vanish are skipped."""
    if not source.is_dir():
        return
    for folder, _dirs, files in os.walk(source):
        target = dest / Path(folder).relative_to(source)
        target.mkdir(mode=0o700, parents=True, exist_ok=True)
        for name in files:
            if name.endswith(_SKIPPED_SUFFIXES):
                continue
            try:
                shutil.copy2(Path(folder) / name, target / name)
            except FileNotFoundError:
                continue  # deleted while we walked; the database check reports it if needed
            except OSError as exc:
                raise CommandError(f"cannot copy {Path(folder) / name}: {exc}") from exc
            summary.files += 1
            summary.file_bytes += (target / name).stat().st_size


def _missing_files(copy: Path) -> list[str]:
    missing: list[str] = []
    with sqlite3.connect(copy) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        for table, column in PATH_COLUMNS:
            if table in tables:
                query = f"SELECT {column} FROM {table}"
                missing += [p for (p,) in db.execute(query) if not Path(p).exists()]
    db.close()
    return missing
