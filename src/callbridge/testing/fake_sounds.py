"""The playbacks and recordings of :class:`~callbridge.testing.fake_media.FakeMediaServer`.

Nothing is loaded, played or written: a playback is a record that is ``playing`` until it is
stopped, its owner goes away or the test ends it (``end_playback``); a recording is a record
that is saved (:class:`~callbridge.media.interface.RecordingSaved`) when stopped or when its
source goes away. Audio is refused as the engine would refuse it: bad loops, an unknown tone
or kind, a URL that is not http(s), and any location the test put in ``bad_audio``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from callbridge.errors import ErrorCode, MediaError
from callbridge.media.checks import check_audio
from callbridge.media.interface import (
    AudioSpec,
    MediaEvent,
    PlaybackStateChanged,
    PlaybackStatus,
    RecordingFormat,
    RecordingSaved,
)
from callbridge.media.players import TONES

__all__ = ["FakeSounds", "PlaybackRecord", "RecordingRecord"]

_TONE_SECONDS = {name: sum(s for _, s in notes) for name, notes in TONES.items()}


@dataclass(frozen=True, slots=True)
class PlaybackRecord:
    """A playback as the fake saw it; ``status`` ``playing`` until it ended."""

    playback_id: str
    audio: AudioSpec
    owner: str  # "mix:<mixer id>" (mixer_play) or an endpoint id (play_to)
    targets: tuple[str, ...] = ()
    status: PlaybackStatus = "playing"
    detail: str = ""


@dataclass(frozen=True, slots=True)
class RecordingRecord:
    """A recording as the fake saw it; ``duration_secs`` once saved."""

    recording_id: str
    source_id: str  # a mixer or endpoint id
    path: str
    fmt: RecordingFormat
    paused: bool = False
    saved: bool = False
    duration_secs: float = 0.0


class FakeSounds:
    """Playback and recording records, and the events about them."""

    def __init__(
        self, emit: Callable[[MediaEvent], None], clock: Callable[[], float] | None
    ) -> None:
        self._emit = emit
        self._clock = clock
        self.playbacks: dict[str, PlaybackRecord] = {}  # every playback started, in order
        self.recordings: dict[str, RecordingRecord] = {}
        self._time: dict[str, tuple[float, float | None]] = {}  # (seconds so far, running since)
        self.bad_audio: set[str] = set()
        self.audio_seconds: dict[str, float] = {}

    @property
    def live(self) -> int:
        """Playbacks playing and recordings running."""
        playing = sum(1 for p in self.playbacks.values() if p.status == "playing")
        return playing + sum(1 for r in self.recordings.values() if not r.saved)

    # playbacks ------------------------------------------------------------------------------
    def check(self, audio: AudioSpec) -> float:
        """Refuse what the engine would refuse to load; return the length of one pass."""
        check_audio(audio)
        if audio.kind == "tone":
            return _TONE_SECONDS[audio.location]
        if audio.location in self.bad_audio:
            raise MediaError(
                ErrorCode.INVALID_AUDIO, f"{audio.location} cannot be played (bad_audio)"
            )
        return self.audio_seconds.get(audio.location, 1.0)

    def playing(self, playback_id: str) -> PlaybackRecord | None:
        pb = self.playbacks.get(playback_id)
        return pb if pb is not None and pb.status == "playing" else None

    def check_new(self, playback_id: str, audio: AudioSpec) -> None:
        if self.playing(playback_id) is not None:
            raise MediaError(ErrorCode.INVALID_STATE, f"playback {playback_id} exists already")
        self.check(audio)

    def start(self, pb: PlaybackRecord) -> None:
        self.check_new(pb.playback_id, pb.audio)
        self.playbacks.pop(pb.playback_id, None)  # an ended one of that id: the new one is last
        self.playbacks[pb.playback_id] = pb
        self._emit(PlaybackStateChanged(pb.playback_id, "started", "playing"))

    def end(self, playback_id: str, status: PlaybackStatus, detail: str = "") -> None:
        self.playbacks[playback_id] = replace(
            self.playbacks[playback_id], status=status, detail=detail
        )
        self._emit(PlaybackStateChanged(playback_id, "ended", status, detail))

    def playing_of(self, owner: str) -> list[PlaybackRecord]:
        return [p for p in self.playbacks.values() if p.owner == owner and p.status == "playing"]

    # recordings -----------------------------------------------------------------------------
    def _now(self) -> float:
        return self._clock() if self._clock is not None else 0.0

    def record(self, recording_id: str, source_id: str, path: str, fmt: RecordingFormat) -> None:
        rec = self.recordings.get(recording_id)
        if rec is not None and not rec.saved:
            raise MediaError(ErrorCode.INVALID_STATE, f"recording {recording_id} exists already")
        self.recordings[recording_id] = RecordingRecord(recording_id, source_id, path, fmt)
        self._time[recording_id] = (0.0, self._now())

    def running(self, recording_id: str) -> RecordingRecord:
        rec = self.recordings.get(recording_id)
        if rec is None or rec.saved:
            raise MediaError(ErrorCode.CALL_NOT_FOUND, f"no recording {recording_id} in progress")
        return rec

    def pause(self, recording_id: str, paused: bool) -> None:
        rec = self.running(recording_id)
        total, since = self._time[recording_id]
        if paused and since is not None:
            self._time[recording_id] = (total + self._now() - since, None)
        elif not paused and since is None:
            self._time[recording_id] = (total, self._now())
        self.recordings[recording_id] = replace(rec, paused=paused)

    def save(self, recording_id: str) -> None:
        self.pause(recording_id, True)
        seconds = round(self._time.pop(recording_id)[0], 3)
        rec = self.recordings[recording_id] = replace(
            self.recordings[recording_id], saved=True, duration_secs=seconds
        )
        self._emit(RecordingSaved(recording_id, rec.path, seconds))

    def save_all(self, source_id: str | None = None) -> None:
        """Save the running recordings of ``source_id`` (all when ``None``)."""
        for rec in list(self.recordings.values()):
            if not rec.saved and source_id in (None, rec.source_id):
                self.save(rec.recording_id)
