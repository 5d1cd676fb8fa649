"""Audio codecs for the media plane: 20 ms frames of mono int16 PCM in, RTP payloads out.

Everything goes through PyAV (libopus, FFmpeg's G.711). Opus is encoded mono at 32 kbit/s
(voip application): WebRTC always signals ``opus/48000/2`` but a mono stream is valid and costs
about half of aiortc's fixed stereo 96 kbit/s encoder.

Mixing, playback and recording work in one format whatever the legs' codecs are: 20 ms frames
of 48 kHz mono int16 (:data:`MIX_RATE`, :data:`MIX_FRAME`). :class:`FrameDecoder` and
:class:`FrameEncoder` convert between that format and a codec's RTP payloads (resampling G.711's
8 kHz), so a mixer never needs to know which codec a member speaks.
"""

from __future__ import annotations

import fractions
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from callbridge.rtp.opus import OpusEncoder

__all__ = [
    "CODECS",
    "FRAME_MS",
    "G722",
    "MIX_FRAME",
    "MIX_RATE",
    "AudioDecoder",
    "AudioEncoder",
    "CodecSpec",
    "FrameDecoder",
    "FrameEncoder",
    "Pcm",
    "Resampler",
    "codec_for_mime",
]

Pcm = npt.NDArray[np.int16]
FRAME_MS = 20
MIX_RATE = 48000  # Hz: the rate of mixing, playback and recording
MIX_FRAME = MIX_RATE * FRAME_MS // 1000  # samples in 20 ms at MIX_RATE


@dataclass(frozen=True, slots=True)
class CodecSpec:
    """What the media plane needs to know about one audio codec."""

    name: str  # "opus", "PCMU" or "PCMA", as in SDP
    clock_rate: int  # RTP clock
    sample_rate: int  # PCM rate the codec works at
    av_encoder: str
    av_decoder: str

    @property
    def samples_per_frame(self) -> int:
        return self.sample_rate * FRAME_MS // 1000

    @property
    def timestamp_step(self) -> int:
        """RTP timestamp increment of one 20 ms frame."""
        return self.clock_rate * FRAME_MS // 1000


CODECS: dict[str, CodecSpec] = {
    "opus": CodecSpec("opus", 48000, 48000, "libopus", "libopus"),
    "pcmu": CodecSpec("PCMU", 8000, 8000, "pcm_mulaw", "pcm_mulaw"),
    "pcma": CodecSpec("PCMA", 8000, 8000, "pcm_alaw", "pcm_alaw"),
}


G722 = CodecSpec("G722", 8000, 16000, "g722", "g722")
"""G.722 for plain RTP legs (SIP phones; WebRTC does not use it, so it is not in
:data:`CODECS`). Sampled at 16 kHz but signalled and clocked at 8000 (RFC 3551 section 4.5.2):
a 20 ms frame is 320 samples and 160 timestamp units."""


def codec_for_mime(mime_type: str) -> CodecSpec | None:
    """``audio/opus`` -> the Opus spec; ``None`` for a codec callbridge does not carry."""
    kind, _, name = mime_type.lower().partition("/")
    return CODECS.get(name) if kind == "audio" else None


class AudioEncoder:
    """Encodes 20 ms mono int16 frames at the codec's sample rate into RTP payloads."""

    def __init__(self, spec: CodecSpec, bitrate: int = 32000) -> None:
        self.spec = spec
        ctx: Any = av.CodecContext.create(spec.av_encoder, "w")
        ctx.format = "s16"
        ctx.layout = "mono"
        ctx.sample_rate = spec.sample_rate
        ctx.time_base = fractions.Fraction(1, spec.sample_rate)
        if spec.name == "opus":
            ctx.bit_rate = bitrate
            ctx.options = {"application": "voip"}
        self._ctx = ctx
        self._pts = 0

    def encode(self, pcm: Pcm) -> bytes:
        """One frame in, one payload out (libopus and G.711 do not buffer at 20 ms)."""
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.spec.sample_rate
        frame.pts = self._pts
        self._pts += len(pcm)
        return b"".join(bytes(p) for p in self._ctx.encode(frame))


class AudioDecoder:
    """Decodes RTP payloads into mono int16 PCM at the codec's sample rate."""

    def __init__(self, spec: CodecSpec) -> None:
        self.spec = spec
        ctx: Any = av.CodecContext.create(spec.av_decoder, "r")
        ctx.format = "s16"
        ctx.layout = "mono"
        ctx.sample_rate = spec.sample_rate
        self._ctx = ctx

    def decode(self, payload: bytes) -> Pcm:
        frames = self._ctx.decode(av.Packet(payload))
        if not frames:
            return np.zeros(0, dtype=np.int16)
        arrays = [f.to_ndarray().reshape(-1) for f in frames]
        out = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
        return out.astype(np.int16, copy=False)


class Resampler:
    """Streams mono int16 PCM from one rate to another in exact 20 ms frames.

    Also when the rates are equal: a caller stamps each frame with one 20 ms timestamp step, so
    a packet of another duration (SIPp's PCMA pcap is 30 ms a packet) must still come out as
    whole 20 ms frames, the rest kept for the next call.
    """

    def __init__(self, src_rate: int, dst_rate: int) -> None:
        self.src_rate = src_rate
        self.dst_rate = dst_rate
        self._frame = dst_rate * FRAME_MS // 1000
        self._rest: Pcm | None = None  # equal rates: samples short of a whole frame
        self._resampler = av.AudioResampler(
            format="s16", layout="mono", rate=dst_rate, frame_size=self._frame
        )

    def process(self, pcm: Pcm) -> list[Pcm]:
        """Feed PCM at ``src_rate``; returns the whole 20 ms frames ready at ``dst_rate``."""
        if self.src_rate == self.dst_rate:
            n = self._frame
            if pcm.size == n and self._rest is None:
                return [pcm]  # the usual 20 ms packet: no copy
            if self._rest is not None:
                pcm = np.concatenate((self._rest, pcm))
            whole = pcm.size // n * n
            self._rest = pcm[whole:].copy() if whole < pcm.size else None
            return [pcm[i : i + n] for i in range(0, whole, n)]
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.src_rate
        return [
            f.to_ndarray().reshape(-1).astype(np.int16, copy=False)
            for f in self._resampler.resample(frame)
        ]


class FrameDecoder:
    """RTP payloads of one codec -> 20 ms frames of 48 kHz mono int16 (the mixing format).

    Usually one frame per payload; a packet of another duration (a browser may send 40 or
    60 ms of Opus) gives several, and the resampler's start-up delay none at first.
    """

    def __init__(self, spec: CodecSpec) -> None:
        self.spec = spec
        self._decoder = AudioDecoder(spec)
        self._resampler = (
            Resampler(spec.sample_rate, MIX_RATE) if spec.sample_rate != MIX_RATE else None
        )
        self._rest: Pcm | None = None  # samples short of a whole frame (odd packet sizes)

    def decode(self, payload: bytes) -> list[Pcm]:
        pcm = self._decoder.decode(payload)
        if not pcm.size:
            return []
        if self._resampler is not None:
            return self._resampler.process(pcm)
        if pcm.size == MIX_FRAME and self._rest is None:
            return [pcm]  # the normal case: no copy
        if self._rest is not None:
            pcm = np.concatenate((self._rest, pcm))
        whole = pcm.size // MIX_FRAME * MIX_FRAME
        self._rest = pcm[whole:].copy() if whole < pcm.size else None
        return [pcm[i : i + MIX_FRAME] for i in range(0, whole, MIX_FRAME)]


class _Decimator:
    """48 kHz -> 8 kHz (or 16 kHz for G.722), one 20 ms frame at a time: a windowed-sinc
    low-pass (0.45 of the output rate: 3.6 kHz, 7.2 kHz) and every 6th (3rd) sample. Its only
    state is the filter's input history, which can be copied (see
    :meth:`FrameEncoder.copy_state_from`); output is aligned with input (no frame of delay).
    (G.722's ADPCM encoder has state that is not copied: a member of a mixer that starts
    talking may hear a short glitch.)"""

    _TAPS = 97

    def __init__(self, rate: int = 8000) -> None:
        self._factor = MIX_RATE // rate
        n = np.arange(self._TAPS) - (self._TAPS - 1) / 2
        cutoff = 0.45 * rate / MIX_RATE
        h = 2 * cutoff * np.sinc(2 * cutoff * n) * np.blackman(self._TAPS)
        self._h = (h / h.sum()).astype(np.float32)
        self._buf = np.zeros(self._TAPS - 1 + MIX_FRAME, dtype=np.float32)

    def process(self, frame: Pcm) -> Pcm:
        buf = self._buf
        buf[: self._TAPS - 1] = buf[MIX_FRAME:]  # history: the previous frame's tail
        buf[self._TAPS - 1 :] = frame
        out = np.convolve(buf, self._h, "valid")[:: self._factor]
        return np.clip(np.round(out), -32768, 32767).astype(np.int16)

    def copy_state_from(self, other: _Decimator) -> None:
        self._buf[:] = other._buf


class FrameEncoder:
    """20 ms frames of 48 kHz mono int16 -> RTP payloads of one codec, one per frame.

    Opus goes through :class:`~callbridge.rtp.opus.OpusEncoder`, G.711 through a decimator
    and FFmpeg's (stateless) G.711 encoder; either way the whole state can be taken over from
    another encoder of the same codec (:meth:`copy_state_from`), which the mixer does when a
    member moves from the shared mix to its own.
    """

    def __init__(self, spec: CodecSpec) -> None:
        self.spec = spec
        self._opus = OpusEncoder() if spec.name == "opus" else None
        self._g711 = AudioEncoder(spec) if self._opus is None else None
        self._decimator = _Decimator(spec.sample_rate) if self._opus is None else None
        if self._opus is None and spec.sample_rate not in (8000, 16000):
            raise ValueError(f"no 48 kHz frame encoder for {spec.name}")

    def encode(self, frame: Pcm) -> bytes | None:
        if self._opus is not None:
            return self._opus.encode(frame)
        assert self._decimator is not None and self._g711 is not None
        return self._g711.encode(self._decimator.process(frame))

    def copy_state_from(self, other: FrameEncoder) -> None:
        """Continue from ``other``'s state (same codec): the receiver's decoder, which was
        following ``other``'s stream, sees no discontinuity."""
        if self._opus is not None and other._opus is not None:
            self._opus.copy_state_from(other._opus)
        elif self._decimator is not None and other._decimator is not None:
            self._decimator.copy_state_from(other._decimator)
