"""1:1 calls end to end: real server, real aiortc peers on 127.0.0.1, audio checked by analysis.

Each party sends its own tone (alice 440 Hz, bob 1000 Hz, carol 1400 Hz) so what a party hears
tells exactly whose audio reached it.
"""

# These tests assert a call's state, act (await), then assert the new state; mypy keeps the
# first assertion's narrowing across the await and calls what follows unreachable.
# mypy: no-warn-unreachable

from __future__ import annotations

import asyncio
from typing import Literal

import pytest

from callbridge.client import BufferSink, ToneSource
from callbridge.errors import RemoteError
from callbridge.media.players import HOLD_MUSIC_NOTES, RINGBACK_TONES
from callbridge.store import Cdr, Store
from conftest import SESSION_GRACE, Connect, MakeParty, MakeUser
from parties import ALICE, BOB, CAROL, HEARD, SILENT, connect, level, until, until_async


async def test_alice_calls_bob_and_each_hears_the_other(party: MakeParty, store: Store) -> None:
    alice, bob = await party(ALICE), await party(BOB)
    events: list[str] = []
    out = await alice.call(bob.user.extension)
    for name in ("trying", "ringing", "answered", "ended"):
        out.on(name, lambda *a, n=name: events.append(n))
    inc = await bob.ringing()
    assert inc.from_ == alice.user.number and inc.to == bob.user.extension
    await inc.answer(source=ToneSource(BOB), sink=bob.sink)
    await out.wait_for("answered", timeout=5)
    assert await level(alice.sink, BOB) > HEARD
    assert await level(alice.sink, ALICE) < SILENT  # nobody hears themselves
    assert await level(bob.sink, ALICE) > HEARD
    assert await level(bob.sink, BOB) < SILENT
    await out.hangup()
    assert (await inc.wait_for("ended", timeout=5)).data["reason"] == "hangup"
    assert out.end_reason == "hangup"
    assert events[-2:] == ["answered", "ended"]

    async def written() -> Cdr | None:  # the CDR is written just after the call ends
        return next((c for c in await store.list_cdrs(50) if c.call_id == out.id), None)

    cdr = await until_async(written)
    assert (cdr.caller, cdr.callee, cdr.end_reason) == (alice.user.name, bob.user.name, "hangup")
    assert cdr.answered_at is not None and cdr.duration_seconds > 1


async def test_destinations_resolve_by_extension_number_and_name(party: MakeParty) -> None:
    alice, bob = await party(ALICE), await party(BOB)
    for destination in (bob.user.extension, bob.user.number, bob.user.name):
        out = await alice.call(destination)
        inc = await bob.ringing()
        assert inc.to == destination
        await out.hangup()
        assert (await inc.wait_for("ended", timeout=5)).data["reason"] == "canceled"


async def test_caller_id_is_shown_to_the_callee(party: MakeParty) -> None:
    alice, bob = await party(ALICE), await party(BOB)
    out = await alice.call(bob.user.extension, caller_id="+14155559876")
    inc = await bob.ringing()
    assert inc.from_ == "+14155559876"
    await out.hangup()


async def test_bob_answers_on_his_second_device_while_the_first_rings(party: MakeParty) -> None:
    alice, bob1 = await party(ALICE), await party(BOB)
    bob2 = await party(BOB + 200, user=bob1.user)
    out = await alice.call(bob1.user.extension)
    ring1, ring2 = await bob1.ringing(), await bob2.ringing()
    assert ring1.id != ring2.id
    await ring2.answer(source=ToneSource(bob2.tone), sink=bob2.sink)
    await out.wait_for("answered", timeout=5)
    assert (await ring1.wait_for("ended", timeout=5)).data["reason"] == "answered-elsewhere"
    assert await level(alice.sink, bob2.tone) > HEARD
    assert await level(bob2.sink, ALICE) > HEARD
    await out.hangup()


async def test_two_devices_answer_at_once_and_exactly_one_wins(party: MakeParty) -> None:
    alice, bob1 = await party(ALICE), await party(BOB)
    bob2 = await party(BOB + 200, user=bob1.user)
    out = await alice.call(bob1.user.extension)
    ring1, ring2 = await bob1.ringing(), await bob2.ringing()
    results = await asyncio.gather(
        ring1.answer(source=ToneSource(BOB), sink=bob1.sink),
        ring2.answer(source=ToneSource(BOB + 200), sink=bob2.sink),
        return_exceptions=True,
    )
    await out.wait_for("answered", timeout=5)
    await until(lambda: all(c.state in ("active", "ended") for c in (ring1, ring2)))
    winners = [c for c in (ring1, ring2) if c.state == "active"]
    losers = [c for c in (ring1, ring2) if c.state == "ended"]
    assert len(winners) == 1 and len(losers) == 1
    assert losers[0].end_reason == "answered-elsewhere"
    # The loser either got the ended event before its answer went out, or an error for it.
    loser_result = results[(ring1, ring2).index(losers[0])]
    assert loser_result is None or isinstance(loser_result, RemoteError)
    await out.hangup()


@pytest.mark.parametrize(("reason", "expected"), [(None, "rejected"), ("busy", "busy")])
async def test_reject_ends_the_callers_call(
    party: MakeParty, reason: Literal["busy"] | None, expected: str
) -> None:
    alice, bob = await party(ALICE), await party(BOB)
    out = await alice.call(bob.user.extension)
    inc = await bob.ringing()
    await (inc.reject(reason) if reason else inc.reject())
    assert (await out.wait_for("ended", timeout=5)).data["reason"] == expected


async def test_caller_hangs_up_while_it_rings_and_the_callee_sees_canceled(
    party: MakeParty,
) -> None:
    alice, bob = await party(ALICE), await party(BOB)
    out = await alice.call(bob.user.extension)
    inc = await bob.ringing()
    await out.wait_for("ringing", timeout=5)
    await out.hangup()
    assert (await inc.wait_for("ended", timeout=5)).data["reason"] == "canceled"
    assert out.end_reason == "hangup"


async def test_nobody_answers(party: MakeParty) -> None:
    alice, bob = await party(ALICE), await party(BOB)
    out = await alice.call(bob.user.extension)
    inc = await bob.ringing()
    assert (await out.wait_for("ended", timeout=10)).data["reason"] == "no-answer"
    assert (await inc.wait_for("ended", timeout=5)).data["reason"] == "no-answer"


async def test_calling_a_user_with_no_device_fails_with_a_reason(
    party: MakeParty, make_user: MakeUser
) -> None:
    alice = await party(ALICE)
    offline = await make_user()
    with pytest.raises(RemoteError) as info:
        call = await alice.call(offline.extension)
        await call.wait_for("ended", timeout=5)
    assert info.value.code in {"destination_not_found"}


async def test_hold_plays_music_to_the_held_party(party: MakeParty) -> None:
    alice, bob = await party(ALICE), await party(BOB)
    out, inc = await connect(alice, bob)
    await out.hold()
    assert (await inc.wait_for("held", timeout=5)).data["by"] == "remote"
    assert out.held_by == "local"
    music = [await level(bob.sink, f, 1.0) for f in HOLD_MUSIC_NOTES[:3]]
    assert all(m > HEARD for m in music), music
    assert await level(bob.sink, ALICE) < SILENT  # the holder's audio is not heard
    assert await level(alice.sink, BOB) < SILENT  # the holder hears silence
    await out.resume()
    assert (await inc.wait_for("resumed", timeout=5)).data["by"] == "remote"
    assert await level(bob.sink, ALICE) > HEARD
    assert await level(bob.sink, HOLD_MUSIC_NOTES[0]) < SILENT
    assert await level(alice.sink, BOB) > HEARD
    await out.hangup()


async def test_server_mute_is_authoritative_while_the_client_keeps_sending(
    party: MakeParty,
) -> None:
    alice, bob = await party(ALICE), await party(BOB)
    out, _ = await connect(alice, bob)
    # A raw call.mute: alice's client keeps sending its tone, the server must drop it.
    reply = await alice.phone.request({"type": "call.mute", "call_id": out.id})
    assert reply["type"] == "call.muted"
    assert out.media is not None
    assert not out.media.muted  # the client really is still sending
    assert await level(bob.sink, ALICE) < SILENT
    assert await level(alice.sink, BOB) > HEARD  # mute is one-way
    await alice.phone.request({"type": "call.unmute", "call_id": out.id})
    assert await level(bob.sink, ALICE) > HEARD
    # The SDK's mute does both: local silence and the server-side mute.
    await out.mute()
    assert out.is_muted
    assert await level(bob.sink, ALICE) < SILENT
    await out.unmute()
    assert not out.is_muted
    assert await level(bob.sink, ALICE) > HEARD
    await out.hangup()


async def test_dtmf_digits_reach_the_far_side(party: MakeParty) -> None:
    alice, bob = await party(ALICE), await party(BOB)
    out, inc = await connect(alice, bob)
    signalled: list[str] = []
    inc.on("dtmf", lambda digit: signalled.append(digit))
    inband: list[str] = []
    assert inc.media is not None
    inc.media.on_dtmf = inband.append  # RFC 4733 relayed by the server to bob's leg
    await out.send_dtmf("159#")
    await until(lambda: len(signalled) >= 4 and len(inband) >= 4)
    assert signalled == ["1", "5", "9", "#"]
    assert inband == ["1", "5", "9", "#"]
    await out.hangup()


async def test_blind_transfer_connects_the_far_party_to_the_target(party: MakeParty) -> None:
    alice, bob, carol = await party(ALICE), await party(BOB), await party(CAROL)
    out, inc = await connect(alice, bob)
    reconnected = asyncio.Event()  # alice's second call.answered: carol answered
    out.on("answered", reconnected.set)
    await inc.transfer(carol.user.extension)
    assert inc.end_reason == "transferred"
    to_carol = await carol.answer()
    assert to_carol.from_ == alice.user.number
    await asyncio.wait_for(reconnected.wait(), 5)
    assert out.state == "active" and out.id == alice.phone.active_calls[0].id
    assert await level(alice.sink, CAROL) > HEARD
    assert await level(carol.sink, ALICE) > HEARD
    assert await level(alice.sink, BOB) < SILENT
    await out.hangup()
    assert (await to_carol.wait_for("ended", timeout=5)).data["reason"] == "hangup"


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
async def test_a_g711_caller_and_an_opus_callee_hear_each_other(
    party: MakeParty, codec: str
) -> None:
    """Different codecs on the two legs: the server transcodes both ways."""
    alice, bob = await party(ALICE), await party(BOB)
    out = await alice.call(bob.user.extension, codecs=[codec])
    inc = await bob.ringing()
    await inc.answer(source=ToneSource(BOB), sink=bob.sink, codecs=["opus"])
    await out.wait_for("answered", timeout=5)
    assert out.media is not None and inc.media is not None
    await out.media.wait_connected()  # the codecs are known from here on
    await inc.media.wait_connected()
    assert (out.media.stats().codec, inc.media.stats().codec) == (codec, "opus")
    assert await level(alice.sink, BOB) > HEARD
    assert await level(bob.sink, ALICE) > HEARD
    await out.hangup()


async def test_logout_ends_the_calls_of_that_device(party: MakeParty) -> None:
    alice, bob = await party(ALICE), await party(BOB)
    out, inc = await connect(alice, bob)
    await bob.phone.logout()
    assert (await out.wait_for("ended", timeout=5)).data["reason"] == "hangup"
    assert inc.state == "ended"


async def test_a_connection_that_stays_away_ends_the_call_after_the_grace_period(
    party: MakeParty,
) -> None:
    alice, bob = await party(ALICE), await party(BOB)
    out, _ = await connect(alice, bob)
    await bob.phone.close()  # the socket goes away without a logout and never comes back
    ended = await out.wait_for("ended", timeout=SESSION_GRACE + 5)
    assert ended.data["reason"] == "disconnected"


async def test_trickled_candidates_from_a_browser_style_client(
    party: MakeParty, raw: Connect, make_user: MakeUser
) -> None:
    """A client that sends its offer without candidates and trickles them, as browsers do."""
    from callbridge.client import CallMedia

    bob = await party(BOB)
    user = await make_user()
    client = await raw()
    await client.login(user.token)
    media = CallMedia(source=ToneSource(ALICE), sink=BufferSink())
    full = await media.create_offer()
    lines = full.split("\r\n")
    candidates = [x[2:] for x in lines if x.startswith("a=candidate:")]
    bare = "\r\n".join(x for x in lines if not x.startswith(("a=candidate:", "a=end-of-cand")))
    await client.send({"type": "call.create", "req_id": "t", "destination": bob.user.extension,
                       "sdp": bare})  # fmt: skip
    call_id = (await client.expect("call.trying", req_id="t"))["call_id"]
    answer = await client.expect("sdp.answer", call_id=call_id)
    # The server's media candidates are only on its configured media address.
    server_candidates = [x for x in answer["sdp"].split("\r\n") if x.startswith("a=candidate:")]
    assert server_candidates and all(" 127.0.0.1 " in x for x in server_candidates)
    trickled = await client.expect("ice.candidate", call_id=call_id)
    assert " 127.0.0.1 " in trickled["candidate"]
    await client.expect("ice.done", call_id=call_id)
    await media.accept_answer(answer["sdp"])
    for cand in candidates:
        await client.send({"type": "ice.candidate", "call_id": call_id, "candidate": cand,
                           "sdp_mid": "0", "sdp_m_line_index": 0})  # fmt: skip
    await client.send({"type": "ice.done", "call_id": call_id})
    inc = await bob.answer()
    await client.expect("call.answered", call_id=call_id)
    assert await level(bob.sink, ALICE) > HEARD
    assert inc.state == "active"
    await client.send({"type": "call.hangup", "call_id": call_id})
    await client.expect("call.ended", call_id=call_id)
    await media.close()


async def test_the_caller_hears_ringback_until_the_callee_answers(party: MakeParty) -> None:
    alice, bob = await party(ALICE), await party(BOB)
    out = await alice.call(bob.user.extension)
    inc = await bob.ringing()
    await out.wait_for("ringing", timeout=5)
    assert await level(alice.sink, RINGBACK_TONES[1], 1.0) > HEARD  # 480 Hz: ringback only
    await inc.answer(source=ToneSource(BOB), sink=bob.sink)
    await out.wait_for("answered", timeout=5)
    assert await level(alice.sink, RINGBACK_TONES[1]) < SILENT
    assert await level(alice.sink, BOB) > HEARD
    await out.hangup()
