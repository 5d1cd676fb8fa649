"""Moving a live call to another device of the same user (seed 002 move)."""

from __future__ import annotations

import pytest

from callbridge.client import ToneSource
from callbridge.errors import RemoteError
from conftest import MakeParty
from parties import ALICE, BOB, HEARD, SILENT, connect, level

BOB_DESK = 1200.0


async def test_bob_moves_the_call_to_his_desk_phone_and_alice_stays_connected(
    party: MakeParty,
) -> None:
    alice, bob = await party(ALICE), await party(BOB)
    desk = await party(BOB_DESK, user=bob.user)
    to_bob, at_bob = await connect(alice, bob)
    first = await desk.ringing()  # the desk phone rang for the call too; bob answered
    assert (await first.wait_for("ended", timeout=5)).data["reason"] == "answered-elsewhere"
    await at_bob.move()
    ring = await desk.ringing()
    assert ring.from_ == alice.user.number
    await ring.answer(source=ToneSource(BOB_DESK), sink=desk.sink)
    await ring.wait_for("answered", timeout=5)
    assert (await at_bob.wait_for("moved", timeout=5)).data["to_session"]
    assert (await at_bob.wait_for("ended", timeout=5)).data["reason"] == "moved"
    # Alice's call never ended: same call, now with the desk phone's audio.
    assert to_bob.state == "active"
    assert await level(alice.sink, BOB_DESK) > HEARD
    assert await level(alice.sink, BOB) < SILENT
    assert await level(desk.sink, ALICE) > HEARD
    await to_bob.hangup()
    assert (await ring.wait_for("ended", timeout=5)).data["reason"] == "hangup"


async def test_moving_with_no_other_device_is_a_clear_error(party: MakeParty) -> None:
    alice, bob = await party(ALICE), await party(BOB)
    to_bob, at_bob = await connect(alice, bob)
    with pytest.raises(RemoteError) as info:
        await at_bob.move()
    assert info.value.code == "invalid_state"
    assert "no other device" in info.value.message
    assert await level(alice.sink, BOB) > HEARD  # the call is unharmed
    await to_bob.hangup()


async def test_a_declined_move_leaves_the_call_where_it_was(party: MakeParty) -> None:
    alice, bob = await party(ALICE), await party(BOB)
    desk = await party(BOB_DESK, user=bob.user)
    to_bob, at_bob = await connect(alice, bob)
    first = await desk.ringing()  # the desk phone rang for the call too; bob answered
    assert (await first.wait_for("ended", timeout=5)).data["reason"] == "answered-elsewhere"
    await at_bob.move()
    await (await desk.ringing()).reject()
    assert (await at_bob.wait_for("move-failed", timeout=5)).data["reason"] == "rejected"
    assert at_bob.state == "active"
    assert await level(alice.sink, BOB) > HEARD
    assert await level(bob.sink, ALICE) > HEARD
    await to_bob.hangup()
