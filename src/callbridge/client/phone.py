"""The softphone: one WebSocket session to a callbridge server, and its calls.

::

    async with Phone("ws://127.0.0.1:8080/ws", token) as phone:     # login() ... logout()
        call = await phone.call("105", source=ToneSource(440), sink=BufferSink())
        await call.wait_for("answered")
        await call.send_dtmf("1234#")
        await call.hangup()

The phone speaks docs/protocol.md exactly. Every request carries a fresh ``req_id`` and waits
for the first server message with that ``req_id``; an ``error`` there raises
:class:`~callbridge.errors.RemoteError`. Messages are handled one at a time in arrival order
by a reader task; media work (applying SDP, ICE candidates, closing) runs in per-call tasks so
a slow peer connection never delays other messages.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import json
import logging
import secrets
import warnings
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import TracebackType
from typing import Any, Literal, overload
from urllib.parse import urlparse

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from callbridge import __version__
from callbridge.client import numbers
from callbridge.client.audio import AudioSink, AudioSource
from callbridge.client.call import AnswerAction, Call, CallState, MediaType, _remote_error
from callbridge.client.conference import (
    BeepMode,
    CallGroup,
    Conference,
    ConferenceBook,
    ConferenceState,
)
from callbridge.client.errors import CallStateError, ClientError, NotConnectedError
from callbridge.client.events import (
    ConferenceEventName,
    Event,
    EventEmitter,
    PhoneEventName,
    TaskOwner,
)
from callbridge.client.media import CallMedia
from callbridge.client.settings import (
    DEFAULT_ICE_TRANSPORT,
    DEFAULT_IPV6,
    IceTransport,
    PeerConnectionSettings,
)
from callbridge.client.video import VideoSink, VideoSource
from callbridge.errors import RemoteError
from callbridge.rtp.webrtc import restrict_ice_addresses

__all__ = ["CallSummary", "EventStream", "Phone", "PhoneState", "SessionInfo"]

log = logging.getLogger(__name__)

_MAX_BUFFERED_CALLS = 64  # call_ids with messages waiting for their Call object
_MAX_BUFFERED_MESSAGES = 64  # per call_id
_HANDLER_GRACE = 1.0  # seconds handlers get to finish when the phone closes
_RECONNECT_FIRST = 0.2  # seconds before the first reconnection attempt; doubles each time
_RECONNECT_MAX = 2.0


class PhoneState(StrEnum):
    """The life of a :class:`Phone`::

    IDLE ──login()──▶ CONNECTING ──session.ready──▶ READY ──logout()──▶ CLOSING ──▶ CLOSED
      ▲                   │ error / refused              │  ▲  │ close() / expired ───▶ CLOSED
      └───────────────────┘                 socket lost  ▼  │ session.resumed
                                                   RECONNECTING ──gave up──────────▶ CLOSED
    """

    IDLE = "idle"  # not connected; login() connects
    CONNECTING = "connecting"  # socket open, session.login sent
    READY = "ready"  # logged in: calls can be made and received
    RECONNECTING = "reconnecting"  # socket lost; resuming the session, calls kept
    CLOSING = "closing"  # session.logout sent, waiting for the server to finish
    CLOSED = "closed"  # over for good; make a new Phone to log in again


_TRANSITIONS: dict[PhoneState, frozenset[PhoneState]] = {
    PhoneState.IDLE: frozenset({PhoneState.CONNECTING, PhoneState.CLOSED}),
    PhoneState.CONNECTING: frozenset({PhoneState.IDLE, PhoneState.READY, PhoneState.CLOSED}),
    PhoneState.READY: frozenset({PhoneState.CLOSING, PhoneState.RECONNECTING, PhoneState.CLOSED}),
    PhoneState.RECONNECTING: frozenset({PhoneState.READY, PhoneState.CLOSED}),
    PhoneState.CLOSING: frozenset({PhoneState.CLOSED}),
    PhoneState.CLOSED: frozenset(),
}


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What ``session.ready`` said: the session id and the user
    (``name``, ``extension``, ``number``, ``display_name``)."""

    session_id: str
    user: dict[str, Any] = field(default_factory=dict)
    e911_id: str | None = None
    expires_at: str | None = None  # ISO 8601: when the token, and so the session, expires
    resume_grace: float = 0.0  # seconds the server keeps the session after the socket drops


@dataclass(frozen=True, slots=True)
class CallSummary:
    """One entry of :meth:`Phone.get_calls` (seed 002's ``getCalls`` item)."""

    index: int
    """0-based position among the phone's live calls, oldest first."""
    breed: Literal["call", "conference"]
    """``"call"``, or ``"conference"`` for a conference's own leg."""
    type: Literal["Outgoing", "Incoming"]
    """The direction, spelled as the seed does."""
    state: str
    """The call's :class:`~callbridge.client.CallState` value: ``trying``, ``ringing``,
    ``active`` or ``held`` (the seed's ``connected`` is ``active``)."""
    peer: str
    """The far party: ``to`` of an outgoing call, ``from_`` of an incoming one."""


@dataclass(frozen=True, slots=True)
class _Creating:
    """A call.create waiting for its call.trying."""

    media: CallMedia
    destination: str
    from_: str


class EventStream:
    """Every event of a phone, in order, as an async iterator (see :meth:`Phone.events`).

    Subscribed from creation, so nothing between ``phone.events()`` and the first ``async
    for`` step is missed. Ends when the phone closes; :meth:`close` stops it earlier. Events
    queue up until read: close a stream you stop reading.
    """

    def __init__(self, phone: Phone) -> None:
        self._phone = phone
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._ended = False
        phone._streams.add(self)

    def _put(self, event: Event | None) -> None:
        self._queue.put_nowait(event)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        if self._ended:
            raise StopAsyncIteration
        event = await self._queue.get()
        if event is None:
            self.close()
            raise StopAsyncIteration
        return event

    def close(self) -> None:
        """Stop receiving events; the iteration ends."""
        self._ended = True
        self._phone._streams.discard(self)


async def _resume_quietly(call: Call) -> None:
    try:
        await call._resume_auto()
    except Exception as exc:  # e.g. it ended meanwhile
        log.warning("call %s: could not resume it: %s", call.id, exc)


def _default_media_addresses(url: str) -> list[str] | None:
    """Loopback server -> gather ICE on loopback only (aioice leaves it out otherwise)."""
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return ["127.0.0.1"]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.is_loopback:
        return ["::1"] if ip.version == 6 else ["127.0.0.1"]
    return None


class Phone:
    """One device of a user on a callbridge server (seed 001's ``phone``).

    :param url: the server's WebSocket URL, e.g. ``ws://127.0.0.1:8080/ws``.
    :param token: a login token (``callbridge token USER``).
    :param ice_servers: STUN/TURN servers for the calls' peer connections (``{"urls":
        ..., "username": ..., "credential": ...}``); none by default. Validated, and
        changeable later: see :meth:`set_ice_servers`, :meth:`set_ice_transport`,
        :meth:`set_ipv6` and :mod:`callbridge.client.settings`.
    :param media_addresses: the addresses ICE gathers candidates on. Default: loopback when
        the URL's host is loopback (``127.0.0.1``, ``::1``, ``localhost``), else every
        interface (aioice's choice). This setting is process-wide (aioice has no per-call
        option).
    :param request_timeout: seconds to wait for the server's answer to a request.

    Events (``phone.on(name, handler)``): ``incoming(call)``, ``error(RemoteError)``,
    ``disconnected(reason)``, ``call-switched(call)``; see :mod:`callbridge.client.events`.
    ``phone.events()`` yields these and every call's events.
    """

    def __init__(
        self,
        url: str,
        token: str,
        ice_servers: Iterable[dict[str, Any]] = (),
        media_addresses: Sequence[str] | None = None,
        *,
        request_timeout: float = 10.0,
        user_id: str | None = None,
        e911_id: str | None = None,
        reconnect: bool = True,
    ) -> None:
        self.url = url
        self.token = token
        self.user_id = user_id
        self.e911_id = e911_id
        self.reconnect = reconnect
        self._peer_settings = PeerConnectionSettings()
        self.ice_servers = list(ice_servers)
        self.media_addresses = (
            list(media_addresses) if media_addresses is not None else _default_media_addresses(url)
        )
        self.request_timeout = request_timeout
        self.session: SessionInfo | None = None
        self.disconnect_reason: str | None = None
        self._state = PhoneState.IDLE
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._finisher: asyncio.Task[None] | None = None
        self._reconnector: asyncio.Task[None] | None = None
        self._expired = False
        self._tasks = TaskOwner()
        self._emitter: EventEmitter[PhoneEventName | ConferenceEventName] = EventEmitter(
            self._tasks
        )
        self._streams: set[EventStream] = set()
        self._calls: dict[str, Call] = {}
        self._focus: list[Call] = []  # placed/answered live calls, the foreground one last
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._creating: dict[str, _Creating] = {}  # by req_id of call.create
        self._conferences: dict[str, Conference] = {}  # live conferences, by conference_id
        self._book = ConferenceBook(self)
        self._early: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self._req_prefix = secrets.token_hex(4)
        self._req_ids = itertools.count(1)

    def __repr__(self) -> str:
        return f"<Phone {self.url} {self.state} calls={len(self._calls)}>"

    async def __aenter__(self) -> Phone:
        await self.login()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.logout()

    # ------------------------------------------------------------------------------------------
    # state

    @property
    def state(self) -> PhoneState:
        return self._state

    def _set_state(self, new: PhoneState) -> None:
        old = self._state
        if new is old:
            return
        if new not in _TRANSITIONS[old]:
            raise ClientError(f"phone: cannot go from {old} to {new}")
        log.debug("phone %s: %s -> %s", self.url, old, new)
        self._state = new

    def _require(self, state: PhoneState, action: str) -> None:
        if self._state is not state:
            error = NotConnectedError if state is PhoneState.READY else ClientError
            raise error(f"{action} needs a phone that is {state}; this one is {self._state}")

    @property
    def active_calls(self) -> list[Call]:
        """The calls that have not ended, oldest first."""
        return [c for c in self._calls.values() if c.is_live]

    def get_call(self, call_id: str) -> Call | None:
        """The live call with this id, or ``None``."""
        return self._calls.get(call_id)

    # ------------------------------------------------------------------------------------------
    # seed 002: several calls (foreground and background)

    @property
    def foreground_call(self) -> Call | None:
        """The call the user is on: the latest call placed (:meth:`call`, :meth:`add_call`),
        answered, resumed with :meth:`Call.resume` or brought forward by :meth:`switch_call`.
        When it ends, the previous one still live takes its place. ``None`` without calls.

        The other answered calls are *background* calls (usually on hold).
        """
        return self._focus[-1] if self._focus else None

    def _set_foreground(self, call: Call) -> None:
        if call.is_live and self._calls.get(call.id) is call:
            if call in self._focus:
                self._focus.remove(call)
            self._focus.append(call)

    def _background_call(self) -> Call | None:
        """The answered call most recently in the foreground, other than the foreground."""
        foreground = self.foreground_call
        for call in reversed(self._focus):
            if call is not foreground and call.is_established:
                return call
        return None

    def _two_calls(self, action: str) -> tuple[Call, Call]:
        foreground, background = self.foreground_call, self._background_call()
        if foreground is None or not foreground.is_established or background is None:
            raise CallStateError(
                f"{action} needs two answered calls, one in the foreground and one in the "
                f"background; this phone has {len(self.active_calls)} live call(s)"
                + (f", foreground {foreground.state}" if foreground is not None else "")
            )
        return foreground, background

    async def add_call(
        self,
        destination: str,
        caller_id: str | None = None,
        source: AudioSource | None = None,
        sink: AudioSink | None = None,
        *,
        codecs: Sequence[str] | None = None,
        media_type: MediaType = "audio",
    ) -> Call:
        """Dial a second call while on an answered one (seed 002 ``addCall``).

        Puts the :attr:`foreground_call` on hold (unless it is on hold already), then places
        the new call like :meth:`call` and returns it; it becomes the foreground call. If the
        new call cannot be placed, or fails or ends later (busy, rejected, hung up, …) while
        in the foreground, the first call comes back to the foreground and is resumed, unless
        the user held it with :meth:`Call.hold` (then it stays on hold).

        :raises CallStateError: there is no answered call to add a call to.
        :raises RemoteError: the new call could not be placed (the first call is resumed).
        """
        self._require(PhoneState.READY, "add_call()")
        first = self.foreground_call
        if first is None or not first.is_established:
            raise CallStateError(
                "add_call() needs an answered call in the foreground"
                + (f"; the foreground call is {first.state}" if first else "; there is none")
                + ": use call() for a first call"
            )
        await first._hold_auto()
        try:
            second = await self.call(
                destination, caller_id, source, sink, codecs=codecs, media_type=media_type
            )
        except BaseException:
            self._set_foreground(first)
            await first._resume_auto()
            raise
        if second.is_live:
            second._return_to = first
        elif self.foreground_call is first:  # it ended before call() returned
            await first._resume_auto()
        return second

    async def switch_call(self) -> None:
        """Swap the foreground call with the background one (seed 002 ``switchCall``).

        Holds the foreground call (unless already on hold), then brings the background call
        (the answered call most recently in the foreground) forward: it is resumed, unless the
        user put it on hold with :meth:`Call.hold`, in which case it stays on hold. Fires
        ``call-switched(call)`` with the new foreground call.

        :raises CallStateError: there are not two answered calls.
        """
        self._require(PhoneState.READY, "switch_call()")
        old, new = self._two_calls("switch_call()")
        await old._hold_auto()
        await new._resume_auto()
        self._set_foreground(new)
        data = {"type": "call-switched", "call_id": new.id, "from": old.peer, "to": new.peer}
        self._emitter._emit("call-switched", new)
        self._publish(Event("call-switched", new, data))

    async def transfer(self) -> None:
        """Connect the far parties of the two answered calls and leave (seed 002
        ``transfer``; an attended transfer): the background call, on hold, is transferred
        to the foreground call's far party (``call.complete_transfer``). Both calls end with
        ``transferred``; the far parties get ``transferred``.

        :raises CallStateError: there are not two answered calls, or the background one is
            not on hold.
        """
        self._require(PhoneState.READY, "transfer()")
        target, held = self._two_calls("transfer()")
        if held.state is not CallState.HELD:
            raise CallStateError(f"transfer() needs the background call {held.id} on hold")
        for call in (target, held):  # their ends are the transfer: nothing to resume
            call._return_to = None
            call._consult = None
        await held._request("call.complete_transfer", target_call_id=target.id)

    # ------------------------------------------------------------------------------------------
    # seed 002: conferences; seed 000: the call group

    @property
    def calls(self) -> list[Call]:
        """The live calls outside the call group (seed 000's ``telephony.calls``): calls
        merged into :attr:`conference_group` leave this list and come back when removed."""
        group = self._book.group.calls
        return [c for c in self.active_calls if c not in group]

    @property
    def conference_group(self) -> CallGroup:
        """Seed 000's call group: merge answered calls into one conversation."""
        return self._book.group

    @property
    def conferences(self) -> list[Conference]:
        """The live conferences this phone hosts, takes part in or is invited to."""
        return list(self._conferences.values())

    @property
    def conference(self) -> Conference | None:
        """The newest live conference we host or are in (not a mere invitation)."""
        live = [c for c in self._conferences.values() if c.state is not ConferenceState.INVITED]
        return live[-1] if live else None

    def _current_conference(self, action: str) -> Conference:
        conference = self.conference
        if conference is None:
            raise CallStateError(f"{action} needs an established conference; there is none")
        return conference

    async def start_conference(
        self,
        media_type: MediaType = "audio",
        source: AudioSource | None = None,
        sink: AudioSink | None = None,
        *,
        name: str | None = None,
        beep: BeepMode = "never",
        codecs: Sequence[str] | None = None,
    ) -> Conference:
        """Start a conference hosted by this phone, with no participants yet (seed 002
        ``startConference``). Fires ``conference:connecting`` then ``conference:connected``;
        returns once our leg is connected. Invite with :meth:`add_participant`.

        The conference mixes audio; ``media_type="video"`` is accepted and recorded on the
        conference, but video is not mixed (docs/protocol.md).
        """
        self._require(PhoneState.READY, "start_conference()")
        return await self._book.start(media_type, source, sink, name, beep, codecs)

    async def add_participant(self, participant: str) -> None:
        """Invite ``participant`` to the current conference (seed 002 ``addParticipant``)."""
        await self._current_conference("add_participant()").add_participant(participant)

    async def add_participants(self, participants: Sequence[str]) -> None:
        """Invite several users (seed 002 ``addParticipants``)."""
        await self._current_conference("add_participants()").add_participants(participants)

    async def remove_participant(self, participant: str) -> None:
        """Remove a participant of the current conference (seed 002 ``removeParticipant``)."""
        await self._current_conference("remove_participant()").remove_participant(participant)

    def get_participants(self) -> dict[str, dict[str, Any]]:
        """The current conference's participants (seed 002 ``getParticipants``)."""
        return self._current_conference("get_participants()").get_participants()

    async def join_conference(
        self,
        action: AnswerAction | None = None,
        source: AudioSource | None = None,
        sink: AudioSink | None = None,
        *,
        codecs: Sequence[str] | None = None,
    ) -> Conference:
        """Join the conference whose invitation rings (seed 002 ``joinConference``);
        ``action="hold"`` / ``"end"`` first holds / ends our current calls. Fires
        ``conference:joining``, ``conference:connecting``, ``conference:connected``."""
        self._require(PhoneState.READY, "join_conference()")
        return await self._book.join(action, source, sink, codecs)

    async def reject_conference(self) -> None:
        """Decline the conference invitation that rings (seed 002 ``rejectConference``)."""
        self._require(PhoneState.READY, "reject_conference()")
        await self._book.reject()

    async def end_conference(self) -> None:
        """End the current conference (host) or leave it (participant) (seed 002
        ``endConference``)."""
        await self._current_conference("end_conference()").end()

    # ------------------------------------------------------------------------------------------
    # seed 002: queries and utilities

    def get_calls(self) -> list[CallSummary]:
        """The live calls, oldest first, as the seed's ``getCalls`` describes them."""
        return [
            CallSummary(
                index=i,
                breed="conference" if call._conference is not None else "call",
                type="Outgoing" if call.direction == "outgoing" else "Incoming",
                state=str(call.state),
                peer=call.to if call.direction == "outgoing" else call.from_,
            )
            for i, call in enumerate(self.active_calls)
        ]

    def get_media_type(self) -> str | None:
        """The media type (``"audio"``/``"video"``) of the foreground call, else of the oldest
        live call; ``None`` without a call."""
        call = self.foreground_call or next(iter(self.active_calls), None)
        return call.media_type if call is not None else None

    def is_call_in_progress(self) -> bool:
        """True while the phone has a live call: trying, ringing, active or held.

        .. deprecated:: 0.1
           Deprecated in seed 002 and kept for porting: use ``bool(phone.active_calls)`` or
           :meth:`get_calls`. Warns with :class:`DeprecationWarning`.
        """
        warnings.warn(
            "Phone.is_call_in_progress() is deprecated (as in seed 002): "
            "use bool(phone.active_calls)",
            DeprecationWarning,
            stacklevel=2,
        )
        return bool(self.active_calls)

    @staticmethod
    def get_version() -> str:
        """The callbridge SDK's version, e.g. ``"0.1.0"``."""
        return __version__

    clean_phone_number = staticmethod(numbers.clean_phone_number)
    format_number = staticmethod(numbers.format_number)
    get_caller_info = staticmethod(numbers.get_caller_info)

    # ------------------------------------------------------------------------------------------
    # seed 002: peer-connection settings (for calls created after the change)

    @property
    def ice_servers(self) -> list[dict[str, Any]]:
        """The ICE servers of new calls (a copy); assigning validates, like
        :meth:`set_ice_servers`."""
        return self._peer_settings.ice_servers

    @ice_servers.setter
    def ice_servers(self, servers: Iterable[Mapping[str, Any]]) -> None:
        self._peer_settings.ice_servers = servers

    def get_ice_servers(self) -> list[dict[str, Any]]:
        """The STUN/TURN servers new calls use: key ``urls``, schemes lower-case."""
        return self._peer_settings.ice_servers

    def set_ice_servers(self, servers: Iterable[Mapping[str, Any]]) -> None:
        """Use ``servers`` for new calls, e.g. ``[{"urls": "stun:stun.example.org"},
        {"urls": "turn:turn.example.org?transport=tcp", "username": "u", "credential": "p"}]``.

        :raises InvalidArgumentError: a server or URL is malformed, or a TURN server has no
            username or credential (see
            :meth:`~callbridge.client.settings.PeerConnectionSettings.validate_ice_servers`).
        """
        self._peer_settings.ice_servers = servers

    def reset_ice_servers(self) -> None:
        """Back to the default: no ICE servers (not the constructor's ``ice_servers``)."""
        self._peer_settings.ice_servers = ()

    def get_ice_transport(self) -> IceTransport:
        """``"all"``, ``"relay"`` or ``"none"``; see :mod:`callbridge.client.settings`."""
        return self._peer_settings.ice_transport

    def set_ice_transport(self, policy: IceTransport) -> None:
        """Set the ICE transport policy of new calls.

        ``"relay"`` sends all media through the TURN server (new calls need one);
        ``"none"`` gathers nothing, so new calls are refused. Details in
        :mod:`callbridge.client.settings`.

        :raises InvalidArgumentError: ``policy`` is not ``"all"``, ``"relay"`` or ``"none"``.
        """
        self._peer_settings.ice_transport = policy

    def reset_ice_transport(self) -> None:
        """Back to the default, ``"all"``."""
        self._peer_settings.ice_transport = DEFAULT_ICE_TRANSPORT

    def get_ipv6(self) -> bool:
        """Whether new calls gather IPv6 host candidates."""
        return self._peer_settings.ipv6

    def set_ipv6(self, enabled: bool) -> None:
        """Allow (``True``) or forbid (``False``) IPv6 host candidates in new calls.

        :raises InvalidArgumentError: ``enabled`` is not a bool.
        """
        self._peer_settings.ipv6 = enabled

    def reset_ipv6(self) -> None:
        """Back to the default, ``True`` (see :mod:`callbridge.client.settings` for why)."""
        self._peer_settings.ipv6 = DEFAULT_IPV6

    # ------------------------------------------------------------------------------------------
    # events

    @overload
    def on(
        self, name: Literal["incoming"], handler: Callable[[Call], object]
    ) -> Callable[[Call], object]: ...
    @overload
    def on(
        self, name: ConferenceEventName, handler: Callable[[Conference], object]
    ) -> Callable[[Conference], object]: ...
    @overload
    def on(
        self, name: Literal["error"], handler: Callable[[RemoteError], object]
    ) -> Callable[[RemoteError], object]: ...
    @overload
    def on(
        self, name: Literal["disconnected"], handler: Callable[[str], object]
    ) -> Callable[[str], object]: ...
    @overload
    def on(
        self, name: Literal["call-switched"], handler: Callable[[Call], object]
    ) -> Callable[[Call], object]: ...
    @overload
    def on(
        self,
        name: Literal[
            "connectivity-off", "connectivity-on", "gateway-unreachable", "session-expired"
        ],
        handler: Callable[[], object],
    ) -> Callable[[], object]: ...
    @overload
    def on(
        self,
        name: Literal["address-updated", "warning", "notification", "dialing"],
        handler: Callable[[str], object],
    ) -> Callable[[str], object]: ...
    def on(
        self, name: PhoneEventName | ConferenceEventName, handler: Callable[..., object]
    ) -> Callable[..., object]:
        """Call ``handler`` on every ``name`` event; a plain or a coroutine function.

        ``incoming(call)``: answer with ``await call.answer(...)`` or ``call.reject()``.
        Returns the handler, for :meth:`off`.
        """
        return self._emitter._add(name, handler)

    def off(
        self, name: PhoneEventName | ConferenceEventName, handler: Callable[..., object]
    ) -> None:
        """Remove a handler added with :meth:`on`."""
        self._emitter.off(name, handler)

    def events(self) -> EventStream:
        """All events, phone and call ones, as :class:`~callbridge.client.events.Event`::

            async for event in phone.events():
                if event.name == "incoming":
                    await event.call.answer()

        The iteration ends when the phone closes (logout, close, socket lost).
        """
        stream = EventStream(self)
        if self._state is PhoneState.CLOSED:
            stream._put(None)
        return stream

    def _publish(self, event: Event) -> None:
        for stream in list(self._streams):
            stream._put(event)

    # ------------------------------------------------------------------------------------------
    # session

    async def login(self) -> SessionInfo:
        """Connect and log in (``session.login``); returns the session.

        :raises RemoteError: ``invalid_token``, ``token_expired``, … (the phone can try again).
        :raises OSError: the server cannot be reached.
        """
        self._require(PhoneState.IDLE, "login()")
        self._set_state(PhoneState.CONNECTING)
        try:
            self._ws = await connect(self.url, open_timeout=self.request_timeout)
            self._reader = asyncio.get_running_loop().create_task(
                self._read(self._ws), name=f"phone {self.url} reader"
            )
            login: dict[str, Any] = {"type": "session.login", "token": self.token}
            if self.user_id is not None:
                login["user_id"] = self.user_id
            if self.e911_id is not None:
                login["e911_id"] = self.e911_id
            reply = await self.request(login)
        except BaseException:
            await self._drop_connection()
            if self._state is PhoneState.CONNECTING:
                self._set_state(PhoneState.IDLE)
            raise
        self.session = SessionInfo(
            str(reply.get("session_id", "")),
            dict(reply.get("user", {})),
            reply.get("e911_id"),
            reply.get("expires_at"),
            float(reply.get("resume_grace") or 0.0),
        )
        self._set_state(PhoneState.READY)
        return self.session

    async def associate_e911_id(self, e911_id: str) -> None:
        """Set this session's E911 address id (seed 002 ``associateE911Id``); the phone then
        emits ``address-updated(e911_id)``."""
        reply = await self.request({"type": "session.associate_e911", "e911_id": e911_id})
        self.e911_id = str(reply.get("e911_id", e911_id))

    async def refresh(self, token: str) -> None:
        """Extend the session with a newer token of the same user before it expires."""
        reply = await self.request({"type": "session.refresh", "token": token})
        self.token = token
        if self.session is not None:
            self.session = replace(self.session, expires_at=reply.get("expires_at"))

    async def logout(self) -> None:
        """Log out (``session.logout``): this device's calls end, the server closes the socket.

        Waits for ``session.disconnected``, ends any call still live here with ``hangup``,
        closes all media and awaits the event handlers still running. Idempotent.
        """
        if self._state is PhoneState.READY:
            self._set_state(PhoneState.CLOSING)
            try:
                await self.request({"type": "session.logout"})
            except (RemoteError, NotConnectedError, TimeoutError) as exc:
                log.warning("logout: %s; closing the connection anyway", exc)
            if self._reader is not None and self._reader is not asyncio.current_task():
                # The server closes the socket once it is done with the session.
                await asyncio.wait([self._reader], timeout=self.request_timeout)
        await self._finish("logout", "hangup")

    async def close(self) -> None:
        """Drop the connection without logging out and without reconnecting. The server keeps
        the session for its grace period, then ends our calls (``disconnected`` for the far
        parties). Calls end here with ``disconnected``; media and handlers are closed as in
        :meth:`logout`. Idempotent."""
        await self._finish("closed", "disconnected")

    async def _finish(self, reason: str, end_reason: str) -> None:
        """Tear down once, whoever asks first (logout, close, or the reader on a lost socket)."""
        if self._finisher is None:
            self._finisher = asyncio.get_running_loop().create_task(
                self._teardown(reason, end_reason), name=f"phone {self.url} teardown"
            )
        if self._finisher is not asyncio.current_task():
            await asyncio.shield(self._finisher)

    async def _teardown(self, reason: str, end_reason: str) -> None:
        reconnector = self._reconnector
        if reconnector is not None and reconnector is not asyncio.current_task():
            reconnector.cancel()  # closing wins over resuming
        self.disconnect_reason = self.disconnect_reason or reason
        if self._state is not PhoneState.CLOSED:
            self._set_state(PhoneState.CLOSED)
        await self._drop_connection()
        for call in list(self._calls.values()):
            call._end(end_reason, {"type": "call.ended", "call_id": call.id, "local": True})
        for pending in self._creating.values():
            self._tasks.spawn(pending.media.close(), name="close media")
        self._creating.clear()
        self._emitter._emit("disconnected", self.disconnect_reason)
        self._publish(Event("disconnected", None, {"reason": self.disconnect_reason}))
        for stream in list(self._streams):
            stream._put(None)
        await self._tasks.shutdown(_HANDLER_GRACE)

    async def _drop_connection(self) -> None:
        """Close the socket, stop the reader, fail the requests still waiting."""
        ws, reader = self._ws, self._reader
        self._ws = self._reader = None
        if ws is not None:
            await ws.close()
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
            await asyncio.wait([reader])
        self._fail_pending()

    def _fail_pending(self) -> None:
        for req_id, future in list(self._pending.items()):
            if not future.done():
                future.set_exception(NotConnectedError(f"connection closed (request {req_id})"))
        self._pending.clear()

    # ------------------------------------------------------------------------------------------
    # requests

    async def request(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """Send one protocol message and return the server's first reply to it.

        A ``req_id`` is added unless ``message`` has one. The reply is the message that
        carries it (``call.trying``, ``call.held``, …) as a dict.

        :raises RemoteError: the reply is an ``error``.
        :raises NotConnectedError: no connection, or it closed before the reply.
        :raises TimeoutError: no reply within :attr:`request_timeout` seconds.
        """
        if self._state is PhoneState.RECONNECTING:
            raise NotConnectedError("the phone is reconnecting; try again when it is ready")
        return await self._request_now(message)

    async def _request_now(self, message: Mapping[str, Any]) -> dict[str, Any]:
        ws = self._ws
        if ws is None or self._state in (PhoneState.IDLE, PhoneState.CLOSED):
            raise NotConnectedError(f"the phone is {self._state}: log in first")
        req_id = str(message.get("req_id") or self._new_req_id())
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = future
        try:
            try:
                await ws.send(json.dumps({**message, "req_id": req_id}))
            except ConnectionClosed as exc:
                raise NotConnectedError(f"connection closed: {exc}") from exc
            wait = self.request_timeout
            try:
                async with asyncio.timeout(wait):
                    reply = await future
            except TimeoutError:
                raise TimeoutError(
                    f"no reply to {message.get('type')} (req_id {req_id}) within {wait} s"
                ) from None
        finally:
            self._pending.pop(req_id, None)
        if reply.get("type") == "error":
            raise _remote_error(reply)
        return reply

    # ------------------------------------------------------------------------------------------
    # calls

    def _new_media(
        self,
        source: AudioSource | None,
        sink: AudioSink | None,
        codecs: Sequence[str] | None,
    ) -> CallMedia:
        self._peer_settings.check_call(self.media_addresses)
        if self.media_addresses is not None:
            restrict_ice_addresses(self.media_addresses)
        media = CallMedia(source, sink, self.ice_servers, codecs)
        self._peer_settings.apply(media)
        return media

    async def call(
        self,
        destination: str,
        caller_id: str | None = None,
        source: AudioSource | None = None,
        sink: AudioSink | None = None,
        *,
        codecs: Sequence[str] | None = None,
        media_type: MediaType = "audio",
        video_source: VideoSource | None = None,
        video_sink: VideoSink | None = None,
    ) -> Call:
        """Call ``destination`` (extension, E.164 number or user name).

        Returns once the call is placed: the server accepted it (``call.trying``), answered
        our offer (``sdp.answer``) and routed it (``call.ringing``, or ``call.answered`` for a
        destination that answers at once). The call then progresses by events (``answered``,
        ``held``, ``ended``, …). A destination that cannot be reached therefore raises here
        instead of returning a call that is about to end. ``caller_id`` is what the callee
        sees as ``from``; ``codecs`` restricts and orders our codecs (e.g. ``["PCMU"]``).
        ``media_type="video"`` places a video call (VP8, relayed by the server), sending
        ``video_source`` (default: a test pattern) and showing the far video in ``video_sink``.

        :raises RemoteError: the server refused the call or it ended before it was placed:
            the ``code`` of the server's ``error`` (``destination_not_found``, …), else the end
            reason.
        :raises TimeoutError: not placed within :attr:`request_timeout` (the call is hung up).
        """
        self._require(PhoneState.READY, "call()")
        self._emitter._emit("dialing", destination)
        self._publish(Event("dialing", None, {"destination": destination}))
        media = self._new_media(source, sink, codecs)
        if media_type == "video":
            media.enable_video(video_source, video_sink)
        req_id = self._new_req_id()
        user = self.session.user if self.session else {}
        from_ = caller_id or str(user.get("number") or user.get("extension") or "")
        self._creating[req_id] = _Creating(media, destination, from_)
        message: dict[str, Any] = {
            "type": "call.create",
            "req_id": req_id,
            "destination": destination,
            "sdp": await media.create_offer(),
            "media_type": media_type,
        }
        if caller_id is not None:
            message["caller_id"] = caller_id
        try:
            reply = await self.request(message)
            call = self._calls.get(str(reply.get("call_id")))
            if reply.get("type") != "call.trying" or call is None:
                raise RemoteError(
                    str(reply.get("reason") or "failed"),
                    f"call.create answered with {reply.get('type')} instead of call.trying",
                )
        except BaseException:
            self._creating.pop(req_id, None)
            await media.close()
            raise
        try:
            await call._wait_setup()
        except BaseException:
            if call.is_live:
                try:
                    await call.hangup()
                except Exception as exc:
                    log.warning("call %s: hangup after failed setup: %s", call.id, exc)
            raise
        self._set_foreground(call)
        return call

    def _new_req_id(self) -> str:
        return f"{self._req_prefix}-{next(self._req_ids)}"

    def _forget(self, call: Call) -> None:
        """The call ended: it is no longer one of the phone's calls."""
        self._book.group._call_ended(call)
        if self._calls.get(call.id) is call:
            del self._calls[call.id]
        was_foreground = self.foreground_call is call
        if call in self._focus:
            self._focus.remove(call)
        first, call._return_to = call._return_to, None
        if (
            was_foreground
            and first is not None
            and first.is_live
            and self._state is PhoneState.READY
        ):
            # add_call(): back to the first call, resumed unless held explicitly.
            self._set_foreground(first)
            self._tasks.spawn(_resume_quietly(first), name=f"call {first.id} resume")

    def _adopt(self, call: Call) -> None:
        """Register a new call and replay what arrived for it before it existed."""
        self._calls[call.id] = call
        for msg in self._early.pop(call.id, []):
            call._handle(msg)

    # ------------------------------------------------------------------------------------------
    # the reader

    async def _reconnect(self) -> None:
        """Resume the session on a new socket, retrying until the server's grace runs out."""
        assert self.session is not None
        self._emitter._emit("connectivity-off")
        self._publish(Event("connectivity-off", None, {}))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(self.session.resume_grace, 1.0)
        delay = _RECONNECT_FIRST
        while self._state is PhoneState.RECONNECTING:
            try:
                ws = await connect(self.url, open_timeout=self.request_timeout)
            except (OSError, WebSocketException, TimeoutError) as exc:
                log.debug("phone %s: reconnect failed: %s", self.url, exc)
            else:
                self._ws = ws
                self._reader = loop.create_task(self._read(ws), name=f"phone {self.url} reader")
                try:
                    session_id = self.session.session_id
                    resume = {"type": "session.resume", "session_id": session_id}
                    await self._request_now({**resume, "token": self.token})
                except RemoteError as exc:
                    log.warning("phone %s: the session cannot be resumed: %s", self.url, exc)
                    break
                except (NotConnectedError, TimeoutError):
                    pass  # lost again: keep trying
                else:
                    self._set_state(PhoneState.READY)
                    self._emitter._emit("connectivity-on")
                    self._publish(Event("connectivity-on", None, {}))
                    return
            if loop.time() + delay > deadline:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RECONNECT_MAX)
        self._emitter._emit("gateway-unreachable")
        self._publish(Event("gateway-unreachable", None, {}))
        await self._finish("disconnected", "disconnected")

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for frame in ws:
                try:
                    msg = json.loads(frame)
                except ValueError:
                    log.warning("ignoring a frame that is not JSON: %.80r", frame)
                    continue
                if not isinstance(msg, dict):
                    log.warning("ignoring a frame that is not an object: %.80r", frame)
                    continue
                try:
                    self._dispatch(msg)
                except Exception:
                    log.exception("handling %s failed", msg.get("type"))
        except (ConnectionClosed, WebSocketException, OSError) as exc:
            log.debug("phone %s: connection lost: %s", self.url, exc)
        finally:
            self._fail_pending()
            lost = self._state is PhoneState.READY and not self._expired
            if lost and self.reconnect and self._finisher is None and self.session is not None:
                # Only the signalling channel is gone: calls and their media go on while we
                # resume the session (docs/protocol.md, "Session").
                self._set_state(PhoneState.RECONNECTING)
                self._reconnector = asyncio.get_running_loop().create_task(
                    self._reconnect(), name=f"phone {self.url} reconnect"
                )
            elif self._state in (PhoneState.READY, PhoneState.CLOSING):
                # The server closed the socket (after logout or expiry, or unexpectedly).
                reason = "expired" if self._expired else "disconnected" if lost else "logout"
                self._finisher = self._finisher or asyncio.get_running_loop().create_task(
                    self._teardown(
                        reason if lost or self._expired else "logout",
                        "disconnected" if lost else "hangup",
                    ),
                    name=f"phone {self.url} teardown",
                )

    def _dispatch(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        req_id = msg.get("req_id")
        call_id = msg.get("call_id")
        answers_request = isinstance(req_id, str) and req_id in self._pending
        if kind == "call.trying" and isinstance(req_id, str) and req_id in self._creating:
            pending = self._creating.pop(req_id)
            self._adopt(
                Call(
                    self,
                    str(call_id),
                    "outgoing",
                    from_=pending.from_,
                    to=pending.destination,
                    media=pending.media,
                )
            )
        if kind == "call.incoming" and isinstance(call_id, str):
            call = Call(
                self,
                call_id,
                "incoming",
                from_=str(msg.get("from", "")),
                from_name=str(msg.get("from_name") or ""),
                to=str(msg.get("to", "")),
                offer_sdp=str(msg.get("sdp", "")),
            )
            self._adopt(call)
            self._publish(call._make_event("incoming", msg))
            self._emitter._emit("incoming", call)
        elif isinstance(kind, str) and kind.startswith("conference."):
            self._book.handle(msg)
        elif kind == "session.disconnected":
            self.disconnect_reason = str(msg.get("reason", "")) or None
        elif kind in ("warning", "notification"):
            about = self._calls.get(str(call_id)) if isinstance(call_id, str) else None
            text = str(msg.get("message", ""))
            self._emitter._emit(kind, text)
            self._publish(about._make_event(kind, msg) if about else Event(kind, None, msg))
        elif kind == "session.expired":
            self._expired = True
            self.disconnect_reason = "expired"
            self._emitter._emit("session-expired")
            self._publish(Event("session-expired", None, msg))
        elif kind == "session.address-updated":
            self._emitter._emit("address-updated", str(msg.get("e911_id", "")))
            self._publish(Event("address-updated", None, msg))
        elif isinstance(call_id, str) and call_id:
            known = self._calls.get(call_id)
            if known is not None:
                known._handle(msg)
            else:
                self._buffer(call_id, msg)
        if kind == "error" and not answers_request:
            error = _remote_error(msg)
            # About a call: the call keeps it as last_error and its end follows; else unusual.
            log.log(
                logging.INFO if call_id else logging.WARNING,
                "server error%s: %s",
                f" (call {call_id})" if call_id else "",
                error,
            )
            self._publish(Event("error", self._calls.get(str(call_id)), msg))
            self._emitter._emit("error", error)
        if answers_request:
            future = self._pending.pop(str(req_id))
            if not future.done():
                future.set_result(msg)

    def _buffer(self, call_id: str, msg: dict[str, Any]) -> None:
        """Keep messages of a call we do not know (yet): its Call may be about to exist."""
        if msg.get("type") == "call.ended":
            self._early.pop(call_id, None)  # nothing will come of this call
            return
        queue = self._early.setdefault(call_id, [])
        if len(queue) < _MAX_BUFFERED_MESSAGES:
            queue.append(msg)
        while len(self._early) > _MAX_BUFFERED_CALLS:
            self._early.popitem(last=False)
