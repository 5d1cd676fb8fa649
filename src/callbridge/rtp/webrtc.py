"""The glue between callbridge and aiortc: our own RTP paths in place of aiortc's.

aiortc does ICE, DTLS, SRTP and SDP for us. Its media path (one decoder thread per receiver,
stereo 96 kbit/s Opus, a per-frame Python loop per sender, no telephone-event) does not fit a
media server, so :class:`RtpPort` takes the RTP path of one audio transceiver over:

- inbound: the transceiver's receiver hands every RTP packet to our callback instead of its
  jitter buffer and decoder (telephone-event packets included, RFC 4733); for the server's
  ports (``fast_inbound``) the SRTP packets of an SSRC already routed are taken straight from
  the ICE socket's datagram callback, around aiortc's receive loop (:func:`_fast_inbound`);
- outbound: the sender's RTP loop is replaced; packets are sent by :meth:`RtpPort.send` with
  the sender's SSRC and MID, one sequence space, and optionally a *pump* coroutine that
  produces them (the client SDK's microphone loop).

:class:`VideoPort` does the same for one video transceiver of the server, which relays video
and never decodes it: inbound VP8 packets go to a callback untouched, outbound packets are
the bridged party's, re-stamped into this port's SSRC, sequence and timestamp space; an RTCP
PLI/FIR that the device sends about our stream is reported to a callback (the server asks the
original sender for a key frame), and :meth:`VideoPort.request_keyframe` sends a PLI to the
device whose video we receive.

The offer/answer side of the glue (codec set and preferences, the negotiated result, two
aiortc fixes) is :mod:`callbridge.rtp.offer_answer` and the ICE settings are
:mod:`callbridge.rtp.ice`; their public names are importable from here too, as before.

Every use of an aiortc private name is in these three modules and
:mod:`callbridge.rtp.receiver` (no decoder thread for the receivers hooked here), and
``pyproject.toml`` pins aiortc's minor version.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pylibsrtp
from aiortc import MediaStreamTrack, RTCRtpSender, RTCRtpTransceiver
from aiortc import clock as aiortc_clock
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcdtlstransport import RTCDtlsTransport, State
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpReceiveParameters,
    RTCRtpSendParameters,
)
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    HeaderExtensionsMap,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtpPacket,
)

from callbridge.rtp import receiver as _receiver
from callbridge.rtp.fastpath import (
    _NTP,
    _OCTETS,
    _PACKETS,
    _RTP_TS,
    _TX_BYTES,
    _TX_PACKETS,
    OutboundClock,
    RtpView,
    RtpWriter,
    Srtp,
    _Route,
    parse_rtp,
    run_now,
)
from callbridge.rtp.ice import restrict_ice_addresses, rtc_configuration, set_ice_policy
from callbridge.rtp.offer_answer import (
    VP8,
    NegotiatedAudio,
    audio_codec_preferences,
    keep_carried_codecs,
    keep_video_codecs,
    register_codecs,
    video_codec_preferences,
    video_directions,
)

log = logging.getLogger(__name__)
_receiver.install()  # before any RtpPort/VideoPort captures receiver.receive

__all__ = [
    "IdleTrack",
    "NegotiatedAudio",
    "OutboundClock",
    "RtpPacket",
    "RtpPort",
    "VideoPort",
    "audio_codec_preferences",
    "keep_carried_codecs",
    "keep_video_codecs",
    "register_codecs",
    "restrict_ice_addresses",
    "rtc_configuration",
    "set_ice_policy",
    "video_codec_preferences",
    "video_directions",
]


class IdleTrack(MediaStreamTrack):
    """A track that never yields: it only makes aiortc negotiate ``sendrecv``."""

    kind = "audio"

    def __init__(self, kind: str = "audio") -> None:
        super().__init__()
        self.kind = kind
        self._stopped = asyncio.Event()

    async def recv(self) -> Any:
        await self._stopped.wait()
        raise MediaStreamError

    def stop(self) -> None:
        self._stopped.set()
        super().stop()


OnRtp = Callable[[Any], Coroutine[Any, Any, None]]  # an RtpPacket, or an RtpView (fast_inbound)
Pump = Callable[["RtpPort"], Awaitable[None]]
_CONNECTED = State.CONNECTED
_FAST = "_callbridge_fast_rtp"  # on an RTCDtlsTransport: SSRC -> the RtpPort it goes to
_unpack_ssrc = struct.Struct("!I").unpack_from


def _fast_inbound(dtls: RTCDtlsTransport) -> dict[int, RtpPort]:
    """Route the RTP of known SSRCs around aiortc's receive loop (once per transport).

    aiortc's path for each datagram: aioice's ``StunProtocol.datagram_received`` tries to
    parse it as STUN (an exception for every RTP packet), puts it in the ICE connection's
    queue; the DTLS transport's task wakes (a loop turn per packet), demultiplexes on the
    first byte, reads the clock, unprotects through pylibsrtp's wrapper, parses an RtpPacket
    and routes it. Once one of our ports has been handed an SSRC through that path (which
    learns it), the SSRC's later SRTP packets are taken in the socket's datagram callback:
    RFC 7983 section 7 first byte 128-191 (RTP or RTCP; STUN is 0-3, DTLS 20-63) and a
    second byte outside 192-223 (RTCP packet types, RFC 5761 section 4) is RTP; its SSRC is
    in clear (RFC 3711 section 3.1), so it is looked up before the libsrtp unprotect. Anything
    else (STUN for consent freshness, DTLS with its close_notify, SRTCP, the SSRCs not routed
    yet, video) and everything while the transport is not connected takes aiortc's path.
    Packets of known SSRCs that went through aiortc's queue meanwhile skip its RtpPacket.
    """
    table: dict[int, RtpPort] | None = getattr(dtls, _FAST, None)
    if table is not None:
        return table
    table = {}
    setattr(dtls, _FAST, table)
    get = table.get
    orig = dtls._handle_rtp_data

    async def handle_rtp_data(data: bytes, arrival_time_ms: int) -> None:
        port = get(_unpack_ssrc(data, 8)[0]) if len(data) >= 12 else None
        if port is not None:
            port._receive_bytes(data)
        else:
            await orig(data, arrival_time_ms)

    dtls._handle_rtp_data = handle_rtp_data  # type: ignore[method-assign]

    srtp = Srtp(dtls._rx_srtp)  # keyed: an RTP packet of this transport was just unprotected
    unprotect = srtp.unprotect

    def fast_datagram(orig_datagram: Callable[[bytes, Any], None]) -> Callable[[bytes, Any], None]:
        def datagram_received(data: bytes, addr: Any) -> None:
            if (
                len(data) >= 12
                and 127 < data[0] < 192
                and not 191 < data[1] < 224
                and dtls._state is _CONNECTED
            ):
                port = get(_unpack_ssrc(data, 8)[0])
                if port is not None:
                    # its transport statistics (getStats), counted as _recv_next does
                    dtls._RTCDtlsTransport__rx_bytes += len(data)  # type: ignore[attr-defined]
                    dtls._RTCDtlsTransport__rx_packets += 1  # type: ignore[attr-defined]
                    try:
                        plain = unprotect(data)
                    except (pylibsrtp.Error, ValueError):
                        port.srtp_rejected += 1  # not authentic, or a replay (RFC 3711 3.3)
                        return
                    port._receive_bytes(plain)
                    return
            orig_datagram(data, addr)

        return datagram_received

    # Every local socket of the ICE connection (host candidates, TURN relays): aioice made
    # them all at gathering, before any pair could be nominated.
    protocols: list[Any] = dtls.transport._connection._protocols
    for protocol in protocols:
        protocol.datagram_received = fast_datagram(protocol.datagram_received)
    return table


class RtpPort:
    """Our RTP path on one aiortc audio transceiver (see the module docstring).

    Create it right after the transceiver exists and before offer/answer completes;
    :attr:`ready` is set once both directions are negotiated and :attr:`audio` is known.
    """

    def __init__(
        self,
        transceiver: RTCRtpTransceiver,
        on_rtp: OnRtp,
        pump: Pump | None = None,
        fast_inbound: bool = False,
    ) -> None:
        """``fast_inbound``: ``on_rtp`` gets :class:`~callbridge.rtp.fastpath.RtpView`
        objects parsed from the bytes (the server's endpoints), not aiortc RtpPackets."""
        self._sender: RTCRtpSender = transceiver.sender
        self._receiver = transceiver.receiver
        self._on_rtp = on_rtp
        self._pump = pump
        self._ext_map = HeaderExtensionsMap()
        self._mid: str | None = None
        self._seq = random.randint(0, 32767)  # < 2^15 like aiortc: avoids SRTP rollover bugs
        self._send_codecs: list[RTCRtpCodecParameters] | None = None
        self._recv_codecs: list[RTCRtpCodecParameters] | None = None
        self.audio = None
        self.ready = asyncio.Event()
        self.packets_sent = 0
        self.srtp_rejected = 0  # fast path: SRTP packets not authentic or replayed, dropped
        self.handler_errors = 0  # fast path: packets whose handling raised
        self._fast = fast_inbound
        self._writer: RtpWriter | None = None  # built at the first send (MID, ids known)
        self._srtp: Srtp | None = None  # on the DTLS transport's outbound SRTP session
        self._route: _Route | None = None  # what send_now goes through, once connected
        self._recv_pts: frozenset[int] = frozenset()
        self._level_id = 0  # negotiated id of the RFC 6464 extension we receive
        self._hook()

    @property
    def ssrc(self) -> int:
        return int(self._sender._ssrc)

    # Whoever caches what this port negotiated (an endpoint, for its mixer) is told when
    # it changes: a SIP re-INVITE changes a plain leg's codec on the same port. Class
    # attributes, so a subclass that skips __init__ (PlainRtpPort) has them too.
    on_audio_changed: Callable[[], None] | None = None
    _audio: NegotiatedAudio | None = None

    @property
    def audio(self) -> NegotiatedAudio | None:
        """The negotiated audio (None until negotiation completes)."""
        return self._audio

    @audio.setter
    def audio(self, audio: NegotiatedAudio | None) -> None:
        self._audio = audio
        if self.on_audio_changed is not None:
            self.on_audio_changed()

    def _hook(self) -> None:
        sender, receiver = self._sender, self._receiver
        orig_send = sender.send
        orig_receive = receiver.receive

        async def send(parameters: RTCRtpSendParameters) -> None:
            self._mid = parameters.muxId
            self._ext_map.configure(parameters)
            self._writer = None
            self._send_codecs = list(parameters.codecs)
            self._maybe_ready()
            await orig_send(parameters)

        async def receive(parameters: RTCRtpReceiveParameters) -> None:
            self._recv_codecs = list(parameters.codecs)
            self._recv_pts = frozenset(int(c.payloadType or 0) for c in parameters.codecs)
            self._level_id = next(
                (
                    int(x.id)
                    for x in parameters.headerExtensions
                    if x.uri == "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
                ),
                0,
            )
            self._maybe_ready()
            await orig_receive(parameters)

        # aiortc's own per-SSRC receive statistics (RFC 3550 A.3 and A.8): fed here as its
        # handler would, they are what its receiver reports (RTCP RR) and what getStats says
        # (inbound-rtp), so both ends of a WebRTC leg know its loss and jitter (issue 14).
        streams: dict[int, StreamStatistics] = getattr(  # noqa: B009
            receiver, "_RTCRtpReceiver__remote_streams"
        )
        self._streams = streams

        async def handle_rtp(packet: RtpPacket, arrival_time_ms: int) -> None:
            if self.audio is not None:
                stream = streams.get(packet.ssrc)
                if stream is None:
                    stream = streams[packet.ssrc] = StreamStatistics(self._clock_rate(packet))
                stream.add(packet)
                if self._fast:  # its next packets skip aiortc's receive loop (_fast_inbound)
                    _fast_inbound(self._sender.transport)[packet.ssrc] = self
                    p = packet
                    await self._on_rtp(
                        RtpView(
                            p.marker,
                            p.payload_type,
                            p.sequence_number,
                            p.timestamp,
                            p.ssrc,
                            p.payload,
                            p.extensions.audio_level,
                        )
                    )
                    return
                await self._on_rtp(packet)

        # Instance attributes shadow the methods; aiortc calls them through `self.`.
        sender.send = send  # type: ignore[method-assign]
        receiver.receive = receive  # type: ignore[method-assign]
        receiver._handle_rtp_packet = handle_rtp  # type: ignore[method-assign]
        sender._run_rtp = self._run_rtp  # type: ignore[method-assign]
        _receiver.reports_in_sender_reports(sender, receiver)  # one RTCP packet a second

    def _receive_bytes(self, data: bytes) -> None:
        """One unprotected RTP packet of an SSRC routed to this port (:func:`_fast_inbound`):
        what aiortc's handler did, on the bytes (RFC 3550 5.1 header, RFC 8285 levels)."""
        view = parse_rtp(data, self._level_id)
        if view is None or view.payload_type not in self._recv_pts:
            return  # aiortc drops both (parse error; payload type not this receiver's)
        stream = self._streams.get(view.ssrc)
        if stream is None:
            stream = self._streams[view.ssrc] = StreamStatistics(self._clock_rate(view))
        stream.add(view)  # type: ignore[arg-type]  # reads sequence_number, timestamp
        try:
            run_now(self._on_rtp(view))
        except Exception:  # one bad packet must not end the leg's audio, nor flood the log
            self.handler_errors += 1
            if self.handler_errors == 1:
                log.exception("RTP: handling a packet failed (later failures are counted)")

    def _clock_rate(self, packet: RtpPacket | RtpView) -> int:
        for codec in self._recv_codecs or ():
            if codec.payloadType == packet.payload_type:
                return int(codec.clockRate)
        return 48000  # Opus's, the usual WebRTC audio clock

    def _maybe_ready(self) -> None:
        if self._send_codecs is not None and self._recv_codecs is not None:
            try:
                audio = NegotiatedAudio.from_codecs(self._send_codecs)
                audio.recv = NegotiatedAudio.from_codecs(self._recv_codecs).recv
            except ValueError:
                return  # callers check common codecs on the SDP before this point
            self.audio = audio
            self.ready.set()

    async def _run_rtp(self, codec: RTCRtpCodecParameters) -> None:
        # Replaces RTCRtpSender._run_rtp; RTCRtpSender.stop() waits on these two events.
        started: asyncio.Event = getattr(self._sender, "_RTCRtpSender__rtp_started")  # noqa: B009
        exited: asyncio.Event = getattr(self._sender, "_RTCRtpSender__rtp_exited")  # noqa: B009
        started.set()
        try:
            if self._pump is not None:
                await self._pump(self)
            else:
                await asyncio.Event().wait()  # packets are pushed by send()
        except (asyncio.CancelledError, ConnectionError, MediaStreamError):
            pass
        finally:
            exited.set()

    async def send(
        self,
        payload: bytes,
        payload_type: int,
        timestamp: int,
        marker: int,
        audio_level: tuple[bool, int] | None = None,
    ) -> None:
        """:meth:`send_now`, for callers that await (the SDK client, DTMF)."""
        self.send_now(payload, payload_type, timestamp, marker, audio_level)

    def _resolve_route(self) -> _Route | None:
        """What a send goes through, looked up once per stream (the DTLS transport, its SRTP
        session and counters, the nominated ICE pair's socket and address), or None while
        not connected. Resolved again when the nominated pair changes (RFC 8445 8.1.1) or
        the transport leaves the connected state (its keys and pair are then gone)."""
        dtls = self._sender.transport
        if dtls._state is not _CONNECTED:
            return None
        nominated: dict[int, Any] = dtls.transport._connection._nominated
        pair = nominated.get(1)
        if pair is None:
            return None
        transport = pair.protocol.transport
        if transport is None:
            return None
        srtp = self._srtp
        if srtp is None or srtp.session is not dtls._tx_srtp:
            srtp = self._srtp = Srtp(dtls._tx_srtp)
        route = self._route = _Route(
            dtls, nominated, pair, srtp.protect, transport.sendto, pair.remote_addr, self._sender
        )
        return route

    def send_now(
        self,
        payload: bytes,
        payload_type: int,
        timestamp: int,
        marker: int,
        audio_level: tuple[bool, int] | None = None,
    ) -> None:
        """Send one RTP packet in this port's SSRC and sequence space; ``audio_level`` is
        the RFC 6464 (voice, -dBov) to send with it when the extension was negotiated.

        The header is written in place (:class:`~callbridge.rtp.fastpath.RtpWriter`),
        protected by libsrtp in the DTLS transport's SRTP session and sent on the nominated
        ICE pair's socket: what ``RTCDtlsTransport._send_rtp`` and aioice do, without their
        per-packet layers (and without a coroutine). Nothing is sent while the transport is
        not connected."""
        writer = self._writer
        if writer is None:
            writer = self._writer = RtpWriter(self.ssrc, self._ext_map, self._mid)
        timestamp &= 0xFFFFFFFF
        header = writer.header(payload_type, marker, self._seq, timestamp, audio_level)
        self._seq = (self._seq + 1) & 0xFFFF
        self.packets_sent += 1
        route = self._route
        if (
            route is None
            or route.dtls._state is not _CONNECTED
            or route.nominated.get(1) is not route.pair
        ):
            route = self._resolve_route()
            if route is None:
                return  # not yet, or closing: the call is ending anyway
        data = route.protect(header, payload)
        route.sendto(data, route.dest)
        # aiortc's counters, which its RTCP sender reports and getStats (outbound-rtp,
        # transport) read: RFC 3550 6.4.1 packet and octet counts; the (NTP, RTP) time pair
        # is refreshed every 32 packets (a pair from < 1 s ago is as valid, and cheaper).
        # Written in the objects' dicts: the same attributes, without the attribute protocol.
        counts = route.sender_counts
        count = counts[_PACKETS] + 1
        counts[_PACKETS] = count
        counts[_OCTETS] += len(payload)
        if count & 31 == 1:
            counts[_NTP] = aiortc_clock.current_ntp_time()
            counts[_RTP_TS] = timestamp
        tx = route.dtls_counts
        tx[_TX_PACKETS] += 1
        tx[_TX_BYTES] += len(data)


OnVideo = Callable[[RtpPacket], Awaitable[None]]
OnKeyframeRequest = Callable[[], Awaitable[None]]


class VideoPort:
    """The server's RTP path on one aiortc video transceiver: relay only (module docstring).

    Create it right after the transceiver exists and before its offer/answer completes.
    ``on_rtp`` gets every VP8 packet the device sends; ``on_keyframe_request`` is awaited when
    the device asks for a key frame (RTCP PLI or FIR) and when this port starts sending (the
    device's decoder needs a key frame to start).
    """

    def __init__(
        self,
        transceiver: RTCRtpTransceiver,
        on_rtp: OnVideo,
        on_keyframe_request: OnKeyframeRequest,
    ) -> None:
        self.transceiver = transceiver
        self._sender: RTCRtpSender = transceiver.sender
        self._receiver = transceiver.receiver
        self._on_rtp = on_rtp
        self._on_keyframe_request = on_keyframe_request
        self._ext_map = HeaderExtensionsMap()
        self._mid: str | None = None
        self._seq = random.randint(0, 32767)
        self._payload_type: int | None = None  # VP8 as negotiated for sending
        self._recv_payload_types: set[int] = set()
        self._source: object = None
        self._offset = random.getrandbits(32)
        self._last_out: int | None = None
        self._last_wall = 0.0
        self.remote_ssrc: int | None = None  # the device's video SSRC, once a packet came
        self.packets_sent = 0
        self.packets_received = 0
        self._hook()

    @property
    def ssrc(self) -> int:
        return int(self._sender._ssrc)

    @property
    def sending(self) -> bool:
        """True when this port may send: VP8 negotiated and the direction includes send."""
        return self._payload_type is not None and video_directions(self.transceiver)[0]

    @property
    def receiving(self) -> bool:
        return video_directions(self.transceiver)[1]

    def _hook(self) -> None:
        sender, receiver = self._sender, self._receiver
        orig_send = sender.send
        orig_receive = receiver.receive
        orig_rtcp = sender._handle_rtcp_packet

        async def send(parameters: RTCRtpSendParameters) -> None:
            self._mid = parameters.muxId
            self._ext_map.configure(parameters)
            self._payload_type = next(
                (int(c.payloadType or 0) for c in parameters.codecs if c.mimeType.lower() == VP8),
                None,
            )
            await orig_send(parameters)
            await self._keyframe_request()

        async def receive(parameters: RTCRtpReceiveParameters) -> None:
            self._recv_payload_types = {
                int(c.payloadType or 0) for c in parameters.codecs if c.mimeType.lower() == VP8
            }
            await orig_receive(parameters)

        async def handle_rtp(packet: RtpPacket, arrival_time_ms: int) -> None:
            if packet.payload_type in self._recv_payload_types:
                self.remote_ssrc = packet.ssrc
                self.packets_received += 1
                await self._on_rtp(packet)

        async def handle_rtcp(packet: Any) -> None:
            if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_FIR, RTCP_PSFB_PLI):
                await self._keyframe_request()
            elif not isinstance(packet, RtcpRtpfbPacket):  # NACK: nothing to retransmit
                await orig_rtcp(packet)  # receiver reports (stats), REMB (ignored)

        sender.send = send  # type: ignore[method-assign]
        receiver.receive = receive  # type: ignore[method-assign]
        receiver._handle_rtp_packet = handle_rtp  # type: ignore[method-assign]
        sender._run_rtp = self._run_rtp  # type: ignore[method-assign]
        sender._handle_rtcp_packet = handle_rtcp  # type: ignore[method-assign]

    async def _keyframe_request(self) -> None:
        try:
            await self._on_keyframe_request()
        except ConnectionError:
            pass

    async def _run_rtp(self, codec: RTCRtpCodecParameters) -> None:
        started: asyncio.Event = getattr(self._sender, "_RTCRtpSender__rtp_started")  # noqa: B009
        exited: asyncio.Event = getattr(self._sender, "_RTCRtpSender__rtp_exited")  # noqa: B009
        started.set()
        try:
            await asyncio.Event().wait()  # packets are pushed by relay()
        except asyncio.CancelledError:
            pass
        finally:
            exited.set()

    async def request_keyframe(self) -> None:
        """Ask the device whose video we receive for a key frame (RTCP PLI)."""
        if self.remote_ssrc is not None and self.receiving:
            await self._receiver._send_rtcp_pli(self.remote_ssrc)

    async def relay(self, source: object, packet: RtpPacket) -> None:
        """Send ``packet`` (another port's VP8) to this port's device, re-stamped.

        Each source gets its own timestamp offset; on a change of source the stream moves on
        by the wall-clock gap (at least one 90 kHz frame of 30 fps), like OutboundClock.
        """
        if self._payload_type is None:
            return
        if source is not self._source:
            now = time.monotonic()
            if self._last_out is not None:
                gap = max(3000, int((now - self._last_wall) * 90000))
                self._offset = self._last_out + gap - packet.timestamp
            self._source = source
        out_ts = (packet.timestamp + self._offset) & 0xFFFFFFFF
        if out_ts != self._last_out:
            self._last_out = out_ts
            self._last_wall = time.monotonic()
        out = RtpPacket(
            payload_type=self._payload_type,
            marker=packet.marker,
            sequence_number=self._seq,
            timestamp=out_ts,
            ssrc=self.ssrc,
            payload=packet.payload,
        )
        out.extensions.mid = self._mid
        self._seq = (self._seq + 1) & 0xFFFF
        self.packets_sent += 1
        try:
            await self._sender.transport._send_rtp(out.serialize(self._ext_map))
        except ConnectionError:
            pass
