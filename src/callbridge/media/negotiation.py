"""Offer/answer (RFC 8829 JSEP via aiortc) and ICE for one endpoint.

The server answers a device's offer, or offers itself (a leg it dials), and renegotiates live
endpoints to add, change or remove video. Each function works on one
:class:`~callbridge.media.endpoint.Endpoint`; the engine keeps the registry of endpoints, so a
failed answer is cleaned up there.

Only codecs callbridge carries are negotiated: one audio m-line (Opus, PCMU, PCMA, and
telephone-event, RFC 4733), and one VP8 video m-line that is relayed, never decoded. Other
m-lines are answered ``inactive``.
"""

from __future__ import annotations

import re
from collections import Counter

from aiortc import RTCSessionDescription
from aiortc.sdp import candidate_from_sdp, candidate_to_sdp

from callbridge.errors import ErrorCode, MediaError
from callbridge.media.endpoint import Endpoint
from callbridge.media.interface import Candidate
from callbridge.rtp.webrtc import (
    audio_codec_preferences,
    keep_carried_codecs,
    keep_video_codecs,
    video_codec_preferences,
    video_directions,
)

__all__ = [
    "accept_answer",
    "add_candidate",
    "answer",
    "check_mids",
    "local_candidates",
    "offer",
    "renegotiate",
    "reoffer",
    "video_changed",
    "video_state",
]

# RFC 8866 section 5.13 attribute lines; RFC 5888 section 4 (mid).
_MID = re.compile(r"^a=mid:(\S*)", re.MULTILINE)

_DIRECTIONS = {
    (True, True): "sendrecv",
    (True, False): "sendonly",
    (False, True): "recvonly",
    (False, False): "inactive",
}


async def answer(ep: Endpoint, offer_sdp: str, video: bool) -> str:
    """Apply a device's first offer to a new endpoint and return the server's answer.

    :raises MediaError: ``invalid_sdp`` or ``unsupported_codec``; the endpoint is then unusable
        and must be closed.
    """
    check_mids(offer_sdp, "offer")
    try:
        await ep.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
    except Exception as exc:  # aiortc raises ValueError, OperationError, … for bad SDP
        raise MediaError(ErrorCode.INVALID_SDP, f"the offer could not be used: {exc}") from exc
    audio = [t for t in ep.pc.getTransceivers() if t.kind == "audio"]
    if not audio:
        raise MediaError(ErrorCode.INVALID_SDP, "the offer has no audio m-line")
    video_t = next((t for t in ep.pc.getTransceivers() if t.kind == "video"), None)
    if video_t is not None and not (video and keep_video_codecs(video_t)):
        video_t = None
    for extra in ep.pc.getTransceivers():
        if extra is not audio[0] and extra is not video_t:
            extra.direction = "inactive"  # one audio and one video stream per call
    if video_t is not None:
        ep.attach_video(video_t)
        video_t.direction = "sendrecv"
    if not keep_carried_codecs(audio[0]):
        raise MediaError(
            ErrorCode.UNSUPPORTED_CODEC,
            "the offer has no audio codec callbridge carries (opus, PCMU, PCMA)",
        )
    ep.attach(audio[0])
    await _answer_remote(ep, "offer")
    ep.prepare_clock()
    return str(ep.pc.localDescription.sdp)


def check_mids(sdp: str, what: str) -> None:
    """Refuse an SDP whose media sections share an ``a=mid`` (RFC 5888 section 4: a mid is
    unique in the session). aiortc takes it and fails later, inside createAnswer."""
    repeated = [mid for mid, n in Counter(_MID.findall(sdp)).items() if n > 1]
    if repeated:
        raise MediaError(
            ErrorCode.INVALID_SDP,
            f"duplicate a=mid:{repeated[0]} in the {what}: each m= section needs its own mid "
            "(RFC 5888 section 4); send the SDP as RTCPeerConnection produced it",
        )


async def _answer_remote(ep: Endpoint, what: str) -> None:
    """Answer the remote offer just applied. aiortc fails here on some offers it took (its
    errors are AttributeError, KeyError, …): the offer is what cannot be used."""
    try:
        await ep.pc.setLocalDescription(await ep.pc.createAnswer())
    except Exception as exc:
        raise MediaError(
            ErrorCode.INVALID_SDP, f"the {what} could not be answered: {type(exc).__name__}"
        ) from exc


async def offer(ep: Endpoint, prefer_codec: str | None, video: bool) -> str:
    """The server's offer for a new endpoint (``prefer_codec`` first; VP8 when ``video``)."""
    transceiver = ep.pc.addTransceiver("audio", direction="sendrecv")
    transceiver.setCodecPreferences(audio_codec_preferences(prefer_codec))
    ep.attach(transceiver)
    if video:
        _add_video(ep, "sendrecv")
    await ep.pc.setLocalDescription(await ep.pc.createOffer())
    ep.prepare_clock()
    return str(ep.pc.localDescription.sdp)


def _add_video(ep: Endpoint, direction: str) -> None:
    transceiver = ep.pc.addTransceiver("video", direction=direction)
    transceiver.setCodecPreferences(video_codec_preferences())
    ep.attach_video(transceiver)


async def accept_answer(ep: Endpoint, answer_sdp: str) -> None:
    """Complete the endpoint's pending offer with the device's answer."""
    check_mids(answer_sdp, "answer")
    try:
        await ep.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))
    except Exception as exc:
        raise MediaError(ErrorCode.INVALID_SDP, f"the answer could not be used: {exc}") from exc
    await video_changed(ep)


async def renegotiate(ep: Endpoint, offer_sdp: str, send_video: bool) -> str:
    """Apply a device's new offer on a live endpoint; return the server's answer."""
    pc = ep.pc
    check_mids(offer_sdp, "offer")
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
    except Exception as exc:
        raise MediaError(ErrorCode.INVALID_SDP, f"the offer could not be used: {exc}") from exc
    if ep.transceiver is not None:
        keep_carried_codecs(ep.transceiver)  # the answer keeps to what the leg carries
    for t in pc.getTransceivers():
        if t.kind != "video":
            continue
        if keep_video_codecs(t) and ep.video is None:
            ep.attach_video(t)
        if ep.video is None or t is not ep.video.transceiver:
            t.direction = "inactive"
        else:
            t.direction = "sendrecv" if send_video else "recvonly"
    await _answer_remote(ep, "offer")
    await video_changed(ep)
    return str(pc.localDescription.sdp)


async def reoffer(ep: Endpoint, send_video: bool, recv_video: bool) -> str:
    """A new offer of the server to a live endpoint, with the video direction set."""
    direction = _DIRECTIONS[(send_video, recv_video)]
    if ep.transceiver is not None:  # offer again what the leg carries, its codec first
        spec = ep.spec
        ep.transceiver.setCodecPreferences(audio_codec_preferences(spec.name if spec else None))
    if ep.video is None:
        if direction != "inactive":
            _add_video(ep, direction)
    else:
        ep.video.transceiver.setCodecPreferences(video_codec_preferences())
        ep.video.transceiver.direction = direction
    await ep.pc.setLocalDescription(await ep.pc.createOffer())
    return str(ep.pc.localDescription.sdp)


def video_state(ep: Endpoint) -> tuple[bool, bool]:
    """(the device sends video, the device receives video) as last negotiated."""
    if ep.video is None:
        return False, False
    server_sends, server_receives = video_directions(ep.video.transceiver)
    return server_receives, server_sends


async def video_changed(ep: Endpoint) -> None:
    """A negotiation completed: both devices of the bridge may need a key frame now."""
    for e in (ep, ep.peer):
        if e is not None and e.video_link() is not None:
            try:
                await e.keyframe_wanted()
            except ConnectionError:
                pass


async def add_candidate(
    ep: Endpoint, candidate: str | None, sdp_mid: str | None, mline: int | None
) -> None:
    """Add a trickled remote candidate (RFC 8838); ``None`` is end-of-candidates."""
    if candidate is None:
        await ep.pc.addIceCandidate(None)
        return
    line = candidate.removeprefix("candidate:")
    try:
        parsed = candidate_from_sdp(line)
    except (ValueError, IndexError, AssertionError) as exc:  # aiortc asserts the field count
        raise MediaError(
            ErrorCode.INVALID_CANDIDATE, f"cannot parse ICE candidate {candidate!r}"
        ) from exc
    if parsed.ip.endswith(".local"):
        raise MediaError(
            ErrorCode.INVALID_CANDIDATE,
            f"mDNS candidate {parsed.ip} is not resolved (the server sends no multicast)",
        )
    parsed.sdpMid = sdp_mid
    parsed.sdpMLineIndex = mline if mline is not None else (0 if sdp_mid is None else None)
    try:
        await ep.pc.addIceCandidate(parsed)
    except Exception as exc:
        raise MediaError(ErrorCode.INVALID_CANDIDATE, f"ICE candidate refused: {exc}") from exc


def local_candidates(ep: Endpoint) -> tuple[Candidate, ...]:
    """The server's ICE candidates for the endpoint (RFC 8839 section 5.1 lines)."""
    transceiver = ep.transceiver
    if transceiver is None:
        return ()
    gatherer = transceiver.sender.transport.transport.iceGatherer
    index = transceiver._get_mline_index() or 0
    return tuple(
        Candidate("candidate:" + candidate_to_sdp(c), transceiver.mid, index)
        for c in gatherer.getLocalCandidates()
    )
