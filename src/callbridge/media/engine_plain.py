"""The in-process media server's plain RTP methods (SIP phones): the part of
:class:`~callbridge.media.engine.InProcessMediaServer` that creates and renegotiates
:class:`~callbridge.media.rtp_plain.PlainEndpoint` legs (offer/answer in
:mod:`~callbridge.media.plain`) and describes them.

A mixin: the engine provides the endpoint registry (:meth:`endpoint`, :meth:`_new`,
:meth:`_first_negotiation`) and the settings (``rtp_address``, ``rtp_timeout``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable
from typing import cast

from callbridge.errors import ErrorCode, MediaError
from callbridge.media import plain
from callbridge.media.endpoint import Endpoint
from callbridge.media.interface import EndpointInfo, MediaDirection
from callbridge.media.relay_video import RelayVideo
from callbridge.media.rtp_plain import PlainEndpoint

__all__ = ["RELAY_PREFIX", "PlainRtpMethods", "plain_info"]

# The ids of relay endpoints between media workers (media/workers/relays.py; the control
# plane's own ids never start so). Their RTP source is pinned to the other worker's socket.
RELAY_PREFIX = "~relay:"


def plain_info(ep: PlainEndpoint) -> EndpointInfo:
    """What was negotiated with a plain RTP device, and what its RTCP says."""
    spec = ep.spec
    audio = ep.rtp.audio
    return EndpointInfo(
        spec.name if spec else None,
        False,
        False,
        (),
        "srtp" if ep.srtp else "rtp",
        cast(MediaDirection, ep.remote_direction),
        ep.remote_hold,
        audio is not None and audio.te_payload_type is not None,
        ep.rtp.rtcp.snapshot(),
    )


class PlainRtpMethods(ABC):
    """``answer_rtp``, ``offer_rtp``, ``renegotiate_rtp`` and ``reoffer_rtp`` of the
    :class:`~callbridge.media.interface.MediaServer` protocol, for the engine."""

    rtp_address: str
    rtp_timeout: float

    @abstractmethod
    def endpoint(self, endpoint_id: str) -> Endpoint: ...

    @abstractmethod
    def _new(self, endpoint_id: str, timeout: float | None = None) -> Endpoint: ...

    @abstractmethod
    async def _first_negotiation(self, ep: Endpoint, negotiate: Awaitable[str]) -> str: ...

    def _plain(self, endpoint_id: str) -> PlainEndpoint:
        ep = self.endpoint(endpoint_id)
        if not isinstance(ep, PlainEndpoint):
            raise MediaError(
                ErrorCode.INVALID_STATE, f"endpoint {endpoint_id} is WebRTC, not plain RTP"
            )
        return ep

    async def relay_video(
        self, endpoint_id: str, far: tuple[str, int] | None = None
    ) -> tuple[str, int]:
        """Open a relay endpoint's video path to another media worker (once) and, given the
        other side's address, connect it; returns this side's address. Used between workers
        only (:mod:`~callbridge.media.workers.relays`), not part of the MediaServer protocol.
        """
        ep = self._plain(endpoint_id)
        if ep.relay_video is None:
            ep.relay_video = RelayVideo(ep.on_video, ep.keyframe_wanted)
        address = await ep.relay_video.open(self.rtp_address, ep.rtp.port_range)
        if far is not None:
            ep.relay_video.connect(far)
        return address

    def _new_plain(self, endpoint_id: str, rtp_timeout: float | None) -> PlainEndpoint:
        ep = self._new(endpoint_id, self.rtp_timeout if rtp_timeout is None else rtp_timeout)
        assert isinstance(ep, PlainEndpoint)
        ep.rtp.pinned = endpoint_id.startswith(RELAY_PREFIX)
        return ep

    async def answer_rtp(
        self,
        endpoint_id: str,
        offer_sdp: str,
        prefer_codec: str | None = None,
        rtp_timeout: float | None = None,
    ) -> str:
        ep = self._new_plain(endpoint_id, rtp_timeout)
        if not offer_sdp.strip():  # delayed offer: ours goes first (RFC 3264 section 5)
            negotiate = plain.offer(ep, prefer_codec, False, self.rtp_address)
        else:
            negotiate = plain.answer(ep, offer_sdp, prefer_codec, self.rtp_address)
        return await self._first_negotiation(ep, negotiate)

    async def offer_rtp(
        self,
        endpoint_id: str,
        prefer_codec: str | None = None,
        srtp: bool = False,
        rtp_timeout: float | None = None,
    ) -> str:
        ep = self._new_plain(endpoint_id, rtp_timeout)
        return await self._first_negotiation(
            ep, plain.offer(ep, prefer_codec, srtp, self.rtp_address)
        )

    async def renegotiate_rtp(self, endpoint_id: str, offer_sdp: str) -> str:
        return await plain.renegotiate(self._plain(endpoint_id), offer_sdp)

    async def reoffer_rtp(self, endpoint_id: str, direction: MediaDirection = "sendrecv") -> str:
        return await plain.reoffer(self._plain(endpoint_id), direction)
