"""Several calls on one phone (seed 002 answer(action), addCall, switchCall, transfer),
with real audio: bob is on a call with alice when carol comes along."""

# These tests assert a call's state, act (await), then assert the new state; mypy keeps the
# first assertion's narrowing across the await and calls what follows unreachable.
# mypy: no-warn-unreachable

from __future__ import annotations

import pytest

from callbridge.client import BufferSink, Call, InvalidArgumentError, ToneSource
from callbridge.client.errors import CallStateError
from callbridge.media.players import HOLD_MUSIC_NOTES
from conftest import MakeParty
from parties import ALICE, BOB, CAROL, HEARD, SILENT, Party, connect, level

MUSIC = HOLD_MUSIC_NOTES[0]


async def bob_adds_carol(bob: Party, carol: Party, sink: BufferSink) -> tuple[Call, Call]:
    """Bob (on a call) dials carol with add_call(); she answers. Bob's and carol's call."""
    second = await bob.phone.add_call(carol.user.extension, source=ToneSource(BOB), sink=sink)
    at_carol = await carol.answer()
    await second.wait_for("answered", timeout=5)
    return second, at_carol


async def test_call_waiting_answered_with_hold(party: MakeParty) -> None:
    alice, bob, carol = await party(ALICE), await party(BOB), await party(CAROL)
    to_bob, from_alice = await connect(alice, bob)
    to_bob_2 = await carol.call(bob.user.extension)
    waiting = await bob.ringing()
    sink = BufferSink()
    await waiting.answer(source=ToneSource(BOB), sink=sink, action="hold")
    assert from_alice.held_by == "local" and not from_alice.held_explicitly
    assert bob.phone.foreground_call is waiting
    await to_bob_2.wait_for("answered", timeout=5)
    assert await level(alice.sink, MUSIC, 1.0) > HEARD
    assert await level(alice.sink, BOB) < SILENT
    assert await level(carol.sink, BOB) > HEARD
    assert await level(sink, CAROL) > HEARD
    await to_bob_2.hangup()
    await to_bob.hangup()


async def test_call_waiting_answered_with_end(party: MakeParty) -> None:
    alice, bob, carol = await party(ALICE), await party(BOB), await party(CAROL)
    to_bob, from_alice = await connect(alice, bob)
    to_bob_2 = await carol.call(bob.user.extension)
    waiting = await bob.ringing()
    await waiting.answer(source=ToneSource(BOB), sink=BufferSink(), action="end")
    assert (await to_bob.wait_for("ended", timeout=5)).data["reason"] == "hangup"
    assert from_alice.end_reason == "hangup"
    await to_bob_2.wait_for("answered", timeout=5)
    assert bob.phone.active_calls == [waiting] and bob.phone.foreground_call is waiting
    assert await level(carol.sink, BOB) > HEARD
    await to_bob_2.hangup()


async def test_add_call_resumes_the_first_call_when_the_second_is_busy(party: MakeParty) -> None:
    alice, bob, carol = await party(ALICE), await party(BOB), await party(CAROL)
    to_bob, from_alice = await connect(alice, bob)
    second = await bob.phone.add_call(carol.user.extension, source=ToneSource(BOB))
    assert from_alice.held_by == "local" and not from_alice.held_explicitly
    assert (await to_bob.wait_for("held", timeout=5)).data["by"] == "remote"
    assert bob.phone.foreground_call is second
    await (await carol.ringing()).reject("busy")
    assert (await second.wait_for("ended", timeout=5)).data["reason"] == "busy"
    await to_bob.wait_for("resumed", timeout=5)
    await from_alice.wait_for("resumed", timeout=5)
    assert from_alice.state == "active" and bob.phone.foreground_call is from_alice
    assert await level(alice.sink, BOB) > HEARD
    assert await level(bob.sink, ALICE) > HEARD
    await to_bob.hangup()


async def test_switch_call_swaps_who_hears_us(party: MakeParty) -> None:
    alice, bob, carol = await party(ALICE), await party(BOB), await party(CAROL)
    to_bob, from_alice = await connect(alice, bob)
    second, at_carol = await bob_adds_carol(bob, carol, BufferSink())
    assert await level(carol.sink, BOB) > HEARD
    switched: list[Call] = []
    bob.phone.on("call-switched", switched.append)
    await bob.phone.switch_call()
    assert switched == [from_alice] and bob.phone.foreground_call is from_alice
    assert second.held_by == "local" and from_alice.state == "active"
    assert await level(alice.sink, BOB) > HEARD
    assert await level(carol.sink, MUSIC, 1.0) > HEARD
    assert await level(carol.sink, BOB) < SILENT
    await bob.phone.switch_call()  # and back
    assert switched == [from_alice, second] and from_alice.held_by == "local"
    assert await level(carol.sink, BOB) > HEARD
    await to_bob.hangup()
    await at_carol.hangup()


async def test_switch_call_keeps_an_explicitly_held_call_on_hold(party: MakeParty) -> None:
    alice, bob, carol = await party(ALICE), await party(BOB), await party(CAROL)
    to_bob, from_alice = await connect(alice, bob)
    await from_alice.hold()
    assert from_alice.held_explicitly
    second, at_carol = await bob_adds_carol(bob, carol, BufferSink())
    await bob.phone.switch_call()
    assert bob.phone.foreground_call is from_alice
    assert from_alice.held_by == "local" and from_alice.held_explicitly
    assert second.held_by == "local" and not second.held_explicitly
    assert await level(alice.sink, MUSIC, 1.0) > HEARD
    assert await level(alice.sink, BOB) < SILENT
    # The user resumes it by hand: now it is an ordinary call again.
    await from_alice.resume()
    assert not from_alice.held_explicitly
    assert await level(alice.sink, BOB) > HEARD
    await to_bob.hangup()
    await at_carol.hangup()


async def test_an_explicitly_held_first_call_stays_held_after_the_second_ends(
    party: MakeParty,
) -> None:
    alice, bob, carol = await party(ALICE), await party(BOB), await party(CAROL)
    to_bob, from_alice = await connect(alice, bob)
    await from_alice.hold()
    second, at_carol = await bob_adds_carol(bob, carol, BufferSink())
    await at_carol.hangup()
    await second.wait_for("ended", timeout=5)
    assert bob.phone.foreground_call is from_alice
    assert await level(alice.sink, MUSIC, 1.0) > HEARD
    assert from_alice.held_by == "local" and from_alice.held_explicitly
    await to_bob.hangup()


async def test_phone_transfer_connects_the_far_parties(party: MakeParty) -> None:
    alice, bob, carol = await party(ALICE), await party(BOB), await party(CAROL)
    to_bob, from_alice = await connect(alice, bob)
    second, at_carol = await bob_adds_carol(bob, carol, BufferSink())
    await bob.phone.transfer()
    assert (await from_alice.wait_for("ended", timeout=5)).data["reason"] == "transferred"
    assert (await second.wait_for("ended", timeout=5)).data["reason"] == "transferred"
    assert (await to_bob.wait_for("transferred", timeout=5)).data["peer"] == carol.user.number
    assert (await at_carol.wait_for("transferred", timeout=5)).data["peer"] == alice.user.number
    assert bob.phone.active_calls == [] and bob.phone.foreground_call is None
    assert await level(alice.sink, CAROL) > HEARD
    assert await level(carol.sink, ALICE) > HEARD
    await to_bob.hangup()
    assert (await at_carol.wait_for("ended", timeout=5)).data["reason"] == "hangup"


async def test_multi_call_methods_need_answered_calls(party: MakeParty) -> None:
    alice, bob = await party(ALICE), await party(BOB)
    with pytest.raises(CallStateError, match="add_call"):
        await bob.phone.add_call(alice.user.extension)
    to_bob, _ = await connect(alice, bob)
    with pytest.raises(CallStateError, match="two answered calls"):
        await bob.phone.switch_call()
    with pytest.raises(CallStateError, match="two answered calls"):
        await bob.phone.transfer()
    again = await alice.call(bob.user.extension)
    with pytest.raises(InvalidArgumentError, match="action"):
        await (await bob.ringing()).answer(action="park")  # type: ignore[arg-type]
    await again.hangup()
    await to_bob.hangup()
