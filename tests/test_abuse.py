"""Abuse from the network, each bound with its specific error while others are still served
(issue 10 defects 1, 4, 5 and 7; docs/security.md, "Abuse: connections, logins, logging").

Every client here talks to a real server over loopback. Per-source limits need more than one
source: an attacker binds its socket to 127.0.0.2 (or .3, .4, …: all of 127.0.0.0/8 is this
machine's loopback), while the bystander uses 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import stat
import subprocess
import sys
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import websockets

from callbridge.abuse import LOG_BURST, LogThrottle
from callbridge.client import BufferSink, CallMedia, ToneSource
from callbridge.testing.server import Server, running
from conftest import RawClient
from test_limits import call_and_answer

pytestmark = pytest.mark.timeout(120)

MAX_CONNECTIONS = 3
MAX_FAILURES = 3
MAX_BODY = 64 * 1024
MAX_UPLOAD = 256 * 1024
MAX_SDP_BYTES = 6000
MAX_SDP_MEDIA = 2
MAX_CANDIDATES = 4
GRACE = 2.0
# docs/security.md gives fail2ban this filter; a line the server logs must match it.
FAIL2BAN = re.compile(
    r"WARNING\s+callbridge\.abuse: (?:login failed|refused) from (?P<host>[0-9a-fA-F.:]+): "
)


@pytest.fixture(scope="module")
def bounded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    args = [
        "--max-connections-per-source", str(MAX_CONNECTIONS),
        "--login-failures-per-minute", str(MAX_FAILURES),
        "--max-body-bytes", "64k",
        "--max-upload-bytes", "256k",
        "--max-sdp-bytes", str(MAX_SDP_BYTES),
        "--max-sdp-media", str(MAX_SDP_MEDIA),
        "--max-candidates-per-leg", str(MAX_CANDIDATES),
    ]  # fmt: skip
    with running(tmp_path_factory.mktemp("abuse"), session_grace=GRACE, args=args) as srv:
        yield srv  # checked clean on the way out: no session, leg, endpoint or traceback


_open: list[RawClient] = []


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    """Close every socket a test opened, also when it fails (the per-source limit counts
    them)."""
    yield
    while _open:
        await _open.pop().close()


async def connect(server: Server, source: str = "127.0.0.1") -> RawClient:
    ws = await websockets.connect(server.ws_url, local_addr=(source, 0), max_size=2**22)
    client = RawClient(ws)
    _open.append(client)
    return client


def http(server: Server, source: str = "127.0.0.1", key: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.AsyncClient(
        base_url=server.url,
        headers=headers,
        timeout=10,
        transport=httpx.AsyncHTTPTransport(local_address=source),
    )


async def closed(client: RawClient) -> tuple[int | None, str | None]:
    await asyncio.wait_for(client.ws.wait_closed(), 10)
    return client.ws.close_code, client.ws.close_reason


def log_lines(server: Server, since: int, text: str) -> list[str]:
    return [line for line in server.log()[since:].splitlines() if text in line]


# connections per source -------------------------------------------------------------------
async def test_a_source_over_its_connection_limit_is_closed_with_1008_and_others_connect(
    bounded: Server,
) -> None:
    since = len(bounded.log())
    held = [await connect(bounded, "127.0.0.2") for _ in range(MAX_CONNECTIONS)]
    extra = await connect(bounded, "127.0.0.2")
    assert await closed(extra) == (
        1008,
        f"too many connections from 127.0.0.2: at most {MAX_CONNECTIONS} "
        "(--max-connections-per-source)",
    )
    bystander = await bounded.add_user("conn-bystander")
    other = await connect(bounded)  # another source is not affected
    await other.login(bystander.token)
    await other.close()
    await held[0].close()  # a slot of 127.0.0.2 frees up
    again = await connect(bounded, "127.0.0.2")
    await again.login(bystander.token)
    for client in [again, *held[1:]]:
        await client.close()
    (line,) = log_lines(bounded, since, "too many connections")
    assert FAIL2BAN.search(line)["host"] == "127.0.0.2"  # type: ignore[index]


# failed logins ----------------------------------------------------------------------------
async def test_failed_ws_logins_are_logged_for_fail2ban_and_then_refused_with_rate_limited(
    bounded: Server,
) -> None:
    since = len(bounded.log())
    user = await bounded.add_user("ws-victim")
    guesser = await connect(bounded, "127.0.0.3")
    for n in range(MAX_FAILURES):
        await guesser.send({"type": "session.login", "req_id": f"g{n}", "token": f"guess{n}"})
        assert (await guesser.expect("error", req_id=f"g{n}"))["code"] == "invalid_token"
    # Over the limit even the right token is refused, and the socket is closed.
    await guesser.send({"type": "session.login", "req_id": "right", "token": user.token})
    refused = await guesser.expect("error", req_id="right")
    assert refused["code"] == "rate_limited"
    assert refused["message"].startswith("too many failed logins from 127.0.0.3: try again in ")
    code, reason = await closed(guesser)
    assert code == 1008 and reason and reason.startswith("too many failed logins from 127.0.0.3")
    # The same user from another address logs in at once.
    elsewhere = await connect(bounded)
    await elsewhere.login(user.token)
    await elsewhere.send({"type": "session.logout", "req_id": "out"})
    await elsewhere.expect("session.disconnected")
    await elsewhere.close()

    failed = log_lines(bounded, since, "login failed from 127.0.0.3")
    assert len(failed) == MAX_FAILURES
    assert all("ws: session.login: invalid_token" in line for line in failed)
    assert {FAIL2BAN.search(line)["host"] for line in failed} == {"127.0.0.3"}  # type: ignore[index]
    assert user.token not in bounded.log() and "guess0" not in bounded.log()


async def test_a_flood_of_refused_logins_writes_a_few_lines_not_one_each(bounded: Server) -> None:
    since = len(bounded.log())
    for n in range(MAX_FAILURES + 12):
        client = await connect(bounded, "127.0.0.4")
        await client.send({"type": "session.login", "req_id": "x", "token": f"flood{n}"})
        await client.expect("error", req_id="x")
        await client.close()
    assert len(log_lines(bounded, since, "login failed from 127.0.0.4")) == MAX_FAILURES
    refusals = log_lines(bounded, since, "refused from 127.0.0.4: ws")
    assert len(refusals) == LOG_BURST  # 12 refusals, 5 lines; the rest are summarised
    assert "Traceback" not in bounded.log()[since:]


def test_held_back_lines_are_summarised_when_the_minute_is_over() -> None:
    import logging

    now = [0.0]
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger("test_abuse.throttle")
    logger.addHandler(Keep())
    logger.propagate = False
    throttle = LogThrottle(logger, burst=2, window=60.0, clock=lambda: now[0])
    for n in range(534):
        throttle.log(logging.WARNING, ("k",), "login failed from 192.0.2.1", "line %d", n)
    assert records == ["line 0", "line 1"]
    now[0] = 61.0
    throttle.log(logging.WARNING, ("k",), "login failed from 192.0.2.1", "line %d", 999)
    assert records[2:] == [
        "login failed from 192.0.2.1: … 532 more in the last minute",
        "line 999",
    ]


async def test_rest_401s_with_a_key_count_as_failed_logins_and_then_get_429(
    bounded: Server,
) -> None:
    since = len(bounded.log())
    key = await bounded.api_key()
    async with http(bounded, "127.0.0.5", key="KEYguess") as guesser:
        for _ in range(MAX_FAILURES):
            assert (await guesser.get("/v2/media")).status_code == 401
        blocked = await guesser.get("/v2/media", headers={"Authorization": f"Bearer {key}"})
    assert blocked.status_code == 429
    assert 1 <= int(blocked.headers["retry-after"]) <= 60
    (error,) = blocked.json()["errors"]
    assert error["detail"].startswith("too many failed logins from 127.0.0.5: try again in ")
    async with http(bounded, key=key) as bystander:  # 127.0.0.1 is served
        assert (await bystander.get("/v2/media")).status_code == 200
    async with http(bounded, "127.0.0.6") as keyless:  # no key at all is no guess
        for _ in range(MAX_FAILURES + 1):
            assert (await keyless.get("/v2/media")).status_code == 401
    failed = log_lines(bounded, since, "login failed from")
    assert len(failed) == MAX_FAILURES
    assert all("from 127.0.0.5: rest: GET /v2/media: 401" in line for line in failed)
    assert "KEYguess" not in bounded.log()


# request bodies ---------------------------------------------------------------------------
async def raw_http(server: Server, head: str, body_chunks: AsyncIterator[bytes] | None) -> str:
    """Send a request by hand (a body that never ends, if need be); the response's head."""
    reader, writer = await asyncio.open_connection(server.host, server.port)

    async def feed() -> None:
        if body_chunks is not None:
            async for chunk in body_chunks:
                writer.write(chunk)
                await writer.drain()

    writer.write(head.encode())
    feeder = asyncio.create_task(feed())
    try:
        head_bytes = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        length = int(re.search(rb"content-length: (\d+)", head_bytes, re.I)[1])  # type: ignore[index]
        body = await asyncio.wait_for(reader.readexactly(length), 10)
    finally:
        feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)
        writer.close()
    return (head_bytes + body).decode()


async def test_a_huge_content_length_is_413_at_once_without_a_key_or_a_body(
    bounded: Server,
) -> None:
    since = len(bounded.log())
    head = (
        f"POST /v2/calls HTTP/1.1\r\nHost: {bounded.host}\r\nContent-Type: application/json\r\n"
        "Content-Length: 104857600\r\n\r\n"
    )
    response = await raw_http(bounded, head, None)  # not one byte of the 100 MB is sent
    assert response.startswith("HTTP/1.1 413 ")
    detail = json.loads(response.split("\r\n\r\n", 1)[1])["errors"][0]["detail"]
    assert detail == (
        f"a request body is at most {MAX_BODY} bytes (--max-body-bytes); "
        "this one is 104857600 bytes or more"
    )
    (line,) = log_lines(bounded, since, "refused from 127.0.0.1: rest: 413")
    assert FAIL2BAN.search(line)


async def test_a_chunked_body_is_cut_off_at_the_limit(bounded: Server) -> None:
    async def endless() -> AsyncIterator[bytes]:
        chunk = b"[" + b" " * 16382 + b"]"
        for _ in range(4 * MAX_BODY // len(chunk)):
            yield b"%x\r\n%s\r\n" % (len(chunk), chunk)
        await asyncio.Event().wait()  # the last chunk never comes: only a cut-off answers

    head = (
        f"POST /v2/calls HTTP/1.1\r\nHost: {bounded.host}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    response = await raw_http(bounded, head, endless())
    assert response.startswith("HTTP/1.1 413 ")
    assert "--max-body-bytes" in response


async def test_deep_json_bodies_are_refused_before_parsing_and_the_api_goes_on(
    bounded: Server,
) -> None:
    since = len(bounded.log())
    key = await bounded.api_key()
    deep = '{"to": ' + "[" * 5000 + "]" * 5000 + "}"
    async with http(bounded, key=key) as api:
        for _ in range(20):
            r = await api.post(
                "/v2/calls", content=deep, headers={"Content-Type": "application/json"}
            )
            assert r.status_code == 400
            assert "nests more than 32 levels" in r.json()["errors"][0]["detail"]
        assert (await api.get("/v2/media")).status_code == 200
    tail = bounded.log()[since:]
    assert "Traceback" not in tail and "RecursionError" not in tail


async def test_media_uploads_have_their_own_limit(bounded: Server) -> None:
    key = await bounded.api_key()
    async with http(bounded, key=key) as api:
        big = await api.post(
            "/v2/media", files={"media": ("big.wav", b"\0" * (MAX_UPLOAD + 100 * 1024))}
        )
        assert big.status_code == 413
        assert "--max-upload-bytes" in big.json()["errors"][0]["detail"]
        # Over the JSON limit but under the upload limit: the API sees it (not audio: 422).
        small = await api.post("/v2/media", files={"media": ("x.wav", b"\0" * 2 * MAX_BODY)})
        assert small.status_code != 413


# SDP, candidates, a=mid -------------------------------------------------------------------
async def offer_sdp() -> str:
    media = CallMedia(source=ToneSource(440.0), sink=BufferSink())
    try:
        return await media.create_offer()
    finally:
        await media.close()


def duplicate_audio_section(sdp: str, *, same_mid: bool) -> str:
    head, _, audio = sdp.partition("m=audio")
    section = "m=audio" + audio
    second = section if same_mid else re.sub(r"a=mid:\S+", "a=mid:dup", section)
    return head + section + second


async def test_oversized_and_many_section_offers_are_refused_before_parsing(
    bounded: Server,
) -> None:
    alice, bob = await bounded.add_users(["sdp-alice", "sdp-bob"])
    sdp = await offer_sdp()
    client = await connect(bounded)
    await client.login(alice.token)
    padded = sdp + "a=x-padding:" + "x" * MAX_SDP_BYTES + "\r\n"
    too_many = duplicate_audio_section(duplicate_audio_section(sdp, same_mid=False), same_mid=False)
    for kind, body in [("call.create", {"destination": bob.extension}), ("conference.start", {})]:
        await client.send({"type": kind, "req_id": "big", "sdp": padded, **body})
        big = await client.expect("error", req_id="big")
        assert big["code"] == "invalid_sdp"
        assert f"the server takes at most {MAX_SDP_BYTES} (--max-sdp-bytes)" in big["message"]
        await client.send({"type": kind, "req_id": "many", "sdp": too_many, **body})
        many = await client.expect("error", req_id="many")
        assert many["code"] == "invalid_sdp"
        assert many["message"].startswith("the SDP has 4 m= lines (media sections)")
    # As in the report: 500 m-lines (its 58 KB offer cost 0.75 s of the event loop to parse).
    section = "m=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=mid:{n}\r\n"
    huge = sdp.split("m=audio")[0] + "".join(section.format(n=n) for n in range(500))
    await client.send({"type": "call.create", "req_id": "huge", "sdp": huge,
                       "destination": bob.extension})  # fmt: skip
    assert (await client.expect("error", req_id="huge"))["code"] == "invalid_sdp"
    await client.send({"type": "session.logout", "req_id": "out"})
    await client.expect("session.disconnected")
    await client.close()
    await call_and_answer(bounded, "sdp-carol", "sdp-dave")  # others call as usual


async def test_offers_with_a_duplicated_mid_get_invalid_sdp_and_leave_no_endpoint(
    bounded: Server,
) -> None:
    alice, bob = await bounded.add_users(["mid-alice", "mid-bob"])
    bad = duplicate_audio_section(await offer_sdp(), same_mid=True)
    since = len(bounded.log())
    client = await connect(bounded)
    await client.login(alice.token)
    for n in range(40):
        kind, extra = (
            ("call.create", {"destination": bob.extension}) if n % 2 else ("conference.start", {})
        )
        await client.send({"type": kind, "req_id": f"m{n}", "sdp": bad, **extra})
        error = await client.expect("error", req_id=f"m{n}")
        assert error["code"] == "invalid_sdp"
        assert error["message"].startswith("duplicate a=mid:0 in the offer")
    health = bounded.health()
    assert (health["media_endpoints"], health["legs"]) == (0, 0)
    await client.send({"type": "session.logout", "req_id": "out"})
    await client.expect("session.disconnected")
    await client.close()
    assert "Traceback" not in bounded.log()[since:]


async def test_candidates_past_the_limit_are_refused_and_the_call_goes_on(
    bounded: Server,
) -> None:
    alice, bob = await bounded.add_users(["ice-alice", "ice-bob"])
    caller, callee = await connect(bounded), await connect(bounded)
    await caller.login(alice.token)
    await callee.login(bob.token)
    await caller.send(
        {"type": "call.create", "req_id": "c", "destination": bob.extension,
         "sdp": await offer_sdp()}
    )  # fmt: skip
    call_id = (await caller.expect("call.trying", req_id="c"))["call_id"]
    incoming = await callee.expect("call.incoming")
    for n in range(MAX_CANDIDATES + 3):
        candidate = f"candidate:{n} 1 udp 2130706431 127.0.0.1 {40000 + n} typ host"
        await caller.send(
            {"type": "ice.candidate", "req_id": f"i{n}", "call_id": call_id,
             "candidate": candidate, "sdp_mid": "0", "sdp_m_line_index": 0}
        )  # fmt: skip
    for n in range(MAX_CANDIDATES, MAX_CANDIDATES + 3):
        error = await caller.expect("error", req_id=f"i{n}")
        assert error["code"] == "invalid_candidate"
        assert error["message"] == (
            f"call {call_id} has {MAX_CANDIDATES} ICE candidates, the most one call may "
            "trickle (--max-candidates-per-leg); this one is ignored and the call goes on "
            "with those it has"
        )
    assert not [m for m in caller.inbox if m.get("type") == "error"]  # the first four were fine
    await caller.send({"type": "call.hangup", "req_id": "h", "call_id": call_id})
    await callee.expect("call.ended", call_id=incoming["call_id"])
    for client in (caller, callee):
        await client.send({"type": "session.logout", "req_id": "out"})
        await client.expect("session.disconnected")
        await client.close()


# one connection, a slow request -----------------------------------------------------------
def tone_wav(seconds: float = 0.5, rate: int = 8000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return out.getvalue()


class SlowSite:
    """An HTTP server on 127.0.0.1 whose WAV comes only when the test says so."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.requested = asyncio.Event()
        self.wav = tone_wav()
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> SlowSite:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/slow.wav"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.requested.set()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(self.wav)
            )
            writer.write(self.wav[:8])
            await writer.drain()
            await self.release.wait()
            writer.write(self.wav[8:])
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def test_a_slow_conference_play_does_not_hold_up_a_hold_on_another_call(
    bounded: Server,
) -> None:
    host_user, bob_user = await bounded.add_users(["slow-host", "slow-bob"])
    host, bob = await connect(bounded), await connect(bounded)
    await host.login(host_user.token)
    await bob.login(bob_user.token)
    conf_media, call_media, bob_media = (
        CallMedia(source=ToneSource(f), sink=BufferSink()) for f in (300.0, 500.0, 700.0)
    )
    try:
        await host.send({"type": "conference.start", "req_id": "c",
                         "sdp": await conf_media.create_offer()})  # fmt: skip
        started = await host.expect("conference.started", req_id="c")
        answered = await host.expect("sdp.answer", call_id=started["call_id"])
        await conf_media.accept_answer(answered["sdp"])
        conference_id = started["conference_id"]
        await host.send({"type": "call.create", "req_id": "k", "destination": bob_user.extension,
                         "sdp": await call_media.create_offer()})  # fmt: skip
        call_id = (await host.expect("call.trying", req_id="k"))["call_id"]
        await call_media.accept_answer((await host.expect("sdp.answer", call_id=call_id))["sdp"])
        incoming = await bob.expect("call.incoming")
        answer = await bob_media.answer_offer(incoming["sdp"])
        await bob.send({"type": "call.answer", "call_id": incoming["call_id"], "sdp": answer})
        await host.expect("call.answered", call_id=call_id)

        async with SlowSite() as site:
            await host.send({"type": "conference.play", "req_id": "play",
                             "conference_id": conference_id, "audio_url": site.url})  # fmt: skip
            await asyncio.wait_for(site.requested.wait(), 10)  # the play is under way, stalled
            await host.send({"type": "call.hold", "req_id": "hold", "call_id": call_id})
            await host.expect("call.held", call_id=call_id, by="local")
            assert not [m for m in host.inbox if m.get("req_id") == "play"]  # still loading
            site.release.set()
            played = await host.expect("conference.play", req_id="play", within=15)
        assert played["conference_id"] == conference_id
        await host.send({"type": "call.hangup", "call_id": call_id})
        await bob.expect("call.ended", call_id=incoming["call_id"])
        await host.send({"type": "conference.end", "req_id": "e", "conference_id": conference_id})
        await host.expect("conference.ended")
    finally:
        for media in (conf_media, call_media, bob_media):
            await media.close()
        for client in (host, bob):
            await client.send({"type": "session.logout", "req_id": "out"})
            await client.expect("session.disconnected")
            await client.close()


# files ------------------------------------------------------------------------------------
def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_fresh_data_dir_is_0700_and_its_database_0600(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh" / "data"
    result = subprocess.run(
        [sys.executable, "-m", "callbridge", "users", "add", "alice", "--extension", "1001",
         "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert mode(data_dir) == 0o700
    db = data_dir / "callbridge.db"
    assert mode(db) == 0o600
    for extra in (db.with_name("callbridge.db-wal"), db.with_name("callbridge.db-shm")):
        if extra.exists():
            assert mode(extra) == 0o600


def test_an_existing_readable_data_dir_is_tightened_with_a_warning(tmp_path: Path) -> None:
    data_dir = tmp_path / "old"
    subprocess.run(
        [sys.executable, "-m", "callbridge", "users", "list", "--data-dir", str(data_dir)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    db = data_dir / "callbridge.db"
    data_dir.chmod(0o755)  # as an older release left them
    db.chmod(0o644)
    result = subprocess.run(
        [sys.executable, "-m", "callbridge", "users", "list", "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (mode(data_dir), mode(db)) == (0o700, 0o600)
    assert f"{data_dir} could be read by other users (mode 755): changed to 700" in result.stderr
    assert f"{db} could be read by other users (mode 644): changed to 600" in result.stderr


def test_the_running_servers_files_are_private(bounded: Server) -> None:
    data_dir = Path(bounded.database_url.split("///", 1)[1]).parent
    assert mode(data_dir) == 0o700
    for file in data_dir.iterdir():
        if file.name.startswith("callbridge.db"):
            assert mode(file) == 0o600, file
