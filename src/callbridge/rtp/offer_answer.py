"""What callbridge lets aiortc's offer/answer negotiate, and what it settled.

The codec set (telephone-event, RFC 4733, added at 48 kHz and 8 kHz), the codec preferences
for our own offers (Opus, PCMU, PCMA, telephone-event; VP8 only for video), the filters applied
to a remote offer (codecs callbridge does not carry are dropped), and the result of one audio
m-line (:class:`NegotiatedAudio`) and of a video one (:func:`video_directions`). Three fixes to
aiortc 1.16 live here too, installed by :func:`register_codecs`: its codec-preference filter
ignores the clock rate, a connect pass can race a renegotiation, and its re-offers renumber the
payload types and RTP header extensions a device's offer settled (:class:`SessionNumbers`).

The RTP ports built on the result are :mod:`callbridge.rtp.webrtc`; ICE is
:mod:`callbridge.rtp.ice`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import aiortc.rtcpeerconnection as aiortc_pc
from aiortc import RTCRtpCodecCapability, RTCRtpTransceiver
from aiortc.codecs import CODECS as AIORTC_CODECS
from aiortc.exceptions import InvalidStateError
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpHeaderExtensionParameters
from aiortc.rtp import DYNAMIC_PAYLOAD_TYPES
from aiortc.sdp import MediaDescription

from callbridge.rtp.codecs import CodecSpec, codec_for_mime

__all__ = [
    "TELEPHONE_EVENT",
    "VP8",
    "NegotiatedAudio",
    "SessionNumbers",
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
    except InvalidStateError:
        # The connection was closed under the pass (a leg ended right after its answer, e.g.
        # refused by the media plane): nothing left to connect. Otherwise a real error.
        if getattr(self, "_RTCPeerConnection__isClosed", None) is None:
            raise


# RFC 8285 section 6: an extension's id stays the same for the whole session, and in a BUNDLE
# group (RFC 8843 section 9.2) an id or a payload type means one thing across all m-lines.
# aiortc 1.16's createOffer resets every transceiver to its own defaults (sdes:mid = 1, Opus =
# 96, ...), so when a device made the first offer (Chromium: ssrc-audio-level = 1, sdes:mid = 4,
# Opus = 111), the server's re-offer renumbers them: Chromium refuses it ("RTP extension ID
# reassignment not supported") and audio of a changed payload type would be dropped.
_EXT_IDS = range(1, 15)  # one-byte header form (RFC 8285 section 4.2)
_CodecKey = tuple[str, int]  # (MIME type, clock rate); RTX: ("rtx:" + its codec's, rate)


def _codec_keys(codecs: Sequence[RTCRtpCodecParameters]) -> list[_CodecKey]:
    """Each codec's key; an RTX codec is keyed by the codec its ``apt`` names."""
    by_pt = {c.payloadType: c for c in codecs if not _is_rtx(c)}
    keys: list[_CodecKey] = []
    for c in codecs:
        base = by_pt.get(c.parameters.get("apt")) if _is_rtx(c) else None  # type: ignore[arg-type]
        mime = f"rtx:{base.mimeType.lower()}" if base is not None else c.mimeType.lower()
        keys.append((mime, c.clockRate))
    return keys


class SessionNumbers:
    """The payload types and header extension ids a peer connection negotiated so far.

    Taken at the start of each of our offers; :meth:`renumber` then gives every codec and
    extension of an m-line the number it already has (that m-line's, else the session's), and
    a number nothing else uses to anything new.
    """

    def __init__(self, pc: aiortc_pc.RTCPeerConnection) -> None:
        self.pts: dict[_CodecKey, int] = {}
        self.ext_ids: dict[str, int] = {}
        self.mline_pts: dict[int, dict[_CodecKey, int]] = {}
        self.mline_ext_ids: dict[int, dict[str, int]] = {}
        for t in pc.getTransceivers():
            codecs: list[RTCRtpCodecParameters] = t._codecs
            pts = {
                key: int(c.payloadType)
                for key, c in zip(_codec_keys(codecs), codecs, strict=True)
                if c.payloadType is not None
            }
            ext_ids = {e.uri: e.id for e in t._headerExtensions}
            self.mline_pts[id(t)], self.mline_ext_ids[id(t)] = pts, ext_ids
            for key, pt in pts.items():
                self.pts.setdefault(key, pt)
            for uri, ext_id in ext_ids.items():
                self.ext_ids.setdefault(uri, ext_id)

    def _payload_type(self, t: RTCRtpTransceiver, key: _CodecKey, default: int) -> int:
        known = self.mline_pts.get(id(t), {}).get(key, self.pts.get(key))
        if known is not None:
            return known
        used = set(self.pts.values())
        pt = default
        if pt in used:  # taken by another codec in this session: the first free dynamic one
            pt = next(n for n in DYNAMIC_PAYLOAD_TYPES if n not in used)
        self.pts[key] = pt
        return pt

    def _ext_id(self, t: RTCRtpTransceiver, ext: RTCRtpHeaderExtensionParameters) -> int:
        known = self.mline_ext_ids.get(id(t), {}).get(ext.uri, self.ext_ids.get(ext.uri))
        if known is not None:
            return known
        used = set(self.ext_ids.values())
        ext_id = ext.id if ext.id not in used else next(n for n in _EXT_IDS if n not in used)
        self.ext_ids[ext.uri] = ext_id
        return ext_id

    def renumber(self, t: RTCRtpTransceiver) -> None:
        """Give ``t``'s offered codecs and extensions their session numbers (new objects:
        aiortc's lists hold its global defaults)."""
        offered: list[RTCRtpCodecParameters] = t._codecs
        new_pt = {
            c.payloadType: self._payload_type(t, key, int(c.payloadType or 0))
            for key, c in zip(_codec_keys(offered), offered, strict=True)
        }
        codecs = []
        for c in offered:
            params = dict(c.parameters)
            if _is_rtx(c) and params.get("apt") in new_pt:
                params["apt"] = new_pt[params["apt"]]  # type: ignore[index]
            codecs.append(replace(c, payloadType=new_pt[c.payloadType], parameters=params))
        t._codecs = codecs
        t._headerExtensions = [replace(e, id=self._ext_id(t, e)) for e in t._headerExtensions]


_original_create_offer = aiortc_pc.RTCPeerConnection.createOffer
_original_media_description = aiortc_pc.create_media_description_for_transceiver
_NUMBERS = "_callbridge_numbers"  # on a transceiver while its peer connection's createOffer runs


async def _create_offer(self: aiortc_pc.RTCPeerConnection) -> Any:
    numbers = SessionNumbers(self)  # before createOffer resets the transceivers to defaults
    transceivers = self.getTransceivers()
    for t in transceivers:
        setattr(t, _NUMBERS, numbers)
    try:
        return await _original_create_offer(self)
    finally:
        for t in transceivers:
            delattr(t, _NUMBERS)


def _media_description(
    transceiver: RTCRtpTransceiver, cname: str, direction: str, mid: str
) -> MediaDescription:
    numbers: SessionNumbers | None = getattr(transceiver, _NUMBERS, None)
    if numbers is not None:  # an offer (an answer takes the offer's numbers already)
        numbers.renumber(transceiver)
    return _original_media_description(transceiver, cname=cname, direction=direction, mid=mid)


def register_codecs() -> None:
    """Add telephone-event (RFC 4733) at 48 kHz (for Opus) and 8 kHz (for G.711) to aiortc.

    aiortc matches codecs by MIME type and clock rate, so both are needed for a browser's
    ``telephone-event/48000`` next to Opus and ``telephone-event/8000`` next to PCMU.
    Also installs the codec-preference fix, the renegotiation race fix and the stable
    numbering of re-offers above. Idempotent.
    """
    aiortc_pc.filter_preferred_codecs = _filter_preferred_codecs
    setattr(aiortc_pc.RTCPeerConnection, "_RTCPeerConnection__connect", _connect)  # noqa: B010
    aiortc_pc.RTCPeerConnection.createOffer = _create_offer  # type: ignore[method-assign]
    aiortc_pc.create_media_description_for_transceiver = _media_description
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
