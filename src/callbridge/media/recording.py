"""Recordings: 20 ms frames of 48 kHz mono int16 written to a WAV file as they are mixed.

The per-tick cost is one buffered file write of 1920 bytes (no encoding, no allocation): the
frame is written as it is (WAV's ``writeframesraw``; the header gets its sizes once, when the
file is finished). An MP3 recording is written the same way to a temporary WAV next to the
target and encoded to MP3 (libmp3lame through PyAV) when it stops, in a worker thread, so no
encoder runs on the media clock. Opening and finishing run off the event loop too.

Pausing simply skips frames, so the file and ``duration_secs`` hold only the recorded audio.

A recording that fails on the way (a write fails: the disk is full; finishing or encoding the
file fails) ends with :class:`RecordingFailed` instead of a plain ``RecordingSaved``, with
what went wrong: the control plane reports it (``call.recording.error``) rather than handing
out a file that looks complete and is not. What was written before the failure stays on disk.
"""

from __future__ import annotations

import asyncio
import logging
import os
import wave
from dataclasses import dataclass
from typing import BinaryIO

import av

from callbridge.errors import ErrorCode, MediaError
from callbridge.media.interface import RecordingFormat, RecordingSaved
from callbridge.rtp.codecs import FRAME_MS, MIX_RATE, Pcm

__all__ = ["Recorder", "RecordingFailed"]

log = logging.getLogger(__name__)
_MP3_BITRATE = 64000
_BUFFER = 1 << 16  # bytes of file buffer: a write syscall every ≈ 0.7 s of audio


@dataclass(frozen=True, slots=True)
class RecordingFailed(RecordingSaved):
    """A recording ended, but its file is incomplete or broken: ``error`` says why.

    A subclass of ``RecordingSaved`` so that it travels as the media event every recording
    ends with (``MediaEvent``); a subscriber that knows of failures checks for it first."""

    error: str = "the recording failed"


class Recorder:
    """One recording in progress; create it with :meth:`open`, finish with :meth:`finish`."""

    def __init__(self, recording_id: str, path: str, fmt: RecordingFormat) -> None:
        """Blocking: opens the file (use :meth:`open` on the event loop)."""
        self.id = recording_id
        self.path = path
        self.fmt = fmt
        self.paused = False
        self.frames = 0  # frames written
        self._wav_path = path if fmt == "wav" else f"{path}.part.wav"
        self._file: BinaryIO = open(self._wav_path, "wb", buffering=_BUFFER)  # noqa: SIM115
        self._wav: wave.Wave_write | None = wave.open(self._file, "wb")  # noqa: SIM115
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(MIX_RATE)
        self.error: str | None = None  # why the file is incomplete, once it is

    @classmethod
    async def open(cls, recording_id: str, path: str, fmt: RecordingFormat) -> Recorder:
        """Create the file (off the event loop).

        :raises MediaError: for an unknown format or a path that cannot be written.
        """
        if fmt not in ("wav", "mp3"):
            raise MediaError(
                ErrorCode.INVALID_MESSAGE, f"unknown recording format {fmt!r}: use wav or mp3"
            )
        if fmt == "mp3" and "libmp3lame" not in av.codecs_available:
            raise MediaError(
                ErrorCode.INVALID_STATE, "this media server's FFmpeg has no MP3 encoder: use wav"
            )
        try:
            return await asyncio.to_thread(cls, recording_id, path, fmt)
        except OSError as exc:
            raise MediaError(
                ErrorCode.INVALID_MESSAGE,
                f"cannot write the recording to {path}: {exc.strerror or exc}; give a file path "
                "in an existing directory the media server may write to",
            ) from exc

    @property
    def duration_secs(self) -> float:
        return self.frames * FRAME_MS / 1000

    def write(self, frame: Pcm) -> None:
        """Append one 20 ms frame (nothing while paused, nothing more once a write failed)."""
        wav = self._wav
        if self.paused or wav is None or self.error is not None:
            return
        try:
            wav.writeframesraw(frame.data)
        except OSError as exc:
            if self.error is None:  # e.g. the disk is full: keep what was written
                # The environment's fault, not a bug: a warning, no traceback.
                log.warning("recording %s: writing %s failed: %s", self.id, self._wav_path, exc)
                self.error = f"could not write the recording: {exc.strerror or exc}"
            return
        self.frames += 1

    async def finish(self) -> RecordingSaved:
        """Close the file (and make the MP3), off the event loop; the saved-event to emit."""
        await asyncio.to_thread(self._finish)
        if self.error is not None:
            return RecordingFailed(self.id, self.path, self.duration_secs, self.error)
        return RecordingSaved(self.id, self.path, self.duration_secs)

    def _finish(self) -> None:
        wav, self._wav = self._wav, None
        if wav is None:
            return
        try:
            wav.close()  # patches the header's sizes
            self._file.close()
            if self.fmt == "mp3":
                _wav_to_mp3(self._wav_path, self.path)
                os.unlink(self._wav_path)
        except (OSError, av.error.FFmpegError) as exc:
            log.warning("recording %s: finishing %s failed: %s", self.id, self.path, exc)
            if self.error is None:
                what = getattr(exc, "strerror", None) or exc
                self.error = f"could not finish the recording file: {what}"


def _wav_to_mp3(src: str, dst: str) -> None:
    """Encode a mono 16-bit WAV file to MP3 (blocking)."""
    with av.open(src) as inp, av.open(dst, "w", format="mp3") as out:
        stream = out.add_stream("libmp3lame", rate=MIX_RATE, layout="mono")
        stream.bit_rate = _MP3_BITRATE
        for frame in inp.decode(audio=0):
            frame.pts = None
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
