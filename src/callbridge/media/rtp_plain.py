"""The socket side of a plain RTP leg (a SIP phone): UDP, SRTP (SDES), symmetric RTP, timeout.

A WebRTC endpoint's RTP goes through aiortc (ICE, DTLS-SRTP); a SIP phone sends plain RTP/AVP,
or SRTP keyed in its SDP (RFC 4568), to an address the server wrote in its SDP.
:class:`PlainRtpPort` is that address: one UDP socket for RTP on an even port and one for RTCP
on the next (RFC 3550 section 11), or RTP and RTCP on one when the offer says ``a=rtcp-mux``
(RFC 5761). It has the interface of :class:`~callbridge.rtp.webrtc.RtpPort`, so
:class:`PlainEndpoint` is an :class:`~callbridge.media.endpoint.Endpoint` like any other:
bridges (relay or transcode), players, playbacks, mixers, recordings and DTMF use it unchanged.

- **Symmetric RTP** (RFC 4961 style, to get through NAT): packets go to the address in the
  device's SDP until the first valid packet arrives; from then on to the source of the
  device's packets (*latching*). A later change of source (a NAT rebinding, a phone that
  moved) is followed once a few packets of one stream in sequence came from the new source
  (one packet, when it authenticated under SRTP). Packets from other sources are dropped.
- **SRTP** through pylibsrtp: our key protects what we send, the device's key what we receive.
- **Inactivity**: an endpoint whose device should send (not on hold, not ``inactive``) but has
  sent neither RTP nor RTCP for the endpoint's timeout reports :class:`RtpTimeout` once, and
  then its state ``failed``, so the control plane ends the call with ``failed``.

- **RTCP**: sender/receiver reports out and the device's reports in
  (:mod:`callbridge.media.rtcp_plain`); its RTCP counts as activity too.

Offer/answer for these endpoints is :mod:`callbridge.media.plain`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

import pylibsrtp
from aiortc import RTCPeerConnection
from aiortc.rtp import HeaderExtensionsMap

from callbridge.errors import ErrorCode, MediaError
from callbridge.media import rtcp_plain
from callbridge.media.endpoint import Endpoint, EndpointHost
from callbridge.media.interface import EndpointStateChanged, RtpTimeout
from callbridge.media.rtcp_plain import RtcpSession
from callbridge.media.sdp_plain import Crypto, PtTable
from callbridge.rtp.fastpath import RtpView, RtpWriter, Srtp, parse_rtp
from callbridge.rtp.webrtc import RtpPort

if TYPE_CHECKING:
    from callbridge.media.endpoint import VideoLink
    from callbridge.media.relay_video import RelayVideo

__all__ = ["RELATCH_PACKETS", "PlainEndpoint", "PlainRtpPort", "bind_pair"]

log = logging.getLogger(__name__)
RELATCH_PACKETS = 3  # in-sequence packets from a new source before plain RTP follows it
PORTS = (20000, 59999)  # default range: even RTP ports from the first, RTCP up to the last
_BIND_TRIES = 64  # random picks in a wide range before walking it
_PROFILES = {
    "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}
Address = tuple[str, int]


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, Address], None]) -> None:
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.on_datagram(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP port unreachable: the device is not listening yet (or any more)


def _candidates(ports: tuple[int, int]) -> Iterator[int]:
    """Even RTP ports whose RTCP port (+1) is in ``ports`` too: a few random picks, then the
    whole range from a random start (a small range is walked completely, a busy one too).
    Lazy: the default range has 20000 pairs and the first pick nearly always binds."""
    first = ports[0] + (ports[0] % 2)
    count = (ports[1] - first + 1) // 2
    if count <= 0:
        return
    if count > _BIND_TRIES:
        for _ in range(_BIND_TRIES):
            yield first + 2 * random.randrange(count)
    start = random.randrange(count)
    for i in range(count):
        yield first + 2 * ((start + i) % count)


async def bind_pair(
    host: str,
    on_rtp: Callable[[bytes, Address], None],
    on_rtcp: Callable[[bytes, Address], None],
    ports: tuple[int, int] = PORTS,
) -> tuple[_Socket, _Socket, int]:
    """Two UDP sockets on ``host``: RTP on an even port, RTCP on the next (RFC 3550 11), both
    in ``ports`` (inclusive, ``--rtp-ports``)."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for port in _candidates(ports):
        try:
            _, rtp = await loop.create_datagram_endpoint(
                lambda: _Socket(on_rtp), local_addr=(host, port), family=family
            )
        except OSError:
            continue
        try:
            _, rtcp = await loop.create_datagram_endpoint(
                lambda: _Socket(on_rtcp), local_addr=(host, port + 1), family=family
            )
        except OSError:
            if rtp.transport is not None:
                rtp.transport.close()
            continue
        return rtp, rtcp, port
    raise MediaError(
        ErrorCode.INTERNAL,
        f"no free pair of UDP ports for RTP in {ports[0]}-{ports[1]} on {host}: the range is "
        "used up (widen --rtp-ports)",
    )


def _srtp(crypto: Crypto, direction: int) -> pylibsrtp.Session:
    policy = pylibsrtp.Policy(
        key=crypto.key, ssrc_type=direction, srtp_profile=_PROFILES[crypto.suite]
    )
    return pylibsrtp.Session(policy)


def _is_rtcp(data: bytes) -> bool:
    """RFC 5761 section 4: RTCP packet types 192-223 fall where RTP's marker + payload types
    64-95 would, which no RTP session here uses."""
    return len(data) >= 8 and 192 <= data[1] <= 223


class PlainRtpPort(RtpPort):
    """A plain RTP leg's RTP path, with :class:`RtpPort`'s interface (``audio``, ``ready``,
    ``ssrc``, :meth:`send`) over UDP sockets of its own.

    RtpPort's constructor hooks an aiortc transceiver, which a plain leg has none of, so it is
    not called; the methods an endpoint uses are all overridden here.
    """

    def __init__(self, on_rtp: Callable[[RtpView], Awaitable[None]]) -> None:
        self._on_rtp_cb = on_rtp
        self._ext_map = HeaderExtensionsMap()
        self._seq = random.randint(0, 32767)
        self._ssrc = random.getrandbits(32)
        self._header = RtpWriter(self._ssrc, None, None)  # no header extensions on SIP legs
        self.audio = None
        self.ready = asyncio.Event()
        self.packets_sent = 0
        self.packets_received = 0
        self.srtp_rejected = 0  # SDES-SRTP packets not authentic or replayed, dropped (/metrics)
        self.handler_errors = 0  # (RtpPort's; a plain port's handler errors are not counted)
        self.address = ""  # where we listen
        self.port = 0
        self._rtp: _Socket | None = None
        self._rtcp: _Socket | None = None
        self.remote: Address | None = None  # from the device's SDP (None: do not send)
        self.remote_rtcp: Address | None = None
        self.rtcp_mux = False
        self.latched: Address | None = None  # the source of the device's packets
        # A relay between media workers: only the address in the other side's SDP is heard
        # (no latching, which would let whoever sends first, or three packets in sequence,
        # take the relay over).
        self.pinned = False
        self._candidate: tuple[Address, int, int, int] | None = None  # addr, ssrc, seq, count
        self.send_ok = False  # the device receives (as negotiated)
        self.recv_ok = False
        self._srtp_out: Srtp | None = None
        self._srtp_in: Srtp | None = None
        self._in_key: Crypto | None = None
        self._out_key: Crypto | None = None
        self.last_activity = time.monotonic()
        self._inbox: deque[RtpView] = deque(maxlen=64)
        self._wake = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self.rtcp = RtcpSession(self._ssrc)
        self.rtcp_source: Address | None = None  # where the device's RTCP comes from
        self._reporter: asyncio.Task[None] | None = None
        self.port_range = PORTS  # where open() binds (the server's --rtp-ports)

    @property
    def ssrc(self) -> int:
        return self._ssrc

    async def open(self, host: str) -> None:
        """Bind the sockets (once) and start delivering packets."""
        if self._rtp is not None:
            return
        self._rtp, self._rtcp, self.port = await bind_pair(
            host, self._datagram, self._rtcp_in, self.port_range
        )
        self.address = host
        loop = asyncio.get_running_loop()
        self._reader = loop.create_task(self._deliver())
        self._reporter = loop.create_task(self._report())

    def set_remote(
        self, remote: Address | None, remote_rtcp: Address | None, rtcp_mux: bool
    ) -> None:
        """Where the device's SDP says to send; a new address forgets the latched source."""
        if remote != self.remote:
            self.latched, self._candidate = None, None
        self.remote, self.remote_rtcp, self.rtcp_mux = remote, remote_rtcp, rtcp_mux

    def set_keys(self, ours: Crypto | None, theirs: Crypto | None) -> None:
        """SRTP keys as negotiated (``None``, ``None``: plain RTP). A key that did not change
        keeps its session (and its rollover counter)."""
        if ours != self._out_key:
            self._out_key = ours
            out = _srtp(ours, pylibsrtp.Policy.SSRC_ANY_OUTBOUND) if ours else None
            self._srtp_out = Srtp(out) if out is not None else None
        if theirs != self._in_key:
            self._in_key = theirs
            inb = _srtp(theirs, pylibsrtp.Policy.SSRC_ANY_INBOUND) if theirs else None
            self._srtp_in = Srtp(inb) if inb is not None else None

    def destination(self) -> Address | None:
        return self.latched or self.remote

    def send_now(
        self,
        payload: bytes,
        payload_type: int,
        timestamp: int,
        marker: int,
        audio_level: tuple[bool, int] | None = None,
    ) -> None:
        """Send one RTP packet in this port's SSRC and sequence space (if the device wants
        our media). ``audio_level`` is RtpPort's: a SIP leg negotiates no RFC 6464
        extension, so it is not sent. The header is written in place (RFC 3550 5.1).
        (RtpPort's ``send`` awaits this, for callers that await.)"""
        dest = self.destination()
        sock = self._rtp
        if not self.send_ok or dest is None or sock is None or sock.transport is None:
            return
        timestamp &= 0xFFFFFFFF
        header = self._header.header(payload_type, marker, self._seq, timestamp)
        self._seq = (self._seq + 1) & 0xFFFF
        srtp = self._srtp_out
        data: Any = srtp.protect(header, payload) if srtp is not None else header + payload
        self.packets_sent += 1
        audio = self.audio
        self.rtcp.sent(len(payload), timestamp, audio.codec.clock_rate if audio else 8000)
        sock.transport.sendto(data, dest)

    # inbound -----------------------------------------------------------------------------------
    def _datagram(self, data: bytes, addr: Address) -> None:
        if _is_rtcp(data):
            self._rtcp_in(data, addr)
            return
        audio = self.audio
        if audio is None or not self.recv_ok:
            return
        if self._srtp_in is not None:
            try:
                data = self._srtp_in.unprotect(data)
            except pylibsrtp.Error:
                self.srtp_rejected += 1
                return  # not authentic, or a replay (RFC 3711 section 3.3)
        packet = parse_rtp(data)
        if packet is None:
            return
        if packet.payload_type not in audio.recv or not self._from_device(addr, packet):
            return
        self.last_activity = time.monotonic()
        self.packets_received += 1
        self.rtcp.received(packet, audio.codec.clock_rate)
        self._inbox.append(packet)
        self._wake.set()

    def _from_device(self, addr: Address, packet: RtpView) -> bool:
        """Symmetric RTP: is ``addr`` the device's source (latching onto it if it now is)?"""
        if addr == self.latched:
            return True
        if self.pinned:
            if addr != self.remote:
                return False
            self.latched = addr
            return True
        if self.latched is None or self._srtp_in is not None:
            self.latched, self._candidate = addr, None  # authenticated, or the first packet
            return True
        candidate = self._candidate
        seq = packet.sequence_number
        if (
            candidate is not None
            and candidate[0] == addr
            and candidate[1] == packet.ssrc
            and (candidate[2] + 1) & 0xFFFF == seq
        ):
            count = candidate[3] + 1
        else:
            count = 1
        if count >= RELATCH_PACKETS:
            log.info("plain RTP: the device's source moved from %s to %s", self.latched, addr)
            self.latched, self._candidate = addr, None
            return True
        self._candidate = (addr, packet.ssrc, seq, count)
        return False

    def _rtcp_in(self, data: bytes, addr: Address) -> None:
        if len(data) < 8 or data[0] >> 6 != 2:
            return
        if self._srtp_in is not None:
            try:
                data = self._srtp_in.session.unprotect_rtcp(data)
            except pylibsrtp.Error:
                return
        device = self.remote if self.pinned else self.latched
        if device is not None and addr[0] != device[0]:
            return  # RTCP from elsewhere than the device (or, pinned, the other worker)
        self.last_activity = time.monotonic()
        self.rtcp_source = addr
        self.rtcp.receive(data)

    def _rtcp_destination(self) -> tuple[_Socket | None, Address | None]:
        """Where our RTCP goes: with rtcp-mux the RTP path (RFC 5761); else the source of the
        device's RTCP (symmetric, as for RTP), or its RTCP address (next port, ``a=rtcp``)."""
        if self.remote is None:
            return None, None  # on hold by c=0.0.0.0 (or no SDP yet): nowhere
        if self.rtcp_mux:
            return self._rtp, self.destination()
        return self._rtcp, self.rtcp_source or self.remote_rtcp

    def _send_rtcp(self, data: bytes) -> None:
        sock, dest = self._rtcp_destination()
        if sock is None or sock.transport is None or dest is None:
            return
        if self._srtp_out is not None:
            data = self._srtp_out.session.protect_rtcp(data)
        sock.transport.sendto(data, dest)

    async def _report(self) -> None:
        """SR/RR every ~RTCP_INTERVAL (RFC 3550 6.2, randomised by 0.5-1.5 as in 6.3.1)."""
        while True:
            await asyncio.sleep(rtcp_plain.RTCP_INTERVAL * random.uniform(0.5, 1.5))
            if self.audio is None:
                continue  # not negotiated yet
            try:
                self._send_rtcp(self.rtcp.report())
            except Exception:  # a report must never end the leg
                log.exception("plain RTP: sending RTCP failed")

    async def _deliver(self) -> None:
        """Hand packets to the endpoint in arrival order, one at a time (its handling may
        await a send)."""
        inbox, wake = self._inbox, self._wake
        while True:
            await wake.wait()
            wake.clear()
            while inbox:
                packet = inbox.popleft()
                try:
                    await self._on_rtp_cb(packet)
                except Exception:  # one bad packet must not stop the leg's audio
                    log.exception("plain RTP: handling a packet failed")

    async def close(self) -> None:
        if self._reporter is not None:
            self._reporter.cancel()
            self._reporter = None
            if self.audio is not None:
                with contextlib.suppress(Exception):
                    self._send_rtcp(self.rtcp.bye())  # RFC 3550 6.6
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        for sock in (self._rtp, self._rtcp):
            if sock is not None and sock.transport is not None:
                sock.transport.close()
        self._rtp = self._rtcp = None


class _NoPeerConnection:
    """What a plain endpoint has where a WebRTC one has its aiortc peer connection: a plain
    leg never negotiates ICE or DTLS, and building an RTCPeerConnection costs ~1.5 ms of CPU
    (a DTLS certificate) per leg for nothing. Only what the base class touches is here."""

    connectionState = "closed"

    def __init__(self, *_: object) -> None:
        pass

    def on(self, _event: str, handler: Any = None) -> Any:
        return handler

    async def close(self) -> None:
        pass


class PlainEndpoint(Endpoint):
    """An endpoint whose device speaks plain RTP or SDES-SRTP (a SIP phone).

    The base class's constructor builds an aiortc peer connection by
    :meth:`Endpoint._make_pc`; a plain endpoint's is :class:`_NoPeerConnection` instead.
    """

    def __init__(self, server: EndpointHost, endpoint_id: str, timeout: float) -> None:
        super().__init__(server, endpoint_id)
        self.rtp = PlainRtpPort(self.on_rtp)
        self.port = self.rtp
        self.stats.port = self.rtp  # its SRTP rejections (/metrics)
        self.pts = PtTable()
        self.session_id = random.getrandbits(31)
        self.sdp_version = 0
        self.local_direction = "sendrecv"  # what the server wants (reoffer_rtp)
        self.remote_direction = "sendrecv"  # what the device said last
        self.remote_hold = False
        self.srtp = False
        self.keys: dict[int, Crypto] = {}  # our a=crypto lines by tag
        self.pending: Any = None  # our offer, until its answer (media/plain.py's Pending)
        self.timeout = timeout
        self.negotiated = False
        self._watchdog: asyncio.Task[None] | None = None
        # A relay endpoint's video to the other media worker (media/relay_video.py); a SIP
        # phone's plain leg has no video.
        self.relay_video: RelayVideo | None = None

    def video_link(self) -> VideoLink | None:
        return self.relay_video

    def _make_pc(self) -> RTCPeerConnection:
        # The stand-in has only what the base class touches (connectionState, on, close).
        return cast(RTCPeerConnection, _NoPeerConnection())

    def next_version(self) -> int:
        """The o= line's version: one more for each SDP we write (RFC 3264 section 8)."""
        self.sdp_version += 1
        return self.sdp_version

    @property
    def watching(self) -> bool:
        """The device should be sending to us now (so its silence means a dead call)."""
        return self.negotiated and self.rtp.recv_ok and not self.remote_hold

    def negotiation_done(self) -> None:
        """An offer/answer completed: media may flow, the inactivity clock starts afresh."""
        self.rtp.last_activity = time.monotonic()
        if not self.negotiated:
            self.negotiated = True
            self.state = "connected"
            self.server.emit(EndpointStateChanged(self.id, "connected"))
            if self.timeout > 0:
                loop = asyncio.get_running_loop()
                self._watchdog = loop.create_task(self._watch())

    async def _watch(self) -> None:
        period = min(1.0, self.timeout / 4)
        while True:
            await asyncio.sleep(period)
            if not self.watching:
                self.rtp.last_activity = time.monotonic()  # on hold: the clock waits
                continue
            idle = time.monotonic() - self.rtp.last_activity
            if idle >= self.timeout:
                log.warning("plain RTP endpoint %s: no RTP for %.1f s", self.id, idle)
                self.state = "failed"
                self.server.emit(RtpTimeout(self.id, round(idle, 1)))
                self.server.emit(EndpointStateChanged(self.id, "failed"))
                return

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self.relay_video is not None:
            self.relay_video.close()
        await self.rtp.close()
        await super().close()
