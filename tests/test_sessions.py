"""Sessions: login options, E911 id, token expiry and refresh, resuming after a dropped socket.

Bob's side is a raw protocol client with SDK media (CallMedia), so his WebSocket can drop
while his peer connection — and so the call's audio — lives on.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

import pytest

from callbridge.client import BufferSink, Call, CallMedia, Phone, ToneSource
from callbridge.errors import RemoteError
from callbridge.store import Store
from callbridge.testing.server import Server
from conftest import SESSION_GRACE, Connect, MakeParty, MakeUser, RawClient
from netcut import NetCut
from parties import ALICE, BOB, HEARD, Party, PartyUser, connect, level, until


async def test_login_with_user_id_and_e911_id_then_update_the_address(
    raw: Connect, make_user: MakeUser
) -> None:
    user = await make_user()
    c = await raw()
    await c.send({"type": "session.login", "req_id": "l", "token": user.token,
                  "user_id": user.name, "e911_id": "addr-1"})  # fmt: skip
    ready = await c.expect("session.ready", req_id="l")
    assert ready["e911_id"] == "addr-1" and ready["resume_grace"] == SESSION_GRACE
    assert ready["expires_at"]
    await c.send({"type": "session.associate_e911", "req_id": "e", "e911_id": "addr-2"})
    assert (await c.expect("session.address-updated", req_id="e"))["e911_id"] == "addr-2"


async def test_a_user_id_that_is_not_the_tokens_user_is_refused(
    raw: Connect, make_user: MakeUser
) -> None:
    user, other = await make_user(), await make_user()
    c = await raw()
    await c.send({"type": "session.login", "req_id": "l", "token": user.token,
                  "user_id": other.name})  # fmt: skip
    err = await c.expect("error", req_id="l")
    assert err["code"] == "invalid_token" and other.name in err["message"]


async def test_the_session_expires_with_its_token_unless_refreshed(
    raw: Connect, make_user: MakeUser, store: Store
) -> None:
    user = await make_user()
    short, _ = await store.create_token(user.name, timedelta(seconds=1.5))
    kept = await raw()
    await kept.login(short)
    await kept.send({"type": "session.refresh", "req_id": "r", "token": user.token})
    assert (await kept.expect("session.refreshed", req_id="r"))["expires_at"]
    short2, _ = await store.create_token(user.name, timedelta(seconds=1.5))
    lapsing = await raw()
    await lapsing.login(short2)
    expired = await lapsing.expect("session.expired", within=5)
    assert expired["session_id"]
    await asyncio.wait_for(lapsing.ws.wait_closed(), 5)
    assert lapsing.ws.close_code == 1008  # the server closed the socket
    await kept.send({"type": "call.hangup", "req_id": "p", "call_id": "x"})
    assert (await kept.expect("error", req_id="p"))["code"] == "call_not_found"  # still served


async def bob_answers_raw(
    raw: Connect, party: MakeParty, make_user: MakeUser
) -> tuple[Party, Call, tuple[RawClient, PartyUser, str], str, CallMedia]:
    """Alice (SDK) calls bob (raw socket + CallMedia); returns them once audio flows."""
    alice = await party(ALICE)
    bob_user = await make_user()
    bob = await raw()
    session_id = (await bob.login(bob_user.token))["session_id"]
    out = await alice.call(bob_user.extension)
    incoming = await bob.expect("call.incoming")
    media = CallMedia(source=ToneSource(BOB), sink=BufferSink())  # bob hears into media.sink
    answer = await media.answer_offer(incoming["sdp"])
    await bob.send({"type": "call.answer", "call_id": incoming["call_id"], "sdp": answer})
    await out.wait_for("answered", timeout=5)
    return alice, out, (bob, bob_user, session_id), incoming["call_id"], media


async def test_bob_resumes_his_session_and_the_call_never_stopped(
    raw: Connect, party: MakeParty, make_user: MakeUser
) -> None:
    alice, out, (bob, bob_user, session_id), call_id, media = await bob_answers_raw(
        raw, party, make_user
    )
    await bob.close()  # the WebSocket drops; the peer connection stays
    assert await level(alice.sink, BOB) > HEARD  # audio goes on while bob is away
    await out.hold()  # something happens while he is away: kept for him
    back = await raw()
    await back.send({"type": "session.resume", "req_id": "r", "session_id": session_id,
                     "token": bob_user.token})  # fmt: skip
    resumed = await back.expect("session.resumed", req_id="r")
    assert resumed["calls"] == [{"call_id": call_id, "state": "held"}]
    assert (await back.expect("call.held", call_id=call_id))["by"] == "remote"
    assert out.state == "held"
    await out.resume()
    await back.expect("call.resumed", call_id=call_id)
    assert await level(alice.sink, BOB) > HEARD
    assert isinstance(media.sink, BufferSink)
    assert await level(media.sink, ALICE) > HEARD
    await back.send({"type": "call.hangup", "call_id": call_id})
    assert (await out.wait_for("ended", timeout=5)).data["reason"] == "hangup"
    await media.close()


async def test_after_the_grace_period_the_call_ends_and_the_session_is_gone(
    raw: Connect, party: MakeParty, make_user: MakeUser
) -> None:
    _, out, (bob, bob_user, session_id), _, media = await bob_answers_raw(raw, party, make_user)
    await bob.close()
    ended = await out.wait_for("ended", timeout=SESSION_GRACE + 5)
    assert ended.data["reason"] == "disconnected"
    late = await raw()
    await late.send({"type": "session.resume", "req_id": "r", "session_id": session_id,
                     "token": bob_user.token})  # fmt: skip
    err = await late.expect("error", req_id="r")
    assert err["code"] == "session_not_found" and "log in again" in err["message"]
    await media.close()


async def test_a_detached_session_does_not_ring(
    raw: Connect, party: MakeParty, make_user: MakeUser
) -> None:
    alice = await party(ALICE)
    bob_user = await make_user()
    bob = await raw()
    await bob.login(bob_user.token)
    await bob.close()
    # The server detaches the session once its socket is gone; no message tells anyone when.
    await asyncio.sleep(0.2)
    with pytest.raises(RemoteError) as info:
        await alice.phone.call(bob_user.extension)
    assert info.value.code == "destination_not_found"
    assert "no device logged in" in info.value.message


@dataclass
class BobBehindALink:
    """Alice (SDK) in a call with bob (SDK) whose WebSocket goes through a cuttable proxy."""

    link: NetCut
    alice: Party
    out: Call  # alice's call
    bob: Phone
    at_bob: Call  # bob's call
    sink: BufferSink  # what bob hears
    seen: list[str]  # bob's connectivity events


async def bob_behind_a_link(
    server: Server, make_user: MakeUser, party: MakeParty
) -> BobBehindALink:
    link = NetCut(server.port)
    await link.start()
    alice = await party(ALICE)
    bob_user = await make_user()
    bob = Phone(link.url, bob_user.token)
    seen: list[str] = []
    for name in ("connectivity-off", "connectivity-on", "gateway-unreachable"):
        bob.on(name, lambda n=name: seen.append(n))
    await bob.login()
    sink = BufferSink()
    answered: asyncio.Future[Call] = asyncio.get_running_loop().create_future()

    async def on_incoming(call: Call) -> None:
        await call.answer(source=ToneSource(BOB), sink=sink)
        answered.set_result(call)

    bob.on("incoming", on_incoming)
    out = await alice.call(bob_user.extension)
    at_bob = await asyncio.wait_for(answered, 5)
    await out.wait_for("answered", timeout=5)
    return BobBehindALink(link, alice, out, bob, at_bob, sink, seen)


async def test_the_sdk_reconnects_after_5_s_and_the_call_keeps_its_audio(
    server: Server, make_user: MakeUser, party: MakeParty
) -> None:
    """The signalling link is cut for 5 s; the SDK resumes its session by itself."""
    b = await bob_behind_a_link(server, make_user, party)
    link, alice, out, bob, at_bob, sink, seen = (
        b.link,
        b.alice,
        b.out,
        b.bob,
        b.at_bob,
        b.sink,
        b.seen,
    )
    try:
        loop = asyncio.get_running_loop()
        cut_at = loop.time()
        await link.cut()
        await until(lambda: seen)  # bob's phone notices
        assert bob.state == "reconnecting" and seen == ["connectivity-off"]
        # The outage itself: 5 s without signalling; media goes on meanwhile.
        await asyncio.sleep(5.0 - (loop.time() - cut_at))
        assert await level(alice.sink, BOB) > HEARD
        await link.restore()
        await until(lambda: bob.state == "ready")
        assert bob.state == "ready" and seen == ["connectivity-off", "connectivity-on"]
        assert at_bob.state == "active" and out.state == "active"
        assert await level(alice.sink, BOB) > HEARD
        assert await level(sink, ALICE) > HEARD
        await at_bob.hold()  # signalling works again
        assert (await out.wait_for("held", timeout=5)).data["by"] == "remote"
        await at_bob.hangup()
        assert (await out.wait_for("ended", timeout=5)).data["reason"] == "hangup"
    finally:
        await bob.logout()
        await link.cut()


async def test_restarting_the_media_keeps_the_call_its_hold_and_its_mute(party: MakeParty) -> None:
    """A device re-establishes its media on a new peer connection (aiortc has no ICE
    restart); the far party stays bridged, and hold music and server mute carry over."""
    from callbridge.media.players import HOLD_MUSIC_NOTES

    alice, bob = await party(ALICE), await party(BOB)
    out, inc = await connect(alice, bob)
    first = inc.media
    await inc.restart_media()
    assert inc.media is not first and first is not None and first.closed
    assert await level(alice.sink, BOB) > HEARD
    assert await level(bob.sink, ALICE) > HEARD
    await out.hold()
    await inc.restart_media()  # while held: the music follows the new connection
    assert await level(bob.sink, HOLD_MUSIC_NOTES[0], 1.0) > HEARD
    await out.resume()
    await alice.phone.request({"type": "call.mute", "call_id": out.id})
    await out.restart_media()  # the server-side mute carries over too
    assert await level(bob.sink, ALICE) < -60
    assert await level(alice.sink, BOB) > HEARD
    await out.hangup()


async def test_the_sdk_gives_up_when_the_link_stays_down_past_the_grace(
    server: Server, make_user: MakeUser, party: MakeParty
) -> None:
    """Reconnect after the grace period: the session is gone, the calls end `disconnected`."""
    b = await bob_behind_a_link(server, make_user, party)
    link, out, bob, at_bob, seen = b.link, b.out, b.bob, b.at_bob, b.seen
    try:
        await link.cut()
        ended = await out.wait_for("ended", timeout=SESSION_GRACE + 5)
        assert ended.data["reason"] == "disconnected"
        await link.restore()  # too late: the server has ended the session
        await until(lambda: "gateway-unreachable" in seen, within=10)
        assert seen == ["connectivity-off", "gateway-unreachable"]
        assert bob.state == "closed" and at_bob.end_reason == "disconnected"
    finally:
        await bob.close()
        await link.cut()
