"""A conference's media operations: playbacks to the room (files, URLs, text to speech),
recording the mix, the participants' mixer flags (mute, hold with hold audio, deaf, supervisor
roles), and the media plane's events about a mixer (the active talker, a playback's life, a
saved recording).

Both the ``/ws`` host and the REST API (seed 003) drive these; ``device`` is the host asking,
``None`` for the REST API, which learns how a playback or recording goes from the bus.
Each playback and the recording is a small state machine
(:class:`~callbridge.core.conference_model.Playback`,
:class:`~callbridge.core.conference_model.Recording`) that the media plane's events move on.
A recording whose file could not be written or finished (a full disk, the encoder failed) is
no success: its host is told ``recording_failed`` and the bus gets
:class:`~callbridge.core.events.ConferenceRecordingFailed` instead of the saved events.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

from callbridge.core.app_media import recording_failure
from callbridge.core.calls import new_id
from callbridge.core.conference_events import (
    ParticipantUpdated,
    PlaybackAccepted,
    PlaybackProgress,
    PlaybacksStopped,
    RecordingChanged,
    RecordingFileFailed,
    RecordingFileSaved,
    TalkerChanged,
)
from callbridge.core.conference_model import (
    Conference,
    Member,
    Playback,
    PlaybackState,
    Recording,
    RecordingState,
)
from callbridge.core.devices import Device
from callbridge.core.events import (
    ConferenceFloorChanged,
    ConferencePlaybackChanged,
    ConferenceRecordingFailed,
    ConferenceRecordingSaved,
)
from callbridge.errors import ErrorCode, ProtocolError
from callbridge.media.fetch import acting_for
from callbridge.media.interface import (
    AudioSpec,
    FloorChanged,
    MediaEvent,
    PlaybackStateChanged,
    RecordingSaved,
)
from callbridge.store.accounts import DEFAULT_ACCOUNT_ID
from callbridge.vocabulary import SupervisorRole

if TYPE_CHECKING:
    from callbridge.core.conferences import ConferenceManager

__all__ = ["ConferenceMedia", "RecordAction"]

log = logging.getLogger(__name__)

RecordAction = Literal["start", "pause", "resume", "stop"]
_RECORD_STATUS: dict[RecordAction, Literal["recording", "paused", "stopping"]] = {
    "start": "recording",
    "pause": "paused",
    "resume": "recording",
    "stop": "stopping",
}


class ConferenceMedia:
    """Playbacks, recordings and participant flags of every conference of the manager."""

    def __init__(self, manager: ConferenceManager) -> None:
        self.manager = manager
        self.media = manager.media
        self._playbacks: dict[str, Playback] = {}
        self._recordings: dict[str, Recording] = {}

    # participant flags ------------------------------------------------------------------------
    async def update_participant(
        self,
        device: Device | None,
        conf: Conference,
        participant: str,
        *,
        muted: bool | None = None,
        held: bool | None = None,
        hold_audio: AudioSpec | None = None,
        deaf: bool | None = None,
        role: SupervisorRole | None = None,
        whisper_to: list[str] | None = None,
        req_id: str | None = None,
    ) -> Member:
        """Mute, hold (with hold audio), deafen a participant or change its supervisor role.
        ``device`` is the host asking (``None``: the REST API)."""
        member = self.manager.member_of(conf, participant)
        targets: tuple[str, ...] | None = None
        if whisper_to is not None:
            targets = tuple(self.manager.member_of(conf, t).leg.id for t in whisper_to)
        if role == "whisper" and not (targets or member.whisper_to):
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE,
                "supervisor_role 'whisper' needs the participants who hear it (whisper_to)",
            )
        if muted is not None:
            member.muted = muted
        if deaf is not None:
            member.deaf = deaf
        if role is not None:
            member.role = role
        if targets is not None:
            member.whisper_to = targets
        if held is not None and held != member.held:
            member.held = held
            if member.hold_playback is not None:
                await self.media.stop_playback(member.hold_playback)
                member.hold_playback = None
            if held and hold_audio is not None:
                member.hold_playback = new_id()
                with acting_for(_owner(device, conf)):
                    await self.media.play_to(member.leg.id, member.hold_playback, hold_audio)
        await self.manager.apply(member)
        if device is not None:
            self.manager.tell_owner(
                conf,
                ParticipantUpdated(
                    req_id=req_id,
                    conference_id=conf.id,
                    roster=conf.roster(),
                    participant=member.key,
                ),
            )
        return member

    # playbacks --------------------------------------------------------------------------------
    async def play(
        self,
        device: Device | None,
        conf: Conference,
        audio: AudioSpec,
        targets: list[str] | None,
        req_id: str | None = None,
    ) -> str:
        """Play a file / URL or speak text to all or some participants; returns the playback
        id (its ``conference.playback-*`` / ``conference.speak-*`` events carry it)."""
        legs = tuple(self.manager.member_of(conf, t).leg.id for t in targets or ())
        what: Literal["play", "speak"] = "speak" if audio.kind == "tts" else "play"
        playback = Playback(conf, what, device, legs)
        playback.state_observer = self.manager.calls.observer
        self._playbacks[playback.id] = playback
        try:
            with acting_for(_owner(device, conf)):  # the limits per user count it for them
                await self.media.mixer_play(conf.id, playback.id, audio, legs)
        except BaseException:
            self._playbacks.pop(playback.id, None)
            playback.transition(PlaybackState.ENDED, cause="it could not start")
            raise
        if device is not None:
            device.deliver(
                PlaybackAccepted(
                    req_id=req_id, conference_id=conf.id, kind=what, playback_id=playback.id
                )
            )
        return playback.id

    async def stop(
        self,
        device: Device | None,
        conf: Conference,
        targets: list[str] | None,
        req_id: str | None = None,
    ) -> None:
        """Stop every playback of the room, or those aimed at ``targets``."""
        legs = tuple(self.manager.member_of(conf, t).leg.id for t in targets or ())
        await self.media.stop_all(conf.id, legs)
        if device is not None:
            device.deliver(PlaybacksStopped(req_id=req_id, conference_id=conf.id))

    # recording --------------------------------------------------------------------------------
    async def record(
        self,
        device: Device | None,
        conf: Conference,
        action: RecordAction,
        fmt: Literal["wav", "mp3"] = "wav",
        req_id: str | None = None,
    ) -> str:
        """Start, pause, resume or stop recording the conference's mix; returns the
        recording id (``conference.recording-saved`` carries it when it is saved)."""
        if action == "start":
            recording = await self._start_recording(device, conf, fmt)
        else:
            recording = _running(conf)
            if action == "pause":
                await self.media.record_pause(recording.id)
                if recording.running:
                    recording.transition(RecordingState.PAUSED, cause="paused")
            elif action == "resume":
                await self.media.record_resume(recording.id)
                if recording.running:
                    recording.transition(RecordingState.RECORDING, cause="resumed")
            else:
                recording.transition(RecordingState.STOPPING, cause="stopped")
                conf.recording = None
                await self.media.record_stop(recording.id)
        if device is not None:
            device.deliver(
                RecordingChanged(
                    req_id=req_id,
                    conference_id=conf.id,
                    recording_id=recording.id,
                    status=_RECORD_STATUS[action],
                )
            )
        return recording.id

    async def _start_recording(
        self, device: Device | None, conf: Conference, fmt: Literal["wav", "mp3"]
    ) -> Recording:
        if conf.recording is not None:
            raise ProtocolError(
                ErrorCode.INVALID_STATE, f"conference {conf.id} is being recorded already"
            )
        directory = self.manager.recordings_dir
        if directory is None:
            raise ProtocolError(ErrorCode.INTERNAL, "this server has no recordings directory")
        recording = Recording(conf, device)
        recording.state_observer = self.manager.calls.observer
        conf.recording = recording  # claimed before the await: a second start is refused
        self._recordings[recording.id] = recording
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{recording.id}.{fmt}"
        try:
            await self.media.record_start(recording.id, conf.id, str(path), fmt)
        except BaseException:
            self._recordings.pop(recording.id, None)
            if conf.recording is recording:
                conf.recording = None
            recording.transition(RecordingState.FAILED, cause="the media plane refused it")
            raise
        if recording.state is RecordingState.STARTING:  # not saved already (its mixer went)
            recording.transition(RecordingState.RECORDING, cause="started")
        return recording

    # the media plane's events -----------------------------------------------------------------
    def on_media_event(self, event: MediaEvent) -> None:
        if isinstance(event, FloorChanged):
            self._floor_changed(event)
        elif isinstance(event, PlaybackStateChanged):
            self._playback_changed(event)
        elif isinstance(event, RecordingSaved):
            self._recording_saved(event)

    def forget(self, conf: Conference) -> None:
        """The conference ends: its playbacks are over (their later events are not told)."""
        for playback in [p for p in self._playbacks.values() if p.conference is conf]:
            del self._playbacks[playback.id]
            playback.transition(PlaybackState.ENDED, cause="the conference ended")

    def _floor_changed(self, event: FloorChanged) -> None:
        conf = self.manager.conferences.get(event.mixer_id)
        if conf is None or conf.ended:
            return
        conf.floor = event.endpoint_id
        key = conf.floor_key()
        told: set[int] = set()
        for member in conf.members.values():
            device = member.leg.device
            if id(device) in told or not member.in_mixer:
                continue
            told.add(id(device))
            device.deliver(
                TalkerChanged(
                    conference_id=conf.id,
                    call_id=member.leg.id,
                    participant=key,
                    talker_call_id=event.endpoint_id,
                )
            )
        self.manager.bus.publish(
            ConferenceFloorChanged(
                conference_id=conf.id,
                name=conf.name,
                call_control_id=event.endpoint_id,
            )
        )

    def _playback_changed(self, event: PlaybackStateChanged) -> None:
        playback = self._playbacks.get(event.playback_id)
        if playback is None:
            return
        if event.state == "ended":
            del self._playbacks[event.playback_id]
            playback.transition(PlaybackState.ENDED, cause=event.status)
        else:
            playback.transition(PlaybackState.PLAYING)
        conf = playback.conference
        if playback.requester is not None and not conf.ended:
            playback.requester.deliver(
                PlaybackProgress(
                    conference_id=conf.id,
                    kind=playback.what,
                    state=event.state,
                    playback_id=playback.id,
                    status=event.status,
                    detail=event.detail,
                )
            )
        self.manager.bus.publish(
            ConferencePlaybackChanged(
                conference_id=conf.id,
                name=conf.name,
                playback_id=playback.id,
                kind="speak" if playback.what == "speak" else "playback",
                state=event.state,
                status=event.status,
                targets=playback.targets,
            )
        )

    def _recording_saved(self, event: RecordingSaved) -> None:
        recording = self._recordings.pop(event.recording_id, None)
        if recording is None:
            return
        failure = recording_failure(event)
        recording.transition(RecordingState.SAVED, cause=failure or event.path)
        conf = recording.conference
        if conf.recording is recording:
            conf.recording = None
        if failure is not None:
            self._recording_failed(recording, failure)
            return
        if recording.requester is not None:
            recording.requester.deliver(
                RecordingFileSaved(
                    conference_id=conf.id,
                    recording_id=recording.id,
                    path=event.path,
                    duration_secs=event.duration_secs,
                )
            )
        self.manager.bus.publish(
            ConferenceRecordingSaved(
                conference_id=conf.id,
                name=conf.name,
                recording_id=recording.id,
                path=event.path,
                duration_secs=event.duration_secs,
            )
        )

    def _recording_failed(self, recording: Recording, detail: str) -> None:
        """A recording that failed is no success: its host gets ``recording_failed``, an
        application ``conference.recording.error``, and nothing is listed as saved."""
        conf = recording.conference
        log.warning("recording %s of conference %s failed: %s", recording.id, conf.id, detail)
        if recording.requester is not None:
            recording.requester.deliver(
                RecordingFileFailed(conference_id=conf.id, recording_id=recording.id, detail=detail)
            )
        self.manager.bus.publish(
            ConferenceRecordingFailed(
                conference_id=conf.id, name=conf.name, recording_id=recording.id, detail=detail
            )
        )


def _owner(device: Device | None, conf: Conference) -> str:
    """Whom a playback counts for in the limits per user (``max_playbacks_per_user``,
    ``max_fetches_per_user``): the ``/ws`` user asking, else the conference's account."""
    if device is not None:
        return f"user:{device.user_name}"
    return f"account:{getattr(conf, 'account_id', DEFAULT_ACCOUNT_ID)}"


def _running(conf: Conference) -> Recording:
    """The conference's recording that pause, resume and stop apply to."""
    recording = conf.recording
    if recording is None or not recording.running:
        raise ProtocolError(ErrorCode.INVALID_STATE, f"conference {conf.id} is not being recorded")
    return recording
