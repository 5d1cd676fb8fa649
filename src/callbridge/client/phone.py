"""The softphone: one session with a callbridge server, as a facade over the SDK's parts.

::

    async with Phone("ws://127.0.0.1:8080/ws", token) as phone:     # login() ... logout()
        call = await phone.call("105", source=ToneSource(440), sink=BufferSink())
        await call.wait_for("answered")
        await call.send_dtmf("1234#")
        await call.hangup()

The phone speaks docs/protocol.md exactly. It routes the server's messages to its parts,
each in its own module and each importing only those below it:

- :mod:`~callbridge.client.session`: the session (login, resume after a lost socket,
  logout), the phone's own events; :class:`Phone` extends its ``PhoneSession``;
- :mod:`~callbridge.client.transport`: the WebSocket, ``req_id`` matching, reconnecting;
- :mod:`~callbridge.client.calllist`: the calls (placing, incoming, several at once);
- :mod:`~callbridge.client.call`: one call; :mod:`~callbridge.client.media`: its media;
- :mod:`~callbridge.client.conferencebook`: hosted conferences
  (:mod:`~callbridge.client.conference`) and the call group
  (:mod:`~callbridge.client.callgroup`);
- :mod:`~callbridge.client.stream`: ``phone.events()``.

Messages are handled one at a time in arrival order by the transport's reader; media work
(applying SDP, ICE candidates, closing) runs in per-call tasks so a slow peer connection never
delays other messages.
"""

from __future__ import annotations

import ipaddress
import logging
import warnings
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import urlparse

from callbridge import __version__
from callbridge.client import numbers
from callbridge.client.audio import AudioSink, AudioSource
from callbridge.client.call import AnswerAction, Call, Event
from callbridge.client.callgroup import CallGroup
from callbridge.client.callhistory import HistoryPage, parse_history_page
from callbridge.client.calllist import CallList, CallSummary, Dial
from callbridge.client.conference import Conference
from callbridge.client.conferencebook import ConferenceBook
from callbridge.client.errors import CallStateError, remote_error
from callbridge.client.forwarding import forwarding_message, parse_forwarding_state
from callbridge.client.session import DrainNotice, PhoneSession, PhoneState, SessionInfo
from callbridge.client.settings import PeerConnectionSettings, PeerSettingsMethods
from callbridge.client.stream import EventStream
from callbridge.client.video import VideoSink, VideoSource
from callbridge.forwarding import Forwarding
from callbridge.vocabulary import BeepMode, MediaType

__all__ = ["CallSummary", "DrainNotice", "EventStream", "Phone", "PhoneState", "SessionInfo"]

log = logging.getLogger(__name__)


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


class Phone(PeerSettingsMethods, PhoneSession):
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
    :param fallback_urls: other servers of the same service (sharing its database), in order
        of preference. When the server drains (``session-draining``), the phone finishes its
        calls there, then logs in to the first of these that takes it (``server-changed``).
        The draining server's own URL is tried last, and only if listed (behind a load
        balancer, list the balancer's URL). Without any, a drained phone closes with
        ``disconnected("draining")`` (docs/protocol.md, "Graceful drain"). :meth:`login` at a
        server that is draining goes on to these too.

    :attr:`state` is a :class:`PhoneState`. Events (``phone.on(name, handler)``):
    ``incoming(call)``, ``error(RemoteError)``, ``disconnected(reason)``,
    ``call-switched(call)``, ``session-draining(DrainNotice)``, ``server-changed(url)``; see
    :mod:`callbridge.client.events`. ``phone.events()`` yields these and every call's events;
    ``phone.on_message(observer)`` shows the raw server messages (for debugging).
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
        fallback_urls: Sequence[str] = (),
    ) -> None:
        super().__init__(
            url,
            token,
            request_timeout=request_timeout,
            user_id=user_id,
            e911_id=e911_id,
            reconnect=reconnect,
            fallback_urls=fallback_urls,
        )
        self._peer_settings = PeerConnectionSettings()
        self.ice_servers = list(ice_servers)
        self.media_addresses = (
            list(media_addresses) if media_addresses is not None else _default_media_addresses(url)
        )
        self._calls = CallList(
            self._requester,
            self._tasks,
            self._hub,
            self._emitter,
            self._new_media,
            require_ready=lambda action: self._require(PhoneState.READY, action),
            is_ready=lambda: self.state is PhoneState.READY,
            own_number=self._own_number,
        )
        self._group = CallGroup(self._requester, self._tasks, self._hub, self._calls.get)
        self._calls.on_ended(self._group.call_ended)
        self._book = ConferenceBook(
            self._requester, self._calls, self._group, self._emitter, self._hub
        )

    def __repr__(self) -> str:
        return f"<Phone {self.url} {self.state} calls={len(self._calls.live)}>"

    async def __aenter__(self) -> Phone:
        await self.login()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Left by an exception too (the script's, or a cancellation): log out if the phone
        # can, and close it whatever happens, so none of its tasks outlives the block.
        try:
            await self.logout()
        finally:
            await self.close()

    def _own_number(self) -> str:
        user = self.session.user if self.session else {}
        return str(user.get("number") or user.get("extension") or "")

    # ------------------------------------------------------------------------------------------
    # calls

    @property
    def active_calls(self) -> list[Call]:
        """The calls that have not ended, oldest first."""
        return self._calls.live

    def get_call(self, call_id: str) -> Call | None:
        """The live call with this id, or ``None``."""
        return self._calls.get(call_id)

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
        return await self._calls.dial(
            Dial(destination, caller_id, source, sink, codecs, media_type, video_source, video_sink)
        )

    # ------------------------------------------------------------------------------------------
    # seed 002: several calls (foreground and background)

    @property
    def foreground_call(self) -> Call | None:
        """The call the user is on: the latest call placed (:meth:`call`, :meth:`add_call`),
        answered, resumed with :meth:`Call.resume` or brought forward by :meth:`switch_call`.
        When it ends, the previous one still live takes its place. ``None`` without calls.

        The other answered calls are *background* calls (usually on hold).
        """
        return self._calls.foreground

    async def add_call(
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
        """Dial a second call while on an answered one (seed 002 ``addCall``).

        Puts the :attr:`foreground_call` on hold (unless it is on hold already), then places
        the new call like :meth:`call`, with the same parameters (``media_type="video"``
        sends ``video_source``, default a test pattern, and shows the far video in
        ``video_sink``), and returns it; it becomes the foreground call. If the
        new call cannot be placed, or fails or ends later (busy, rejected, hung up, …) while
        in the foreground, the first call comes back to the foreground and is resumed, unless
        the user held it with :meth:`Call.hold` (then it stays on hold).

        :raises CallStateError: there is no answered call to add a call to.
        :raises RemoteError: the new call could not be placed (the first call is resumed).
        """
        self._require(PhoneState.READY, "add_call()")
        return await self._calls.add_call(
            Dial(destination, caller_id, source, sink, codecs, media_type, video_source, video_sink)
        )

    async def switch_call(self) -> None:
        """Swap the foreground call with the background one (seed 002 ``switchCall``).

        Holds the foreground call (unless already on hold), then brings the background call
        (the answered call most recently in the foreground) forward: it is resumed, unless the
        user put it on hold with :meth:`Call.hold`, in which case it stays on hold. Fires
        ``call-switched(call)`` with the new foreground call.

        :raises CallStateError: there are not two answered calls.
        """
        self._require(PhoneState.READY, "switch_call()")
        await self._calls.switch_call()

    async def transfer(self) -> None:
        """Connect the far parties of the two answered calls and leave (seed 002
        ``transfer``; an attended transfer): the background call, on hold, is transferred
        to the foreground call's far party (``call.complete_transfer``). Both calls end with
        ``transferred``; the far parties get ``transferred``.

        :raises CallStateError: there are not two answered calls, or the background one is
            not on hold.
        """
        self._require(PhoneState.READY, "transfer()")
        await self._calls.transfer()

    # ------------------------------------------------------------------------------------------
    # seed 002: conferences; seed 000: the call group

    @property
    def calls(self) -> list[Call]:
        """The live calls outside the call group (seed 000's ``telephony.calls``): calls
        merged into :attr:`conference_group` leave this list and come back when removed."""
        group = self._group.calls
        return [c for c in self.active_calls if c not in group]

    @property
    def conference_group(self) -> CallGroup:
        """Seed 000's call group: merge answered calls into one conversation."""
        return self._group

    @property
    def conferences(self) -> list[Conference]:
        """The live conferences this phone hosts, takes part in or is invited to."""
        return self._book.conferences

    @property
    def conference(self) -> Conference | None:
        """The newest live conference we host or are in (not a mere invitation)."""
        return self._book.current

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
        return self._calls.summaries()

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

    async def call_history(self, limit: int = 20, before: str | None = None) -> HistoryPage:
        """The signed-in user's ended calls from the server's records, newest first
        (``history.list``): at most ``limit`` (1-100); ``before`` is the previous page's
        ``next_before``. A bad ``limit`` or ``before`` raises ``RemoteError``
        (``invalid_message``)."""
        message: dict[str, Any] = {"type": "history.list", "limit": limit}
        if before is not None:
            message["before"] = before
        return parse_history_page(await self.request(message))

    async def get_forwarding(self) -> Forwarding:
        """The signed-in user's forwarding rules (``forwarding.get``; docs/routing.md)."""
        return parse_forwarding_state(await self.request({"type": "forwarding.get"}))

    async def set_forwarding(self, **changes: Any) -> Forwarding:
        """Change the signed-in user's own rules (``forwarding.set``): ``ring_seconds``,
        ``dnd``, ``steps`` (``[{"targets": ["devices", "user:bob", {"type": "number",
        "value": "+1555...", "screening": True}], "seconds": 15}, ...]``), ``on_busy``,
        ``on_no_answer``, ``on_offline``, ``on_dnd``; the others are kept. Returns the rules
        now in force; a refused rule raises ``RemoteError`` (``invalid_message``)."""
        message = forwarding_message(**changes)
        return parse_forwarding_state(await self.request(message))

    async def set_dnd(self, on: bool) -> Forwarding:
        """Turn the signed-in user's do-not-disturb on or off (``forwarding.dnd``)."""
        return parse_forwarding_state(await self.request({"type": "forwarding.dnd", "dnd": on}))

    @staticmethod
    def get_version() -> str:
        """The callbridge SDK's version, e.g. ``"0.1.0"``."""
        return __version__

    clean_phone_number = staticmethod(numbers.clean_phone_number)
    format_number = staticmethod(numbers.format_number)
    get_caller_info = staticmethod(numbers.get_caller_info)

    # ------------------------------------------------------------------------------------------
    # messages from the server

    def _dispatch(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        call_id = msg.get("call_id")
        answers_request = self._transport.awaits(msg.get("req_id"))
        if kind == "call.trying":
            self._calls.placed(msg)
        if kind == "call.incoming" and isinstance(call_id, str):
            self._calls.incoming(msg)
        elif isinstance(kind, str) and kind.startswith("conference."):
            self._book.handle(msg)
        elif self._session_message(msg):
            pass
        elif kind in ("warning", "notification"):
            about = self._calls.get(str(call_id)) if isinstance(call_id, str) else None
            self._emitter.emit(kind, str(msg.get("message", "")))
            self._hub.publish(about.make_event(kind, msg) if about else Event(kind, None, msg))
        elif isinstance(call_id, str) and call_id:
            self._calls.deliver(call_id, msg)
        if kind == "error" and not answers_request:
            error = remote_error(msg)
            # About a call: the call keeps it as last_error and its end follows; else unusual.
            log.log(
                logging.INFO if call_id else logging.WARNING,
                "server error%s: %s",
                f" (call {call_id})" if call_id else "",
                error,
            )
            self._hub.publish(Event("error", self._calls.get(str(call_id)), msg))
            self._emitter.emit("error", error)

    def _session_over(self, end_reason: str) -> None:
        self._calls.end_all(end_reason)
