"""Server-generated audio: hold music, pre-encoded once per codec.

Hold music is a soft arpeggio (C5, E5, G5, E5; 250 ms each, raised-cosine envelope). It is
synthesised at the codec's own sample rate and encoded once per codec, so playing it to a
held leg costs one packet send per 20 ms, no encoding.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from callbridge.media.codecs import AudioEncoder, CodecSpec

__all__ = ["HOLD_MUSIC_NOTES", "hold_music_payloads", "hold_music_pcm"]

HOLD_MUSIC_NOTES = (523.25, 659.25, 783.99, 659.25)  # Hz
_NOTE_SECONDS = 0.25
_AMPLITUDE = 0.25


def hold_music_pcm(sample_rate: int) -> np.ndarray:
    """One loop (1 s) of hold music as mono int16."""
    n = int(sample_rate * _NOTE_SECONDS)
    t = np.arange(n) / sample_rate
    envelope = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)
    notes = [np.sin(2 * np.pi * f * t) * envelope for f in HOLD_MUSIC_NOTES]
    return (np.concatenate(notes) * _AMPLITUDE * 32767).astype(np.int16)


@cache
def hold_music_payloads(spec: CodecSpec) -> tuple[bytes, ...]:
    """The hold-music loop encoded as 20 ms payloads for ``spec``."""
    pcm = hold_music_pcm(spec.sample_rate)
    step = spec.samples_per_frame
    encoder = AudioEncoder(spec)
    # Encode two loops and keep the second, so Opus starts from a warmed-up encoder state.
    frames = [pcm[i : i + step] for i in range(0, len(pcm) - step + 1, step)]
    for frame in frames:
        encoder.encode(frame)
    return tuple(encoder.encode(frame) for frame in frames)
