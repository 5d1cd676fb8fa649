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
from dataclasses import dataclass, field
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
from callbridge.core.controller import CallController
from callbridge.core.events import DeviceEvent, Event
from callbridge.signalling import wire_calls, wire_conferences  # noqa: F401 (encoders)
from callbridge.signalling.wire import to_wire
from callbridge.statemachine import check_table
from callbridge.testing.fake_media import FakeMediaServer
from callbridge.testing.fake_sdp import sdp

OFFER = sdp(1, ["opus", "PCMU"], True, None)  # what a device offers (conference.start)
ANSWER = sdp(2, ["opus"], True, None)  # what a device answers to the server's offer


@dataclass
class User:
    name: str
    display_name: str
    extension: str
    number: str | None = None


@dataclass
class Directory:
    """The store, as the controller needs it: users by extension or name; CDRs kept."""

    users: dict[str, User] = field(default_factory=dict)
    cdrs: list[Any] = field(default_factory=list)

    async def find_user(self, destination: str) -> User | None:
        return next((u for u in self.users.values() if destination in (u.name, u.extension)), None)

    async def record_cdr(self, cdr: Any) -> None:
        self.cdrs.append(cdr)


class Phone:
    """A device: it records what the core tells it, as its ``/ws`` messages."""

    def __init__(self, user: User, label: str) -> None:
        self.id = f"{user.name}-{label}"
        self.user_name = user.name
        self.caller_id = user.number or user.extension
        self.display_name = user.display_name
        self.events: list[DeviceEvent] = []
        self.arrived = asyncio.Event()

    @property
    def reachable(self) -> bool:
        return True

    def deliver(self, event: DeviceEvent) -> None:
        self.events.append(event)
        self.arrived.set()

    def send(self, message: dict[str, Any]) -> None:
        raise AssertionError(f"the core built a wire message: {message}")

    @property
    def wire(self) -> list[dict[str, Any]]:
        return [to_wire(e) for e in self.events]

    def types(self) -> list[str]:
        return [m["type"] for m in self.wire]

    def last(self, kind: str) -> dict[str, Any]:
        return next(m for m in reversed(self.wire) if m["type"] == kind)

    async def expect(self, kind: str) -> dict[str, Any]:
        """Wait (on events, not time) until a message of ``kind`` has arrived."""
        async with asyncio.timeout(1):
            while kind not in self.types():
                self.arrived.clear()
                await self.arrived.wait()
        return self.last(kind)


@dataclass
class World:
    media: FakeMediaServer
    controller: CallController
    directory: Directory
    bus: list[Event]

    def phone(self, name: str, label: str = "1") -> Phone:
        user = self.directory.users.get(name)
        if user is None:
            ext = str(200 + len(self.directory.users))
            user = self.directory.users[name] = User(name, name.title(), ext)
        device = Phone(user, label)
        self.controller.add_device(device)
        return device

    def facts(self) -> list[str]:
        """The bus's conference facts and state changes, in order, as short strings."""
        out: list[str] = []
        for e in self.bus:
            name = type(e).__name__
            if name == "StateChangedEvent":
                kind, new = getattr(e, "kind"), getattr(e, "new")  # noqa: B009
                if kind in (
                    "conference",
                    "group",
                    "invitation",
                    "invitation ring",
                    "playback",
                    "recording",
                ):
                    out.append(f"{kind}:{new}")
            elif name.startswith(("Conference", "Participant")):
                out.append(name)
        return out


@pytest.fixture
async def world() -> AsyncIterator[World]:
    media = FakeMediaServer()
    directory = Directory()
    controller = CallController(media, directory, ring_timeout=5.0)
    seen: list[Event] = []
    controller.bus.subscribe(Event, seen.append)
    yield World(media, controller, directory, seen)
    await controller.shutdown()


async def _start(world: World, host: Phone) -> Conference:
    conf = await world.controller.conferences.start(host, OFFER, "audio", "standup", "never", "s1")
    host.events.clear()
    return conf


def _assert_nothing_left(world: World) -> None:
    assert world.controller.legs == {}
    assert world.controller.conferences.conferences == {}
    assert world.media.open_endpoints() == ()
    assert world.media.mixers() == ()


# the race -------------------------------------------------------------------------------------
async def test_an_invitation_answered_as_the_host_ends_the_conference_ends_cleanly(
    world: World,
) -> None:
    alice, bob = world.phone("alice"), world.phone("bob")
    conf = await _start(world, alice)
    await world.controller.conferences.invite(alice, conf.id, "bob", "i1")
    invitation = (await bob.expect("conference.invitation"))["call_id"]
    gate = world.media.hold("accept_answer", invitation)

    answering = asyncio.create_task(world.controller.answer(bob, invitation, ANSWER, "a1"))
    await gate.reached()  # bob's answer waits on the media plane ...
    await world.controller.conferences.end(alice, conf.id, "e1")  # ... as alice ends it
    gate.release()
    await answering
    await world.media.settle()

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
    assert world.facts() == [
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
    _assert_nothing_left(world)


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
