"""Conferences of application calls (seed 003), on the conference manager.

The conferences themselves (mixer, members, media operations) are the
:class:`~callbridge.core.conferences.ConferenceManager`'s, the same that ``/ws`` hosts use.
This module adds what REST needs around them:

- a :class:`ConferenceRecord` per conference (who created it, where its events go, its
  limits, how it ended), kept after it ends for retrieval;
- the REST operations, addressed by the participants' application calls;
- the application events of every conference (``AppConference*``), made from the bus's
  conference events, with participants named by their calls' ``call_control_id``.

A play to some participants reports one event per participant
(``conference.participant.playback.*``), a play to all one for the room: the bus event of a
playback names the legs it targets.

A conference belongs to an account (``ConferenceRecord.account_id``): one created over REST to
the account of the key that created it, a ``/ws`` host's to its user's account. Its recordings
are that account's.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from callbridge.core.app_events import (
    AppConferenceCreated,
    AppConferenceEnded,
    AppConferenceFloorChanged,
    AppConferencePlayback,
    AppConferenceRecordingError,
    AppConferenceRecordingSaved,
    AppParticipantJoined,
    AppParticipantLeft,
    ConferenceEndReason,
    ConferenceFacts,
    ParticipantFacts,
)
from callbridge.core.app_model import RECENTLY_ENDED, AppCall, ApplicationDevice, now
from callbridge.core.conference_media import RecordAction
from callbridge.core.conference_model import Conference, ConferenceKind, Member
from callbridge.core.events import (
    ConferenceCreated,
    ConferenceEnded,
    ConferenceFloorChanged,
    ConferencePlaybackChanged,
    ConferenceRecordingFailed,
    ConferenceRecordingSaved,
    ParticipantJoined,
    ParticipantLeft,
)
from callbridge.core.tenancy import DEFAULT_ACCOUNT_ID, account_of, application_account
from callbridge.errors import ErrorCode, ProtocolError
from callbridge.media.interface import AudioSpec, RecordingFormat
from callbridge.vocabulary import BeepMode, SupervisorRole

if TYPE_CHECKING:
    from callbridge.core.appcalls import AppCalls
    from callbridge.core.conferences import ConferenceManager

__all__ = [
    "AppConferences",
    "ConferenceFull",
    "ConferenceRecord",
    "NotAParticipant",
    "ParticipantInfo",
    "UnknownConference",
]

DEFAULT_LIFETIME = timedelta(hours=4)  # expires_at of a conference with no duration


class UnknownConference(ProtocolError):
    """No conference (live or recently ended) has this id."""

    def __init__(self, conference_id: str) -> None:
        super().__init__(ErrorCode.CONFERENCE_NOT_FOUND, f"no conference with id {conference_id!r}")
        self.conference_id = conference_id


class ConferenceFull(ProtocolError):
    """The conference has ``max_participants`` participants already."""

    def __init__(self, conference_id: str, limit: int) -> None:
        super().__init__(
            ErrorCode.INVALID_STATE,
            f"conference {conference_id} is full (max_participants {limit})",
        )


class NotAParticipant(ProtocolError):
    """The call named is not a participant of the conference."""

    def __init__(self, call: AppCall, conference_id: str) -> None:
        super().__init__(
            ErrorCode.INVALID_MESSAGE,
            f"call {call.id} is not a participant of conference {conference_id}",
        )


@dataclass(eq=False)
class ConferenceRecord:
    """What the REST API reports about a conference, kept after it ends."""

    id: str
    name: str
    created_at: datetime
    application: Any = None  # the store's Application that created it
    webhook_url: str | None = None
    client_state: str | None = None
    creator: str | None = None  # call_control_id of the call it was created from
    ended_at: datetime | None = None
    end_reason: ConferenceEndReason | None = None
    expires_at: datetime | None = None
    hosted: bool = False  # a seed-002 conference (/ws): it ends when its host leaves
    max_participants: int | None = None
    hold_audio: AudioSpec | None = None  # what a held participant hears unless told otherwise
    account_id: str = DEFAULT_ACCOUNT_ID  # the account it belongs to


@dataclass(frozen=True, slots=True)
class ParticipantInfo:
    """A participant as REST shows it (its call's ``call_control_id`` names it)."""

    call_control_id: str
    conference_id: str
    conference_name: str
    joined_at: datetime
    muted: bool
    on_hold: bool
    whisper_call_control_ids: tuple[str, ...]
    supervisor_role: SupervisorRole


class AppConferences:
    """Conferences as applications see them (one per :class:`AppCalls`)."""

    def __init__(self, apps: AppCalls) -> None:
        self.apps = apps
        self.records: OrderedDict[str, ConferenceRecord] = OrderedDict()
        self._creating: dict[str, ConferenceRecord] = {}  # creator's leg id -> its record

    @property
    def manager(self) -> ConferenceManager:
        return self.apps.controller.conferences

    # lookups ----------------------------------------------------------------------------------
    def record(self, conference_id: str) -> ConferenceRecord | None:
        return self.records.get(conference_id)

    def live(self, conference_id: str) -> tuple[Conference, ConferenceRecord]:
        """A live conference (not a call group) and its record."""
        conf = self.manager.conferences.get(conference_id)
        record = self.records.get(conference_id)
        if conf is None or conf.ended or record is None:
            if record is not None:
                raise ProtocolError(
                    ErrorCode.INVALID_STATE, f"conference {conference_id} has ended"
                )
            raise UnknownConference(conference_id)
        if conf.kind is not ConferenceKind.CONFERENCE:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"{conference_id} is a call group (seed 000) of a softphone, not a conference",
            )
        return conf, record

    def _member(self, conf: Conference, call: AppCall) -> Member:
        leg = call.leg
        member = conf.members.get(leg.id) if leg is not None else None
        if member is None or member.leg.device is conf.owner:
            raise NotAParticipant(call, conf.id)
        return member

    def _members(self, conf: Conference, calls: Sequence[AppCall] | None) -> list[Member]:
        """The participants ``calls`` names; everyone when it is None or empty."""
        if not calls:
            return list(conf.participants)
        return [self._member(conf, call) for call in calls]

    def ensure_participant(self, conference_id: str, call: AppCall) -> None:
        """:class:`NotAParticipant` unless ``call`` is a participant of the conference."""
        conf, _ = self.live(conference_id)
        self._member(conf, call)

    def _info(self, conf: Conference, member: Member) -> ParticipantInfo:
        return ParticipantInfo(
            call_control_id=self.apps.id_of(member.leg.id),
            conference_id=conf.id,
            conference_name=conf.name,
            joined_at=member.joined_at,
            muted=member.muted or member.leg.muted,
            on_hold=member.held,
            whisper_call_control_ids=tuple(self.apps.id_of(x) for x in member.whisper_to),
            supervisor_role=member.role,
        )

    def participants(self, conference_id: str) -> list[ParticipantInfo]:
        conf, _ = self.live(conference_id)
        return [self._info(conf, m) for m in conf.participants]

    def participant(self, conference_id: str, call: AppCall) -> ParticipantInfo:
        conf, _ = self.live(conference_id)
        return self._info(conf, self._member(conf, call))

    def recording_id(self, conference_id: str) -> str | None:
        conf, _ = self.live(conference_id)
        return conf.recording_id

    # create and end ---------------------------------------------------------------------------
    async def create(
        self,
        call: AppCall,
        name: str,
        *,
        beep: BeepMode = "never",
        client_state: str | None = None,
        duration_minutes: int | None = None,
        max_participants: int | None = None,
        hold_audio: AudioSpec | None = None,
        account_id: str | None = None,
    ) -> ConferenceRecord:
        """A conference whose first participant is the (answered) call; it belongs to the
        call's application and ends when its last participant leaves. It is ``account_id``'s
        (by default the account of the call's application)."""
        leg = await self.apps.ready_for_conference(call)
        record = ConferenceRecord(
            id="",
            name=name,
            created_at=now(),
            application=call.application,
            webhook_url=call.webhook_url,
            client_state=client_state,
            creator=call.id,
            max_participants=max_participants,
            hold_audio=hold_audio,
            account_id=account_id or application_account(call.application),
        )
        # conference.created is published inside create_for_leg: the record is found by the
        # creator's leg until the conference's id is known.
        self._creating[leg.id] = record
        try:
            conf = await self.manager.create_for_leg(
                ApplicationDevice(call.application), leg, name, beep
            )
        finally:
            self._creating.pop(leg.id, None)
        record.id = conf.id
        self.records.setdefault(conf.id, record)
        if duration_minutes:
            record.expires_at = record.created_at + timedelta(minutes=duration_minutes)
            self.apps.scheduler.later(
                duration_minutes * 60.0,
                record,
                partial(self._expired, record),
                f"duration of conference {conf.id}",
            )
        else:
            record.expires_at = record.created_at + DEFAULT_LIFETIME
        return self.records[conf.id]

    async def _expired(self, record: ConferenceRecord) -> None:
        conf = self.manager.conferences.get(record.id)
        if conf is not None and not conf.ended:
            record.end_reason = "time_exceeded"
            await self.manager.finish(conf, "time-exceeded")

    async def end(self, conference_id: str) -> None:
        """End the conference: every participant's call is hung up."""
        conf, record = self.live(conference_id)
        if record.end_reason is None:
            record.end_reason = "ended_via_api"
        await self.manager.finish(conf, "ended-via-api")

    # participants -----------------------------------------------------------------------------
    async def join(
        self,
        conference_id: str,
        call: AppCall,
        *,
        client_state: str | None = None,
        muted: bool = False,
        held: bool = False,
        hold_audio: AudioSpec | None = None,
        role: SupervisorRole = "none",
        whisper_to: Sequence[AppCall] = (),
    ) -> None:
        """The call joins (leaving its queue, its application's audio stopped); ``hold_audio``
        defaults to the conference's."""
        conf, record = self.live(conference_id)
        whisper = tuple(self._member(conf, x).leg.id for x in whisper_to)
        limit = record.max_participants
        if limit is not None and len(conf.participants) >= limit:
            raise ConferenceFull(conf.id, limit)
        if client_state is not None:
            call.client_state = client_state
        leg = await self.apps.ready_for_conference(call)
        await self.manager.join_leg(
            conf,
            leg,
            muted=muted,
            held=held,
            hold_audio=hold_audio or record.hold_audio,
            role=role,
            whisper_to=whisper,
        )

    async def leave(self, conference_id: str, call: AppCall) -> None:
        """The call leaves and stays up, parked (it hears nothing)."""
        conf, _ = self.live(conference_id)
        await self.manager.leave_leg(conf, self._member(conf, call).leg)

    async def hold(
        self, conference_id: str, calls: Sequence[AppCall] | None, audio: AudioSpec | None
    ) -> None:
        """Hold participants: they hear ``audio`` (default: the conference's hold audio)."""
        conf, record = self.live(conference_id)
        audio = audio or record.hold_audio
        for member in self._members(conf, calls):
            await self.manager.media_ops.update_participant(
                None, conf, member.leg.id, held=True, hold_audio=audio
            )

    async def unhold(self, conference_id: str, calls: Sequence[AppCall]) -> None:
        conf, _ = self.live(conference_id)
        for member in self._members(conf, calls):
            await self.manager.media_ops.update_participant(None, conf, member.leg.id, held=False)

    async def mute(self, conference_id: str, calls: Sequence[AppCall] | None, muted: bool) -> None:
        conf, _ = self.live(conference_id)
        for member in self._members(conf, calls):
            await self.manager.media_ops.update_participant(None, conf, member.leg.id, muted=muted)

    async def update(
        self,
        conference_id: str,
        call: AppCall,
        role: SupervisorRole,
        whisper_to: Sequence[AppCall] | None,
    ) -> None:
        """Change a participant's supervisor role (and whom it whispers to)."""
        conf, _ = self.live(conference_id)
        member = self._member(conf, call)
        whisper = None
        if whisper_to is not None:
            whisper = [self._member(conf, x).leg.id for x in whisper_to]
        await self.manager.media_ops.update_participant(
            None, conf, member.leg.id, role=role, whisper_to=whisper
        )

    def whispers(self, conference_id: str, call: AppCall) -> bool:
        """True if the participant has people to whisper to already."""
        conf, _ = self.live(conference_id)
        return bool(self._member(conf, call).whisper_to)

    # media ------------------------------------------------------------------------------------
    async def play(
        self, conference_id: str, audio: AudioSpec, calls: Sequence[AppCall] | None
    ) -> str:
        """Play (or speak, for text to speech) to some participants, or all when ``calls`` is
        None or empty; returns the playback id."""
        conf, _ = self.live(conference_id)
        targets = [m.leg.id for m in self._members(conf, calls)] if calls else None
        return await self.manager.media_ops.play(None, conf, audio, targets)

    async def stop(self, conference_id: str, calls: Sequence[AppCall] | None) -> None:
        """Stop every playback, or those aimed at ``calls``."""
        conf, _ = self.live(conference_id)
        targets = [m.leg.id for m in self._members(conf, calls)] if calls else None
        await self.manager.media_ops.stop(None, conf, targets)

    async def recording(
        self, conference_id: str, action: RecordAction, fmt: RecordingFormat = "wav"
    ) -> None:
        conf, _ = self.live(conference_id)
        await self.manager.media_ops.record(None, conf, action, fmt)

    # bus events -------------------------------------------------------------------------------
    def facts(self, record: ConferenceRecord) -> ConferenceFacts:
        return ConferenceFacts(
            record.id, record.application, record.webhook_url, record.client_state
        )

    def participant_facts(self, leg_id: str) -> ParticipantFacts:
        call = self.apps.call_of_leg(leg_id)
        if call is None:
            return ParticipantFacts(leg_id, leg_id, None, app_call=False)
        return ParticipantFacts(call.id, call.session_id, call.client_state, app_call=True)

    def on_created(self, event: ConferenceCreated) -> None:
        record = self._creating.get(event.call_control_id)
        if record is not None:
            record.id = event.conference_id
        else:  # a /ws conference: recorded for the REST API, no application to tell
            conf = self.manager.conferences.get(event.conference_id)
            record = ConferenceRecord(
                event.conference_id,
                event.name,
                now(),
                hosted=event.hosted,
                account_id=account_of(conf.owner) if conf is not None else DEFAULT_ACCOUNT_ID,
            )
        self.records[event.conference_id] = record
        self._forget_old()
        self.apps.publish(
            AppConferenceCreated(
                at=event.at,
                conference=self.facts(record),
                creator=self.participant_facts(event.call_control_id),
            )
        )

    def _forget_old(self) -> None:
        while len(self.records) > RECENTLY_ENDED:
            oldest = next(iter(self.records.values()))
            if oldest.ended_at is None:
                break
            self.records.popitem(last=False)

    def on_joined(self, event: ParticipantJoined) -> None:
        record = self.records.get(event.conference_id)
        if record is not None:
            participant = self.participant_facts(event.call_control_id)
            self.apps.publish(
                AppParticipantJoined(
                    at=event.at, conference=self.facts(record), participant=participant
                )
            )

    def on_left(self, event: ParticipantLeft) -> None:
        record = self.records.get(event.conference_id)
        if record is not None:
            participant = self.participant_facts(event.call_control_id)
            self.apps.publish(
                AppParticipantLeft(
                    at=event.at, conference=self.facts(record), participant=participant
                )
            )

    def on_floor_changed(self, event: ConferenceFloorChanged) -> None:
        record = self.records.get(event.conference_id)
        if record is not None:
            talker = (
                None
                if event.call_control_id is None
                else self.participant_facts(event.call_control_id)
            )
            self.apps.publish(
                AppConferenceFloorChanged(at=event.at, conference=self.facts(record), talker=talker)
            )

    def on_ended(self, event: ConferenceEnded) -> None:
        record = self.records.get(event.conference_id)
        if record is None:
            return
        record.ended_at = now()
        self.apps.scheduler.cancel(record)
        if record.end_reason is None:
            record.end_reason = "host_left" if record.hosted else "all_left"
        self.apps.publish(
            AppConferenceEnded(at=event.at, conference=self.facts(record), reason=record.end_reason)
        )

    def on_playback(self, event: ConferencePlaybackChanged) -> None:
        record = self.records.get(event.conference_id)
        if record is None:
            return
        self.apps.publish(
            AppConferencePlayback(
                at=event.at,
                conference=self.facts(record),
                kind=event.kind,
                started=event.state == "started",
                stopped=event.status != "completed",
                targets=tuple(self.participant_facts(leg_id) for leg_id in event.targets),
            )
        )

    def on_recording_saved(self, event: ConferenceRecordingSaved) -> None:
        record = self.records.get(event.conference_id)
        if record is not None:
            self.apps.store_later(
                self._save_recording(record, event), f"recording {event.recording_id}"
            )

    def on_recording_failed(self, event: ConferenceRecordingFailed) -> None:
        """Nothing to store: the application hears of the failure instead of a file."""
        record = self.records.get(event.conference_id)
        if record is not None:
            self.apps.publish(
                AppConferenceRecordingError(
                    conference=self.facts(record),
                    creator_call_control_id=record.creator,
                    recording_id=event.recording_id,
                    detail=event.detail,
                )
            )

    async def _save_recording(
        self, record: ConferenceRecord, event: ConferenceRecordingSaved
    ) -> None:
        fmt: Literal["wav", "mp3"] = "mp3" if event.path.endswith(".mp3") else "wav"
        ended = now()
        started = ended - timedelta(seconds=event.duration_secs)
        duration_millis = round(event.duration_secs * 1000)
        # Any: the directory protocol (core.app_model) does not name account_id yet; the
        # store's add_recording takes it.
        directory: Any = self.apps.directory
        await directory.add_recording(
            account_id=record.account_id,
            recording_id=event.recording_id,
            path=event.path,
            format=fmt,
            channels="single",
            duration_millis=duration_millis,
            recording_started_at=started,
            recording_ended_at=ended,
            conference_id=record.id,
            call_control_id=record.creator,
        )
        self.apps.publish(
            AppConferenceRecordingSaved(
                conference=self.facts(record),
                creator_call_control_id=record.creator,
                recording_id=event.recording_id,
                format=fmt,
                started_at=started,
                ended_at=ended,
                duration_millis=duration_millis,
            )
        )
