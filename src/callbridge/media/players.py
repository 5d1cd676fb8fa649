"""Server-generated audio (hold music, ringback, conference tones).

Hold music and ringback loop for as long as they play, so each is synthesised at the codec's
own sample rate and encoded once per codec: playing it to a leg (:class:`PayloadLoop`) costs one
packet send per 20 ms and no encoding.

- Hold music: a soft arpeggio (C5, E5, G5, E5; 250 ms each, raised-cosine envelope), 1 s loop.
- Ringback: the North American ring-back tone, 440 Hz + 480 Hz, 2 s on, 4 s off (ITU-T E.180).

Conference tones (:func:`tone_pcm`) are short and mixed with other audio, so they are made as
48 kHz PCM, the mixing format: *join* is a rising pair of notes (G5 then C6, 120 ms each),
*leave* the same pair falling, *beep* a single 1 kHz tone of 250 ms.
"""

from __future__ import annotations

from functools import cache
from typing import Literal

import numpy as np

from callbridge.rtp.codecs import MIX_RATE, AudioEncoder, CodecSpec, Pcm

__all__ = [
    "HOLD_MUSIC_NOTES",
    "RINGBACK_TONES",
    "TONES",
    "PayloadLoop",
    "Sound",
    "encode_loop",
    "hold_music_pcm",
    "ringback_pcm",
    "sound_payloads",
    "tone_pcm",
]

Sound = Literal["hold-music", "ringback"]
# Conference tones: name -> (frequency Hz, seconds) per note.
TONES: dict[str, tuple[tuple[float, float], ...]] = {
    "join": ((783.99, 0.12), (1046.5, 0.12)),
    "leave": ((1046.5, 0.12), (783.99, 0.12)),
    "beep": ((1000.0, 0.25),),
}
HOLD_MUSIC_NOTES = (523.25, 659.25, 783.99, 659.25)  # Hz
RINGBACK_TONES = (440.0, 480.0)  # Hz
_NOTE_SECONDS = 0.25
_AMPLITUDE = 0.25


def _notes(sample_rate: int, notes: tuple[tuple[float, float], ...]) -> Pcm:
    """Sine notes one after the other, each with a raised-cosine envelope (no clicks)."""
    parts = []
    for freq, seconds in notes:
        n = int(sample_rate * seconds)
        t = np.arange(n) / sample_rate
        envelope = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)
        parts.append(np.sin(2 * np.pi * freq * t) * envelope)
    return (np.concatenate(parts) * _AMPLITUDE * 32767).astype(np.int16)


def hold_music_pcm(sample_rate: int) -> Pcm:
    """One loop (1 s) of hold music as mono int16."""
    return _notes(sample_rate, tuple((f, _NOTE_SECONDS) for f in HOLD_MUSIC_NOTES))


@cache
def tone_pcm(name: str) -> Pcm:
    """A conference tone (``join``, ``leave``, ``beep``) as 48 kHz mono int16.

    :raises KeyError: for another name.
    """
    pcm = _notes(MIX_RATE, TONES[name])
    pcm.flags.writeable = False  # cached and shared by every playback of it
    return pcm


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
    return encode_loop(pcm, spec)


def encode_loop(pcm: Pcm, spec: CodecSpec) -> tuple[bytes, ...]:
    """A looping sound (mono int16 at ``spec``'s sample rate) as 20 ms payloads for ``spec``."""
    step = spec.samples_per_frame
    encoder = AudioEncoder(spec)
    frames = [pcm[i : i + step] for i in range(0, len(pcm) - step + 1, step)]
    # Encode the loop twice and keep the second pass, so Opus starts from a warmed-up state
    # that matches the loop's end.
    for frame in frames:
        encoder.encode(frame)
    return tuple(encoder.encode(frame) for frame in frames)


class PayloadLoop:
    """Loops pre-encoded payloads into one endpoint, one per 20 ms tick of the server.

    An empty loop (the ``silence`` player) sends nothing: receivers play silence or comfort
    noise. :attr:`timestamp` is the loop's own RTP clock, mapped per endpoint by its
    :class:`~callbridge.rtp.webrtc.OutboundClock`.
    """

    def __init__(self, name: str, payloads: tuple[bytes, ...], step: int) -> None:
        self.name = name
        self.payloads = payloads
        self.index = 0
        self.timestamp = 0
        self.step = step

    def next_payload(self) -> bytes | None:
        if not self.payloads:
            return None
        payload = self.payloads[self.index % len(self.payloads)]
        self.index += 1
        self.timestamp += self.step
        return payload
