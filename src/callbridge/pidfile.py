"""The pid file of a running server: how ``callbridge drain`` finds it.

``callbridge serve`` writes ``DATA_DIR/callbridge.pid`` (JSON: ``pid``, ``url``,
``started_at``) and holds an exclusive ``flock`` on it for as long as it runs; a clean exit
removes it. A file nobody holds was left by a server that crashed (``kill -9``) and names no
running server, whatever process has that pid now. Two servers started with one data
directory: the second runs without a pid file (logged), so ``callbridge drain`` reaches the
first.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["PID_FILE", "PidFile", "ServerInfo", "find_server", "server_running"]

log = logging.getLogger(__name__)

PID_FILE = "callbridge.pid"  # in the data directory


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What a running server wrote in its pid file."""

    pid: int
    url: str  # its HTTP base (for /healthz)
    started_at: str  # ISO 8601


class PidFile:
    """``DATA_DIR/callbridge.pid``: the running server's pid and URL, locked (``flock``) for
    as long as it runs, so that a file left by a crash is recognised as stale. Removed on a
    clean exit."""

    def __init__(self, data_dir: Path, url: str) -> None:
        self.path = data_dir / PID_FILE
        self.url = url
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock and write the file; False (logged) when another server of this data
        directory holds it, or the file cannot be written: the server runs without one."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            log.warning("no pid file (%s): `callbridge drain` cannot find this server", exc)
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            log.warning(
                "another server of data directory %s holds %s; `callbridge drain` reaches "
                "that one, not this one",
                self.path.parent,
                self.path,
            )
            return False
        info = {"pid": os.getpid(), "url": self.url, "started_at": datetime.now(UTC).isoformat()}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode() + b"\n")
        self._fd = fd
        return True

    def release(self) -> None:
        """Remove the file, then drop the lock (a reader never sees a locked, missing file)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(fd)


def find_server(data_dir: Path) -> ServerInfo | None:
    """The server running with ``data_dir``, from its pid file; ``None`` when none runs (no
    file, or a stale one nobody holds).

    :raises ValueError: the file exists, is locked, but cannot be read (not ours?).
    """
    path = data_dir / PID_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:  # held: a server runs
            pass
        else:
            return None  # nobody holds it: left by a server that crashed
        text = os.read(fd, 4096).decode(errors="replace")
    finally:
        os.close(fd)
    try:
        data = json.loads(text)
        return ServerInfo(int(data["pid"]), str(data["url"]), str(data["started_at"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is locked but unreadable ({exc}): {text[:200]!r}") from exc


def server_running(data_dir: Path) -> bool:
    """Whether a server still holds ``data_dir``'s pid file."""
    try:
        return find_server(data_dir) is not None
    except ValueError:
        return True
