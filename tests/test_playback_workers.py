"""Playback and fetch limits across media workers (issue 15): ``--max-playbacks``,
``--max-playbacks-per-user`` and ``--max-fetches`` hold for the whole server when its media
runs in two worker processes, not once per worker.

The server turns co-location off (``CALLBRIDGE_MEDIA_AFFINITY_SECS=0``, as
tests/test_media_workers.py does), so conferences started one after the other land on both
workers; each test finds on which worker a playback runs from the workers' media objects in
``/healthz`` (a playback is one), and checks that the two workers really share the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import os
import signal
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from callbridge.client import Conference, Phone, SilenceSource
from callbridge.client.errors import CallStateError
from callbridge.config import ServerConfig
from callbridge.errors import ErrorCode, MediaError, RemoteError
from callbridge.media.fetch import playback_limit
from callbridge.media.interface import AudioSpec, MediaEvent, PlaybackStateChanged
from callbridge.media.workers.proxy import WorkerMediaServer
from callbridge.media.workers.slots import Slots
from callbridge.testing.server import Server
from parties import until
from test_media_workers import workers_apart
from test_playback_stream import write_wav

pytestmark = pytest.mark.timeout(90)

MAX_PLAYBACKS = 3
PER_USER = 2
MAX_FETCHES = 1


class Site:
    """A static HTTP server on 127.0.0.1: ``long.wav`` (a minute of tone) at once, and
    ``slow.wav`` (the same) only once :attr:`release` is set (:attr:`asked` says a fetch of it
    is under way)."""

    def __init__(self, folder: Path) -> None:
        write_wav(folder / "long.wav", 60.0, rate=8000)
        self.asked = threading.Event()
        self.release = threading.Event()
        site = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kw: Any) -> None:
                super().__init__(*args, directory=str(folder), **kw)

            def do_GET(self) -> None:
                if self.path == "/slow.wav":
                    site.asked.set()
                    site.release.wait(30)
                    self.path = "/long.wav"
                super().do_GET()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    s = Site(tmp_path_factory.mktemp("site"))
    yield s
    s.close()


@pytest.fixture(scope="module")
def lserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Two media workers, co-location off, small playback and fetch limits."""
    args = ["--max-playbacks", str(MAX_PLAYBACKS), "--max-playbacks-per-user", str(PER_USER)]
    args += ["--max-fetches", str(MAX_FETCHES), "--max-fetches-per-user", str(MAX_FETCHES)]
    with workers_apart(tmp_path_factory.mktemp("limits"), args) as server:
        yield server


@pytest.fixture
async def phones(lserver: Server) -> AsyncIterator[Any]:
    """``await phones("name")``: a logged-in phone of that user (added on first use)."""
    made: list[Phone] = []
    tokens: dict[str, str] = {}

    async def make(name: str) -> Phone:
        if name not in tokens:
            (user,) = await lserver.add_users([name])
            tokens[name] = user.token
        phone = Phone(lserver.ws_url, tokens[name])
        await phone.login()
        made.append(phone)
        return phone

    yield make
    for phone in made:
        await phone.logout()


def workers(server: Server) -> list[dict[str, Any]]:
    health: dict[str, Any] = dict(server.health())
    found: list[dict[str, Any]] = health["media_workers"]
    return found


def objects(server: Server) -> list[int]:
    return [w["media_objects"] for w in workers(server)]


async def play_where(server: Server, conf: Conference, url: str) -> int:
    """Start a looping play of ``url`` in ``conf``; the index of the worker it runs on."""
    before = objects(server)
    await conf.play(url, loops=0)
    after = objects(server)  # the worker's reply carried its count: no wait needed
    grew = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if b == a + 1]
    assert len(grew) == 1, f"one worker should have one more media object: {before} -> {after}"
    return grew[0]


async def refused(conf: Conference, url: str) -> str:
    with pytest.raises(RemoteError) as err:
        await conf.play(url, loops=0)
    assert err.value.code == "invalid_state"
    return err.value.message


async def test_a_fetch_on_one_worker_counts_against_max_fetches_on_the_other(
    lserver: Server, phones: Any, site: Site
) -> None:
    d, e = await phones("fetcher-d"), await phones("fetcher-e")
    conf_d = await d.start_conference(source=SilenceSource())
    conf_e = await e.start_conference(source=SilenceSource())
    on_e = await play_where(lserver, conf_e, f"{site.url}/long.wav")
    slow = asyncio.ensure_future(conf_d.play(f"{site.url}/slow.wav", loops=0))
    assert await asyncio.to_thread(site.asked.wait, 10)  # d's worker is fetching now
    before = objects(lserver)
    assert await refused(conf_e, f"{site.url}/long.wav") == (
        f"too many media fetches in progress on this server: at most {MAX_FETCHES} at once; "
        "try again shortly (an operator sets the limit with --max-fetches)"
    )
    site.release.set()
    await asyncio.wait_for(slow, 10)
    grew = [i for i, (a, b) in enumerate(zip(before, objects(lserver), strict=True)) if b > a]
    assert grew == [1 - on_e]  # the fetch that held the slot ran on the other worker
    await conf_e.play(f"{site.url}/long.wav", loops=0)  # the fetch slot came back
    await conf_d.end()
    await conf_e.end()


async def test_playbacks_on_two_workers_share_the_limits_and_slots_come_back(
    lserver: Server, phones: Any, site: Site
) -> None:
    url = f"{site.url}/long.wav"
    a1, a2 = await phones("player-a"), await phones("player-a")  # one user, two devices
    b, c = await phones("player-b"), await phones("player-c")
    conf_a1 = await a1.start_conference(source=SilenceSource())
    conf_a2 = await a2.start_conference(source=SilenceSource())
    conf_b = await b.start_conference(source=SilenceSource())
    conf_c = await c.start_conference(source=SilenceSource())

    # The user's two playbacks run on the two workers: a third is refused per user, although
    # neither worker has two of theirs.
    first = await play_where(lserver, conf_a1, url)
    second = await play_where(lserver, conf_a2, url)
    assert {first, second} == {0, 1}
    assert await refused(conf_a1, url) == (
        f"too many playbacks in progress: at most {PER_USER} per user; wait for one to end "
        "(an operator sets the limit with --max-playbacks-per-user)"
    )

    # Three in all (two workers): a fourth is refused on the whole server.
    on_b = await play_where(lserver, conf_b, url)
    total = (
        f"too many playbacks in progress on this server: at most {MAX_PLAYBACKS} at once; try "
        "again shortly (an operator sets the limit with --max-playbacks)"
    )
    assert await refused(conf_c, url) == total

    # A stopped playback gives its slot back (its end came back before the stop's reply).
    await conf_a2.stop()
    await play_where(lserver, conf_c, url)
    assert await refused(conf_c, url) == total

    # A killed worker's playbacks give theirs back. (Each conference here has its mixer on
    # one worker and its host's leg on one or the other: those whose leg was on the dead
    # worker end; the others are ended here. Only the proxy's account of the death can give
    # back the slots of the playbacks that were on the dead worker.)
    victim = workers(lserver)[on_b]
    os.kill(victim["pid"], signal.SIGKILL)

    def restarted() -> bool:
        slot = workers(lserver)[on_b]
        return bool(slot["alive"] and slot["pid"] != victim["pid"])

    await until(restarted, within=20)
    for conf in (conf_a1, conf_a2, conf_b, conf_c):
        with contextlib.suppress(RemoteError, CallStateError):  # ended by the death meanwhile
            await conf.end()
    await until(lambda: not any(objects(lserver)), within=10)  # every end reported
    assert f"media worker {on_b} (pid {victim['pid']}) was killed" in lserver.log()
    d, e = await phones("player-d"), await phones("player-e")
    conf_d = await d.start_conference(source=SilenceSource())
    conf_e = await e.start_conference(source=SilenceSource())
    for conf in (conf_d, conf_d, conf_e):  # all three slots are free again
        await play_where(lserver, conf, url)
    assert await refused(conf_e, url) == total
    await conf_d.end()
    await conf_e.end()


async def test_a_slot_is_given_back_once_whatever_ends_the_playback_first() -> None:
    """The proxy's slot book-keeping alone (the control process's real limit): a worker that
    dies while it starts a playback (its death gives the slot back, then the start fails), a
    second start of a running id (refused by the worker: the first keeps its slot)."""
    slots, limit = Slots(), playback_limit()
    audio = AudioSpec("file", "/nonexistent.wav")
    running = limit.running

    async def dies() -> None:
        slots.ended("p1")  # the proxy's account of the death, before the call's error
        raise MediaError(ErrorCode.INVALID_STATE, "media worker 0 (pid 1) was killed by SIGKILL")

    with pytest.raises(MediaError, match="was killed"):
        await slots.play("p1", audio, dies)
    assert (limit.running, len(slots)) == (running, 0)

    async def starts() -> None:
        return None

    async def refuses() -> None:
        raise MediaError(ErrorCode.INVALID_STATE, "playback p2 exists already")

    await slots.play("p2", audio, starts)
    with pytest.raises(MediaError, match="exists already"):
        await slots.play("p2", audio, refuses)
    assert (limit.running, len(slots)) == (running + 1, 1)
    slots.ended("p2")
    slots.ended("p2")  # a second end report changes nothing
    assert (limit.running, len(slots)) == (running, 0)


async def test_a_second_start_of_a_running_playback_id_leaves_the_first_alone(
    tmp_path: Path,
) -> None:
    """The proxy refuses a running playback's id itself: the worker's refusal used to drop
    the running playback's route, so it could no longer be stopped."""
    media = WorkerMediaServer(ServerConfig(data_dir=tmp_path), 2)
    events: list[MediaEvent] = []
    media.subscribe(events.append)
    await media.start()
    try:
        await media.create_mixer("m")
        beeps = AudioSpec("tone", "beep", loops=0)  # until stopped
        await media.mixer_play("m", "p1", beeps)
        with pytest.raises(MediaError, match="playback p1 exists already"):
            await media.mixer_play("m", "p1", beeps)
        await media.stop_playback("p1")

        def ended() -> bool:
            return any(
                isinstance(e, PlaybackStateChanged) and e.playback_id == "p1" and e.state == "ended"
                for e in events
            )

        await until(ended)
    finally:
        await media.shutdown()
        await media.stop()
