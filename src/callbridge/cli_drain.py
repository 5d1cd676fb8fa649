"""``callbridge drain``: drain the server running with a data directory, and wait for it.

    callbridge drain [--data-dir DIR] [--timeout SECONDS | --no-wait]

The server (``callbridge serve``) keeps a pid file in its data directory
(:mod:`callbridge.pidfile`). This command reads it and sends that process SIGTERM, which
starts the server's drain (:mod:`callbridge.drain`): no new sessions or calls, the calls that
are up may go on for the server's ``--drain-timeout``, then end with ``hangup``; the webhooks
go out, the server exits 0. Meanwhile the command prints the drain's progress from the
server's ``/healthz`` (one line per change) and returns once the server has stopped.

Exit codes: 0 the server has drained and stopped (with ``--no-wait``: it was told to),
2 no server runs with this data directory or it cannot be signalled, 3 it still runs after
``--timeout`` seconds (it goes on draining), 130 interrupted (the drain goes on).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from callbridge.cli import EXIT_OK, EXIT_USAGE, CommandError, _seconds
from callbridge.config import DEFAULT_DATA_DIR
from callbridge.pidfile import PID_FILE, ServerInfo, find_server, server_running

__all__ = ["EXIT_STILL_RUNNING", "add_drain_command"]

EXIT_STILL_RUNNING = 3
_POLL = 0.25  # seconds between looks at the server while waiting


def add_drain_command(commands: Any, database: argparse.ArgumentParser) -> None:
    """Add ``drain`` to the ``callbridge`` subcommands (``database``: the shared options;
    only ``--data-dir`` matters here, the database is not opened)."""
    drain = commands.add_parser(
        "drain",
        help="drain the running server: finish its calls, then stop it",
        description="Tell the server running with this data directory to drain (SIGTERM): it "
        "takes no new sessions or calls, lets the calls that are up finish for up to its "
        "--drain-timeout, then ends them, sends their webhooks and exits. Waits until it "
        "has stopped, printing progress.",
    )
    drain.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        metavar="DIR",
        help="the server's --data-dir (default: ./%(default)s)",
    )
    wait = drain.add_mutually_exclusive_group()
    wait.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="give up waiting after SECONDS (exit 3; the server goes on draining); "
        "default: wait until it stops",
    )
    wait.add_argument("--no-wait", action="store_true", help="return once the server has been told")
    drain.set_defaults(run=_drain)


def _drain(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir
    server = _find(data_dir)
    try:
        os.kill(server.pid, signal.SIGTERM)
    except ProcessLookupError:
        raise CommandError(f"the server (pid {server.pid}) has just stopped") from None
    except PermissionError:
        raise CommandError(
            f"not allowed to signal the server (pid {server.pid}): run this as the user "
            "that runs callbridge serve"
        ) from None
    print(f"draining the server at {server.url} (pid {server.pid})", flush=True)
    if args.no_wait:
        return EXIT_OK
    return _wait(data_dir, server, args.timeout)


def _find(data_dir: Path) -> ServerInfo:
    try:
        server = find_server(data_dir)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    except OSError as exc:
        raise CommandError(f"cannot read {data_dir / PID_FILE}: {exc}") from exc
    if server is None:
        raise CommandError(
            f"no callbridge server is running with data directory {data_dir} (it has no live "
            f"{PID_FILE}); start one with: callbridge serve --data-dir {data_dir}",
            EXIT_USAGE,
        )
    return server


def _wait(data_dir: Path, server: ServerInfo, timeout: float | None) -> int:
    """Print the drain's progress until the server has stopped (its pid file is free)."""
    end = None if timeout is None else time.monotonic() + timeout
    shown: tuple[object, ...] = ()
    with httpx.Client(timeout=1.0, trust_env=False) as http:
        while server_running(data_dir):
            key, line = _progress(http, server.url)
            if line and key != shown:  # a line when the state or the number of calls changes
                print(line, flush=True)
                shown = key
            if end is not None and time.monotonic() > end:
                print(
                    f"callbridge: the server (pid {server.pid}) is still draining after "
                    f"{timeout:g} s; it goes on",
                    file=sys.stderr,
                )
                return EXIT_STILL_RUNNING
            time.sleep(_POLL)
    print("the server has drained and stopped", flush=True)
    return EXIT_OK


def _progress(http: httpx.Client, url: str) -> tuple[tuple[object, ...], str]:
    """The drain's state and one line about it, from ``/healthz``; "" when the server does
    not answer (it may be stopping)."""
    try:
        health = http.get(f"{url}/healthz").json()
    except (httpx.HTTPError, ValueError):
        return (), ""
    drain = health.get("drain") if isinstance(health, dict) else None
    if not isinstance(drain, dict):
        return (), ""
    state, calls = drain.get("state"), drain.get("calls", 0)
    if state == "draining":
        ends_in = float(drain.get("ends_in", 0))
        line = f"{calls} calls still up; those left are ended in {ends_in:.0f} s"
    elif state == "ending":
        line = "ending the calls still up (hangup)"
    else:
        line = "sending the last webhooks"
    return (state, calls), line
