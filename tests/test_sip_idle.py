"""Idle SIP TCP connections (callbridge.sip.transport): closed after the idle timeout unless
RFC 5626 keep-alives flow or something still uses them. Real sockets on 127.0.0.1, a short
timeout."""

from __future__ import annotations

import asyncio
import time

import pytest

from callbridge.sip.transport import IDLE_TIMEOUT, Flow, Transports

pytestmark = pytest.mark.timeout(30)
TIMEOUT = 0.4


async def _closed_within(reader: asyncio.StreamReader, limit: float) -> float | None:
    """Seconds until the server closed the connection (EOF), or None if it stayed open."""
    start = time.monotonic()
    try:
        async with asyncio.timeout(limit):
            while await reader.read(100):
                pass
    except TimeoutError:
        return None
    return time.monotonic() - start


async def test_idle_connections_close_unless_kept_alive_or_in_use() -> None:
    """Three phones connect over TCP: a silent one is closed after about the idle timeout; one
    that sends CRLFCRLF keep-alives (answered CRLF, RFC 5626 §3.5.1) stays open; a silent one
    that the in-use check claims (a registration over it) stays open too."""
    claimed: set[tuple[str, int]] = set()

    async def in_use(flow: Flow) -> bool:
        return flow.remote in claimed

    layer = Transports(lambda data, flow: None, idle_timeout=TIMEOUT)
    layer.in_use.append(in_use)
    host, port = await layer.listen_stream("127.0.0.1", 0)
    try:
        silent_r, silent_w = await asyncio.open_connection(host, port)
        alive_r, alive_w = await asyncio.open_connection(host, port)
        used_r, used_w = await asyncio.open_connection(host, port)
        claimed.add(used_w.get_extra_info("sockname")[:2])

        async def keep_alive() -> None:
            while True:
                alive_w.write(b"\r\n\r\n")
                await asyncio.sleep(TIMEOUT / 3)

        pinger = asyncio.create_task(keep_alive())
        try:
            waited = await _closed_within(silent_r, TIMEOUT * 4)
            assert waited is not None and waited >= TIMEOUT * 0.9, waited
            assert await _closed_within(alive_r, TIMEOUT * 2) is None  # PONGs read meanwhile
            assert await _closed_within(used_r, 0.05) is None
            assert len(layer.flows) == 2
        finally:
            pinger.cancel()
        claimed.clear()  # the registration is gone: the quiet connection goes too
        assert await _closed_within(used_r, TIMEOUT * 4) is not None
        for w in (silent_w, alive_w, used_w):
            w.close()
    finally:
        await layer.close()


def test_the_default_idle_timeout_is_five_minutes() -> None:
    assert IDLE_TIMEOUT == 300.0
    assert Transports(lambda data, flow: None).idle_timeout == IDLE_TIMEOUT
