"""Races of the call core, on the in-memory FakeMediaServer: each scenario drives the real
CallController, holds one media-plane call at a gate to stage the race exactly, and asserts the
whole sequence every device heard, what the bus carried, and that nothing leaked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from callbridge.core.calls import LegState
from callbridge.errors import ErrorCode, ProtocolError
from core_world import ANSWER, ANY, World, open_world, ringing


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with open_world() as w:
        yield w


def incoming(call_id: str, from_: str, name: str, to: str, **extra: str) -> dict[str, object]:
    return {
        "type": "call.incoming",
        "call_id": call_id,
        "from": from_,
        "from_name": name,
        "to": to,
        "sdp": ANY,
        "media_type": "audio",
        **extra,
    }


def placed(call_id: str, req_id: str) -> list[dict[str, object]]:
    """What a caller hears up to ringing."""
    return [
        {"type": "call.trying", "req_id": req_id, "call_id": call_id, "media_type": "audio"},
        {"type": "sdp.answer", "call_id": call_id, "sdp": ANY},
        *ringing(call_id),
        {"type": "call.ringing", "call_id": call_id, "ringback": True},
    ]


# glare -----------------------------------------------------------------------------------------
async def test_glare_alice_and_bob_call_each_other_at_once_and_both_calls_ring(
    world: World,
) -> None:
    alice, bob = world.phone("alice"), world.phone("bob")
    c = world.controller
    await asyncio.gather(
        c.routing.create_call(alice, "bob", ANSWER, None, "a1"),
        c.routing.create_call(bob, "alice", ANSWER, None, "b1"),
    )
    a_out = alice.last("call.trying")["call_id"]
    b_out = bob.last("call.trying")["call_id"]
    a_in = alice.last("call.incoming")["call_id"]
    b_in = bob.last("call.incoming")["call_id"]
    # Two calls, each ringing at the other side (seed 001 call waiting): neither is lost.
    assert [m for m in alice.wire if m["call_id"] == a_out] == placed(a_out, "a1")
    assert [m for m in bob.wire if m["call_id"] == b_out] == placed(b_out, "b1")
    assert [m for m in alice.wire if m["call_id"] == a_in] == [
        incoming(a_in, "201", "Bob", "alice"),
        *ringing(a_in),
    ]
    assert [m for m in bob.wire if m["call_id"] == b_in] == [
        incoming(b_in, "200", "Alice", "bob"),
        *ringing(b_in),
    ]
    # Alice takes bob's call; her own call to bob still rings there until bob declines it.
    alice.clear()
    bob.clear()
    await c.answer(alice, a_in, ANSWER, "a2")
    await c.reject(bob, b_in, "busy", "b2")
    assert alice.wire == [
        {"type": "call.answered", "req_id": "a2", "call_id": a_in, "media_type": "audio"},
        {"type": "call.ended", "call_id": a_out, "reason": "busy"},
    ]
    assert bob.wire == [
        {"type": "call.answered", "call_id": b_out, "media_type": "audio"},
        {"type": "call.ended", "req_id": "b2", "call_id": b_in, "reason": "busy"},
    ]
    await c.hangup(bob, b_out, "b3")
    assert alice.wire[-1] == {"type": "call.ended", "call_id": a_in, "reason": "hangup"}
    world.assert_nothing_left()


# answering -------------------------------------------------------------------------------------
async def test_the_media_plane_refuses_bobs_answer_and_the_call_fails(world: World) -> None:
    alice, bob = world.phone("alice"), world.phone("bob")
    out = await world.call(alice, "bob")
    inc = bob.last("call.incoming")["call_id"]
    world.bus.clear()
    world.media.raise_on("accept_answer", inc)

    await world.controller.answer(bob, inc, ANSWER, "x1")

    assert bob.wire[-2:] == [
        {
            "type": "error",
            "req_id": "x1",  # the reply to bob's answer
            "call_id": inc,
            "code": "internal_error",
            "message": "accept_answer failed (staged by the test)",
            "cause": ANY,
            "resolution": ANY,
        },
        {"type": "call.ended", "call_id": inc, "reason": "failed"},
    ]
    assert alice.wire[len(placed(out, "c1")) :] == [
        {"type": "call.ended", "call_id": out, "reason": "failed"},
    ]
    assert world.facts("ring-all", "call") == [
        "ring-all:answered",
        "call:answered",
        f"LegEnded:{inc}:failed",
        "call:ended",
        f"LegEnded:{out}:failed",
    ]
    world.assert_nothing_left()


async def test_bob_answers_on_two_devices_at_once_and_exactly_one_wins(world: World) -> None:
    alice = world.phone("alice")
    bob1, bob2 = world.phone("bob", "1"), world.phone("bob", "2")
    out = await world.call(alice, "bob")
    first = bob1.last("call.incoming")["call_id"]
    second = bob2.last("call.incoming")["call_id"]
    world.bus.clear()
    gate = world.media.hold("accept_answer", first)

    answering = asyncio.create_task(world.controller.answer(bob1, first, ANSWER, "x1"))
    await gate.reached()  # bob1's answer claimed the call and waits on the media plane ...
    with pytest.raises(ProtocolError) as lost:  # ... as bob2 answers too
        await world.controller.answer(bob2, second, ANSWER, "y1")
    gate.release()
    await answering

    assert lost.value.code is ErrorCode.CALL_NOT_FOUND
    assert "answered-elsewhere" in lost.value.message
    assert bob1.wire[-1] == {
        "type": "call.answered",
        "req_id": "x1",
        "call_id": first,
        "media_type": "audio",
    }
    assert bob2.wire == [
        incoming(second, "200", "Alice", "bob"),
        *ringing(second),
        {"type": "call.ended", "call_id": second, "reason": "answered-elsewhere"},
    ]
    assert alice.wire[len(placed(out, "c1")) :] == [
        {"type": "call.answered", "call_id": out, "media_type": "audio"},
    ]
    assert world.facts("ring-all", "call") == [
        "ring-all:answered",
        f"LegEnded:{second}:answered-elsewhere",
        "call:answered",
        f"LegAnswered:{out}",
        f"LegAnswered:{first}",
    ]
    assert world.media.partner(out) == first


async def test_the_caller_hangs_up_while_the_callees_answer_waits_on_the_media_plane(
    world: World,
) -> None:
    alice, bob = world.phone("alice"), world.phone("bob")
    out = await world.call(alice, "bob")
    inc = bob.last("call.incoming")["call_id"]
    world.bus.clear()
    gate = world.media.hold("accept_answer", inc)

    answering = asyncio.create_task(world.controller.answer(bob, inc, ANSWER, "x1"))
    await gate.reached()
    await world.controller.hangup(alice, out, "h1")
    gate.release()
    await answering

    assert alice.wire == [
        *placed(out, "c1"),
        {"type": "call.ended", "req_id": "h1", "call_id": out, "reason": "hangup"},
    ]
    # Bob's answer is answered: too late, the caller canceled.
    assert bob.wire == [
        incoming(inc, "200", "Alice", "bob"),
        *ringing(inc),
        {"type": "call.ended", "req_id": "x1", "call_id": inc, "reason": "canceled"},
    ]
    assert world.facts("ring-all", "call") == [
        "ring-all:answered",
        "call:answered",
        f"LegEnded:{out}:hangup",
        "call:ended",
        f"LegEnded:{inc}:canceled",  # when its answer came back from the media plane
    ]
    await world.media.settle()
    assert len(world.directory.cdrs) == 1 and world.directory.cdrs[0].end_reason == "hangup"
    world.assert_nothing_left()


async def test_the_far_party_hangs_up_while_the_hold_music_starts(world: World) -> None:
    alice, bob = world.phone("alice"), world.phone("bob")
    to_bob, at_bob = await world.connect(alice, bob)
    gate = world.media.hold("play", to_bob)  # the hold music for alice
    holding = asyncio.create_task(world.controller.incall.hold(bob, at_bob, "h1"))
    await gate.reached()
    await world.controller.hangup(alice, to_bob, "x1")
    gate.release()
    with pytest.raises(ProtocolError) as late:  # the hold still gets a reply (an error)
        await holding

    assert late.value.code is ErrorCode.CALL_NOT_FOUND
    assert late.value.message == f"call {at_bob} has ended (hangup)"
    assert bob.wire == [{"type": "call.ended", "call_id": at_bob, "reason": "hangup"}]
    assert alice.wire == [
        {"type": "call.ended", "req_id": "x1", "call_id": to_bob, "reason": "hangup"},
    ]
    world.assert_nothing_left()


# transfer --------------------------------------------------------------------------------------
async def test_a_consultation_rejected_busy_while_its_ringback_starts_ends_without_ringing(
    world: World,
) -> None:
    """The server's side of issue 9's race: carol rejects busy the moment she rings, while
    the caller's ringback is being started. Bob hears call.ended, never a call.ringing after
    it (it used to follow call.ended, and the call's ring timer was armed for nothing)."""
    alice, bob, carol = world.phone("alice"), world.phone("bob"), world.phone("carol")
    to_bob, at_bob = await world.connect(alice, bob)
    await world.controller.incall.hold(bob, at_bob, "h1")
    gate = world.media.hold("play")  # the consultation's ringback
    consulting = asyncio.create_task(world.call(bob, "carol", "c2"))
    await gate.reached()
    ring = carol.last("call.incoming")["call_id"]
    await world.controller.reject(carol, ring, "busy", "r1")
    gate.release()
    consult = await consulting
    await world.controller.incall.resume(bob, at_bob, "h2")  # what the SDK then does

    assert bob.wire == [
        {"type": "call.held", "req_id": "h1", "call_id": at_bob, "by": "local"},
        {"type": "call.trying", "req_id": "c2", "call_id": consult, "media_type": "audio"},
        {"type": "sdp.answer", "call_id": consult, "sdp": ANY},
        *ringing(consult),
        {"type": "call.ended", "call_id": consult, "reason": "busy"},
        {"type": "call.resumed", "req_id": "h2", "call_id": at_bob, "by": "local"},
    ]
    assert alice.wire == [
        {"type": "call.held", "call_id": to_bob, "by": "remote"},
        {"type": "call.resumed", "call_id": to_bob, "by": "remote"},
    ]
    assert carol.wire[-1] == {
        "type": "call.ended",
        "req_id": "r1",
        "call_id": ring,
        "reason": "busy",
    }
    await world.media.settle()
    assert world.controller.scheduler.pending == 0  # no ring timer left armed for it
    assert set(world.controller.legs) == {to_bob, at_bob}
    assert world.controller.legs[at_bob].state is LegState.ACTIVE


async def test_the_transferee_hangs_up_while_the_blind_transfer_target_rings(
    world: World,
) -> None:
    alice, bob, carol = world.phone("alice"), world.phone("bob"), world.phone("carol")
    to_bob, at_bob = await world.connect(alice, bob)
    await world.controller.transfers.blind(bob, at_bob, "carol", "t1")
    ring = carol.last("call.incoming")["call_id"]
    await world.controller.hangup(alice, to_bob, "h1")

    assert bob.wire == [
        {"type": "call.ended", "req_id": "t1", "call_id": at_bob, "reason": "transferred"},
    ]
    assert alice.wire == [
        {"type": "call.ringing", "call_id": to_bob, "ringback": True},
        {"type": "call.ended", "req_id": "h1", "call_id": to_bob, "reason": "hangup"},
    ]
    assert carol.wire == [
        incoming(ring, "200", "Alice", "carol"),
        *ringing(ring),
        {"type": "call.ended", "call_id": ring, "reason": "canceled"},
    ]
    await world.media.settle()
    assert [cdr.end_reason for cdr in world.directory.cdrs] == ["transferred", "hangup"]
    world.assert_nothing_left()


async def test_completing_a_transfer_while_the_target_still_rings_is_refused(
    world: World,
) -> None:
    alice, bob, carol = world.phone("alice"), world.phone("bob"), world.phone("carol")
    to_bob, at_bob = await world.connect(alice, bob)
    await world.controller.incall.hold(bob, at_bob, "h1")
    consult = await world.call(bob, "carol", "c2")
    ring = carol.last("call.incoming")["call_id"]
    with pytest.raises(ProtocolError) as refused:
        await world.controller.transfers.complete(bob, at_bob, consult, "t1")
    assert refused.value.code is ErrorCode.INVALID_STATE
    # Carol answers: now it goes through, alice is resumed and connected to carol.
    await world.controller.answer(carol, ring, ANSWER, "a1")
    alice.clear()
    carol.clear()
    await world.controller.transfers.complete(bob, at_bob, consult, "t2")
    assert alice.wire == [
        {"type": "call.resumed", "call_id": to_bob, "by": "remote"},
        {"type": "call.transferred", "call_id": to_bob, "peer": "202", "peer_name": "Carol"},
    ]
    assert carol.wire == [
        {"type": "call.transferred", "call_id": ring, "peer": "200", "peer_name": "Alice"},
    ]
    assert world.media.partner(to_bob) == ring
    await world.controller.hangup(carol, ring, None)
    world.assert_nothing_left()


# move ------------------------------------------------------------------------------------------
async def test_the_far_party_hangs_up_while_a_move_rings_the_other_device(world: World) -> None:
    alice, bob, desk = world.phone("alice"), world.phone("bob"), world.phone("bob", "desk")
    desk.reachable = False  # not rung for the call itself
    to_bob, at_bob = await world.connect(alice, bob)
    desk.reachable = True
    await world.controller.moves.move(bob, at_bob, "m1")
    ring = desk.last("call.incoming")["call_id"]
    await world.controller.hangup(alice, to_bob, "h1")

    assert bob.wire == [
        {"type": "call.moving", "req_id": "m1", "call_id": at_bob},
        {"type": "call.ended", "call_id": at_bob, "reason": "hangup"},
    ]
    assert desk.wire == [
        incoming(ring, "200", "Alice", "bob", moved_from=at_bob),
        *ringing(ring),
        {"type": "call.ended", "call_id": ring, "reason": "canceled"},
    ]
    assert world.facts("move", "move ring") == [
        "move ring:ringing",
        f"LegEnded:{to_bob}:hangup",
        f"LegEnded:{at_bob}:hangup",
        "move:failed",  # the call it moves ended ...
        "move ring:canceled",  # ... so the desk phone stops ringing
        f"LegEnded:{ring}:canceled",
    ]
    world.assert_nothing_left()


async def test_the_far_party_hangs_up_while_the_moved_to_device_answers(world: World) -> None:
    alice, bob, desk = world.phone("alice"), world.phone("bob"), world.phone("bob", "desk")
    desk.reachable = False
    to_bob, at_bob = await world.connect(alice, bob)
    desk.reachable = True
    await world.controller.moves.move(bob, at_bob, "m1")
    ring = desk.last("call.incoming")["call_id"]
    gate = world.media.hold("accept_answer", ring)

    answering = asyncio.create_task(world.controller.answer(desk, ring, ANSWER, "x1"))
    await gate.reached()
    await world.controller.hangup(alice, to_bob, "h1")
    gate.release()
    await answering

    assert bob.wire == [
        {"type": "call.moving", "req_id": "m1", "call_id": at_bob},
        {"type": "call.ended", "call_id": at_bob, "reason": "hangup"},
    ]
    assert desk.wire == [
        incoming(ring, "200", "Alice", "bob", moved_from=at_bob),
        *ringing(ring),
        {"type": "call.ended", "req_id": "x1", "call_id": ring, "reason": "canceled"},
    ]
    world.assert_nothing_left()
