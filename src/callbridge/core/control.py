"""The call-control facade: the one way the REST API reaches the core.

The endpoints under ``/v2`` (:mod:`callbridge.api`) translate HTTP to calls of
:class:`CallControl` and its answers back; they never touch the controller, its legs, the
conference manager or the media plane. Each method is a command (it returns a result or
raises :class:`~callbridge.errors.ProtocolError`, which the API turns into Telnyx's error
envelope) or a query (it returns a model object or a snapshot to read). What happens later
(a playback ended, digits gathered, a conference ended) is published on the bus as
application events (:mod:`callbridge.core.app_events`); the webhook adapter delivers them.

The models it hands out are the application layer's: :class:`~callbridge.core.app_model.AppCall`
(a call, named by its ``call_control_id``), :class:`~callbridge.core.queues.Queue`,
:class:`~callbridge.core.app_conferences.ConferenceRecord` and
:class:`~callbridge.core.app_conferences.ParticipantInfo`. Participants are named by their
calls.

**Accounts.** Calls, conferences and queues belong to an account: a call to its application's
(a softphone's leg: its user's, :meth:`CallControl.account_of`), a conference to the account
that created it, a queue to its account (names are unique within one). The queries and
commands that name a conference or a queue take the account and treat another account's as
missing; the REST layer checks a call's account before it acts on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from callbridge.core.app_conferences import (
    ConferenceFull,
    ConferenceRecord,
    NotAParticipant,
    ParticipantInfo,
    UnknownConference,
)
from callbridge.core.app_events import PlaybackKind
from callbridge.core.app_media import TargetLegs
from callbridge.core.app_model import DTMF_DIGITS, AppCall, CallHasEnded, UnknownCall
from callbridge.core.appcalls import AppCalls
from callbridge.core.conference_media import RecordAction
from callbridge.core.gather import Gather
from callbridge.core.queues import Queue, QueueEntry
from callbridge.core.tenancy import DEFAULT_ACCOUNT_ID, account_of, application_account
from callbridge.media.interface import AudioSpec, RecordingFormat
from callbridge.vocabulary import SupervisorRole

# The models and errors the API works with come from here too: one import for the API.
__all__ = [
    "DTMF_DIGITS",
    "AppCall",
    "CallControl",
    "CallHasEnded",
    "ConferenceFull",
    "ConferenceRecord",
    "DeviceCall",
    "NotAParticipant",
    "ParticipantInfo",
    "PlaybackKind",
    "Queue",
    "QueueEntry",
    "RecordAction",
    "TargetLegs",
    "UnknownCall",
    "UnknownConference",
]


@dataclass(frozen=True, slots=True)
class DeviceCall:
    """A live call between devices that no application drives (:meth:`CallControl.live_calls`),
    as a snapshot: named by its caller's leg (how the REST API names a device leg)."""

    call_control_id: str  # the caller's leg
    call_session_id: str  # the core call's id (its CDR's call_id)
    leg_ids: tuple[str, ...]  # every live leg of the call (the caller's first)
    caller_id: str
    destination: str
    state: str  # the call's: routing, ringing, answered
    started_at: datetime
    answered_at: datetime | None


class CallControl:
    """Calls, queues, conferences and media checks, as the REST API asks for them."""

    def __init__(self, apps: AppCalls) -> None:
        self._apps = apps
        # Commands whose parameters are the services' own, bound rather than restated:
        self.dial = apps.dialer.dial  # ring a user's devices; the call (``call.initiated``)
        self.transfer = apps.bridges.transfer  # dial a target, bridge when it answers
        self.play = apps.playing.play  # play or speak to a call; the playback ids
        self.enqueue = apps.queues.enqueue  # into a queue (made on first use), hold music
        self.create_conference = apps.conferences.create  # from an answered call; its record
        self.join = apps.conferences.join  # a call joins a live conference

    # calls ------------------------------------------------------------------------------------
    def account_of(self, call: AppCall) -> str:
        """The account a call belongs to: its application's; for a softphone's leg (adopted,
        no application), its device's user's."""
        if call.application is not None:
            return application_account(call.application)
        if call.leg is not None:
            return account_of(call.leg.device)
        return DEFAULT_ACCOUNT_ID

    def call(self, call_control_id: str) -> AppCall:
        """The live call (any device leg is adopted). :class:`CallHasEnded` /
        :class:`UnknownCall` otherwise."""
        return self._apps.get(call_control_id)

    def live_calls(self, account_id: str) -> list[DeviceCall]:
        """The live device-to-device calls of ``account_id`` on this node (a call is the
        account's when one of its devices is), oldest first: the calls no application drives,
        which the database's live-calls table does not list. A call with a leg that an
        application call owns is left out (the table lists it), so none appears twice."""
        apps = self._apps
        legs: dict[str, list[str]] = {}
        calls = {}
        excluded: set[str] = set()
        for leg in list(apps.controller.legs.values()):
            call = leg.call
            if call is None or call.ended or not leg.live:
                continue
            calls[call.id] = call
            if leg is call.origin:
                legs.setdefault(call.id, []).insert(0, leg.id)
            else:
                legs.setdefault(call.id, []).append(leg.id)
            owned = apps.calls.get(leg.id) or apps.by_leg.get(leg.id)
            if owned is not None or getattr(leg.device, "application", None) is not None:
                excluded.add(call.id)
        found = []
        for call_id, call in calls.items():
            live = [apps.controller.legs[i] for i in legs[call_id]]
            if call_id in excluded or not any(account_of(x.device) == account_id for x in live):
                continue
            found.append(
                DeviceCall(
                    call_control_id=call.origin.id,
                    call_session_id=call.id,
                    leg_ids=tuple(legs[call_id]),
                    caller_id=call.caller_id,
                    destination=call.destination,
                    state=call.state.value,
                    started_at=call.started_at,
                    answered_at=call.answered_at,
                )
            )
        return sorted(found, key=lambda c: c.started_at)

    def find_call(self, call_control_id: str) -> AppCall | None:
        """A live or recently ended call, for status queries."""
        return self._apps.find(call_control_id)

    def set_client_state(self, call: AppCall, client_state: str) -> None:
        """Later events of the call carry this ``client_state``."""
        call.client_state = client_state

    async def answer(self, call: AppCall, webhook_url: str | None = None) -> None:
        if webhook_url is not None:
            call.webhook_url = webhook_url
        await self._apps.dialer.answer(call)

    async def reject(self, call: AppCall, busy: bool) -> None:
        await self._apps.dialer.reject(call, busy)

    async def hangup(self, call: AppCall) -> None:
        await self._apps.dialer.hangup(call)

    async def bridge(self, call: AppCall, other: AppCall, *, park_after_unbridge: bool) -> None:
        await self._apps.bridges.bridge(call, other, park_after_unbridge=park_after_unbridge)

    async def bridge_queue(
        self,
        call: AppCall,
        queue_name: str,
        *,
        park_after_unbridge: bool,
        account_id: str = DEFAULT_ACCOUNT_ID,
    ) -> AppCall:
        """Bridge ``call`` to the longest-waiting call of the account's queue; returns that
        call."""
        return await self._apps.bridges.bridge_queue(
            call, queue_name, park_after_unbridge=park_after_unbridge, account_id=account_id
        )

    async def stop_playback(self, call: AppCall) -> None:
        """Stop every playback and speak to the call."""
        await self._apps.playing.stop_playback(call, "playback")
        await self._apps.playing.stop_playback(call, "speak")

    async def send_dtmf(self, call: AppCall, digits: str, duration_millis: int) -> None:
        await self._apps.playing.send_dtmf(call, digits, duration_millis)

    def gather(
        self,
        call: AppCall,
        *,
        minimum: int,
        maximum: int,
        terminating: str,
        valid: str,
        timeout: float,
        initial_timeout: float,
        inter_digit_timeout: float,
        gather_id: str | None,
    ) -> None:
        self._apps.gathers.start(
            Gather(
                call,
                minimum=minimum,
                maximum=maximum,
                terminating=terminating,
                valid=valid,
                timeout=timeout,
                initial_timeout=initial_timeout,
                inter_digit_timeout=inter_digit_timeout,
                gather_id=gather_id,
            )
        )

    def stop_gather(self, call: AppCall) -> None:
        self._apps.gathers.stop(call)

    async def record_start(self, call: AppCall, fmt: RecordingFormat) -> str:
        return await self._apps.playing.record_start(call, fmt)

    async def record_stop(self, call: AppCall, recording_id: str | None) -> None:
        await self._apps.playing.record_stop(call, recording_id)

    async def record_pause(self, call: AppCall, paused: bool, recording_id: str | None) -> None:
        await self._apps.playing.record_pause(call, paused, recording_id)

    async def leave_queue(self, call: AppCall) -> None:
        await self._apps.queues.leave_queue(call)

    # queues -----------------------------------------------------------------------------------
    def queue(self, name: str, *, account_id: str = DEFAULT_ACCOUNT_ID) -> Queue | None:
        return self._apps.queues.get(name, account_id=account_id)

    def queues(self, *, account_id: str = DEFAULT_ACCOUNT_ID) -> list[Queue]:
        return self._apps.queues.all(account_id=account_id)

    def create_queue(
        self, name: str, max_size: int | None, *, account_id: str = DEFAULT_ACCOUNT_ID
    ) -> Queue:
        return self._apps.queues.create(name, max_size, account_id=account_id)

    def resize_queue(self, queue: Queue, max_size: int) -> None:
        self._apps.queues.resize(queue, max_size)

    def delete_queue(self, name: str, *, account_id: str = DEFAULT_ACCOUNT_ID) -> None:
        self._apps.queues.delete(name, account_id=account_id)

    # conferences ------------------------------------------------------------------------------
    def conference_record(
        self, conference_id: str, *, account_id: str = DEFAULT_ACCOUNT_ID
    ) -> ConferenceRecord | None:
        """A live or recently ended conference's record, if it is the account's."""
        record = self._apps.conferences.record(conference_id)
        return record if record is not None and record.account_id == account_id else None

    def conference_records(self, *, account_id: str = DEFAULT_ACCOUNT_ID) -> list[ConferenceRecord]:
        """Every conference of the account known (live, and recently ended), newest first."""
        return [
            r
            for r in reversed(self._apps.conferences.records.values())
            if r.id and r.account_id == account_id
        ]

    def conference(
        self, conference_id: str, *, account_id: str = DEFAULT_ACCOUNT_ID
    ) -> ConferenceRecord:
        """A live conference's record. :class:`UnknownConference` if there is none (or it is
        another account's); a ``ProtocolError`` (``invalid_state``) if it has ended or is a
        call group."""
        record = self._apps.conferences.record(conference_id)
        if record is not None and record.account_id != account_id:
            raise UnknownConference(conference_id)
        return self._apps.conferences.live(conference_id)[1]

    def participants(self, conference_id: str) -> list[ParticipantInfo]:
        return self._apps.conferences.participants(conference_id)

    def participant(self, conference_id: str, call: AppCall) -> ParticipantInfo:
        """:class:`NotAParticipant` when the call is not in the conference."""
        return self._apps.conferences.participant(conference_id, call)

    def ensure_participant(self, conference_id: str, call: AppCall) -> None:
        self._apps.conferences.ensure_participant(conference_id, call)

    def whispers(self, conference_id: str, call: AppCall) -> bool:
        """True if the participant whispers to someone already."""
        return self._apps.conferences.whispers(conference_id, call)

    def conference_recording_id(self, conference_id: str) -> str | None:
        return self._apps.conferences.recording_id(conference_id)

    async def leave(self, conference_id: str, call: AppCall) -> None:
        await self._apps.conferences.leave(conference_id, call)

    async def hold(
        self, conference_id: str, calls: Sequence[AppCall] | None, audio: AudioSpec | None
    ) -> None:
        await self._apps.conferences.hold(conference_id, calls, audio)

    async def unhold(self, conference_id: str, calls: Sequence[AppCall]) -> None:
        await self._apps.conferences.unhold(conference_id, calls)

    async def mute(self, conference_id: str, calls: Sequence[AppCall] | None, muted: bool) -> None:
        await self._apps.conferences.mute(conference_id, calls, muted)

    async def update_participant(
        self,
        conference_id: str,
        call: AppCall,
        role: SupervisorRole,
        whisper_to: Sequence[AppCall] | None,
    ) -> None:
        await self._apps.conferences.update(conference_id, call, role, whisper_to)

    async def play_to_conference(
        self, conference_id: str, audio: AudioSpec, calls: Sequence[AppCall] | None
    ) -> str:
        """Play or speak to some participants (all when ``calls`` is empty); returns the
        playback id its events carry."""
        return await self._apps.conferences.play(conference_id, audio, calls)

    async def stop_conference_audio(
        self, conference_id: str, calls: Sequence[AppCall] | None
    ) -> None:
        await self._apps.conferences.stop(conference_id, calls)

    async def record_conference(
        self, conference_id: str, action: RecordAction, fmt: RecordingFormat = "wav"
    ) -> None:
        await self._apps.conferences.recording(conference_id, action, fmt)

    async def end_conference(self, conference_id: str) -> None:
        await self._apps.conferences.end(conference_id)

    # media and the store ----------------------------------------------------------------------
    async def probe_audio(self, audio: AudioSpec) -> float:
        """Check that ``audio`` can be played (``MediaError`` if not); its length in seconds."""
        return await self._apps.media.probe_audio(audio)

    async def recordings_stored(self) -> None:
        """Wait until recordings saved a moment ago are in the store."""
        await self._apps.drain()
