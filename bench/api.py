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

``--outbox`` measures the webhook outbox alone, at its ceiling rather than behind the REST layer
(whose ≈ 0.5 ms of CPU per command caps the mode above below 1,000 events/s)::

    .venv/bin/python bench/api.py --outbox                        # 20000 burst, 1000/s for 10 s
    .venv/bin/python bench/api.py --outbox -m 50000 -k 200 --rate 1500

A child process pinned to CPU 0 opens a fresh SQLite store, makes an application with a signing
secret (so every attempt carries the ed25519 and the HMAC signatures) and runs a
``WebhookOutbox`` that delivers to a receiver in this process (CPU 1, a minimal HTTP/1.1 server
on 127.0.0.1). Two phases, each checked for loss and for order per key (``--keys`` ordering
keys, the calls): **burst** — ``--messages`` enqueued while the outbox is stopped, then
delivered as fast as it can (deliveries/s, the child's CPU over the drain); **steady** —
``--rate`` messages/s enqueued for ``--duration`` seconds while it delivers (deliveries/s, the
lag from enqueue to arrival p50 / p95, the child's CPU with the enqueues included).
``--database URL`` runs it on another (empty) database, e.g. PostgreSQL
(``postgresql+asyncpg://…``); ``--fresh-database URL`` creates one on that PostgreSQL server
(and drops it after). When that server runs on this machine and its role may read
``data_directory`` (a superuser, as in ``scripts/_setup.sh``'s throwaway cluster), its CPU
(the postmaster and every backend, ended ones included) is printed per message too, and
``--pin-database`` pins it to the receiver's core (CPU 1), so that the outbox's core is its
own; else it is not counted.
``BENCH_PROFILE=FILE`` writes cProfiles of the burst (FILE) and steady (FILE.steady) phases.

Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
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


# --outbox: the webhook outbox alone ------------------------------------------------------------
class CountingReceiver:
    """HTTP/1.1 receiver for the outbox mode: answers 200 and keeps (wall time, body)."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, bytes]] = []
        self.url = ""

    async def start(self) -> None:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=1024)
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                start = head.lower().find(b"content-length:") + 15
                length = int(head[start : head.find(b"\r\n", start)])
                body = await reader.readexactly(length)
                self.arrivals.append((time.time(), body))
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def check_arrivals(arrivals: list[tuple[float, bytes]], phase: str) -> tuple[list[float], int]:
    """Lags (enqueue -> arrival) of ``phase``'s messages; raises if one is missing or out of
    order within its key. Also how many arrived more than once (at least once allows it)."""
    seen: dict[str, int] = {}
    last: dict[int, int] = {}
    lags, duplicates = [], 0
    for at, body in arrivals:
        data = json.loads(body)["data"]
        payload = data["payload"]
        if payload["phase"] != phase:
            continue
        if data["id"] in seen:
            duplicates += 1
            continue
        seen[data["id"]] = 1
        key, seq = payload["key"], payload["seq"]
        if seq <= last.get(key, -1):
            raise RuntimeError(f"{phase}: key {key} got {seq} after {last[key]}: out of order")
        last[key] = seq
        lags.append(at - payload["t"])
    return lags, duplicates


async def outbox_child(args: argparse.Namespace) -> None:
    """The pinned process: store + outbox; prints one JSON line per phase."""
    from callbridge import outbound
    from callbridge.store import Store
    from callbridge.webhooks import WebhookOutbox, generate_signing_secret

    outbound.configure(allow_webhooks_to=["127.0.0.1"])  # the receiver is on loopback

    store = await Store.open(args.database or f"sqlite+aiosqlite:///{args.child_db}")
    db_pid = await postmaster_pid(store) if args.database else None
    if db_pid is not None and args.pin_database is not None:
        for pid in [db_pid, *children(db_pid)]:  # backends forked later inherit it
            os.sched_setaffinity(pid, {args.pin_database})

    def db_cpu() -> float:
        return 0.0 if db_pid is None else database_cpu(db_pid)

    app = await store.create_application(
        application_name="bench",
        webhook_event_url=args.child_url,
        signing_secret=generate_signing_secret(),
    )
    outbox = await WebhookOutbox.create(store)
    seqs = [0] * args.keys

    def message(i: int, phase: str) -> dict[str, Any]:
        key = i % args.keys
        payload = {"phase": phase, "key": key, "seq": seqs[key], "t": time.time()}
        seqs[key] += 1
        return {
            "event_type": "call.dtmf.received",
            "payload": payload,
            "url": app.webhook_event_url,
            "ordering_key": f"call-{key}",
            "application_id": app.id,
        }

    async def enqueue(first: int, end: int, phase: str) -> None:
        # As the server's WebhookEvents does: the events waiting are written together.
        if not hasattr(outbox, "enqueue_many"):  # the code before batching (a "before" run)
            for i in range(first, end):
                m = message(i, phase)
                await outbox.enqueue(m.pop("event_type"), m.pop("payload"), **m)
            return
        for start in range(first, end, 500):
            await outbox.enqueue_many(
                [message(i, phase) for i in range(start, min(end, start + 500))]
            )

    async def drained(total: int) -> None:
        while outbox.stats.delivered < total:  # noqa: ASYNC110 (a counter, no event to wait on)
            await asyncio.sleep(0.005)

    def report(**values: Any) -> None:
        print(json.dumps(values), flush=True)

    await enqueue(0, args.messages, "burst")
    profile = None
    if os.environ.get("BENCH_PROFILE"):  # cProfiles: the burst phase to FILE, steady to FILE.steady
        import cProfile

        profile = cProfile.Profile()
        profile.enable()
    cpu0, t0, db0 = time.process_time(), time.perf_counter(), db_cpu()
    await outbox.start()
    await drained(args.messages)
    if profile is not None:
        profile.disable()
        profile.dump_stats(os.environ["BENCH_PROFILE"])
    report(
        phase="burst",
        cpu=time.process_time() - cpu0,
        wall=time.perf_counter() - t0,
        db_cpu=None if db_pid is None else db_cpu() - db0,
    )

    steady = round(args.rate * args.duration)
    if profile is not None:  # the steady phase's, to FILE.steady
        profile = cProfile.Profile()
        profile.enable()
    cpu0, t0, db0 = time.process_time(), time.perf_counter(), db_cpu()
    sent = 0
    while sent < steady:  # paced: message i is due at t0 + i / rate; those due go together
        due = min(steady, int((time.perf_counter() - t0) * args.rate) + 1)
        if due > sent:
            await enqueue(sent, due, "steady")
            sent = due
        await asyncio.sleep(0.002)
    await drained(args.messages + steady)
    if profile is not None:
        profile.disable()
        profile.dump_stats(os.environ["BENCH_PROFILE"] + ".steady")
    report(
        phase="steady",
        cpu=time.process_time() - cpu0,
        wall=time.perf_counter() - t0,
        db_cpu=None if db_pid is None else db_cpu() - db0,
    )
    await outbox.stop()
    await store.close()


async def postmaster_pid(store: Any) -> int | None:
    """The local PostgreSQL server's postmaster, if its data directory can be read here."""
    from sqlalchemy import text

    try:
        async with store.engine.connect() as conn:
            directory = (await conn.execute(text("SHOW data_directory"))).scalar_one()
        return int(_stat_file(f"{directory}/postmaster.pid").split("\n", 1)[0])
    except Exception as exc:  # remote, or not allowed: not counted
        print(f"the database server's CPU is not counted: {exc}", file=sys.stderr)
        return None


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and _stat(int(entry))[1] == str(pid):
                found.append(int(entry))
        except OSError:
            pass  # it ended meanwhile
    return found


def _stat_file(path: str) -> str:
    with open(path) as file:
        return file.read()


def _stat(pid: int) -> list[str]:
    return _stat_file(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()


def database_cpu(pid: int) -> float:
    """CPU seconds of a postmaster and its backends: the live ones', and those of the ended
    ones (reaped by the postmaster: its cutime and cstime)."""
    fields = _stat(pid)
    ticks = sum(int(v) for v in fields[11:15])
    for child in children(pid):
        try:
            ticks += sum(int(v) for v in _stat(child)[11:13])
        except OSError:
            pass
    return ticks / os.sysconf("SC_CLK_TCK")


async def fresh_postgres_database(server_url: str) -> tuple[str, Any]:
    """A new empty database on ``server_url``'s PostgreSQL server (its role may CREATE
    DATABASE): its URL, and a coroutine function that drops it."""
    import secrets

    import asyncpg
    from sqlalchemy import make_url

    url = make_url(server_url)
    name = f"callbridge_bench_{secrets.token_hex(4)}"
    plain = url.set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(plain)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()

    async def drop() -> None:
        conn = await asyncpg.connect(plain)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await conn.close()

    return url.set(database=name).render_as_string(hide_password=False), drop


async def outbox_bench(args: argparse.Namespace, server_cpu: int) -> None:
    if args.fresh_database:
        args.database, drop = await fresh_postgres_database(args.fresh_database)
        try:
            await outbox_bench_on(args, server_cpu)
        finally:
            await drop()
    else:
        await outbox_bench_on(args, server_cpu)


async def outbox_bench_on(args: argparse.Namespace, server_cpu: int) -> None:
    mine = sorted(os.sched_getaffinity(0))[0]  # the receiver's core
    receiver = CountingReceiver()
    await receiver.start()
    with tempfile.TemporaryDirectory() as tmp:
        child = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--outbox-child", "--child-db", f"{tmp}/bench.db",
            "--child-url", receiver.url, "-m", str(args.messages), "-k", str(args.keys),
            "--rate", str(args.rate), "-d", str(args.duration),
            *(["--database", args.database] if args.database else []),
            *(["--pin-database", str(mine)] if args.pin_database is not None else []),
            stdout=subprocess.PIPE,
        )  # fmt: skip
        os.sched_setaffinity(child.pid, {server_cpu})
        assert child.stdout is not None
        results = [json.loads(line) async for line in child.stdout]
        if await child.wait() != 0:
            raise RuntimeError(f"the outbox process failed ({child.returncode})")
    print(
        f"\ncallbridge webhook outbox benchmark — {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; outbox pinned to CPU {server_cpu}, "
        f"{'PostgreSQL' if args.database else 'SQLite'}"
        f"{f' pinned to CPU {mine}' if args.pin_database is not None else ''}, "
        f"{args.keys} ordering keys; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    for result in results:
        phase = result["phase"]
        lags, duplicates = check_arrivals(receiver.arrivals, phase)
        count = args.messages if phase == "burst" else round(args.rate * args.duration)
        if len(lags) != count:
            raise RuntimeError(f"{phase}: {len(lags)} of {count} messages arrived")
        rate, cpu = count / result["wall"], 100 * result["cpu"] / result["wall"]
        what = f"{count} enqueued first" if phase == "burst" else f"{args.rate:g}/s offered"
        print(
            f"  {phase:6} ({what}): {rate:7.0f} deliveries/s, CPU {cpu:5.1f} % of its core, "
            f"{1000 * result['cpu'] / count:.2f} ms CPU per message; lag p50 "
            f"{percentile(lags, 50) * 1000:.0f} ms, p95 {percentile(lags, 95) * 1000:.0f} ms; "
            f"in order, {duplicates} duplicates"
        )
        if result.get("db_cpu") is not None:
            print(
                f"         database server CPU {1000 * result['db_cpu'] / count:.2f} ms per "
                f"message ({100 * result['db_cpu'] / result['wall']:.1f} % of a core)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-r", "--requests", type=int, default=2000, help="sequential, per kind")
    parser.add_argument("-c", "--connections", type=int, default=16)
    parser.add_argument("-d", "--duration", type=float, default=10.0, help="throughput seconds")
    parser.add_argument("-n", "--calls", type=int, default=9, help="softphone calls (>= 2)")
    parser.add_argument("-e", "--events", type=int, default=100, help="webhooks per call")
    parser.add_argument("--outbox", action="store_true", help="the webhook outbox alone")
    parser.add_argument("-m", "--messages", type=int, default=20000, help="--outbox: burst size")
    parser.add_argument("-k", "--keys", type=int, default=100, help="--outbox: ordering keys")
    parser.add_argument("--rate", type=float, default=1000.0, help="--outbox: steady msg/s")
    parser.add_argument(
        "--database", help="--outbox: an empty database's URL (default: a new SQLite file)"
    )
    parser.add_argument(
        "--fresh-database",
        metavar="URL",
        help="--outbox: a PostgreSQL server's URL: run on a new database there (dropped after)",
    )
    parser.add_argument(
        "--pin-database",
        nargs="?",
        const=-1,
        type=int,
        help="--outbox: pin the local PostgreSQL server to the receiver's core",
    )
    parser.add_argument("--outbox-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-db", help=argparse.SUPPRESS)
    parser.add_argument("--child-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.outbox_child:
        asyncio.run(outbox_child(args))
        return
    if args.outbox:
        mine = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {mine[-1]})
        asyncio.run(outbox_bench(args, mine[0]))
        return
    if args.calls < 2:
        parser.error("--calls must be 2 or more (one is the conference, the rest gather)")
    cores = os.sched_getaffinity(0)
    server_cpu, client_cpu = (0, 1) if len(cores) > 1 else (0, 0)
    with tempfile.TemporaryDirectory() as tmp:
        # One process (the media is idle here): the figures are the control plane's on one core.
        server = Server(Path(tmp), log_level="warning", args=["--media-workers", "1"])
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
