"""Seed 002's hosted conferences in the SDK.

A :class:`Conference` is one conference this phone hosts (``phone.start_conference()``) or
was invited to (the ``conference:invitation-received`` event; ``phone.join_conference()`` or
``phone.reject_conference()``). Its own audio is one leg, :attr:`Conference.call`, an ordinary
:class:`~callbridge.client.Call` whose media carries the mix of the others.

Events of a conference go to the phone's handlers (``phone.on("conference:connected",
handler)``; the handler gets the :class:`Conference`) and to ``phone.events()``: the
conference asks its :class:`ConferenceHost` (the phone's conference book) to deliver them.

Seed 000's call group is :mod:`callbridge.client.callgroup` (re-exported here).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from enum import StrEnum
from typing import Any, ClassVar, Literal, Protocol

from callbridge.client.call import Call, Event
from callbridge.client.callgroup import CallGroup, GroupState
from callbridge.client.errors import CallStateError
from callbridge.client.eventnames import ConferenceEventName
from callbridge.client.transport import Requester
from callbridge.statemachine import StateMachine
from callbridge.vocabulary import BeepMode, MediaType, SupervisorRole

__all__ = [
    "BeepMode",
    "CallGroup",
    "Conference",
    "ConferenceHost",
    "ConferenceRole",
    "ConferenceState",
    "GroupState",
    "SupervisorRole",
]

log = logging.getLogger(__name__)

ConferenceRole = Literal["host", "participant"]


class ConferenceState(StrEnum):
    """A conference as this phone sees it::

    host:        CONNECTING ──conference.connected──▶ CONNECTED ◀──resume()──▶ HELD
    participant: INVITED ──join_conference()──▶ CONNECTING ──conference.joined──▶ CONNECTED
    any state ──conference.ended / the leg ended / reject_conference()──▶ ENDED
    """

    INVITED = "invited"  # an invitation rings this device
    CONNECTING = "connecting"  # started or joining; the server has not confirmed yet
    CONNECTED = "connected"  # in the conference
    HELD = "held"  # we hold our own membership: we hear nothing and are not heard
    ENDED = "ended"


class ConferenceHost(Protocol):
    """What a :class:`Conference` needs of the phone (its conference book implements it)."""

    @property
    def requester(self) -> Requester: ...

    def emit(self, name: ConferenceEventName, conference: Conference, event: Event) -> None:
        """Call the phone's ``name`` handlers with ``conference``; publish ``event``."""

    def conference_over(self, conference: Conference) -> None:
        """``conference`` ended: it is no longer one of the phone's conferences."""


class Conference(StateMachine[ConferenceState]):
    """One conference of this phone (seed 002): host or participant.

    Host side, :attr:`participants` and :attr:`invitations` follow the server's messages
    (keyed by participant id: the id given to :meth:`add_participant`).
    """

    TRANSITIONS: ClassVar[Mapping[ConferenceState, frozenset[ConferenceState]]] = {
        ConferenceState.INVITED: frozenset({ConferenceState.CONNECTING, ConferenceState.ENDED}),
        ConferenceState.CONNECTING: frozenset({ConferenceState.CONNECTED, ConferenceState.ENDED}),
        ConferenceState.CONNECTED: frozenset({ConferenceState.HELD, ConferenceState.ENDED}),
        ConferenceState.HELD: frozenset({ConferenceState.CONNECTED, ConferenceState.ENDED}),
        ConferenceState.ENDED: frozenset(),
    }

    def __init__(
        self,
        host: ConferenceHost,
        role: ConferenceRole,
        media_type: MediaType,
        *,
        conference_id: str = "",
        from_: str = "",
        name: str = "",
    ) -> None:
        self._host = host
        self.id = conference_id
        self.role: ConferenceRole = role
        self.media_type: MediaType = media_type
        self.from_ = from_
        """The host (participant side)."""
        self.name = name
        self.call: Call | None = None
        self.state = ConferenceState.CONNECTING if role == "host" else ConferenceState.INVITED
        self.participants: dict[str, dict[str, Any]] = {}
        self.invitations: dict[str, dict[str, Any]] = {}
        self.floor: str | None = None
        """The participant id of the active talker (``conference:floor-changed``)."""
        self.end_reason: str | None = None
        self._in = asyncio.Event()  # set once we are in (connected), or it ended
        self.recordings: list[dict[str, Any]] = []
        """The ``conference.recording-saved`` messages (``recording_id``, ``path``, …)."""

    def __repr__(self) -> str:
        return f"<Conference {self.id} {self.role} {self.state}>"

    @property
    def is_live(self) -> bool:
        return self.state is not ConferenceState.ENDED

    # events ---------------------------------------------------------------------------------
    def _emit(self, name: ConferenceEventName, data: dict[str, Any]) -> None:
        call = self.call
        event = (
            replace(call.make_event(name, data), conference=self, media_type=self.media_type)
            if call is not None
            else Event(name, None, data, media_type=self.media_type, conference=self)
        )
        self._host.emit(name, self, event)

    def _update(self, msg: dict[str, Any]) -> None:
        participants, invitations = msg.get("participants"), msg.get("invitations")
        if isinstance(participants, dict):
            self.participants = participants
        if isinstance(invitations, dict):
            self.invitations = invitations

    def handle(self, msg: dict[str, Any]) -> None:
        """Take a ``conference.*`` message about this conference (the phone routes them)."""
        kind = str(msg.get("type", ""))
        self._update(msg)
        name = kind.removeprefix("conference.")
        if kind in ("conference.connected", "conference.joined"):
            self.name = str(msg.get("name") or self.name)
            if self.can(ConferenceState.CONNECTED):
                self.transition(ConferenceState.CONNECTED, cause=kind)
            else:
                log.warning("conference %s: %s while %s", self.id, kind, self.state)
            self._in.set()
            self._emit("conference:connected", msg)
        elif kind == "conference.ended":
            self._end(str(msg.get("reason", "ended")), msg)
        elif kind == "conference.floor-changed":
            participant = msg.get("participant")
            self.floor = str(participant) if participant is not None else None
            self._emit("conference:floor-changed", msg)
        elif kind == "conference.recording-saved":
            self.recordings.append(msg)
            self._emit("conference:recording-saved", msg)
        elif name in _RELAYED:
            self._emit(_RELAYED[name], msg)
        else:
            log.debug("conference %s: ignoring %s", self.id, kind)

    def _end(self, reason: str, data: dict[str, Any]) -> None:
        if not self.is_live:
            return
        was_invited = self.state is ConferenceState.INVITED
        self.transition(ConferenceState.ENDED, cause=reason)
        self._in.set()
        self.end_reason = reason
        self._host.conference_over(self)
        self._emit("conference:canceled" if was_invited else "conference:ended", data)

    # the leg (LegOwner) ----------------------------------------------------------------------
    def leg_ended(self, reason: str) -> None:
        """Our leg ended: so did the conference, for us."""
        self._end(reason, {"type": "call.ended", "conference_id": self.id, "reason": reason})

    def leg_held(self, held: bool) -> None:
        """Our leg was held or resumed: so is our membership."""
        if self.state in (ConferenceState.CONNECTED, ConferenceState.HELD):
            self.transition(ConferenceState.HELD if held else ConferenceState.CONNECTED)
            name: ConferenceEventName = "conference:held" if held else "conference:resumed"
            self._emit(name, {"conference_id": self.id, **self._lists()})

    def _lists(self) -> dict[str, Any]:
        return {"participants": self.participants, "invitations": self.invitations}

    # life cycle (driven by the phone) -------------------------------------------------------
    def attach(self, call: Call) -> None:
        """``call`` is this conference's own leg."""
        call.leg_owner = self
        self.call = call

    def starting(self) -> None:
        """Host: ``conference.start`` is about to go (``conference:connecting``)."""
        self._emit("conference:connecting", {"media_type": self.media_type})

    def started(self, conference_id: str, name: str) -> None:
        """Host: the server started the conference (``conference.started``)."""
        self.id = conference_id
        self.name = name

    def invitation_received(self, msg: dict[str, Any]) -> None:
        """Participant: the invitation rings (``conference:invitation-received``)."""
        self._emit("conference:invitation-received", msg)

    async def join_with(self, answer: Callable[[], Awaitable[None]], patience: float) -> None:
        """Participant (``phone.join_conference()``): ``answer`` our leg, then wait up to
        ``patience`` seconds until we are in.

        :raises CallStateError: the conference ended while joining.
        """
        self._emit("conference:joining", {"conference_id": self.id})
        self.transition(ConferenceState.CONNECTING, cause="join")
        await answer()
        if self.state is ConferenceState.CONNECTING:
            self._emit("conference:connecting", {"conference_id": self.id})
        async with asyncio.timeout(patience):
            await self._in.wait()  # conference.joined follows the answer's reply
        if self.state is ConferenceState.ENDED:
            raise CallStateError(f"conference {self.id} ended while joining ({self.end_reason})")

    async def wait_in(self, patience: float) -> None:
        """Host (``phone.start_conference()``): wait up to ``patience`` seconds until we are in
        (``conference.connected``) or it ended. The server sends it after the reply once our leg
        is in the mixer, which may take a round trip to a media worker process."""
        async with asyncio.timeout(patience):
            await self._in.wait()

    def decline(self) -> None:
        """Participant: we reject the invitation (ended, ``rejected``; no event)."""
        self.transition(ConferenceState.ENDED, cause="rejected")
        self.end_reason = "rejected"
        self._host.conference_over(self)

    # commands -------------------------------------------------------------------------------
    async def _request(self, kind: str, **fields: Any) -> dict[str, Any]:
        request = {"type": kind, "conference_id": self.id, **fields}
        reply = await self._host.requester.request(request)
        self._update(reply)
        return reply

    def _require_host(self, action: str) -> None:
        if self.role != "host":
            raise CallStateError(f"{action}: only the host of conference {self.id} may do this")
        if not self.is_live:
            raise CallStateError(f"{action}: conference {self.id} has ended")

    async def add_participant(self, participant: str) -> None:
        """Invite a user (extension, number or name) (seed 002 ``addParticipant``): fires
        ``invitation-sending`` now, ``invitation-sent`` when the invitee's devices ring, then
        ``invitation-accepted`` or ``invitation-rejected``."""
        self._require_host("add_participant()")
        self._emit(
            "conference:invitation-sending", {"conference_id": self.id, "invitee": participant}
        )
        await self._request("conference.invite", to=participant)

    async def add_participants(self, participants: Sequence[str]) -> None:
        """Invite several users, one after the other."""
        for participant in participants:
            await self.add_participant(participant)

    async def remove_participant(self, participant: str) -> None:
        """Remove a participant, or withdraw its invitation (seed 002 ``removeParticipant``)."""
        self._require_host("remove_participant()")
        await self._request("conference.remove", participant=participant)

    def get_participants(self) -> dict[str, dict[str, Any]]:
        """The participants, by id (seed 002 ``getParticipants``; host only)."""
        self._require_host("get_participants()")
        return dict(self.participants)

    async def refresh(self) -> dict[str, Any]:
        """Ask the server for the conference's state (``conference.get``) and return it."""
        return await self._request("conference.get")

    async def end(self) -> None:
        """End the conference (host: everyone is disconnected) or leave it (participant)
        (seed 002 ``endConference``). Fires ``disconnecting`` now and ``ended`` when done."""
        if not self.is_live:
            return
        self._emit("conference:disconnecting", {"conference_id": self.id, **self._lists()})
        await self._request("conference.end")

    async def hold(self) -> None:
        """Hold our own membership: we hear nothing and are not heard (``held``)."""
        await self._request("conference.hold")

    async def resume(self) -> None:
        await self._request("conference.resume")

    async def mute(self) -> None:
        """Mute our audio in the conference (enforced by the server)."""
        call = self._leg("mute()")
        await call.mute()

    async def unmute(self) -> None:
        call = self._leg("unmute()")
        await call.unmute()

    def _leg(self, action: str) -> Call:
        if self.call is None or not self.call.is_live:
            raise CallStateError(f"{action}: conference {self.id} has no live leg here")
        return self.call

    # host media operations ------------------------------------------------------------------
    async def play(
        self, audio_url: str, *, loops: int = 1, participants: Sequence[str] | None = None
    ) -> str:
        """Play a WAV/MP3 URL to everyone (or to ``participants``); returns the playback id
        (``playback-started`` / ``playback-ended`` carry it). ``loops=0``: until stopped."""
        self._require_host("play()")
        reply = await self._request(
            "conference.play", audio_url=audio_url, loops=loops, participants=_ids(participants)
        )
        return str(reply.get("playback_id", ""))

    async def speak(
        self,
        text: str,
        *,
        voice: str = "female",
        language: str = "en-US",
        participants: Sequence[str] | None = None,
    ) -> str:
        """Speak ``text`` (server-side TTS, voices ``female``/``male``); returns the id."""
        self._require_host("speak()")
        reply = await self._request(
            "conference.speak",
            text=text,
            voice=voice,
            language=language,
            participants=_ids(participants),
        )
        return str(reply.get("playback_id", ""))

    async def stop(self, participants: Sequence[str] | None = None) -> None:
        """Stop what is playing (to everyone, or to ``participants``)."""
        self._require_host("stop()")
        await self._request("conference.stop", participants=_ids(participants))

    async def record(
        self,
        action: Literal["start", "pause", "resume", "stop"],
        fmt: Literal["wav", "mp3"] = "wav",
    ) -> str:
        """Record the mix: start, pause, resume, stop; returns the recording id. The file is
        ready at ``conference:recording-saved`` (:attr:`recordings`)."""
        self._require_host("record()")
        reply = await self._request("conference.record", action=action, format=fmt)
        return str(reply.get("recording_id", ""))

    async def update_participant(
        self,
        participant: str,
        *,
        muted: bool | None = None,
        held: bool | None = None,
        hold_audio_url: str | None = None,
        deaf: bool | None = None,
        supervisor_role: SupervisorRole | None = None,
        whisper_to: Sequence[str] | None = None,
    ) -> None:
        """Mute, hold (with hold audio), deafen a participant or set its supervisor role:
        ``whisper`` (heard only by ``whisper_to``), ``barge`` (heard by all), ``monitor``
        (hears all, heard by nobody) or ``none``."""
        self._require_host("update_participant()")
        fields = {
            "muted": muted,
            "held": held,
            "hold_audio_url": hold_audio_url,
            "deaf": deaf,
            "supervisor_role": supervisor_role,
            "whisper_to": _ids(whisper_to),
        }
        await self._request(
            "conference.participant.update",
            participant=participant,
            **{k: v for k, v in fields.items() if v is not None},
        )


def _ids(values: Sequence[str] | None) -> list[str] | None:
    return list(values) if values is not None else None


_RELAYED: dict[str, ConferenceEventName] = {
    "invitation-sent": "conference:invitation-sent",
    "invitation-accepted": "conference:invitation-accepted",
    "invitation-rejected": "conference:invitation-rejected",
    "participant-removed": "conference:participant-removed",
    "participant-left": "conference:participant-left",
    "participant-updated": "conference:participant-updated",
    "play-started": "conference:playback-started",
    "play-ended": "conference:playback-ended",
    "speak-started": "conference:speak-started",
    "speak-ended": "conference:speak-ended",
}
