"""What callbridge lets aiortc's offer/answer negotiate, and what it settled.

The codec set (telephone-event, RFC 4733, added at 48 kHz and 8 kHz), the codec preferences
for our own offers (Opus, PCMU, PCMA, telephone-event; VP8 only for video), the filters applied
to a remote offer (codecs callbridge does not carry are dropped), and the result of one audio
m-line (:class:`NegotiatedAudio`) and of a video one (:func:`video_directions`). Two fixes to
aiortc 1.16 live here too, installed by :func:`register_codecs`: its codec-preference filter
ignores the clock rate, and a connect pass can race a renegotiation.

The RTP ports built on the result are :mod:`callbridge.rtp.webrtc`; ICE is
:mod:`callbridge.rtp.ice`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import aiortc.rtcpeerconnection as aiortc_pc
from aiortc import RTCRtpCodecCapability, RTCRtpTransceiver
from aiortc.codecs import CODECS as AIORTC_CODECS
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from callbridge.rtp.codecs import CodecSpec, codec_for_mime

__all__ = [
    "TELEPHONE_EVENT",
    "VP8",
    "NegotiatedAudio",
    "audio_codec_preferences",
    "keep_carried_codecs",
    "keep_video_codecs",
    "register_codecs",
    "video_codec_preferences",
    "video_directions",
]

TELEPHONE_EVENT = "audio/telephone-event"
# Dynamic payload types for telephone-event; the offerer's numbers win in an answer.
_TE_PAYLOAD_TYPES = {48000: 110, 8000: 126}
_AUDIO_MIMES = ("audio/opus", "audio/pcmu", "audio/pcma", TELEPHONE_EVENT)
VP8 = "video/vp8"  # the one video codec callbridge relays (no RTX: nothing is retransmitted)


def _is_rtx(codec: RTCRtpCodecParameters | RTCRtpCodecCapability) -> bool:
    return codec.mimeType.lower().endswith("/rtx")


# aiortc 1.16's filter_preferred_codecs matches a preference by MIME type and parameters but not
# clock rate, so with telephone-event at 48 kHz and 8 kHz both preferred, an offer lists
# telephone-event/48000 twice and never /8000 (no DTMF on G.711 calls). This is aiortc's
# function plus the clock-rate check; register_codecs() installs it.
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


# aiortc 1.16 race, seen when a video m-line is added to a live connection: setRemoteDescription
# sets a transceiver's direction and remote ICE parameters from the new description, then
# awaits (bundled transports torn down, candidates added) before it stores that description. A
# connect pass (RTCPeerConnection.__connect, scheduled by an earlier step) that runs in between
# reads the *old* description for the new m-line: IndexError in a task nobody awaits. The
# connect pass that setRemoteDescription schedules once the description is stored does the work
# (connect passes are idempotent), so the early pass's IndexError is dropped here.
_original_connect = getattr(aiortc_pc.RTCPeerConnection, "_RTCPeerConnection__connect")  # noqa: B009


async def _connect(self: aiortc_pc.RTCPeerConnection) -> None:
    try:
        await _original_connect(self)
    except IndexError:
        pass  # a connect pass runs again once the new description is stored


def register_codecs() -> None:
    """Add telephone-event (RFC 4733) at 48 kHz (for Opus) and 8 kHz (for G.711) to aiortc.

    aiortc matches codecs by MIME type and clock rate, so both are needed for a browser's
    ``telephone-event/48000`` next to Opus and ``telephone-event/8000`` next to PCMU.
    Also installs the codec-preference fix and the renegotiation race fix above. Idempotent.
    """
    aiortc_pc.filter_preferred_codecs = _filter_preferred_codecs
    setattr(aiortc_pc.RTCPeerConnection, "_RTCPeerConnection__connect", _connect)  # noqa: B010
    audio = AIORTC_CODECS["audio"]
    have = {(c.mimeType.lower(), c.clockRate) for c in audio}
    for rate, pt in _TE_PAYLOAD_TYPES.items():
        if (TELEPHONE_EVENT, rate) not in have:
            audio.append(
                RTCRtpCodecParameters(
                    mimeType="audio/telephone-event",
                    clockRate=rate,
                    channels=1,
                    payloadType=pt,
                    parameters={"0-16": None},
                )
            )


def audio_codec_preferences(first: str | None = None) -> list[RTCRtpCodecCapability]:
    """Opus, PCMU, PCMA and telephone-event, with ``first`` (e.g. ``"PCMU"``) moved ahead.

    G.722 is left out: callbridge does not carry it (see docs/protocol.md, Media).
    """
    register_codecs()
    caps = [
        RTCRtpCodecCapability(
            mimeType=c.mimeType, clockRate=c.clockRate, channels=c.channels, parameters=c.parameters
        )
        for c in AIORTC_CODECS["audio"]
        if c.mimeType.lower() in _AUDIO_MIMES
    ]
    if first:
        caps.sort(key=lambda c: c.mimeType.lower() != f"audio/{first.lower()}")
    return caps


def keep_carried_codecs(transceiver: RTCRtpTransceiver) -> bool:
    """After a remote offer: drop the codecs callbridge does not carry (G.722, RED, CN, …).

    aiortc settles an answer's codecs in setRemoteDescription, before codec preferences can be
    set on the transceiver it creates, so the negotiated list is filtered here instead.
    Returns False when no audio codec callbridge carries is left.
    """
    codecs: list[RTCRtpCodecParameters] = transceiver._codecs
    kept = [c for c in codecs if c.mimeType.lower() in _AUDIO_MIMES]
    transceiver._codecs = kept
    return any(codec_for_mime(c.mimeType) is not None for c in kept)


def video_codec_preferences() -> list[RTCRtpCodecCapability]:
    """VP8 only (callbridge relays video without transcoding, so both legs must agree)."""
    return [
        RTCRtpCodecCapability(
            mimeType=c.mimeType, clockRate=c.clockRate, channels=c.channels, parameters=c.parameters
        )
        for c in AIORTC_CODECS["video"]
        if c.mimeType.lower() == VP8
    ]


def keep_video_codecs(transceiver: RTCRtpTransceiver) -> bool:
    """After a remote offer: keep only VP8 on a video transceiver (see keep_carried_codecs).

    Returns False when the offer has no VP8.
    """
    codecs: list[RTCRtpCodecParameters] = transceiver._codecs
    kept = [c for c in codecs if c.mimeType.lower() == VP8]
    transceiver._codecs = kept
    return bool(kept)


def video_directions(transceiver: RTCRtpTransceiver | None) -> tuple[bool, bool]:
    """(we send, we receive) as the last completed offer/answer settled it."""
    current = transceiver.currentDirection if transceiver is not None else None
    return current in ("sendonly", "sendrecv"), current in ("recvonly", "sendrecv")


@dataclass
class NegotiatedAudio:
    """What offer/answer settled for one audio m-line."""

    codec: CodecSpec  # what we send (the first common codec)
    payload_type: int
    te_payload_type: int | None  # telephone-event at the codec's clock rate, if agreed
    recv: dict[int, CodecSpec | None] = field(default_factory=dict)  # pt -> codec (None = TE)

    @classmethod
    def from_codecs(cls, codecs: Sequence[RTCRtpCodecParameters]) -> NegotiatedAudio:
        audio = [(c, codec_for_mime(c.mimeType)) for c in codecs]
        first = next(((c, s) for c, s in audio if s is not None), None)
        if first is None:
            raise ValueError("no common audio codec (callbridge carries opus, PCMU, PCMA)")
        params, spec = first
        payload_type = int(params.payloadType or 0)
        te = next(
            (
                c.payloadType
                for c in codecs
                if c.mimeType.lower() == TELEPHONE_EVENT and c.clockRate == spec.clock_rate
            ),
            None,
        )
        recv: dict[int, CodecSpec | None] = {}
        for c, s in audio:
            if c.payloadType is None:
                continue
            if s is not None:
                recv[c.payloadType] = s
            elif c.mimeType.lower() == TELEPHONE_EVENT:
                recv[c.payloadType] = None
        return cls(codec=spec, payload_type=payload_type, te_payload_type=te, recv=recv)
