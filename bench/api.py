"""Benchmark: the REST call-control API and webhook delivery of one server on one core.

    .venv/bin/python bench/api.py                     # defaults below
    .venv/bin/python bench/api.py -r 4000 -d 20 -c 32 # more requests, longer, more connections

A fresh server (``callbridge serve``, SQLite, 127.0.0.1) runs pinned to CPU 0
(``sched_setaffinity``); this process — the HTTP client, the softphones that hold the calls and
the webhook receiver — runs on CPU 1. Setup: an API key, an application whose webhooks go to a
receiver in this process, a route to it, ``--calls`` softphones that call the route and are
answered over REST, and a conference of them. Then, printed:

- **latency p50 / p95** of ``--requests`` sequential requests on one keep-alive connection, for
  a store read (``GET /v2/call_control_applications/{id}``), a call command that only touches
  the control plane (``POST .../actions/client_state_update``), and a conference command that
  reaches the mixer (``POST /v2/conferences/{id}/actions/mute`` / ``unmute`` alternately);
- **requests/s** of the call command with ``--connections`` concurrent keep-alive connections
  for ``--duration`` seconds, with the server's CPU use over that time (100 % = its one core);
- **webhook deliveries/s**: every call runs ``gather`` + ``gather_stop`` ``--events`` times as
  fast as it can (each stop is one ``call.gather.ended``); deliveries per second from the first
  command to the last delivery, and the time from a ``gather_stop`` answer to its delivery
  (p50 / p95). Each call's events are one ordering key: they go one at a time, in order, so the
  rate grows with the number of calls (keys) up to the outbox's concurrency.

Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from callbridge.client import Phone, SilenceSource
from callbridge.rtp.webrtc import restrict_ice_addresses
from callbridge.testing.server import Server, create_user
from calls import cpu_seconds, percentile  # the same measures as the calls bench


class RawClient:
    """One keep-alive HTTP/1.1 connection, written by hand: a client cheaper than httpx, so
    that the figures are the server's (the client has one core for itself and the phones)."""

    def __init__(self, port: int, key: str) -> None:
        self.port = port
        self.auth = f"authorization: Bearer {key}\r\n".encode()
        self._io: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        if self._io is None:
            self._io = await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = self._io
        data = b"" if body is None else json.dumps(body).encode()
        head = f"{method} /v2{path} HTTP/1.1\r\nhost: 127.0.0.1\r\n".encode() + self.auth
        if body is not None:
            head += b"content-type: application/json\r\n"
        writer.write(head + f"content-length: {len(data)}\r\n\r\n".encode() + data)
        status = int((await reader.readline()).split()[1])
        length = 0
        while (header := await reader.readline()) not in (b"\r\n", b""):
            if header.lower().startswith(b"content-length:"):
                length = int(header.split(b":")[1])
        answer = await reader.readexactly(length)
        if status >= 300:
            raise RuntimeError(f"{method} {path}: HTTP {status} {answer[:200]!r}")
        return status, answer

    def close(self) -> None:
        if self._io is not None:
            self._io[1].close()


class Receiver:
    """A minimal HTTP/1.1 webhook receiver: answers 200, notes when each event arrived."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, bytes]] = []
        self.arrived = asyncio.Event()
        self.url = ""
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/hook"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readline():
                length = 0
                while (header := await reader.readline()) not in (b"\r\n", b""):
                    if header.lower().startswith(b"content-length:"):
                        length = int(header.split(b":")[1])
                body = await reader.readexactly(length)
                self.arrivals.append((time.perf_counter(), body))
                self.arrived.set()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def setup(
    server: Server, calls: int, receiver: Receiver
) -> tuple[dict[str, str], str, list[str], str, list[Phone]]:
    restrict_ice_addresses(["127.0.0.1"])
    async with server.store() as store:
        key = await store.create_api_key("bench")
        tokens = [
            (await create_user(store, f"caller{i}", str(3000 + i), ttl=timedelta(hours=2))).token
            for i in range(calls)
        ]
    headers = {"authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=f"{server.url}/v2", headers=headers) as client:
        app = (
            await client.post(
                "/call_control_applications",
                json={"application_name": "bench", "webhook_event_url": receiver.url},
            )
        ).json()["data"]
        await client.post("/routes", json={"destination": "5000", "application_id": app["id"]})
        phones, ids = [], []
        for token in tokens:
            phone = Phone(server.ws_url, token)
            await phone.login()
            call = await phone.call("5000", source=SilenceSource())
            await call.wait_for("ringing", timeout=10)
            (await client.post(f"/calls/{call.id}/actions/answer", json={})).raise_for_status()
            await call.wait_for("answered", timeout=10)
            phones.append(phone)
            ids.append(call.id)
        conf = (
            await client.post("/conferences", json={"call_control_id": ids[0], "name": "bench"})
        ).json()["data"]["id"]
    return headers, app["id"], ids, conf, phones


async def sequential(
    client: RawClient, n: int, method: str, path: Any, body: Any = None
) -> list[float]:
    times = []
    for i in range(n):
        target = path(i) if callable(path) else path
        t0 = time.perf_counter()
        await client.request(method, target, body)
        times.append(time.perf_counter() - t0)
    return times


async def throughput(
    port: int, key: str, path: str, connections: int, duration: float, pid: int
) -> tuple[float, float]:
    done = 0
    stop = time.perf_counter() + duration

    async def worker() -> None:
        nonlocal done
        client = RawClient(port, key)
        while time.perf_counter() < stop:
            await client.request("POST", path, {"client_state": "YmVuY2g="})
            done += 1
        client.close()

    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    cpu1, t1 = cpu_seconds(pid), time.perf_counter()
    return done / (t1 - t0), 100 * (cpu1 - cpu0) / (t1 - t0)


async def webhooks(
    http: str, headers: dict[str, str], ids: list[str], events: int, receiver: Receiver, pid: int
) -> tuple[float, list[float], int, float]:
    before = len(receiver.arrivals)
    answered: dict[str, list[float]] = {ccid: [] for ccid in ids}
    async with httpx.AsyncClient(base_url=f"{http}/v2", headers=headers) as c:

        async def one_call(ccid: str) -> None:
            for _ in range(events):
                await c.post(f"/calls/{ccid}/actions/gather", json={"timeout_millis": 60000})
                (await c.post(f"/calls/{ccid}/actions/gather_stop", json={})).raise_for_status()
                answered[ccid].append(time.perf_counter())

        cpu0, t0 = cpu_seconds(pid), time.perf_counter()
        await asyncio.gather(*(one_call(ccid) for ccid in ids))
        total = events * len(ids)
        async with asyncio.timeout(120):
            while (
                sum(b"call.gather.ended" in body for _, body in receiver.arrivals[before:]) < total
            ):
                receiver.arrived.clear()
                await receiver.arrived.wait()
    cpu = 100 * (cpu_seconds(pid) - cpu0) / (time.perf_counter() - t0)
    got = [(t, body) for t, body in receiver.arrivals[before:] if b"call.gather.ended" in body]
    last = got[-1][0] if got else t0
    lags = []
    for ccid in ids:
        mine = [t for t, body in got if ccid.encode() in body]
        lags += [d - a for a, d in zip(answered[ccid], mine, strict=False)]
    return len(got) / (last - t0), lags, len(got), cpu


async def webhook_latency(
    http: str, headers: dict[str, str], ccid: str, events: int, receiver: Receiver
) -> list[float]:
    """One event at a time: ``gather_stop`` answered -> its delivery, with no backlog."""
    lags = []
    async with httpx.AsyncClient(base_url=f"{http}/v2", headers=headers) as c:
        for _ in range(events):
            await c.post(f"/calls/{ccid}/actions/gather", json={"timeout_millis": 60000})
            count = len(receiver.arrivals)
            (await c.post(f"/calls/{ccid}/actions/gather_stop", json={})).raise_for_status()
            t0 = time.perf_counter()
            async with asyncio.timeout(10):
                while len(receiver.arrivals) == count:
                    receiver.arrived.clear()
                    await receiver.arrived.wait()
            lags.append(receiver.arrivals[count][0] - t0)
    return lags


async def main_async(args: argparse.Namespace, server: Server) -> None:
    receiver = Receiver()
    await receiver.start()
    headers, app_id, ids, conf, phones = await setup(server, args.calls, receiver)
    key = headers["authorization"].removeprefix("Bearer ")
    http, port, pid = server.url, server.port, server.pid
    ms = 1000.0
    client = RawClient(port, key)
    rows = []
    for label, method, path, body in (
        ("GET application (store read)", "GET", f"/call_control_applications/{app_id}", None),
        (
            "POST call command (client_state_update)",
            "POST",
            f"/calls/{ids[0]}/actions/client_state_update",
            {"client_state": "YmVuY2g="},
        ),
        (
            "POST conference mute / unmute",
            "POST",
            lambda i: f"/conferences/{conf}/actions/{'unmute' if i % 2 else 'mute'}",
            {},
        ),
    ):
        await sequential(client, 50, method, path, body)  # warm up
        times = await sequential(client, args.requests, method, path, body)
        rows.append((label, percentile(times, 50) * ms, percentile(times, 95) * ms))
    client.close()
    rps, cpu = await throughput(
        port,
        key,
        f"/calls/{ids[0]}/actions/client_state_update",
        args.connections,
        args.duration,
        pid,
    )
    single = await webhook_latency(http, headers, ids[1], 50, receiver)
    rate, lags, delivered, hook_cpu = await webhooks(
        http, headers, ids[1:], args.events, receiver, pid
    )
    for phone in phones:
        await phone.logout()

    print(
        f"\ncallbridge REST API benchmark — {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; server pinned to CPU 0, client on CPU 1"
    )
    print(f"\nsequential requests (one connection, {args.requests} each):")
    print(f"  {'request':44} {'p50':>8} {'p95':>8}")
    for label, p50, p95 in rows:
        print(f"  {label:44} {p50:6.2f}ms {p95:6.2f}ms")
    print(f"\nthroughput, call command, {args.connections} connections, {args.duration:.0f} s:")
    print(f"  {rps:8.0f} requests/s   server CPU {cpu:5.1f} % of its core")
    print("\nwebhooks, one at a time (50): gather_stop answered -> delivered:")
    print(f"  p50 {percentile(single, 50) * ms:.1f} ms, p95 {percentile(single, 95) * ms:.1f} ms")
    print(f"\nwebhooks: {delivered} call.gather.ended over {len(ids) - 1} calls (ordering keys):")
    p50, p95 = percentile(lags, 50) * ms, percentile(lags, 95) * ms
    print(f"  {rate:8.0f} deliveries/s   server CPU {hook_cpu:5.1f} % of its core")
    print(f"  gather_stop answered -> delivered: p50 {p50:.0f} ms, p95 {p95:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-r", "--requests", type=int, default=2000, help="sequential, per kind")
    parser.add_argument("-c", "--connections", type=int, default=16)
    parser.add_argument("-d", "--duration", type=float, default=10.0, help="throughput seconds")
    parser.add_argument("-n", "--calls", type=int, default=9, help="softphone calls (>= 2)")
    parser.add_argument("-e", "--events", type=int, default=100, help="webhooks per call")
    args = parser.parse_args()
    if args.calls < 2:
        parser.error("--calls must be 2 or more (one is the conference, the rest gather)")
    cores = os.sched_getaffinity(0)
    server_cpu, client_cpu = (0, 1) if len(cores) > 1 else (0, 0)
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp), log_level="warning")
        # Pinned before it starts its threads (they inherit the affinity).
        os.sched_setaffinity(server.pid, {server_cpu})
        os.sched_setaffinity(0, {client_cpu})
        try:
            server.wait_ready()
            asyncio.run(main_async(args, server))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
