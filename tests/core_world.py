"""The kit of the core's tests: the real CallController on the in-memory FakeMediaServer, with
small devices that record what the core tells them.

A :class:`Phone` is a device: it keeps every typed event delivered to it and shows them as the
``/ws`` messages the real encoders make, so a test asserts a device's whole wire sequence.
:class:`World` holds the controller, its media plane, its directory and everything the bus
carried. A test module makes its fixture from :func:`open_world`::

    @pytest.fixture
    async def world() -> AsyncIterator[World]:
        async with open_world() as w:
            yield w
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from callbridge.core.call_events import StateChangedEvent
from callbridge.core.controller import CallController
from callbridge.core.events import DeviceEvent, Event, LegEvent
from callbridge.signalling import wire_apps, wire_calls, wire_conferences  # noqa: F401 (encoders)
from callbridge.signalling.wire import to_wire
from callbridge.store.records import Cdr
from callbridge.testing.fake_media import FakeMediaServer
from callbridge.testing.fake_sdp import sdp

__all__ = [
    "ANSWER",
    "ANY",
    "OFFER",
    "RING_TIMEOUT",
    "Directory",
    "Phone",
    "User",
    "World",
    "open_world",
    "ringing",
]

OFFER = sdp(1, ["opus", "PCMU"], True, None)  # what a device offers (call.create, conference.start)
ANSWER = sdp(2, ["opus"], True, None)  # what a device answers to the server's offer
RING_TIMEOUT = 5.0  # seconds; a test that needs it to pass sets a shorter one


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
    cdrs: list[Cdr] = field(default_factory=list)

    async def find_user(self, destination: str, account_id: str = "default") -> User | None:
        return next((u for u in self.users.values() if destination in (u.name, u.extension)), None)

    async def record_cdr(self, cdr: Cdr) -> None:
        self.cdrs.append(cdr)


class Phone:
    """A device: it records what the core tells it, as its ``/ws`` messages."""

    def __init__(self, user: User, label: str) -> None:
        self.id = f"{user.name}-{label}"
        self.user_name = user.name
        self.caller_id = user.number or user.extension
        self.display_name = user.display_name
        self.extension = user.extension
        self.reachable = True
        self.events: list[DeviceEvent] = []
        self._arrived = asyncio.Event()

    def deliver(self, event: DeviceEvent) -> None:
        self.events.append(event)
        self._arrived.set()

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
                self._arrived.clear()
                await self._arrived.wait()
        return self.last(kind)

    def clear(self) -> None:
        self.events.clear()


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

    async def call(self, caller: Phone, callee: str, req_id: str = "c1") -> str:
        """``caller`` places a call to ``callee`` (a user name); its leg's id."""
        await self.controller.routing.create_call(caller, callee, OFFER, None, req_id)
        return str(caller.last("call.trying")["call_id"])

    async def connect(self, caller: Phone, callee: Phone) -> tuple[str, str]:
        """A call from ``caller`` answered by ``callee``; both leg ids. Their records and the
        bus start empty afterwards."""
        out = await self.call(caller, callee.user_name)
        inc = (await callee.expect("call.incoming"))["call_id"]
        await self.controller.answer(callee, inc, ANSWER, None)
        caller.clear()
        callee.clear()
        self.bus.clear()
        return out, inc

    def facts(self, *kinds: str, events: tuple[type[Event], ...] = (LegEvent,)) -> list[str]:
        """What the bus carried, in order, as short strings: state changes of the machines
        of ``kinds`` (``"call:ringing"``), leg events (``"LegEnded:<leg id>:busy"``) and the
        other ``events`` by their class name (``"ConferenceCreated"``)."""
        out: list[str] = []
        for e in self.bus:
            if isinstance(e, StateChangedEvent):
                if e.kind in kinds:
                    out.append(f"{e.kind}:{e.new}")
            elif isinstance(e, LegEvent):
                if LegEvent in events:
                    reason = getattr(e, "reason", None)
                    suffix = f":{reason.value}" if reason is not None else ""
                    out.append(f"{type(e).__name__}:{e.leg.call_control_id}{suffix}")
            elif isinstance(e, events):
                out.append(type(e).__name__)
        return out

    def assert_nothing_left(self) -> None:
        assert self.controller.legs == {}
        assert self.controller.moves.active == {}
        assert self.controller.conferences.conferences == {}
        assert self.media.open_endpoints() == ()
        assert self.media.mixers() == ()


@asynccontextmanager
async def open_world() -> AsyncIterator[World]:
    """A controller on a FakeMediaServer, shut down at the end."""
    media = FakeMediaServer()
    directory = Directory()
    controller = CallController(media, directory, ring_timeout=RING_TIMEOUT, cdr_factory=Cdr)
    seen: list[Event] = []
    controller.bus.subscribe(Event, seen.append)
    yield World(media, controller, directory, seen)
    await controller.shutdown()


def ringing(call_id: str) -> list[dict[str, Any]]:
    """What a device rung for ``call_id`` hears after ``call.incoming``: the candidates."""
    return [
        {
            "type": "ice.candidate",
            "call_id": call_id,
            "candidate": ANY,
            "sdp_mid": ANY,
            "sdp_m_line_index": ANY,
        },
        {"type": "ice.done", "call_id": call_id},
    ]


class _Any:
    """Equal to anything: for fields a test does not pin (SDP, candidates)."""

    def __eq__(self, other: object) -> bool:
        return True

    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _Any()
