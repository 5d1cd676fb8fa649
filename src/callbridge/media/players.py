"""Server-generated audio (hold music, ringback), pre-encoded once per codec.

Each sound is synthesised at the codec's own sample rate and encoded once per codec, so
playing it to a leg costs one packet send per 20 ms and no encoding.

- Hold music: a soft arpeggio (C5, E5, G5, E5; 250 ms each, raised-cosine envelope), 1 s loop.
- Ringback: the North American ring-back tone, 440 Hz + 480 Hz, 2 s on, 4 s off (ITU-T E.180).
"""

from __future__ import annotations

from functools import cache
from typing import Literal

import numpy as np

from callbridge.media.codecs import AudioEncoder, CodecSpec, Pcm

__all__ = [
    "HOLD_MUSIC_NOTES",
    "RINGBACK_TONES",
    "Sound",
    "hold_music_pcm",
    "ringback_pcm",
    "sound_payloads",
]

Sound = Literal["hold-music", "ringback"]
HOLD_MUSIC_NOTES = (523.25, 659.25, 783.99, 659.25)  # Hz
RINGBACK_TONES = (440.0, 480.0)  # Hz
_NOTE_SECONDS = 0.25
_AMPLITUDE = 0.25


def hold_music_pcm(sample_rate: int) -> Pcm:
    """One loop (1 s) of hold music as mono int16."""
    n = int(sample_rate * _NOTE_SECONDS)
    t = np.arange(n) / sample_rate
    envelope = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)
    notes = [np.sin(2 * np.pi * f * t) * envelope for f in HOLD_MUSIC_NOTES]
    return (np.concatenate(notes) * _AMPLITUDE * 32767).astype(np.int16)


def ringback_pcm(sample_rate: int) -> Pcm:
    """One ring cycle (2 s of 440 + 480 Hz, then 4 s of silence) as mono int16."""
    t = np.arange(2 * sample_rate) / sample_rate
    tone = sum(np.sin(2 * np.pi * f * t) for f in RINGBACK_TONES) / len(RINGBACK_TONES)
    silence = np.zeros(4 * sample_rate)
    return (np.concatenate([tone, silence]) * _AMPLITUDE * 32767).astype(np.int16)


@cache
def sound_payloads(sound: Sound, spec: CodecSpec) -> tuple[bytes, ...]:
    """One loop of ``sound`` encoded as 20 ms payloads for ``spec``."""
    pcm = (
        hold_music_pcm(spec.sample_rate)
        if sound == "hold-music"
        else ringback_pcm(spec.sample_rate)
    )
    step = spec.samples_per_frame
    encoder = AudioEncoder(spec)
    frames = [pcm[i : i + step] for i in range(0, len(pcm) - step + 1, step)]
    # Encode the loop twice and keep the second pass, so Opus starts from a warmed-up state
    # that matches the loop's end.
    for frame in frames:
        encoder.encode(frame)
    return tuple(encoder.encode(frame) for frame in frames)
