"""Media worker processes (issue 15, ``callbridge serve --media-workers 2``): real server,
real aiortc peers, audio checked by tone analysis.

Normally the legs one connection creates together meet on one worker. This module's server
turns that co-location off (``CALLBRIDGE_MEDIA_AFFINITY_SECS=0``): every new endpoint goes to
the least loaded worker, so a call's two legs, a transfer's legs and a conference's members sit
on different workers and every bridge and membership is relayed between them. Each test checks
through ``/healthz`` that both workers really carry media. (tests/test_calls.py and the others
run with co-location on under ``CALLBRIDGE_TEST_MEDIA_WORKERS=2``.)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from callbridge.client import FrameSink, Phone, TestPatternSource, ToneSource
from callbridge.errors import RemoteError
from callbridge.testing.server import Server, create_user, running
from parties import ALICE, BOB, CAROL, Party, PartyUser, connect, hears, until
from test_conferences import host, invite_and_join
from test_metrics import scrape, value
from test_video import BLUE, RED, close_to, frames, no_new_frames

_numbers = itertools.count(1)


@contextlib.contextmanager
def workers_apart(data_dir: Path, args: Sequence[str] = (), **options: Any) -> Iterator[Server]:
    """A server with two media workers and co-location off: every bridge and membership
    whose two sides were created apart is relayed between the workers."""
    with contextlib.ExitStack() as stack:
        os.environ["CALLBRIDGE_MEDIA_AFFINITY_SECS"] = "0"  # read by the server at start
        try:
            server = stack.enter_context(
                running(data_dir, args=["--media-workers", "2", *args], **options)
            )
        finally:
            del os.environ["CALLBRIDGE_MEDIA_AFFINITY_SECS"]
        yield server


@pytest.fixture(scope="module")
def wserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with workers_apart(tmp_path_factory.mktemp("workers"), ring_timeout=5.0) as server:
        yield server


@pytest.fixture
async def wparty(wserver: Server) -> AsyncIterator[Any]:
    phones: list[Phone] = []

    async def make(tone: float) -> Party:
        n = next(_numbers)
        async with wserver.store() as store:
            user = await create_user(
                store, f"w{n}", str(3000 + n), number=f"+1415666{n:04d}", ttl=timedelta(hours=1)
            )
        phone = Phone(wserver.ws_url, user.token)
        await phone.login()
        phones.append(phone)
        pu = PartyUser(user.name, user.extension, f"+1415666{n:04d}", None, user.token)
        return Party(phone, tone, pu)

    yield make
    for phone in phones:
        await phone.logout()


def workers(server: Server) -> list[dict[str, Any]]:
    health: dict[str, Any] = dict(server.health())
    found: list[dict[str, Any]] = health["media_workers"]
    return found


def both_busy(server: Server) -> bool:
    return all(w["media_objects"] > 0 for w in workers(server))


async def test_a_call_and_a_transfer_across_two_workers_with_audio_both_ways(
    wserver: Server, wparty: Any
) -> None:
    alice, bob, carol = await wparty(ALICE), await wparty(BOB), await wparty(CAROL)
    out, inc = await connect(alice, bob)  # alice's leg on one worker, bob's on the other
    assert both_busy(wserver)
    await hears(alice, BOB, not_=(ALICE,))
    await hears(bob, ALICE, not_=(BOB,))
    reconnected = asyncio.Event()
    out.on("answered", reconnected.set)
    await inc.transfer(carol.user.extension)  # alice's leg now bridged to carol's
    to_carol = await carol.answer()
    await asyncio.wait_for(reconnected.wait(), 5)
    await until(lambda: both_busy(wserver))  # alice on one worker, carol on the other
    await hears(alice, CAROL, not_=(BOB,))
    await hears(carol, ALICE, not_=(CAROL,))
    await out.hangup()
    assert (await to_carol.wait_for("ended", timeout=5)).data["reason"] == "hangup"


async def test_a_conference_whose_members_are_on_two_workers(wserver: Server, wparty: Any) -> None:
    alice, bob, carol = await wparty(ALICE), await wparty(BOB), await wparty(CAROL)
    conf = await host(alice)
    await invite_and_join(conf, bob)
    await invite_and_join(conf, carol)
    await until(lambda: both_busy(wserver))
    await hears(alice, BOB, CAROL, not_=(ALICE,))
    await hears(bob, ALICE, CAROL, not_=(BOB,))
    await hears(carol, ALICE, BOB, not_=(CAROL,))
    await alice.phone.end_conference()


async def test_a_killed_worker_fails_its_calls_and_is_restarted(
    wserver: Server, wparty: Any
) -> None:
    alice, bob = await wparty(ALICE), await wparty(BOB)
    out, inc = await connect(alice, bob)
    victim = workers(wserver)[1]  # one leg's worker: the call has lost its media
    os.kill(victim["pid"], signal.SIGKILL)
    assert (await out.wait_for("ended", timeout=5)).data["reason"] == "failed"
    assert (await inc.wait_for("ended", timeout=5)).data["reason"] == "failed"
    assert "killed by SIGKILL; its calls end failed" in wserver.log()

    def restarted() -> dict[str, Any] | None:
        slot = workers(wserver)[victim["index"]]
        return slot if slot["alive"] and slot["pid"] != victim["pid"] else None

    slot = await until(restarted, within=20)
    assert slot["restarts"] == 1
    # The server goes on: new calls work, with audio both ways.
    for _ in range(2):
        out, inc = await connect(alice, bob)
        await hears(alice, BOB, not_=(ALICE,))
        await hears(bob, ALICE, not_=(BOB,))
        await out.hangup()
        await inc.wait_for("ended", timeout=5)


async def test_metrics_report_each_worker(wserver: Server, wparty: Any) -> None:
    """``/metrics`` has one ``callbridge_media_worker_*`` sample per worker (label ``worker``),
    parsed with ``prometheus_client``'s own parser, agreeing with ``/healthz``."""
    async with wserver.store() as store:
        key = await store.create_api_key("workers-metrics", admin=True, scope="read")
    alice, bob = await wparty(ALICE), await wparty(BOB)
    out, inc = await connect(alice, bob)  # one leg on each worker (co-location is off)
    await until(lambda: both_busy(wserver))
    _, samples = await scrape(wserver, key)
    health = workers(wserver)
    assert len(health) == 2
    for w in health:
        label = str(w["index"])
        assert value(samples, "callbridge_media_worker_up", worker=label) == 1.0
        assert value(samples, "callbridge_media_worker_objects", worker=label) > 0
        assert value(samples, "callbridge_media_worker_restarts", worker=label) == w["restarts"]
        assert value(samples, "callbridge_media_worker_late_ticks", worker=label) >= 0
    assert not any(
        name.startswith("callbridge_media_worker_") and dict(labels).get("worker") == "2"
        for name, labels in samples
    )  # exactly the two workers: no third series
    await out.hangup()
    await inc.wait_for("ended", timeout=5)


async def test_a_video_call_whose_legs_are_on_two_workers(wserver: Server, wparty: Any) -> None:
    """Video crosses the relay between workers (media/relay_video.py): a video call whose legs
    sit on two workers (co-location is off here) shows each party the other's colour."""
    alice, bob = await wparty(ALICE), await wparty(BOB)
    alice_sees, bob_sees = FrameSink(), FrameSink()
    out = await alice.phone.call(
        bob.user.extension,
        source=ToneSource(ALICE),
        sink=alice.sink,
        media_type="video",
        video_source=TestPatternSource(RED),
        video_sink=alice_sees,
    )
    inc = await bob.ringing()
    await inc.answer(
        source=ToneSource(BOB),
        sink=bob.sink,
        media_type="video",
        video_source=TestPatternSource(BLUE),
        video_sink=bob_sees,
    )
    await out.wait_for("answered", timeout=5)
    assert wserver.health()["media_relays"]["bridges"] == 1  # the legs are on two workers
    assert await frames(alice_sees, 15) >= 15
    assert await frames(bob_sees, 15) >= 15
    assert close_to(alice_sees.dominant_color(), BLUE), alice_sees.dominant_color()
    assert close_to(bob_sees.dominant_color(), RED), bob_sees.dominant_color()
    await hears(alice, BOB, not_=(ALICE,))
    await hears(bob, ALICE, not_=(BOB,))
    await out.hangup()
    assert (await inc.wait_for("ended", timeout=5)).data["reason"] == "hangup"
    await until(lambda: wserver.health()["media_relays"] == {"bridges": 0, "mixer_members": 0})


async def test_an_attended_transfer_then_video_with_the_new_party_across_workers(
    wserver: Server, wparty: Any
) -> None:
    """The case that kept ``--media-workers`` at 1: an attended transfer joins two legs that
    two calls set up, so they sit on two workers; video between them is relayed across, both
    ways, and stops when the call goes back to audio."""
    alice, bob, carol = await wparty(ALICE), await wparty(BOB), await wparty(CAROL)
    to_bob, from_alice = await connect(alice, bob)
    consult = await from_alice.attended_transfer(
        carol.user.extension, sink=bob.sink, source=ToneSource(BOB)
    )
    at_carol = await carol.answer()
    await consult.wait_for("answered", timeout=5)
    await from_alice.complete_transfer()
    assert (await at_carol.wait_for("transferred", timeout=5)).data["peer"] == alice.user.number
    await until(lambda: wserver.health()["media_relays"]["bridges"] == 1)
    await hears(alice, CAROL, not_=(BOB,))

    alice_sees, carol_sees = FrameSink(), FrameSink()
    await to_bob.upgrade(video_source=TestPatternSource(RED), video_sink=alice_sees)
    await at_carol.wait_for("media-modification", timeout=5)
    await at_carol.accept_modification(video_source=TestPatternSource(BLUE), video_sink=carol_sees)
    for call in (to_bob, at_carol):
        changed = await call.wait_for("state-changed", timeout=5)
        assert (changed.data["new_state"], changed.data["accepted"]) == ("video", True)
    assert await frames(alice_sees, 15) >= 15
    assert await frames(carol_sees, 15) >= 15
    assert close_to(alice_sees.dominant_color(), BLUE), alice_sees.dominant_color()
    assert close_to(carol_sees.dominant_color(), RED), carol_sees.dominant_color()
    assert wserver.health()["media_relays"]["bridges"] == 1  # still across the two workers

    await to_bob.downgrade()
    await at_carol.wait_for("media-modification", timeout=5)
    await at_carol.accept_modification()
    await at_carol.wait_for("state-changed", timeout=5)
    assert await no_new_frames(alice_sees) <= 1
    assert await no_new_frames(carol_sees) <= 1
    await hears(carol, ALICE, not_=(CAROL,))
    await to_bob.hangup()
    assert (await at_carol.wait_for("ended", timeout=5)).data["reason"] == "hangup"


async def test_a_room_outlives_its_mixers_worker(wserver: Server, wparty: Any) -> None:
    """The worker that holds a conference's mixer dies: the members whose legs it owned end
    ``failed``, and the mixer is built again on the live worker with the others, who hear
    each other again (media/workers/rooms.py). The host's leg and the mixer sit on different
    workers here (co-location is off: the host's leg goes first, the mixer to the other)."""
    dave = 1800.0
    tones = (ALICE, BOB, CAROL, dave)
    alice, bob, carol, dave_party = [await wparty(t) for t in tones]
    conf = await host(alice)
    joined = [await invite_and_join(conf, p) for p in (bob, carol, dave_party)]
    await hears(alice, BOB, CAROL, dave, not_=(ALICE,))
    errors: asyncio.Queue[RemoteError] = asyncio.Queue()
    alice.phone.on("error", errors.put_nowait)
    recording = await conf.record("start")
    with_mixer = [w for w in workers(wserver) if w["mixers"] == 1]
    assert len(with_mixer) == 1
    victim = with_mixer[0]
    os.kill(victim["pid"], signal.SIGKILL)

    def restarted() -> dict[str, Any] | None:
        slot = workers(wserver)[victim["index"]]
        return slot if slot["alive"] and slot["pid"] != victim["pid"] else None

    await until(restarted, within=20)
    failed = await asyncio.wait_for(errors.get(), 10)  # the mix's recording died with it
    assert failed.code == "recording_failed" and recording in failed.message
    assert "the recording stopped: media worker" in failed.message
    await until(lambda: [w["index"] for w in workers(wserver) if w["mixers"]] != [])
    moved = [w for w in workers(wserver) if w["mixers"] == 1]
    assert [w["index"] for w in moved] == [1 - victim["index"]]  # on the live one
    assert "built again on media worker" in wserver.log()
    conferences = dict(zip(tones, [conf, *joined], strict=True))
    parties = dict(zip(tones, (alice, bob, carol, dave_party), strict=True))
    await until(lambda: any(not c.is_live for c in conferences.values()))  # the lost ones
    lost = {t for t, c in conferences.items() if not c.is_live}
    kept = [t for t in tones if t not in lost]
    assert conf.is_live, "the host's leg was on the mixer's worker: see the docstring"
    assert len(kept) >= 2 and lost, (kept, lost)
    for t in kept:
        await hears(parties[t], *(k for k in kept if k != t), not_=(t, *lost))
    await alice.phone.end_conference()
