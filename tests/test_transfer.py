"""Attended transfer (seed 001 attendedTransfer / completeTransfer), with real audio."""

from __future__ import annotations

import pytest

from callbridge.client import ToneSource
from callbridge.client.errors import CallStateError
from callbridge.errors import RemoteError
from callbridge.media.players import HOLD_MUSIC_NOTES
from conftest import MakeParty
from parties import ALICE, BOB, CAROL, HEARD, SILENT, connect, level


async def test_bob_consults_carol_then_connects_alice_to_her(party: MakeParty) -> None:
    alice, bob, carol = await party(ALICE), await party(BOB), await party(CAROL)
    to_bob, from_alice = await connect(alice, bob)
    consult = await from_alice.attended_transfer(
        carol.user.extension, sink=bob.sink, source=ToneSource(BOB)
    )
    assert from_alice.held_by == "local"
    assert (await to_bob.wait_for("held", timeout=5)).data["by"] == "remote"
    at_carol = await carol.answer()
    await consult.wait_for("answered", timeout=5)
    # While consulting: alice hears hold music, bob and carol hear each other.
    assert await level(alice.sink, HOLD_MUSIC_NOTES[0], 1.0) > HEARD
    assert await level(bob.sink, CAROL) > HEARD
    assert await level(carol.sink, ALICE) < SILENT
    await from_alice.complete_transfer()
    assert (await from_alice.wait_for("ended", timeout=5)).data["reason"] == "transferred"
    assert (await consult.wait_for("ended", timeout=5)).data["reason"] == "transferred"
    assert (await to_bob.wait_for("transferred", timeout=5)).data["peer"] == carol.user.number
    assert (await at_carol.wait_for("transferred", timeout=5)).data["peer"] == alice.user.number
    assert to_bob.state == "active" and at_carol.state == "active"
    assert await level(alice.sink, CAROL) > HEARD
    assert await level(carol.sink, ALICE) > HEARD
    assert await level(alice.sink, HOLD_MUSIC_NOTES[0]) < SILENT
    await to_bob.hangup()
    assert (await at_carol.wait_for("ended", timeout=5)).data["reason"] == "hangup"


async def test_a_busy_consultation_resumes_the_original_call_with_audio(party: MakeParty) -> None:
    alice, bob, carol = await party(ALICE), await party(BOB), await party(CAROL)
    to_bob, from_alice = await connect(alice, bob)
    consult = await from_alice.attended_transfer(carol.user.extension)
    await (await carol.ringing()).reject("busy")
    assert (await consult.wait_for("ended", timeout=5)).data["reason"] == "busy"
    await to_bob.wait_for("resumed", timeout=5)
    assert from_alice.state == "active"
    assert await level(alice.sink, BOB) > HEARD
    assert await level(bob.sink, ALICE) > HEARD
    await to_bob.hangup()


async def test_hanging_up_the_consultation_resumes_the_original_call(party: MakeParty) -> None:
    alice, bob, carol = await party(ALICE), await party(BOB), await party(CAROL)
    to_bob, from_alice = await connect(alice, bob)
    consult = await from_alice.attended_transfer(carol.user.extension)
    await carol.answer()
    await consult.wait_for("answered", timeout=5)
    await consult.hangup()
    await to_bob.wait_for("resumed", timeout=5)
    assert await level(alice.sink, BOB) > HEARD
    await to_bob.hangup()


async def test_complete_transfer_needs_two_answered_calls(party: MakeParty) -> None:
    alice, bob = await party(ALICE), await party(BOB)
    to_bob, from_alice = await connect(alice, bob)
    with pytest.raises(RemoteError) as info:
        await bob.phone.request(
            {"type": "call.complete_transfer", "call_id": from_alice.id, "target_call_id": "x"}
        )
    assert info.value.code == "call_not_found"
    same = {"type": "call.complete_transfer", "call_id": from_alice.id}
    with pytest.raises(RemoteError) as info:
        await bob.phone.request({**same, "target_call_id": from_alice.id})
    assert info.value.code == "invalid_message"
    with pytest.raises(CallStateError):
        await from_alice.complete_transfer()  # no consultation call
    await to_bob.hangup()
