"""Logs: with ``--log-format json`` every line a real server writes is one JSON object
(uvicorn's start-up and access lines included), and one call's lifecycle lines carry its
``call_id``, who called whom and why it ended; libraries stay quiet at ``--log-level debug``
unless ``--debug-libraries``."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

from callbridge.client import Call, Phone
from callbridge.logs import LIBRARIES, JsonFormatter, configure
from callbridge.testing.server import serve


def json_lines(log: str) -> list[dict[str, Any]]:
    """The log's JSON lines; anything else is a print (the newcomer hint), never a log line."""
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


async def test_one_calls_json_log_lines_carry_its_call_id(tmp_path: Path) -> None:
    args = ["--log-format", "json"]
    async with serve(tmp_path, users=["alice", "bob"], log_level="debug", args=args) as server:
        alice, bob = server.users["alice"], server.users["bob"]
        async with Phone(server.ws_url, alice.token) as a, Phone(server.ws_url, bob.token) as b:
            incoming: asyncio.Queue[Call] = asyncio.Queue()
            b.on("incoming", incoming.put_nowait)
            call = await a.call(bob.extension)
            answering = await asyncio.wait_for(incoming.get(), 5)
            await answering.answer()
            await call.wait_for("answered", timeout=5)
            await call.hangup()
            await answering.wait_for("ended", timeout=5)
        await asyncio.to_thread(server.wait_idle)
        log = server.log()
    lines = json_lines(log)
    for line in lines:
        assert {"ts", "level", "logger", "msg"} <= line.keys(), line
    texts = [line for line in log.splitlines() if line.strip() and not line.startswith("{")]
    assert all(
        t.startswith("callbridge: ") or t.startswith("  ") or "session.login" in t for t in texts
    ), texts
    loggers = {line["logger"] for line in lines}
    assert {"uvicorn.error", "uvicorn.access", "callbridge.calls"} <= loggers
    access = next(line for line in lines if line["logger"] == "uvicorn.access")
    assert access["method"] == "GET" and access["path"] == "/healthz" and access["status"] == 200
    # At debug, libraries stay at WARNING (aiosqlite alone once wrote most of a call's lines).
    assert "callbridge.calls" in loggers and any(line["level"] == "DEBUG" for line in lines)
    roots = {name.split(".")[0] for name in loggers}
    assert not roots & {"aiosqlite", "sqlalchemy", "aioice", "aiortc", "httpx", "websockets"}

    calls = [line for line in lines if line["logger"] == "callbridge.calls"]
    call_ids = {line["call_id"] for line in calls}
    assert call_ids == {call.id}, calls  # the caller's call id is the CDR's and every line's
    steps = [(line["event"], line["user"]) for line in calls]
    assert steps[0] == ("initiated", "alice") and ("ringing", "alice") in steps
    assert {("answered", "alice"), ("answered", "bob"), ("initiated", "bob")} <= set(steps)
    ended = [line for line in calls if line["event"] == "ended"]
    assert {line["reason"] for line in ended} == {"hangup"} and len(ended) == 2
    assert all(line["level"] == "INFO" and line["to"] == bob.extension for line in calls)
    assert all(line["from"] for line in calls)


def test_debug_libraries_lets_libraries_log_at_the_servers_level() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level, {n: logging.getLogger(n).level for n in LIBRARIES}
    try:
        configure("debug", "json", debug_libraries=True)
        assert all(logging.getLogger(n).getEffectiveLevel() == logging.DEBUG for n in LIBRARIES)
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
        configure("info", "text")
        assert logging.getLogger("aiosqlite").getEffectiveLevel() == logging.WARNING
    finally:
        root.handlers[:], level, levels = saved
        root.setLevel(level)
        for name, value in levels.items():
            logging.getLogger(name).setLevel(value)


def test_a_json_line_keeps_fields_and_the_traceback() -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed %s", ("now",), None)
    record.call_id = "c1"
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "failed now" and line["call_id"] == "c1" and line["level"] == "ERROR"
    assert "ValueError: boom" in line["exc"]


def test_an_unknown_log_format_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "callbridge", "serve", "--data-dir", str(tmp_path),
         "--log-format", "xml"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--log-format: invalid choice: 'xml'" in done.stderr and "json" in done.stderr
    assert not (tmp_path / "callbridge.db").exists()  # refused before anything was opened
