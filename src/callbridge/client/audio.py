"""Audio in and out of a call: sources (the "microphone") and sinks (the "speaker").

Everything in the SDK moves audio as 20 ms frames of mono int16 PCM at 48 kHz
(:data:`FRAME_SAMPLES` = 960 samples); the call's media converts to and from the negotiated
codec. A source is read once per 20 ms by the call's sending loop; a sink gets one frame per
received packet, as it arrives.

Sources: :class:`ToneSource`, :class:`WavSource`, :class:`SilenceSource`, or anything with
``read()`` and ``close()`` (:class:`AudioSource`). Sinks: :class:`BufferSink` (keeps recent
audio for analysis, see :mod:`callbridge.testing`), :class:`WavRecorder`,
:class:`CallbackSink`, or anything with ``write()`` and ``close()`` (:class:`AudioSink`).

``read()`` and ``write()`` run on the event loop thread for every frame: keep them quick
(no blocking I/O beyond a buffered file write).
"""

from __future__ import annotations

import logging
import time
import wave
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import av
import numpy as np
import numpy.typing as npt

from callbridge.rtp.codecs import Pcm

__all__ = [
    "FRAME_SAMPLES",
    "SAMPLE_RATE",
    "AudioSink",
    "AudioSource",
    "BufferSink",
    "CallbackSink",
    "Pcm",
    "SilenceSource",
    "ToneSource",
    "WavRecorder",
    "WavSource",
]

log = logging.getLogger(__name__)

SAMPLE_RATE = 48000
FRAME_SAMPLES = SAMPLE_RATE // 50  # 20 ms


@runtime_checkable
class AudioSource(Protocol):
    """Produces the audio a call sends."""

    def read(self) -> Pcm:
        """The next 20 ms: exactly :data:`FRAME_SAMPLES` mono int16 samples at 48 kHz."""
        ...

    def close(self) -> None:
        """Release resources; ``read()`` is not called afterwards."""
        ...


@runtime_checkable
class AudioSink(Protocol):
    """Consumes the audio a call receives."""

    def write(self, pcm: Pcm) -> None:
        """One received frame: mono int16 at 48 kHz (normally :data:`FRAME_SAMPLES` long)."""
        ...

    def close(self) -> None:
        """No more frames will come for this call."""
        ...


def _silence() -> Pcm:
    return np.zeros(FRAME_SAMPLES, dtype=np.int16)


# ----------------------------------------------------------------------------------------------
# Sources


class SilenceSource:
    """Sends digital silence."""

    def read(self) -> Pcm:
        return _silence()

    def close(self) -> None:
        pass


class ToneSource:
    """A steady sum of sine tones, e.g. ``ToneSource(440)`` or ``ToneSource(350, 440)``.

    ``amplitude`` is the peak of the sum as a fraction of full scale; each of the ``n`` tones
    gets ``amplitude / n``. A single tone at the default 0.3 is about -13.5 dBFS (RMS). The
    phase runs on continuously across frames, so the result has no clicks.
    """

    def __init__(self, *freqs: float, amplitude: float = 0.3) -> None:
        if not freqs:
            raise ValueError("ToneSource needs at least one frequency")
        if not 0.0 <= amplitude <= 1.0:
            raise ValueError(f"amplitude must be within 0..1, not {amplitude}")
        if any(not 0 < f < SAMPLE_RATE / 2 for f in freqs):
            raise ValueError(f"frequencies must be within 0..{SAMPLE_RATE // 2} Hz: {freqs}")
        self.freqs = tuple(float(f) for f in freqs)
        self.amplitude = amplitude
        # radians per sample, per tone (a column each, to broadcast over the frame's samples)
        self._step: npt.NDArray[np.float64] = (
            2 * np.pi * np.array(self.freqs)[:, None] / SAMPLE_RATE
        )
        self._phase: npt.NDArray[np.float64] = np.zeros((len(self.freqs), 1))
        self._ramp = np.arange(FRAME_SAMPLES, dtype=np.float64)[None, :]
        self._scale = amplitude / len(self.freqs) * 32767

    def read(self) -> Pcm:
        phases: npt.NDArray[np.float64] = self._phase + self._step * self._ramp
        self._phase = (self._phase + self._step * FRAME_SAMPLES) % (2 * np.pi)
        mixed: npt.NDArray[np.float64] = np.sin(phases).sum(axis=0) * self._scale
        return mixed.astype(np.int16)

    def close(self) -> None:
        pass


def _wav_to_mono(path: Path) -> tuple[npt.NDArray[np.int16], int]:
    """Read a PCM WAV file (8/16/24/32-bit, any channels) as mono int16 and its rate."""
    with wave.open(str(path), "rb") as w:
        channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
        raw = w.readframes(w.getnframes())
    if width == 1:  # 8-bit WAV is unsigned
        data = (np.frombuffer(raw, dtype=np.uint8).astype(np.int32) - 128) << 8
    elif width == 2:
        data = np.frombuffer(raw, dtype="<i2").astype(np.int32)
    elif width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        data = ((b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8) >> 16  # sign-extend, keep 16
    elif width == 4:
        data = np.frombuffer(raw, dtype="<i4") >> 16
    else:
        raise ValueError(f"{path}: unsupported sample width of {width} bytes")
    mono = data.reshape(-1, channels).mean(axis=1)
    return np.clip(mono, -32768, 32767).astype(np.int16), rate


def _resample_all(pcm: npt.NDArray[np.int16], src_rate: int) -> npt.NDArray[np.int16]:
    """Resample a whole mono int16 signal to 48 kHz (FFmpeg's resampler, flushed)."""
    if src_rate == SAMPLE_RATE or pcm.size == 0:
        return pcm
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = src_rate
    frames = list(resampler.resample(frame)) + list(resampler.resample(None))
    if not frames:
        return np.zeros(0, dtype=np.int16)
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.int16)


class WavSource:
    """Plays a WAV file: any rate and channel count, mixed to mono and resampled to 48 kHz.

    The file is decoded once when created. With ``loop=True`` it repeats; otherwise silence
    follows its end and :attr:`finished` becomes true.
    """

    def __init__(self, path: str | Path, loop: bool = True) -> None:
        pcm, rate = _wav_to_mono(Path(path))
        self._pcm = _resample_all(pcm, rate)
        self.loop = loop
        self._pos = 0

    @property
    def finished(self) -> bool:
        """True once a non-looping file has been played to its end."""
        return not self.loop and self._pos >= self._pcm.size

    def read(self) -> Pcm:
        out = _silence()
        total = self._pcm.size
        if total == 0:
            return out
        filled = 0
        while filled < FRAME_SAMPLES:
            if self._pos >= total:
                if not self.loop:
                    break
                self._pos = 0
            take = min(FRAME_SAMPLES - filled, total - self._pos)
            out[filled : filled + take] = self._pcm[self._pos : self._pos + take]
            filled += take
            self._pos += take
        return out

    def close(self) -> None:
        pass


# ----------------------------------------------------------------------------------------------
# Sinks


class WavRecorder:
    """Records what arrives to a 48 kHz mono 16-bit WAV file.

    Frames are appended as they arrive; the header gets its final sizes on :meth:`close`
    (which the call does when it ends). Frames written after closing are dropped.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # Not a context manager: the file stays open across writes until close().
        self._wav: wave.Wave_write | None = wave.open(str(self.path), "wb")  # noqa: SIM115
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(SAMPLE_RATE)

    def write(self, pcm: Pcm) -> None:
        if self._wav is not None:
            # writeframesraw: no header rewrite (a seek) per frame; close() patches it once.
            self._wav.writeframesraw(np.asarray(pcm, dtype="<i2").tobytes())

    def close(self) -> None:
        if self._wav is not None:
            self._wav.close()
            self._wav = None


class CallbackSink:
    """Calls ``fn(pcm)`` for every received frame (on the event loop: keep it quick)."""

    def __init__(self, fn: Callable[[Pcm], object]) -> None:
        self._fn = fn

    def write(self, pcm: Pcm) -> None:
        self._fn(pcm)

    def close(self) -> None:
        pass


class BufferSink:
    """Keeps the last ``max_seconds`` of received audio, each frame with its arrival time.

    Made for checking a call by ear: ``sink.clear()``, wait a second, then analyse
    ``sink.samples(0.8)`` with :mod:`callbridge.testing`. Closing it (the call ended) keeps the
    audio and leaves it usable, so one sink can serve several calls in turn.
    """

    def __init__(self, max_seconds: float = 30.0) -> None:
        self.max_seconds = max_seconds
        self._frames: deque[tuple[float, Pcm]] = deque()
        self._samples = 0
        self.frames_received = 0
        """Frames written since the sink was created (:meth:`clear` does not reset it)."""

    def write(self, pcm: Pcm) -> None:
        now = time.monotonic()
        self._frames.append((now, pcm))
        self._samples += pcm.size
        self.frames_received += 1
        limit = self.max_seconds * SAMPLE_RATE
        while self._frames and self._samples - self._frames[0][1].size >= limit:
            self._samples -= self._frames.popleft()[1].size

    def clear(self) -> None:
        """Forget the audio received so far."""
        self._frames.clear()
        self._samples = 0

    def samples(self, last_seconds: float | None = None) -> Pcm:
        """The kept audio, or only what arrived in the last ``last_seconds`` (by arrival time).

        Arrival time rather than a sample count: if nothing arrived lately, this is short or
        empty instead of silently showing older audio.
        """
        if last_seconds is None:
            frames = [f for _, f in self._frames]
        else:
            since = time.monotonic() - last_seconds
            frames = [f for t, f in self._frames if t >= since]
        if not frames:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(frames)

    def close(self) -> None:
        pass
