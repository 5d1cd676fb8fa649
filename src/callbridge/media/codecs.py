"""Audio codecs for the media plane: 20 ms frames of mono int16 PCM in, RTP payloads out.

Everything goes through PyAV (libopus, FFmpeg's G.711). Opus is encoded mono at 32 kbit/s
(voip application): WebRTC always signals ``opus/48000/2`` but a mono stream is valid and costs
about half of aiortc's fixed stereo 96 kbit/s encoder.
"""

from __future__ import annotations

import fractions
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
import numpy.typing as npt

__all__ = [
    "CODECS",
    "FRAME_MS",
    "AudioDecoder",
    "AudioEncoder",
    "CodecSpec",
    "Pcm",
    "Resampler",
    "codec_for_mime",
]

Pcm = npt.NDArray[np.int16]
FRAME_MS = 20


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
    """Streams mono int16 PCM from one rate to another in exact 20 ms frames."""

    def __init__(self, src_rate: int, dst_rate: int) -> None:
        self.src_rate = src_rate
        self.dst_rate = dst_rate
        self._resampler = av.AudioResampler(
            format="s16", layout="mono", rate=dst_rate, frame_size=dst_rate * FRAME_MS // 1000
        )

    def process(self, pcm: Pcm) -> list[Pcm]:
        """Feed PCM at ``src_rate``; returns the whole 20 ms frames ready at ``dst_rate``."""
        if self.src_rate == self.dst_rate:
            return [pcm]
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.src_rate
        return [
            f.to_ndarray().reshape(-1).astype(np.int16, copy=False)
            for f in self._resampler.resample(frame)
        ]
