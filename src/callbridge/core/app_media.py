"""What an application plays to, sends to and records of its calls.

- **play / speak**: a file or URL (``playback``) or text to speech (``speak``) replaces what
  the call's leg hears while it plays (``play_to`` on its endpoint); ``target_legs`` may name
  the bridged partner too. Each playback reports ``call.playback.*`` / ``call.speak.*``
  started and ended once; when the call ends first, its end is reported ``call_hangup``.
- **DTMF**: :meth:`AppMedia.send_dtmf` hands the digits to the media plane
  (``MediaServer.send_dtmf``: RFC 4733 events when the device negotiated telephone-event,
  else in-band tones) and tells the device each digit (``call.dtmf``).
- **record**: the call's endpoint audio mixed with its bridge partner's, to WAV or MP3;
  ``call.recording.saved`` follows the stop (or the call's end), once the store has it. A
  recording whose file could not be written or finished (a full disk, the encoder failed) is
  no success: :class:`AppRecordingError` (``call.recording.error``) says so instead, and the
  file is not offered as a recording.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from callbridge.core.app_events import (
    AppCallEvent,
    AppPlaybackEnded,
    AppPlaybackStarted,
    AppRecordingSaved,
    PlaybackKind,
    PlaybackOutcome,
)
from callbridge.core.app_model import DTMF_DIGITS, AppCall, now
from callbridge.core.calls import Leg, new_id
from callbridge.core.conference_model import Playback, PlaybackState, Recording, RecordingState
from callbridge.core.events import CallDtmf
from callbridge.core.tenancy import call_account, tell_recording, wants_recording_notice
from callbridge.errors import ErrorCode, MediaError, ProtocolError
from callbridge.media.interface import (
    AudioSpec,
    MediaEvent,
    PlaybackStateChanged,
    RecordingFormat,
    RecordingSaved,
)
from callbridge.statemachine import StateMachine

if TYPE_CHECKING:
    from callbridge.core.appcalls import AppCalls

__all__ = ["AppMedia", "AppPlayback", "AppRecording", "AppRecordingError", "TargetLegs"]

log = logging.getLogger(__name__)

TargetLegs = Literal["self", "opposite", "both"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AppRecordingError(AppCallEvent):
    """A recording of the call failed: ``detail`` says what went wrong (nothing was saved)."""

    recording_id: str
    detail: str


def recording_failure(event: RecordingSaved) -> str | None:
    """Why a recording failed, if it did: the media plane ends a failed one with a
    ``RecordingSaved`` that carries ``error`` (the engine's ``RecordingFailed``; the core
    sees only ``media.interface``)."""
    error = getattr(event, "error", None)
    return error if isinstance(error, str) else None


@dataclass(eq=False)
class AppPlayback(StateMachine[PlaybackState]):
    """One play or speak to one leg of an application call."""

    # The life of any playback, a conference's too: one table for both.
    TRANSITIONS: ClassVar[Mapping[PlaybackState, frozenset[PlaybackState]]] = Playback.TRANSITIONS

    call: AppCall  # whose events report it (the call of the leg that hears it)
    what: PlaybackKind
    media_url: str | None = None
    media_name: str | None = None
    id: str = field(default_factory=new_id)
    state: PlaybackState = PlaybackState.STARTING

    @property
    def kind(self) -> str:
        return "application playback"


@dataclass(eq=False)
class AppRecording(StateMachine[RecordingState]):
    """The recording of one application call."""

    # The life of any recording, a conference's too: one table for both.
    TRANSITIONS: ClassVar[Mapping[RecordingState, frozenset[RecordingState]]] = (
        Recording.TRANSITIONS
    )

    id: str
    call: AppCall
    format: RecordingFormat
    started_at: datetime = field(default_factory=now)
    state: RecordingState = RecordingState.STARTING
    told: tuple[Leg, ...] = ()  # the legs told it records them (core.tenancy's notice)

    @property
    def kind(self) -> str:
        return "application recording"


# The media plane's end status of a playback, as an application hears of it.
_OUTCOME: dict[str, PlaybackOutcome] = {
    "completed": "completed",
    "stopped": "stopped",
    "failed": "failed",
}


class AppMedia:
    """Playbacks, DTMF and recordings of application calls (one per :class:`AppCalls`)."""

    def __init__(self, apps: AppCalls, recordings_dir: Path) -> None:
        self.apps = apps
        self.recordings_dir = recordings_dir
        self.playbacks: dict[str, AppPlayback] = {}
        self.recordings: dict[str, AppRecording] = {}

    # play and speak ---------------------------------------------------------------------------
    def _targets(self, call: AppCall, target_legs: TargetLegs, action: str) -> list[Leg]:
        leg = self.apps.answered_leg(call, action)
        if target_legs == "self":
            return [leg]
        if leg.peer is None:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"{action}: target_legs {target_legs!r} needs a bridged call; call {call.id} "
                "is not bridged (use 'self')",
            )
        return [leg.peer] if target_legs == "opposite" else [leg, leg.peer]

    async def play(
        self,
        call: AppCall,
        audio: AudioSpec,
        *,
        kind: PlaybackKind,
        target_legs: TargetLegs = "self",
        media_url: str | None = None,
        media_name: str | None = None,
    ) -> list[str]:
        """Play a file/URL (``playback``) or speak text (``speak``) to the call; returns the
        playback ids (``call.playback.*`` / ``call.speak.*`` events follow)."""
        action = "playback_start" if kind == "playback" else "speak"
        ids: list[str] = []
        for leg in self._targets(call, target_legs, action):
            owner = self.apps.by_leg.get(leg.id, call)
            playback = AppPlayback(owner, kind, media_url, media_name)
            playback.state_observer = self.apps.controller.observer
            self.playbacks[playback.id] = playback
            try:
                await self.apps.media.play_to(leg.id, playback.id, audio)
            except BaseException:
                self.playbacks.pop(playback.id, None)
                playback.transition(PlaybackState.ENDED, cause="it could not start")
                raise
            ids.append(playback.id)
        return ids

    async def stop_playback(self, call: AppCall, kind: PlaybackKind) -> None:
        leg = self.apps.live(call)
        for playback in list(self.playbacks.values()):
            if playback.what == kind and playback.call.leg is leg:
                await self.apps.media.stop_playback(playback.id)

    async def stop_app_audio(self, leg: Leg) -> None:
        """Stop what the application played to a leg (and ringback / hold music)."""
        for playback in list(self.playbacks.values()):
            if playback.call.leg is leg:
                await self.apps.media.stop_playback(playback.id)
        await self.apps.media.stop_playing(leg.id)

    def _playback_changed(self, event: PlaybackStateChanged) -> None:
        playback = self.playbacks.get(event.playback_id)
        if playback is None:
            return
        if event.state == "started":
            if playback.state is PlaybackState.STARTING:
                playback.transition(PlaybackState.PLAYING)
                self._started(playback)
            return
        del self.playbacks[event.playback_id]
        outcome = _OUTCOME.get(event.status, "completed")
        self._ended(playback, outcome, event.detail)

    def _started(self, playback: AppPlayback) -> None:
        self.apps.publish(
            AppPlaybackStarted(
                call=self.apps.facts(playback.call),
                kind=playback.what,
                media_url=playback.media_url,
                media_name=playback.media_name,
            )
        )

    def _ended(self, playback: AppPlayback, outcome: PlaybackOutcome, detail: str = "") -> None:
        if playback.state is PlaybackState.ENDED:
            return  # reported already (the call ended first)
        playback.transition(PlaybackState.ENDED, cause=outcome)
        self.apps.publish(
            AppPlaybackEnded(
                call=self.apps.facts(playback.call),
                kind=playback.what,
                outcome=outcome,
                detail=detail,
                media_url=playback.media_url,
                media_name=playback.media_name,
            )
        )

    # DTMF -------------------------------------------------------------------------------------
    async def send_dtmf(self, call: AppCall, digits: str, duration_millis: int = 250) -> None:
        """Send DTMF to the call's device: the media plane sends the digits (RFC 4733 events
        when the device negotiated telephone-event, else in-band tones), and the device is
        told each digit (``call.dtmf``). Returns once the sending has started."""
        leg = self.apps.answered_leg(call, "send_dtmf")
        if not digits or set(digits) - DTMF_DIGITS:
            raise ProtocolError(
                ErrorCode.INVALID_DIGITS,
                f"digits {digits!r}: use 0-9, A-D, * and #, w for a 0.5 s pause, W for 1 s",
            )
        self.apps.scheduler.spawn(
            self._send_dtmf(leg, digits, duration_millis), f"DTMF {digits!r} to {leg.id}"
        )
        for digit in digits:
            if digit not in "wW":
                leg.device.deliver(CallDtmf(call_id=leg.id, digit=digit))

    async def _send_dtmf(self, leg: Leg, digits: str, duration_millis: int) -> None:
        try:
            await self.apps.media.send_dtmf(leg.id, digits, duration_millis)
        except MediaError as exc:  # the call ended (or its media failed) while sending
            log.info("DTMF %r to %s stopped: %s", digits, leg.id, exc)

    # recording --------------------------------------------------------------------------------
    async def record_start(self, call: AppCall, fmt: RecordingFormat) -> str:
        """Record the call (its audio mixed with its bridge partner's) to a WAV or MP3 file;
        ``call.recording.saved`` follows :meth:`record_stop` (or the call's end)."""
        leg = self.apps.answered_leg(call, "record_start")
        if leg.conference is not None:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"call {call.id} is in conference {leg.conference.id}: record the conference",
            )
        if call.recording is not None:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"call {call.id} is being recorded already (recording {call.recording.id})",
            )
        account = call_account(call.application, leg.device)
        notice = await wants_recording_notice(self.apps.directory, account)
        recording = AppRecording(new_id(), call, fmt)
        recording.state_observer = self.apps.controller.observer
        self.recordings_dir.mkdir(parents=True, exist_ok=True)
        path = self.recordings_dir / f"{recording.id}.{fmt}"
        self.recordings[recording.id] = recording
        call.recording = recording
        try:
            await self.apps.media.record_start(recording.id, leg.id, str(path), fmt)
        except BaseException:
            self.recordings.pop(recording.id, None)
            call.recording = None
            recording.transition(RecordingState.FAILED, cause="the media plane refused")
            raise
        if recording.state is RecordingState.STARTING:
            recording.transition(RecordingState.RECORDING)
        if notice and call.recording is recording:  # not stopped meanwhile
            # Both parties of a 1:1 call are told (call.recording), unless the account said no.
            recording.told = tell_recording((leg, leg.peer), True)
        return recording.id

    def _recording_of(self, call: AppCall, recording_id: str | None) -> AppRecording:
        self.apps.live(call)
        recording = call.recording
        if recording is None or (recording_id is not None and recording.id != recording_id):
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"call {call.id} is not being recorded"
                + (f" as {recording_id}" if recording_id else ""),
            )
        return recording

    async def record_stop(self, call: AppCall, recording_id: str | None = None) -> None:
        recording = self._recording_of(call, recording_id)
        call.recording = None
        tell_recording(recording.told, False)
        recording.transition(RecordingState.STOPPING)
        await self.apps.media.record_stop(recording.id)

    async def record_pause(self, call: AppCall, paused: bool, recording_id: str | None) -> None:
        recording = self._recording_of(call, recording_id)
        if paused:
            await self.apps.media.record_pause(recording.id)
        else:
            await self.apps.media.record_resume(recording.id)
        if recording.state in (RecordingState.RECORDING, RecordingState.PAUSED):
            recording.transition(RecordingState.PAUSED if paused else RecordingState.RECORDING)

    async def _save(self, recording: AppRecording, event: RecordingSaved) -> None:
        call = recording.call
        ended = now()
        duration_millis = round(event.duration_secs * 1000)
        await self.apps.directory.add_recording(
            recording_id=recording.id,
            path=event.path,
            format=recording.format,
            channels="single",
            duration_millis=duration_millis,
            recording_started_at=recording.started_at,
            recording_ended_at=max(ended, recording.started_at),
            call_control_id=call.id,
            call_leg_id=call.id,
            call_session_id=call.session_id,
        )
        self.apps.publish(
            AppRecordingSaved(
                call=self.apps.facts(call),
                recording_id=recording.id,
                format=recording.format,
                started_at=recording.started_at,
                ended_at=ended,
                duration_millis=duration_millis,
            )
        )

    # events -----------------------------------------------------------------------------------
    def on_media_event(self, event: MediaEvent) -> None:
        if isinstance(event, PlaybackStateChanged):
            self._playback_changed(event)
        elif isinstance(event, RecordingSaved):
            recording = self.recordings.pop(event.recording_id, None)
            if recording is not None:
                failure = recording_failure(event)
                recording.transition(RecordingState.SAVED, cause=failure or event.path)
                if recording.call.recording is recording:  # saved before a stop (media ended)
                    recording.call.recording = None
                    tell_recording(recording.told, False)
                if failure is not None:
                    log.warning(
                        "recording %s of call %s failed: %s",
                        recording.id,
                        recording.call.id,
                        failure,
                    )
                    self.apps.publish(
                        AppRecordingError(
                            call=self.apps.facts(recording.call),
                            recording_id=recording.id,
                            detail=failure,
                        )
                    )
                    return
                self.apps.store_later(self._save(recording, event), f"recording {recording.id}")

    def call_ended(self, call: AppCall) -> None:
        """``call`` is over: its playbacks' ends are reported now (``call_hangup``)."""
        for playback in list(self.playbacks.values()):
            if playback.call is call:
                self._ended(playback, "call_hangup")
