"""Video between two media workers: the video half of a relay (:mod:`.workers.relays`).

A bridge whose two legs live in different worker processes is carried by two plain RTP relay
endpoints, one on each worker, negotiated by RFC 3264 offer/answer for their audio. Video is
relayed, never decoded (VP8 from device to device, :class:`~callbridge.rtp.webrtc.VideoPort`
re-stamps it for the receiving device), so between workers it needs no codec negotiation:
each relay endpoint gets a :class:`RelayVideo`, a pair of UDP sockets on the media address
(RTP on an even port, RTCP on the next, RFC 3550 section 11, in ``--rtp-ports``), and the
control plane tells each side the other's address.

- **RTP** carries the device's VP8 packets as the device sent them (header and payload, no
  header extensions: MID and the like belong to the device's own session). The far worker
  hands each to its relay endpoint's :meth:`~callbridge.media.endpoint.Endpoint.on_video`,
  which sends it on to the bridged device like any relayed video.
- **RTCP** carries key-frame requests back: a device's PLI or FIR reaches the worker of the
  device whose video it gets as a Picture Loss Indication (RFC 4585 section 6.3.1), and that
  worker asks its device for a key frame. Nothing else is sent: the devices' own receiver
  reports stay on their own legs.
- Only the other worker's sockets are listened to: a datagram from any other source is
  dropped and counted (``dropped``), so nobody else can inject pictures into a call.
"""

from __future__ import annotations

import ipaddress
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from aiortc.rtp import (
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RtcpPacket,
    RtcpPsfbPacket,
    RtpPacket,
)

from callbridge.media.rtp_plain import PORTS, Address, _Socket, bind_pair
from callbridge.rtp.fastpath import run_now

__all__ = ["RelayVideo"]

log = logging.getLogger(__name__)


def _canonical(address: Address) -> Address:
    """``address`` as the kernel reports a datagram's source (``::1``, never ``0::1``)."""
    return str(ipaddress.ip_address(address[0])), address[1]


class RelayVideo:
    """A relay endpoint's video path to the other worker (module docstring).

    ``on_rtp`` is awaited with each VP8 packet from the other worker, ``on_keyframe_request``
    when the other worker asks for a key frame. It has the interface
    :class:`~callbridge.media.endpoint.VideoLink` describes (``sending``, :meth:`relay`,
    :meth:`request_keyframe`), like a device's own ``VideoPort``.
    """

    def __init__(
        self,
        on_rtp: Callable[[RtpPacket], Coroutine[Any, Any, None]],
        on_keyframe_request: Callable[[], Awaitable[None]],
    ) -> None:
        self._on_rtp = on_rtp
        self._on_keyframe_request = on_keyframe_request
        self._ssrc = random.getrandbits(32)  # the RTCP sender's SSRC in our PLIs
        self._rtp: _Socket | None = None
        self._rtcp: _Socket | None = None
        self.address: Address | None = None  # where we listen (RTP; RTCP is the next port)
        self.far: Address | None = None  # the other worker's RTP socket
        self._far_rtcp: Address | None = None
        self.packets_sent = 0
        self.packets_received = 0
        self.dropped = 0  # datagrams from anywhere but the other worker, or unparsable

    async def open(self, host: str, ports: tuple[int, int] = PORTS) -> Address:
        """Bind the sockets (once); returns the RTP address to give the other worker."""
        if self.address is None:
            self._rtp, self._rtcp, port = await bind_pair(host, self._rtp_in, self._rtcp_in, ports)
            self.address = (host, port)
        return self.address

    def connect(self, far: Address) -> None:
        """Send to, and listen only to, the other worker's relay video at ``far``."""
        self.far = _canonical(far)
        self._far_rtcp = (self.far[0], self.far[1] + 1)

    @property
    def sending(self) -> bool:
        return self.far is not None and self._rtp is not None

    async def relay(self, source: object, packet: Any) -> None:
        """Send a device's VP8 packet (an aiortc ``RtpPacket``) to the other worker as it came
        (the far side's ``VideoPort`` re-stamps it for its device)."""
        transport = self._rtp.transport if self._rtp is not None else None
        if transport is None or self.far is None:
            return
        out = RtpPacket(
            payload_type=packet.payload_type,
            marker=packet.marker,
            sequence_number=packet.sequence_number,
            timestamp=packet.timestamp,
            ssrc=packet.ssrc,
            payload=packet.payload,
        )
        transport.sendto(out.serialize(), self.far)
        self.packets_sent += 1

    async def request_keyframe(self) -> None:
        """Ask the other worker for a key frame from its device: RTCP PLI (RFC 4585
        section 6.3.1; the media source SSRC is 0, the other worker knows its device's)."""
        transport = self._rtcp.transport if self._rtcp is not None else None
        if transport is None or self._far_rtcp is None:
            return
        pli = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=self._ssrc, media_ssrc=0)
        transport.sendto(bytes(pli), self._far_rtcp)

    def _rtp_in(self, data: bytes, addr: Address) -> None:
        if addr != self.far:
            self.dropped += 1
            return
        try:
            packet = RtpPacket.parse(data)
        except ValueError:
            self.dropped += 1
            return
        self.packets_received += 1
        run_now(self._on_rtp(packet))

    def _rtcp_in(self, data: bytes, addr: Address) -> None:
        if addr != self._far_rtcp:
            self.dropped += 1
            return
        try:
            packets = RtcpPacket.parse(data)
        except ValueError:
            self.dropped += 1
            return
        if any(
            isinstance(p, RtcpPsfbPacket) and p.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR)
            for p in packets
        ):
            run_now(self._keyframe())

    async def _keyframe(self) -> None:
        try:
            await self._on_keyframe_request()
        except ConnectionError:  # the device's transport is closing
            log.debug("relay video: key-frame request to a closing device")

    def close(self) -> None:
        for sock in (self._rtp, self._rtcp):
            if sock is not None and sock.transport is not None:
                sock.transport.close()
        self._rtp = self._rtcp = None
        self.far = self._far_rtcp = None
