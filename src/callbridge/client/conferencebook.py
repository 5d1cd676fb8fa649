"""The phone's conferences and its call group, and the ``conference.*`` messages for them.

:class:`ConferenceBook` starts a hosted conference (``conference.start``; the
``conference.started`` reply makes its leg), takes invitations (``conference.invitation``
makes the conference and its ringing leg), joins or rejects them, and routes every other
``conference.*`` message: to the conference it names, else (merges, updates, holds of merged
calls) to the call group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from callbridge.client.audio import AudioSink, AudioSource
from callbridge.client.call import AnswerAction, Call, Event
from callbridge.client.callgroup import GROUP_MESSAGES, CallGroup
from callbridge.client.calllist import CallList
from callbridge.client.conference import Conference, ConferenceState
from callbridge.client.emitter import EventEmitter
from callbridge.client.errors import CallStateError
from callbridge.client.eventnames import ConferenceEventName, PhoneEventName
from callbridge.client.media import CallMedia
from callbridge.client.stream import EventHub
from callbridge.client.transport import Requester
from callbridge.vocabulary import BeepMode, MediaType

__all__ = ["ConferenceBook"]


@dataclass(frozen=True, slots=True)
class _Starting:
    """A conference.start waiting for its conference.started."""

    conference: Conference
    media: CallMedia


class ConferenceBook:
    """The phone's live conferences (by id) and its call group."""

    def __init__(
        self,
        requester: Requester,
        calls: CallList,
        group: CallGroup,
        emitter: EventEmitter[PhoneEventName | ConferenceEventName],
        hub: EventHub,
    ) -> None:
        self._requester = requester
        self._calls = calls
        self.group = group
        self._emitter = emitter
        self._hub = hub
        self._starting: dict[str, _Starting] = {}  # by req_id of conference.start
        self._conferences: dict[str, Conference] = {}  # live ones, by conference_id

    # ConferenceHost ----------------------------------------------------------------------------
    @property
    def requester(self) -> Requester:
        return self._requester

    def emit(self, name: ConferenceEventName, conference: Conference, event: Event) -> None:
        self._emitter.emit(name, conference)
        self._hub.publish(event)

    def conference_over(self, conference: Conference) -> None:
        if self._conferences.get(conference.id) is conference:
            del self._conferences[conference.id]

    # queries -----------------------------------------------------------------------------------
    @property
    def conferences(self) -> list[Conference]:
        """The live conferences, oldest first (invitations included)."""
        return list(self._conferences.values())

    @property
    def current(self) -> Conference | None:
        """The newest live conference we host or are in (not a mere invitation)."""
        live = [c for c in self._conferences.values() if c.state is not ConferenceState.INVITED]
        return live[-1] if live else None

    def invitation(self) -> Conference:
        """The newest conference whose invitation rings here."""
        pending = [c for c in self._conferences.values() if c.state is ConferenceState.INVITED]
        if not pending:
            raise CallStateError("there is no conference invitation to answer")
        return pending[-1]

    # messages ----------------------------------------------------------------------------------
    def handle(self, msg: dict[str, Any]) -> None:
        """Take one ``conference.*`` message."""
        kind = str(msg.get("type", ""))
        req_id = msg.get("req_id")
        if kind == "conference.started" and isinstance(req_id, str) and req_id in self._starting:
            starting = self._starting.pop(req_id)
            conf = starting.conference
            conf.started(str(msg.get("conference_id", "")), str(msg.get("name", "")))
            leg = Call(
                self._calls,
                str(msg.get("call_id")),
                "outgoing",
                to=f"conference:{conf.name}",
                media=starting.media,
            )
            self._adopt(conf, leg)
            return
        if kind == "conference.invitation":
            self._invited(msg)
            return
        conference_id = str(msg.get("conference_id", ""))
        known = self._conferences.get(conference_id)
        if known is not None:
            known.handle(msg)
        elif kind in GROUP_MESSAGES and (
            self.group.id in (None, conference_id) or kind == "conference.merged"
        ):
            self.group.handle(msg)

    def _adopt(self, conf: Conference, leg: Call) -> None:
        """Register ``conf`` and its leg; messages that came early for the leg are replayed
        once it belongs to the conference."""
        conf.attach(leg)
        self._conferences[conf.id] = conf
        self._calls.adopt(leg)

    def _invited(self, msg: dict[str, Any]) -> None:
        conf = Conference(
            self,
            "participant",
            "video" if msg.get("media_type") == "video" else "audio",
            conference_id=str(msg.get("conference_id", "")),
            from_=str(msg.get("from", "")),
            name=str(msg.get("name", "")),
        )
        leg = Call(
            self._calls,
            str(msg.get("call_id")),
            "incoming",
            from_=conf.from_,
            from_name=str(msg.get("from_name") or ""),
            to=str(msg.get("to", "")),
            offer_sdp=str(msg.get("sdp", "")),
        )
        self._adopt(conf, leg)
        conf.invitation_received(msg)

    # commands ----------------------------------------------------------------------------------
    async def start(
        self,
        media_type: MediaType,
        source: AudioSource | None,
        sink: AudioSink | None,
        name: str | None,
        beep: BeepMode,
        codecs: Sequence[str] | None,
    ) -> Conference:
        """:meth:`Phone.start_conference`."""
        media = self._calls.new_media(source, sink, codecs)
        conf = Conference(self, "host", media_type, name=name or "")
        req_id = self._requester.new_req_id()
        self._starting[req_id] = _Starting(conf, media)
        message: dict[str, Any] = {
            "type": "conference.start",
            "req_id": req_id,
            "sdp": await media.create_offer(),
            "media_type": media_type,
            "beep": beep,
        }
        if name is not None:
            message["name"] = name
        conf.starting()
        try:
            await self._requester.request(message)
            call = conf.call
            assert call is not None
            await call.wait_placed()
            await conf.wait_in(10.0)  # the docstring's promise: we return once connected
        except BaseException:
            self._starting.pop(req_id, None)
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
        """:meth:`Phone.join_conference`."""
        conf = self.invitation()
        call = conf.call
        assert call is not None
        await conf.join_with(
            lambda: call.answer(source, sink, codecs=codecs, action=action, media_type="audio"),
            self._requester.request_timeout,
        )
        return conf

    async def reject(self) -> None:
        """:meth:`Phone.reject_conference`."""
        conf = self.invitation()
        call = conf.call
        assert call is not None
        conf.decline()
        await call.reject()
