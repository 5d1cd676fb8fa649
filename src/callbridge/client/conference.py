"""Conferences in the SDK: seed 002's hosted conferences and seed 000's call group.

A :class:`Conference` is one conference this phone hosts (``phone.start_conference()``) or
was invited to (the ``conference:invitation-received`` event; ``phone.join_conference()`` or
``phone.reject_conference()``). Its own audio is one leg, :attr:`Conference.call`, an ordinary
:class:`~callbridge.client.Call` whose media carries the mix of the others.

:class:`CallGroup` (``phone.conference_group``) is seed 000's ``TelephonyCallGroup``: it
merges the phone's answered calls into one conversation on the server's mixer. The group's
audio arrives on its :attr:`CallGroup.media_call` (the oldest call in it) and our voice is
taken from that call only: the other calls in the group stay connected but carry no audio
(one microphone, one loudspeaker).

Events of a conference go to the phone's handlers (``phone.on("conference:connected",
handler)``; the handler gets the :class:`Conference`) and to ``phone.events()``. Those of the
call group go to the group's (``group.on("callschanged", handler)``; no arguments).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from callbridge.client.audio import AudioSink, AudioSource
from callbridge.client.call import AnswerAction, Call, MediaType
from callbridge.client.errors import CallStateError
from callbridge.client.events import ConferenceEventName, Event, EventEmitter, GroupEventName
from callbridge.client.media import CallMedia
from callbridge.errors import RemoteError

if TYPE_CHECKING:
    from callbridge.client.phone import Phone

__all__ = [
    "BeepMode",
    "CallGroup",
    "Conference",
    "ConferenceRole",
    "ConferenceState",
    "GroupState",
    "SupervisorRole",
]

log = logging.getLogger(__name__)

ConferenceRole = Literal["host", "participant"]
BeepMode = Literal["always", "never", "on_enter", "on_exit"]
SupervisorRole = Literal["none", "barge", "monitor", "whisper"]
GroupState = Literal["", "connected", "holding", "held", "resuming"]


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


class Conference:
    """One conference of this phone (seed 002): host or participant.

    Host side, :attr:`participants` and :attr:`invitations` follow the server's messages
    (keyed by participant id: the id given to :meth:`add_participant`).
    """

    def __init__(
        self,
        phone: Phone,
        role: ConferenceRole,
        media_type: MediaType,
        *,
        conference_id: str = "",
        from_: str = "",
        name: str = "",
    ) -> None:
        self._phone = phone
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
        phone = self._phone
        call = self.call
        event = (
            replace(call._make_event(name, data), conference=self, media_type=self.media_type)
            if call is not None
            else Event(name, None, data, media_type=self.media_type, conference=self)
        )
        phone._emitter._emit(name, self)
        phone._publish(event)

    def _update(self, msg: dict[str, Any]) -> None:
        participants, invitations = msg.get("participants"), msg.get("invitations")
        if isinstance(participants, dict):
            self.participants = participants
        if isinstance(invitations, dict):
            self.invitations = invitations

    def _handle(self, msg: dict[str, Any]) -> None:
        """A ``conference.*`` message about this conference."""
        kind = str(msg.get("type", ""))
        self._update(msg)
        name = kind.removeprefix("conference.")
        if kind in ("conference.connected", "conference.joined"):
            self.name = str(msg.get("name") or self.name)
            self.state = ConferenceState.CONNECTED
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
        self.state = ConferenceState.ENDED
        self._in.set()
        self.end_reason = reason
        self._phone._conferences.pop(self.id, None)
        self._emit("conference:canceled" if was_invited else "conference:ended", data)

    def _leg_ended(self, reason: str) -> None:
        self._end(reason, {"type": "call.ended", "conference_id": self.id, "reason": reason})

    def _leg_held(self, held: bool) -> None:
        if self.state in (ConferenceState.CONNECTED, ConferenceState.HELD):
            self.state = ConferenceState.HELD if held else ConferenceState.CONNECTED
            name: ConferenceEventName = "conference:held" if held else "conference:resumed"
            self._emit(name, {"conference_id": self.id, **self._lists()})

    def _lists(self) -> dict[str, Any]:
        return {"participants": self.participants, "invitations": self.invitations}

    # commands -------------------------------------------------------------------------------
    async def _request(self, kind: str, **fields: Any) -> dict[str, Any]:
        reply = await self._phone.request({"type": kind, "conference_id": self.id, **fields})
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


@dataclass(frozen=True, slots=True)
class _Starting:
    """A conference.start waiting for its conference.started."""

    conference: Conference
    media: CallMedia


class CallGroup:
    """Seed 000's call group: the phone's calls merged into one conversation.

    :attr:`calls` are the calls in the group (they leave ``phone.calls``); :attr:`state` is
    ``""`` (no group), ``"connected"``, ``"holding"``, ``"held"`` or ``"resuming"``.
    Events (``group.on(name, handler)``, handlers take no arguments): ``callschanged``,
    ``statechange``, ``connected``, ``holding``, ``held``, ``resuming``, ``error`` (the
    handler gets the :class:`~callbridge.errors.RemoteError`).
    """

    def __init__(self, phone: Phone) -> None:
        self._phone = phone
        self.id: str | None = None
        self._calls: list[Call] = []
        self._state: GroupState = ""
        self.media_call: Call | None = None
        """The call whose media carries the group's audio (our voice and the mix)."""
        self._emitter: EventEmitter[GroupEventName] = EventEmitter(phone._tasks)

    def __repr__(self) -> str:
        return f"<CallGroup {self.id} {self._state!r} calls={len(self._calls)}>"

    @property
    def calls(self) -> list[Call]:
        return list(self._calls)

    @property
    def state(self) -> GroupState:
        return self._state

    def on(self, name: GroupEventName, handler: Callable[..., object]) -> Callable[..., object]:
        return self._emitter._add(name, handler)

    def off(self, name: GroupEventName, handler: Callable[..., object]) -> None:
        self._emitter.off(name, handler)

    def _emit(self, name: GroupEventName, *args: object) -> None:
        self._emitter._emit(name, *args)
        self._phone._publish(Event(name, self.media_call, {"conference_id": self.id}))

    def _set_state(self, new: GroupState) -> None:
        if new == self._state:
            return
        self._state = new
        self._emit("statechange")
        if new in ("connected", "held"):
            self._emit(new)

    def _follow(self, msg: dict[str, Any]) -> None:
        """The server's view of the group (``conference.merged`` / ``updated`` / ...)."""
        phone = self._phone
        self.id = str(msg.get("conference_id") or self.id or "")
        ids = [str(x) for x in msg.get("call_ids") or []]
        calls = [c for c in (phone._calls.get(i) for i in ids) if c is not None]
        media_id = msg.get("media_call_id")
        self.media_call = phone._calls.get(str(media_id)) if media_id else None
        if calls != self._calls:
            self._calls = calls
            self._emit("callschanged")
        state = msg.get("state")
        if state in ("connected", "held"):
            self._set_state(state)

    def _handle(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "conference.ended":
            self._dissolve()
        elif kind == "conference.held":
            self._follow({**msg, "state": "held"})
        elif kind == "conference.resumed":
            self._follow({**msg, "state": "connected"})
        else:
            self._follow(msg)

    def _dissolve(self) -> None:
        self.id = None
        self.media_call = None
        if self._calls:
            self._calls = []
            self._emit("callschanged")
        self._set_state("")

    def _call_ended(self, call: Call) -> None:
        """A call of ours ended; the server's ``conference.updated`` follows, but the list
        must not hold an ended call meanwhile."""
        if call in self._calls:
            self._calls.remove(call)
            self._emit("callschanged")
            if not self._calls:
                self._dissolve()

    async def _request(self, kind: str, **fields: Any) -> dict[str, Any]:
        try:
            return await self._phone.request({"type": kind, **fields})
        except RemoteError as exc:
            self._emitter._emit("error", exc)
            self._phone._publish(
                Event("error", None, {"conference_id": self.id, "error": str(exc)})
            )
            raise

    async def add(self, *calls: Call) -> None:
        """Merge answered calls into the group (created by the first ``add`` of two calls).

        A held call is resumed by the merge. Fires ``callschanged`` (and ``statechange`` /
        ``connected`` when the group starts).
        """
        if not calls:
            raise CallStateError("add() needs at least one call")
        fields: dict[str, Any] = {"call_ids": [c.id for c in calls]}
        if self.id is not None:
            fields["conference_id"] = self.id
        self._follow(await self._request("conference.merge", **fields))

    async def remove(self, call: Call) -> None:
        """Take ``call`` out of the group: it is an ordinary call again (back in
        ``phone.calls``). A group left with one call dissolves."""
        if self.id is None or call not in self._calls:
            raise CallStateError(f"call {call.id} is not in the call group")
        reply = await self._request("conference.split", conference_id=self.id, call_id=call.id)
        self._handle(reply)

    async def hang_up(self) -> None:
        """Hang up every call in the group."""
        if self.id is None:
            raise CallStateError("there is no call group to hang up")
        calls = list(self._calls)
        await self._request("conference.end", conference_id=self.id)
        for call in calls:
            await call.wait_for("ended", timeout=self._phone.request_timeout)
        self._dissolve()

    async def hold(self) -> None:
        """Hold the whole group: we hear nothing and are not heard; the others go on
        talking to each other (as GSM multiparty does)."""
        if self.id is None or self._state != "connected":
            raise CallStateError(f"hold() needs a connected call group; it is {self._state!r}")
        self._set_state("holding")
        self._emit("holding")
        try:
            self._handle(await self._request("conference.hold", conference_id=self.id))
        except RemoteError:
            self._set_state("connected")
            raise

    async def resume(self) -> None:
        """Resume a held group."""
        if self.id is None or self._state != "held":
            raise CallStateError(f"resume() needs a held call group; it is {self._state!r}")
        self._set_state("resuming")
        self._emit("resuming")
        try:
            self._handle(await self._request("conference.resume", conference_id=self.id))
        except RemoteError:
            self._set_state("held")
            raise


class ConferenceBook:
    """The phone's conferences and call group, and the ``conference.*`` messages for them."""

    def __init__(self, phone: Phone) -> None:
        self._phone = phone
        self.starting: dict[str, _Starting] = {}  # by req_id of conference.start
        self.group = CallGroup(phone)

    def handle(self, msg: dict[str, Any]) -> None:
        """Take one ``conference.*`` message."""
        phone = self._phone
        kind = str(msg.get("type", ""))
        req_id = msg.get("req_id")
        if kind == "conference.started" and isinstance(req_id, str) and req_id in self.starting:
            pending = self.starting.pop(req_id)
            conf = pending.conference
            conf.id = str(msg.get("conference_id", ""))
            conf.name = str(msg.get("name", ""))
            call = Call(
                phone,
                str(msg.get("call_id")),
                "outgoing",
                to=f"conference:{conf.name}",
                media=pending.media,
            )
            call._conference = conf
            conf.call = call
            phone._conferences[conf.id] = conf
            phone._adopt(call)
            return
        if kind == "conference.invitation":
            self._invited(msg)
            return
        conference_id = str(msg.get("conference_id", ""))
        known = phone._conferences.get(conference_id)
        if known is not None:
            known._handle(msg)
        elif kind in _GROUP_MESSAGES and (
            self.group.id in (None, conference_id) or kind == "conference.merged"
        ):
            self.group._handle(msg)

    def _invited(self, msg: dict[str, Any]) -> None:
        phone = self._phone
        conf = Conference(
            phone,
            "participant",
            "video" if msg.get("media_type") == "video" else "audio",
            conference_id=str(msg.get("conference_id", "")),
            from_=str(msg.get("from", "")),
            name=str(msg.get("name", "")),
        )
        call = Call(
            phone,
            str(msg.get("call_id")),
            "incoming",
            from_=conf.from_,
            from_name=str(msg.get("from_name") or ""),
            to=str(msg.get("to", "")),
            offer_sdp=str(msg.get("sdp", "")),
        )
        call._conference = conf
        conf.call = call
        phone._conferences[conf.id] = conf
        phone._adopt(call)
        conf._emit("conference:invitation-received", msg)

    def invitation(self) -> Conference:
        pending = [
            c for c in self._phone._conferences.values() if c.state is ConferenceState.INVITED
        ]
        if not pending:
            raise CallStateError("there is no conference invitation to answer")
        return pending[-1]

    async def start(
        self,
        media_type: MediaType,
        source: AudioSource | None,
        sink: AudioSink | None,
        name: str | None,
        beep: BeepMode,
        codecs: Sequence[str] | None,
    ) -> Conference:
        phone = self._phone
        media = phone._new_media(source, sink, codecs)
        conf = Conference(phone, "host", media_type, name=name or "")
        req_id = phone._new_req_id()
        self.starting[req_id] = _Starting(conf, media)
        message: dict[str, Any] = {
            "type": "conference.start",
            "req_id": req_id,
            "sdp": await media.create_offer(),
            "media_type": media_type,
            "beep": beep,
        }
        if name is not None:
            message["name"] = name
        conf._emit("conference:connecting", {"media_type": media_type})
        try:
            await phone.request(message)
            call = conf.call
            assert call is not None
            await call._wait_setup()
        except BaseException:
            self.starting.pop(req_id, None)
            if conf.call is None or not conf.call.is_live:
                await media.close()
            elif conf.call.is_live:
                await conf.call.hangup()
            raise
        return conf

    async def join(
        self,
        action: AnswerAction | None,
        source: AudioSource | None,
        sink: AudioSink | None,
        codecs: Sequence[str] | None,
    ) -> Conference:
        conf = self.invitation()
        call = conf.call
        assert call is not None
        conf._emit("conference:joining", {"conference_id": conf.id})
        conf.state = ConferenceState.CONNECTING
        await call.answer(source, sink, codecs=codecs, action=action, media_type="audio")
        if conf.state is ConferenceState.CONNECTING:
            conf._emit("conference:connecting", {"conference_id": conf.id})
        async with asyncio.timeout(self._phone.request_timeout):
            await conf._in.wait()  # conference.joined follows the answer's reply
        if conf.state is ConferenceState.ENDED:
            raise CallStateError(f"conference {conf.id} ended while joining ({conf.end_reason})")
        return conf

    async def reject(self) -> None:
        conf = self.invitation()
        call = conf.call
        assert call is not None
        conf.state = ConferenceState.ENDED
        conf.end_reason = "rejected"
        self._phone._conferences.pop(conf.id, None)
        await call.reject()


_GROUP_MESSAGES = frozenset(
    {
        "conference.merged",
        "conference.updated",
        "conference.held",
        "conference.resumed",
        "conference.ended",
    }
)
