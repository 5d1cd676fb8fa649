"""The glue between callbridge and aiortc: ICE restriction, codec set, and our own RTP paths.

aiortc does ICE, DTLS, SRTP and SDP for us. Its media path (one decoder thread per receiver,
stereo 96 kbit/s Opus, a per-frame Python loop per sender, no telephone-event) does not fit a
media server, so :class:`RtpPort` takes the RTP path of one audio transceiver over:

- inbound: the transceiver's receiver hands every RTP packet to our callback instead of its
  jitter buffer and decoder (telephone-event packets included, RFC 4733);
- outbound: the sender's RTP loop is replaced; packets are sent by :meth:`RtpPort.send` with
  the sender's SSRC and MID, one sequence space, and optionally a *pump* coroutine that
  produces them (the client SDK's microphone loop).

:class:`VideoPort` does the same for one video transceiver of the server, which relays video
and never decodes it: inbound VP8 packets go to a callback untouched, outbound packets are
the bridged party's, re-stamped into this port's SSRC, sequence and timestamp space; an RTCP
PLI/FIR that the device sends about our stream is reported to a callback (the server asks the
original sender for a key frame), and :meth:`VideoPort.request_keyframe` sends a PLI to the
device whose video we receive.

Every use of an aiortc private name is in this module, and ``pyproject.toml`` pins aiortc's
minor version; ``tests/test_webrtc_glue.py`` fails loudly if an upgrade moves them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aioice
import aioice.ice
import aiortc.rtcpeerconnection as aiortc_pc
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCRtpCodecCapability,
    RTCRtpSender,
    RTCRtpTransceiver,
)
from aiortc.codecs import CODECS as AIORTC_CODECS
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpReceiveParameters,
    RTCRtpSendParameters,
)
from aiortc.rtp import (
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    HeaderExtensionsMap,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtpPacket,
)

from callbridge.rtp.codecs import CodecSpec, codec_for_mime

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


_ice_addresses: list[str] | None = None
_original_get_host_addresses = aioice.ice.get_host_addresses


def _restricted_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    assert _ice_addresses is not None
    return [
        a
        for a in _ice_addresses
        if (use_ipv4 and ipaddress.ip_address(a).version == 4)
        or (use_ipv6 and ipaddress.ip_address(a).version == 6)
    ]


def restrict_ice_addresses(addresses: Sequence[str] | None) -> None:
    """Gather ICE host candidates only on ``addresses`` (``None`` restores aioice's default).

    aioice has no option for this and leaves loopback out of its own list, so its
    ``get_host_addresses`` is replaced process-wide. Loopback addresses are allowed here.
    """
    global _ice_addresses
    if addresses is None:
        _ice_addresses = None
        aioice.ice.get_host_addresses = _original_get_host_addresses
        return
    for a in addresses:
        ipaddress.ip_address(a)  # ValueError for a name or a typo
    _ice_addresses = list(addresses)
    aioice.ice.get_host_addresses = _restricted_host_addresses


def rtc_configuration(ice_servers: Iterable[dict[str, Any]] = ()) -> RTCConfiguration:
    """An RTCConfiguration with exactly the given ICE servers (none by default: no STUN)."""
    servers = [
        RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
        for s in ice_servers
    ]
    return RTCConfiguration(iceServers=servers)


def set_ice_policy(pc: Any, *, relay_only: bool, no_servers: bool, ipv6: bool) -> None:
    """Restrict what a peer connection's ICE gathers, before its offer or answer is made.

    aiortc's RTCConfiguration has no IPv6 switch and no ``"none"`` transport policy, so the
    existing transports' aioice connections are configured directly: ``relay_only`` gathers
    only TURN candidates (aioice RELAY policy), ``no_servers`` also forgets the STUN/TURN
    servers (nothing is gathered at all), ``ipv6`` False leaves out IPv6 host candidates.
    """
    for transceiver in pc.getTransceivers():
        connection = transceiver.sender.transport.transport.iceGatherer._connection
        if relay_only:
            connection._transport_policy = aioice.TransportPolicy.RELAY
        if no_servers:
            connection.stun_server = connection.turn_server = None
        connection._use_ipv6 = ipv6


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


OnRtp = Callable[[RtpPacket], Awaitable[None]]
Pump = Callable[["RtpPort"], Awaitable[None]]


class RtpPort:
    """Our RTP path on one aiortc audio transceiver (see the module docstring).

    Create it right after the transceiver exists and before offer/answer completes;
    :attr:`ready` is set once both directions are negotiated and :attr:`audio` is known.
    """

    def __init__(
        self, transceiver: RTCRtpTransceiver, on_rtp: OnRtp, pump: Pump | None = None
    ) -> None:
        self._sender: RTCRtpSender = transceiver.sender
        self._receiver = transceiver.receiver
        self._on_rtp = on_rtp
        self._pump = pump
        self._ext_map = HeaderExtensionsMap()
        self._mid: str | None = None
        self._seq = random.randint(0, 32767)  # < 2^15 like aiortc: avoids SRTP rollover bugs
        self._send_codecs: list[RTCRtpCodecParameters] | None = None
        self._recv_codecs: list[RTCRtpCodecParameters] | None = None
        self.audio: NegotiatedAudio | None = None
        self.ready = asyncio.Event()
        self.packets_sent = 0
        self._hook()

    @property
    def ssrc(self) -> int:
        return int(self._sender._ssrc)

    def _hook(self) -> None:
        sender, receiver = self._sender, self._receiver
        orig_send = sender.send
        orig_receive = receiver.receive

        async def send(parameters: RTCRtpSendParameters) -> None:
            self._mid = parameters.muxId
            self._ext_map.configure(parameters)
            self._send_codecs = list(parameters.codecs)
            self._maybe_ready()
            await orig_send(parameters)

        async def receive(parameters: RTCRtpReceiveParameters) -> None:
            self._recv_codecs = list(parameters.codecs)
            self._maybe_ready()
            await orig_receive(parameters)

        async def handle_rtp(packet: RtpPacket, arrival_time_ms: int) -> None:
            if self.audio is not None:
                await self._on_rtp(packet)

        # Instance attributes shadow the methods; aiortc calls them through `self.`.
        sender.send = send  # type: ignore[method-assign]
        receiver.receive = receive  # type: ignore[method-assign]
        receiver._handle_rtp_packet = handle_rtp  # type: ignore[method-assign]
        sender._run_rtp = self._run_rtp  # type: ignore[method-assign]

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

    async def send(self, payload: bytes, payload_type: int, timestamp: int, marker: int) -> None:
        """Send one RTP packet in this port's SSRC and sequence space."""
        packet = RtpPacket(
            payload_type=payload_type,
            marker=marker,
            sequence_number=self._seq,
            timestamp=timestamp & 0xFFFFFFFF,
            ssrc=self.ssrc,
            payload=payload,
        )
        packet.extensions.mid = self._mid
        self._seq = (self._seq + 1) & 0xFFFF
        self.packets_sent += 1
        try:
            await self._sender.transport._send_rtp(packet.serialize(self._ext_map))
        except ConnectionError:
            pass  # transport closing: the call is ending anyway


class OutboundClock:
    """RTP timestamps for one outgoing stream whose source can change (relay, music, …).

    Each source has its own timestamp base; when the source changes, the stream is re-anchored
    so the receiver sees time move on by the wall-clock gap (at least one frame), and the first
    packet of the new source carries the marker bit (RFC 3551 §4.1 talkspurt start).
    """

    def __init__(self, clock_rate: int, step: int) -> None:
        self.clock_rate = clock_rate
        self.step = step
        self._source: object = None
        self._offset = random.getrandbits(32)
        self._last_out: int | None = None
        self._last_wall = 0.0

    def map(self, source: object, source_ts: int) -> tuple[int, int]:
        """Return (outgoing timestamp, marker) for a packet of ``source`` at ``source_ts``."""
        now = time.monotonic()
        marker = 0
        if source is not self._source:
            if self._last_out is not None:
                gap = max(self.step, int((now - self._last_wall) * self.clock_rate))
                self._offset = self._last_out + gap - source_ts
            self._source = source
            marker = 1
        out = (source_ts + self._offset) & 0xFFFFFFFF
        self._last_out = out
        self._last_wall = now
        return out, marker


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
