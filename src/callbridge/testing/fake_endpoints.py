"""The endpoints of :class:`~callbridge.testing.fake_media.FakeMediaServer` and their
offer/answer: the fake's counterpart of the engine's :mod:`callbridge.media.negotiation`.

What the fake decides the way the engine does: the audio codec is the first of opus, PCMU and
PCMA in the offer's order (the ``prefer_codec`` for the server's own offer, then what the answer
chose); video is negotiated when the offer has an ``m=video`` line with VP8 (and ``video`` is
allowed), in the directions it offers; telephone-event (RFC 4733) when the offer has it, which
decides how ``send_dtmf`` would have sent the digits. The SDP it reads and writes is
:mod:`callbridge.testing.fake_sdp`.

:class:`FakeEndpoints` is the fake's base class: the endpoints by id, the offer/answer methods
of the ``MediaServer`` interface and what a test can read of them; bridges, players, mixers,
playbacks, recordings and DTMF are :class:`~callbridge.testing.fake_media.FakeMediaServer`'s.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

from callbridge.errors import ErrorCode, MediaError
from callbridge.media.checks import NOT_FOUND
from callbridge.media.interface import (
    Candidate,
    EndpointInfo,
    EndpointState,
    PlayerName,
    SupervisorRole,
)
from callbridge.testing.fake_sdp import (
    CODECS,
    Negotiated,
    VideoOffer,
    parse_answer,
    parse_offer,
    sdp,
)
from callbridge.testing.staging import Stager, staged

__all__ = ["FakeEndpoint", "FakeEndpoints", "MemberState"]


@dataclass(frozen=True, slots=True)
class MemberState:
    """A mixer member's flags (see :meth:`MediaServer.mixer_update`)."""

    mixer_id: str
    deaf: bool = False
    held: bool = False
    role: SupervisorRole = "none"
    whisper_to: tuple[str, ...] = ()


@dataclass
class FakeEndpoint:
    """One endpoint as the fake keeps it (the engine's ``Endpoint`` without media)."""

    id: str
    negotiated: Negotiated
    state: EndpointState = "connecting"
    pending: tuple[bool, bool] | None = None  # the server's offered video (send, recv)
    peer: str | None = None
    muted: bool = False
    player: PlayerName | None = None
    playback: str | None = None  # its play_to playback
    member: MemberState | None = None
    candidates: list[str | None] = field(default_factory=list)


class FakeEndpoints:
    """The endpoints of the fake and their offer/answer (see the module docstring)."""

    def __init__(self) -> None:
        self._endpoints: dict[str, FakeEndpoint] = {}
        self._sessions = itertools.count(1)
        self.stager = Stager()

    def negotiated(self, endpoint_id: str) -> Negotiated:
        """Codec, telephone-event and video as the last offer/answer settled them."""
        return self._ep(endpoint_id).negotiated

    def candidates(self, endpoint_id: str) -> tuple[str | None, ...]:
        """The remote candidates added (``None``: end-of-candidates)."""
        return tuple(self._ep(endpoint_id).candidates)

    def _ep(self, endpoint_id: str) -> FakeEndpoint:
        ep = self._endpoints.get(endpoint_id)
        if ep is None:
            raise MediaError(NOT_FOUND, f"no media endpoint {endpoint_id}")
        return ep

    def _new(self, endpoint_id: str, negotiated: Negotiated) -> FakeEndpoint:
        if endpoint_id in self._endpoints:
            raise MediaError(ErrorCode.INVALID_STATE, f"media endpoint {endpoint_id} exists")
        ep = self._endpoints[endpoint_id] = FakeEndpoint(endpoint_id, negotiated)
        return ep

    def _sdp(self, n: Negotiated, video: VideoOffer | None, offer: bool = False) -> str:
        """An answer names the chosen codec; an offer all three, the chosen one first."""
        first = n.codec or CODECS[0]
        codecs = [first, *(c for c in CODECS if c != first)] if offer else [first]
        return sdp(next(self._sessions), codecs, n.telephone_event, video)

    @staged
    async def answer(self, endpoint_id: str, offer_sdp: str, video: bool = True) -> str:
        offered = parse_offer(offer_sdp, allow_video=video)
        self._new(endpoint_id, offered.negotiated)
        return self._sdp(offered.negotiated, offered.answer_video)

    @staged
    async def offer(
        self, endpoint_id: str, prefer_codec: str | None = None, video: bool = False
    ) -> str:
        negotiated = replace(Negotiated.offered(prefer_codec), video_line=video)
        ep = self._new(endpoint_id, negotiated)
        ep.pending = (video, video)
        return self._sdp(negotiated, VideoOffer.of(video, video) if video else None, offer=True)

    @staged
    async def reconnect(self, endpoint_id: str, offer_sdp: str) -> str:
        ep = self._ep(endpoint_id)
        offered = parse_offer(offer_sdp, allow_video=ep.negotiated.video_line)
        ep.negotiated, ep.state, ep.pending = offered.negotiated, "connecting", None
        return self._sdp(offered.negotiated, offered.answer_video)

    @staged
    async def accept_answer(self, endpoint_id: str, answer_sdp: str) -> None:
        ep = self._ep(endpoint_id)
        if ep.pending is None:
            raise MediaError(
                ErrorCode.INVALID_SDP,
                f"the answer could not be used: no offer of endpoint {endpoint_id} is pending",
            )
        ep.negotiated = parse_answer(answer_sdp, ep.negotiated, *ep.pending)
        ep.pending = None

    @staged
    async def renegotiate(self, endpoint_id: str, offer_sdp: str, send_video: bool) -> str:
        ep = self._ep(endpoint_id)
        offered = parse_offer(offer_sdp, allow_video=True, send_video=send_video)
        ep.negotiated = replace(  # the leg keeps its codec; a video m-line stays once added
            offered.negotiated,
            codec=ep.negotiated.codec,
            video_line=ep.negotiated.video_line or offered.negotiated.video_line,
        )
        return self._sdp(ep.negotiated, offered.answer_video)

    @staged
    async def reoffer(self, endpoint_id: str, send_video: bool, recv_video: bool) -> str:
        ep = self._ep(endpoint_id)
        ep.pending = (send_video, recv_video)
        wants = send_video or recv_video or ep.negotiated.video_line
        video = VideoOffer.of(send_video, recv_video) if wants else None
        return self._sdp(ep.negotiated, video, offer=True)

    @staged
    async def add_candidate(
        self, endpoint_id: str, candidate: str | None, sdp_mid: str | None, mline: int | None
    ) -> None:
        ep = self._ep(endpoint_id)
        if candidate is not None:
            fields = candidate.removeprefix("candidate:").split()
            if len(fields) < 8 or fields[6] != "typ":
                raise MediaError(
                    ErrorCode.INVALID_CANDIDATE, f"cannot parse ICE candidate {candidate!r}"
                )
            if fields[4].endswith(".local"):
                raise MediaError(
                    ErrorCode.INVALID_CANDIDATE,
                    f"mDNS candidate {fields[4]} is not resolved (the server sends no multicast)",
                )
        ep.candidates.append(candidate)

    @staged
    async def endpoint_info(self, endpoint_id: str) -> EndpointInfo:
        n = self._ep(endpoint_id).negotiated
        candidates = (Candidate(_host_candidate(endpoint_id), "0", 0),)
        return EndpointInfo(n.codec, n.device_sends_video, n.device_receives_video, candidates)


def _host_candidate(endpoint_id: str) -> str:
    """One host candidate on 127.0.0.1, its port stable per endpoint id."""
    port = 40000 + sum(map(ord, endpoint_id)) % 20000
    return f"candidate:1 1 udp 2130706431 127.0.0.1 {port} typ host"
