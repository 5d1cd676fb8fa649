"""The RFC 6464 client-to-mixer audio level of one frame the SDK sends.

Browsers send every audio packet with the ``urn:ietf:params:rtp-hdrext:ssrc-audio-level``
header extension; the server's mixer (``media/mix_input.py``) does not decode a member's
packets whose level says they are silent. The SDK's sending loop
(:mod:`callbridge.client.media`) computes the level of each frame here, before encoding.
"""

from __future__ import annotations

import math

import numpy as np

from callbridge.rtp.codecs import Pcm

__all__ = ["SILENCE_LEVEL", "VOICE_LEVEL", "audio_level"]

SILENCE_LEVEL = 127  # RFC 6464 §3: 127 is -127 dBov, the value for digital silence too
VOICE_LEVEL = 50  # -dBov below which the V (voice activity) flag is set: a level gate, not a VAD
_OVERLOAD = 32768.0  # 0 dBov: the RMS of a full-scale square wave (ITU-T G.100.1)


def audio_level(frame: Pcm) -> tuple[bool, int]:
    """``(voice, level)`` of one int16 frame: ``level`` is its RMS in -dBov, 0..127 (RFC 6464
    §3), rounded; ``voice`` is ``level < VOICE_LEVEL`` (RFC 6464 leaves the V bit's
    detector to the sender)."""
    if frame.size == 0:
        return False, SILENCE_LEVEL
    samples = frame.astype(np.float32)
    mean_square = float(np.dot(samples, samples)) / frame.size
    if mean_square <= 0.0:
        return False, SILENCE_LEVEL
    level = round(-10.0 * math.log10(mean_square / (_OVERLOAD * _OVERLOAD)))
    level = min(SILENCE_LEVEL, max(0, level))
    return level < VOICE_LEVEL, level
