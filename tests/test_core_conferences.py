"""Conference races and state machines of the core, on the in-memory FakeMediaServer.

Each scenario drives the real CallController and ConferenceManager; the devices are small
recorders of what the core tells them (typed events, turned into their ``/ws`` messages by the
real encoders), and the media plane is :class:`~callbridge.testing.fake_media.FakeMediaServer`,
which can hold one media call until the test releases it. Every scenario asserts the whole
sequence each device heard and the bus carried, and that nothing leaked.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from callbridge.core.conference_model import (
    Conference,
    ConferenceState,
    Invitation,
    InvitationState,
    Playback,
    PlaybackState,
    Recording,
    RecordingState,
)
from callbridge.core.conferences import audio_spec
from callbridge.core.events import ConferenceEvent, ConferenceFloorChanged
from callbridge.statemachine import check_table
from core_world import ANSWER, OFFER, Phone, World, open_world

# The state machines whose changes the scenarios assert (by their ``kind``).
_MACHINES = ("conference", "group", "invitation", "invitation ring", "playback", "recording")


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with open_world() as w:
        yield w


def _facts(world: World) -> list[str]:
    """The bus's conference facts and the conference machines' state changes, in order."""
    return world.facts(*_MACHINES, events=(ConferenceEvent,))


async def _start(world: World, host: Phone) -> Conference:
    conf = await world.controller.conferences.hosting.start(
        host, OFFER, "audio", "standup", "never", "s1"
    )
    host.events.clear()
    return conf


@asynccontextmanager
async def _bob_answering(world: World) -> AsyncIterator[tuple[Phone, Phone, Conference, str]]:
    """Alice's conference invites bob and bob answers (``a1``): his answer waits on the media
    plane while the block runs (alice, bob, the conference, bob's invitation leg)."""
    alice, bob = world.phone("alice"), world.phone("bob")
    conf = await _start(world, alice)
    await world.controller.conferences.hosting.invite(alice, conf.id, "bob", "i1")
    invitation = (await bob.expect("conference.invitation"))["call_id"]
    gate = world.media.hold("accept_answer", invitation)
    answering = asyncio.create_task(world.controller.answer(bob, invitation, ANSWER, "a1"))
    await gate.reached()
    yield alice, bob, conf, invitation
    gate.release()
    await answering
    await world.media.settle()


# the race -------------------------------------------------------------------------------------
async def test_an_invitation_answered_as_the_host_ends_the_conference_ends_cleanly(
    world: World,
) -> None:
    async with _bob_answering(world) as (alice, bob, conf, invitation):
        await world.controller.conferences.end(alice, conf.id, "e1")  # as bob's answer waits

    assert bob.types() == ["conference.invitation", "ice.candidate", "ice.done", "call.ended"]
    assert bob.last("call.ended") == {
        "type": "call.ended",
        "req_id": "a1",  # the reply to bob's answer
        "call_id": invitation,
        "reason": "canceled",
    }
    host_leg = conf.host_leg
    assert host_leg is not None
    assert alice.wire[1:] == [
        {
            "type": "conference.ended",
            "req_id": "e1",
            "call_id": host_leg.id,
            "conference_id": conf.id,
            "reason": "ended-by-host",
        },
        {"type": "call.ended", "call_id": host_leg.id, "reason": "hangup"},
    ]
    assert alice.wire[0]["type"] == "conference.invitation-sent"
    assert _facts(world) == [
        "ConferenceCreated",
        "ParticipantJoined",  # alice
        "conference:active",
        "invitation ring:ringing",
        "invitation ring:answered",  # bob's answer claims it ...
        "invitation:accepted",
        "conference:ending",  # ... alice ends the conference while it is accepted
        "ParticipantLeft",
        "conference:ended",
        "ConferenceEnded",
        "invitation:canceled",  # bob's answer returns from the media plane: too late
    ]
    world.assert_nothing_left()


async def test_bob_hangs_up_while_his_answer_waits_and_alice_hears_rejected(
    world: World,
) -> None:
    async with _bob_answering(world) as (alice, bob, conf, invitation):
        await world.controller.hangup(bob, invitation, "h1")

    assert bob.types() == ["conference.invitation", "ice.candidate", "ice.done", "call.ended"]
    assert bob.last("call.ended") == {
        "type": "call.ended",
        "req_id": "h1",
        "call_id": invitation,
        "reason": "hangup",
    }
    assert alice.types() == ["conference.invitation-sent", "conference.invitation-rejected"]
    assert alice.last("conference.invitation-rejected")["reason"] == "rejected"
    assert _facts(world)[3:] == [
        "invitation ring:ringing",
        "invitation ring:answered",
        "invitation:accepted",
        "invitation:failed",
    ]
    host_leg = conf.host_leg
    assert host_leg is not None
    assert world.media.open_endpoints() == (host_leg.id,)
    assert list(world.controller.legs) == [host_leg.id]


# invitations ----------------------------------------------------------------------------------
async def test_bob_joins_on_his_second_device_and_the_first_stops_ringing(world: World) -> None:
    alice, bob1, bob2 = world.phone("alice"), world.phone("bob", "1"), world.phone("bob", "2")
    conf = await _start(world, alice)
    await world.controller.conferences.hosting.invite(alice, conf.id, "bob", "i1")
    first = (await bob1.expect("conference.invitation"))["call_id"]
    second = (await bob2.expect("conference.invitation"))["call_id"]
    sent = alice.last("conference.invitation-sent")
    invitation_id = sent["invitation_id"]
    assert sent == {
        "type": "conference.invitation-sent",
        "req_id": "i1",
        "conference_id": conf.id,
        "participants": {},
        "invitations": {
            "bob": {"id": "bob", "invitation_id": invitation_id, "name": "Bob", "status": "pending"}
        },
        "invitation_id": invitation_id,
        "invitee": "bob",
    }

    await world.controller.answer(bob2, second, ANSWER, "a2")

    assert bob1.types() == ["conference.invitation", "ice.candidate", "ice.done", "call.ended"]
    assert bob1.last("call.ended")["reason"] == "answered-elsewhere"
    assert bob2.wire[3:] == [
        {"type": "call.answered", "req_id": "a2", "call_id": second},
        {
            "type": "conference.joined",
            "call_id": second,
            "conference_id": conf.id,
            "name": "standup",
            "from": alice.caller_id,
            "media_type": "audio",
        },
    ]
    accepted = alice.last("conference.invitation-accepted")
    joined_at = conf.members[second].joined_at.isoformat()
    assert accepted == {
        "type": "conference.invitation-accepted",
        "conference_id": conf.id,
        "participants": {
            "bob": {
                "id": "bob",
                "call_id": second,
                "name": "Bob",
                "status": "joined",
                "muted": False,
                "held": False,
                "deaf": False,
                "supervisor_role": "none",
                "joined_at": joined_at,
            }
        },
        "invitations": {},
        "invitation_id": invitation_id,
        "invitee": "bob",
    }
    host_leg = conf.host_leg
    assert host_leg is not None
    assert world.media.members(conf.id) == (host_leg.id, second)
    assert first not in world.controller.legs
    assert _facts(world) == [
        "ConferenceCreated",
        "ParticipantJoined",
        "conference:active",
        "invitation ring:ringing",
        "invitation ring:answered",
        "invitation:accepted",
        "invitation:joined",
        "ParticipantJoined",
    ]


async def test_every_device_of_bob_declines_one_busy_and_alice_hears_rejected(
    world: World,
) -> None:
    alice, bob1, bob2 = world.phone("alice"), world.phone("bob", "1"), world.phone("bob", "2")
    conf = await _start(world, alice)
    await world.controller.conferences.hosting.invite(alice, conf.id, "bob", "i1")
    first = (await bob1.expect("conference.invitation"))["call_id"]
    second = (await bob2.expect("conference.invitation"))["call_id"]

    await world.controller.reject(bob1, first, "busy", "r1")
    await world.controller.hangup(bob2, second, "h2")

    # docs/protocol.md: a reject, busy or not, and a hangup all decline: "rejected".
    assert bob1.wire[-1] == {
        "type": "call.ended",
        "req_id": "r1",
        "call_id": first,
        "reason": "rejected",
    }
    assert bob2.wire[-1] == {
        "type": "call.ended",
        "req_id": "h2",
        "call_id": second,
        "reason": "rejected",
    }
    assert alice.types() == ["conference.invitation-sent", "conference.invitation-rejected"]
    rejected = alice.last("conference.invitation-rejected")
    assert (rejected["invitee"], rejected["reason"], rejected["invitations"]) == (
        "bob",
        "rejected",
        {},
    )
    assert _facts(world)[-3:] == [
        "invitation ring:ringing",
        "invitation ring:exhausted",
        "invitation:declined",
    ]
    assert conf.invitations == {}
    assert len(world.media.open_endpoints()) == 1  # alice's


async def test_nobody_answers_the_invitation_within_the_ring_timeout(world: World) -> None:
    alice, bob = world.phone("alice"), world.phone("bob")
    conf = await _start(world, alice)
    world.controller.ring_timeout = 0.05
    await world.controller.conferences.hosting.invite(alice, conf.id, "bob", "i1")
    ringing = (await bob.expect("conference.invitation"))["call_id"]

    rejected = await alice.expect("conference.invitation-rejected")

    assert rejected["reason"] == "no-answer"
    assert bob.wire[-1] == {"type": "call.ended", "call_id": ringing, "reason": "no-answer"}
    assert _facts(world)[-3:] == [
        "invitation ring:ringing",
        "invitation ring:exhausted",
        "invitation:expired",
    ]


# media ----------------------------------------------------------------------------------------
async def test_a_play_and_a_recording_follow_the_media_planes_events(
    world: World, tmp_path: Any
) -> None:
    world.controller.conferences.recordings_dir = tmp_path
    alice = world.phone("alice")
    conf = await _start(world, alice)
    manager = world.controller.conferences
    audio = audio_spec(audio_url="http://127.0.0.1/prompt.wav")

    world.media.queue_events = True  # the media plane's events arrive after its replies

    playback = await manager.media_ops.play(alice, conf, audio, None, "p1")
    await world.media.settle()
    world.media.end_playback(playback)
    await world.media.settle()
    recording = await manager.media_ops.record(alice, conf, "start", "wav", "r1")
    await manager.media_ops.record(alice, conf, "pause", "wav", "r2")
    await manager.media_ops.record(alice, conf, "resume", "wav", "r3")
    await manager.media_ops.record(alice, conf, "stop", "wav", "r4")
    await world.media.settle()

    assert alice.wire == [
        {"type": "conference.play", "req_id": "p1", "conference_id": conf.id,
         "playback_id": playback},
        {"type": "conference.play-started", "conference_id": conf.id, "playback_id": playback,
         "status": "playing"},
        {"type": "conference.play-ended", "conference_id": conf.id, "playback_id": playback,
         "status": "completed"},
        *[
            {"type": "conference.recording", "req_id": req, "conference_id": conf.id,
             "recording_id": recording, "status": status}
            for req, status in [("r1", "recording"), ("r2", "paused"), ("r3", "recording"),
                                ("r4", "stopping")]
        ],
        {"type": "conference.recording-saved", "conference_id": conf.id,
         "recording_id": recording, "duration_secs": 0.0,
         "path": str(tmp_path / f"{recording}.wav")},
    ]  # fmt: skip
    assert _facts(world)[3:] == [
        "playback:playing",
        "ConferencePlaybackChanged",
        "playback:ended",
        "ConferencePlaybackChanged",
        "recording:recording",
        "recording:paused",
        "recording:recording",
        "recording:stopping",
        "recording:saved",
        "ConferenceRecordingSaved",
    ]
    assert conf.recording is None


async def test_the_floor_passes_to_alice_then_to_nobody(world: World) -> None:
    alice = world.phone("alice")
    conf = await _start(world, alice)
    host_leg = conf.host_leg
    assert host_leg is not None

    world.media.change_floor(conf.id, host_leg.id)
    world.media.change_floor(conf.id, None)

    floor = {"type": "conference.floor-changed", "call_id": host_leg.id, "conference_id": conf.id}
    assert alice.wire == [
        {**floor, "participant": alice.caller_id, "talker_call_id": host_leg.id},
        {**floor, "participant": None, "talker_call_id": None},
    ]
    changes = [e for e in world.bus if isinstance(e, ConferenceFloorChanged)]
    assert [(e.conference_id, e.call_control_id) for e in changes] == [
        (conf.id, host_leg.id),
        (conf.id, None),  # nobody talks
    ]


# call groups ----------------------------------------------------------------------------------
async def test_a_group_of_two_calls_dissolves_when_a_party_hangs_up(world: World) -> None:
    alice, bob, carol = world.phone("alice"), world.phone("bob"), world.phone("carol")
    calls = []
    for callee, req in ((bob, "c1"), (carol, "c2")):
        await world.controller.routing.create_call(alice, callee.user_name, OFFER, None, req)
        ringing = (await callee.expect("call.incoming"))["call_id"]
        await world.controller.answer(callee, ringing, ANSWER, None)
        calls.append((alice.last("call.trying")["call_id"], ringing))
    (to_bob, at_bob), (to_carol, at_carol) = calls
    alice.events.clear()

    await world.controller.conferences.groups.merge(alice, [to_bob, to_carol], None, "m1")
    merged = alice.last("conference.merged")
    await world.controller.hangup(carol, at_carol, "h1")

    dissolved = alice.last("conference.ended")
    assert dissolved == {
        "type": "conference.ended",
        "conference_id": merged["conference_id"],
        "participants": {},
        "invitations": {},
        "reason": "dissolved",
        "call_ids": [],
        "released_call_ids": [to_bob],
    }
    assert (merged["call_ids"], merged["media_call_id"], merged["state"]) == (
        [to_bob, to_carol],
        to_bob,
        "connected",
    )
    # carol's hangup dissolves the group, then ends alice's leg of that call
    assert alice.types() == ["conference.merged", "conference.ended", "call.ended"]
    assert world.media.partner(to_bob) == at_bob  # a 1:1 call again
    assert world.controller.conferences.conferences == {}


# the state machines ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("machine", "states"),
    [
        (Conference, ConferenceState),
        (Invitation, InvitationState),
        (Playback, PlaybackState),
        (Recording, RecordingState),
    ],
)
def test_every_conference_machine_has_a_complete_transition_table(
    machine: Any, states: Any
) -> None:
    check_table(states, machine.TRANSITIONS)
