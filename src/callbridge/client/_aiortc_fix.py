"""Work around aiortc 1.16 matching codec preferences without the clock rate.

``aiortc.rtcpeerconnection.filter_preferred_codecs`` pairs each preferred codec with the first
codec of the same MIME type and parameters, ignoring the clock rate. With telephone-event at
48 kHz (for Opus) and 8 kHz (for G.711) both preferred, every offer lists
``telephone-event/48000`` twice (same payload type) and never ``telephone-event/8000``, so a
PCMU/PCMA call cannot negotiate RFC 4733 at all; answers get the same duplicate.

This replaces that function with one that also compares the clock rate (and is otherwise
aiortc's). It belongs in :mod:`callbridge.media.webrtc`, next to the other uses of aiortc
internals; it lives here only until it moves there. Idempotent, process-wide.
"""

from __future__ import annotations

import aiortc.rtcpeerconnection as _pc
from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters

__all__ = ["fix_codec_preference_matching"]


def _is_rtx(codec: RTCRtpCodecParameters | RTCRtpCodecCapability) -> bool:
    return codec.mimeType.lower().endswith("/rtx")


def _filter_preferred_codecs(
    codecs: list[RTCRtpCodecParameters], preferred: list[RTCRtpCodecCapability]
) -> list[RTCRtpCodecParameters]:
    if not preferred:
        return codecs
    rtx_codecs = [c for c in codecs if _is_rtx(c)]
    rtx_enabled = any(_is_rtx(p) for p in preferred)
    filtered: list[RTCRtpCodecParameters] = []
    for pref in (p for p in preferred if not _is_rtx(p)):
        for codec in codecs:
            if (
                codec.mimeType.lower() == pref.mimeType.lower()
                and codec.clockRate == pref.clockRate
                and codec.parameters == pref.parameters
            ):
                filtered.append(codec)
                if rtx_enabled:
                    rtx = next(
                        (r for r in rtx_codecs if r.parameters.get("apt") == codec.payloadType),
                        None,
                    )
                    if rtx is not None:
                        filtered.append(rtx)
                break
    return filtered


def fix_codec_preference_matching() -> None:
    """Make aiortc match codec preferences by MIME type, clock rate and parameters."""
    _pc.filter_preferred_codecs = _filter_preferred_codecs
