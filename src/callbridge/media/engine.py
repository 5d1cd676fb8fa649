"""The in-process media server: aiortc endpoints, RTP relay/transcode bridges, players.

Video (VP8 only) is relayed between bridged endpoints and never decoded: each endpoint may
have one :class:`~callbridge.media.webrtc.VideoPort` next to its audio port; a packet from one
device is re-stamped and sent to the bridged device, and key-frame requests (RTCP PLI/FIR)
travel the other way.

Per inbound packet the hot path is: SRTP unprotect (aiortc) -> :meth:`_Endpoint.on_rtp` ->
either a header rewrite and SRTP protect (same codec on both legs: no decode, no encode) or
decode -> resample -> encode (different codecs). Nothing on that path logs or allocates more
than the packet it sends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp, candidate_to_sdp

from callbridge.errors import ErrorCode, MediaError
from callbridge.media.codecs import AudioDecoder, AudioEncoder, CodecSpec, Resampler
from callbridge.media.interface import (
    DtmfReceived,
    EndpointState,
    EndpointStateChanged,
    MediaEvent,
    PlayerName,
)
from callbridge.media.players import sound_payloads
from callbridge.media.rfc4733 import DtmfDetector, decode_event, encode_event
from callbridge.media.webrtc import (
    IdleTrack,
    OutboundClock,
    RtpPacket,
    RtpPort,
    VideoPort,
    audio_codec_preferences,
    keep_carried_codecs,
    keep_video_codecs,
    register_codecs,
    restrict_ice_addresses,
    rtc_configuration,
    video_codec_preferences,
    video_directions,
)

__all__ = ["InProcessMediaServer"]

log = logging.getLogger(__name__)
TICK = 0.020


class _Transcoder:
    """Decode one codec, resample, encode another: one direction of a mixed-codec bridge."""

    def __init__(self, src: CodecSpec, dst: CodecSpec) -> None:
        self.decoder = AudioDecoder(src)
        self.resampler = Resampler(src.sample_rate, dst.sample_rate)
        self.encoder = AudioEncoder(dst)
        self.timestamp = 0
        self.step = dst.timestamp_step

    def process(self, payload: bytes) -> list[bytes]:
        pcm = self.decoder.decode(payload)
        return [self.encoder.encode(f) for f in self.resampler.process(pcm)]


class _Player:
    """Loops pre-encoded payloads into one endpoint, clocked by the server's media tick."""

    def __init__(self, name: PlayerName, spec: CodecSpec) -> None:
        self.name = name
        self.payloads = () if name == "silence" else sound_payloads(name, spec)
        self.index = 0
        self.timestamp = 0
        self.step = spec.timestamp_step

    def next_payload(self) -> bytes | None:
        if not self.payloads:
            return None  # silence: send nothing (receivers play silence / comfort noise)
        payload = self.payloads[self.index % len(self.payloads)]
        self.index += 1
        self.timestamp += self.step
        return payload


class _Endpoint:
    def __init__(self, server: InProcessMediaServer, endpoint_id: str) -> None:
        self.id = endpoint_id
        self.server = server
        self.pc = RTCPeerConnection(rtc_configuration(server.ice_servers))
        self.port: RtpPort | None = None
        self.transceiver: Any = None
        self.video: VideoPort | None = None
        self.clock: OutboundClock | None = None
        self.peer: _Endpoint | None = None
        self.muted = False
        self.player: _Player | None = None
        self.pending_player: PlayerName | None = None
        self.detector = DtmfDetector()
        self.transcoders: dict[int, _Transcoder] = {}
        self.dtmf_key = object()
        self.state = "connecting"
        self.ready_task: asyncio.Task[None] | None = None
        self.pc.on("connectionstatechange", self._on_connection_state)

    def attach(self, transceiver: Any) -> None:
        self.transceiver = transceiver
        self.port = RtpPort(transceiver, on_rtp=self.on_rtp)
        transceiver.sender.replaceTrack(IdleTrack())
        transceiver.direction = "sendrecv"

    def attach_video(self, transceiver: Any) -> None:
        self.video = VideoPort(
            transceiver, on_rtp=self.on_video, on_keyframe_request=self.keyframe_wanted
        )
        transceiver.sender.replaceTrack(IdleTrack("video"))

    async def on_video(self, packet: RtpPacket) -> None:
        """Relay the device's video to the bridged device (not while either holds the call)."""
        peer = self.peer
        if peer is None or peer.player is not None or self.player is not None:
            return
        port = peer.video
        if port is not None and port.sending:
            await port.relay(self, packet)

    async def keyframe_wanted(self) -> None:
        """This endpoint's device needs a key frame: ask the device whose video it gets."""
        peer = self.peer
        if peer is not None and peer.video is not None:
            await peer.video.request_keyframe()

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if state in ("connected", "failed", "closed") and state != self.state:
            self.state = state
            if self.server.current(self.id) is self:  # a replaced endpoint speaks no more
                self.server.emit(EndpointStateChanged(self.id, cast(EndpointState, state)))

    @property
    def spec(self) -> CodecSpec | None:
        audio = self.port.audio if self.port else None
        return audio.codec if audio else None

    def start_player(self, name: PlayerName) -> None:
        spec = self.spec
        if spec is None:
            self.pending_player = name  # starts once negotiation completes
            return
        self.player = _Player(name, spec)
        self.server.players.add(self)

    def stop_player(self) -> None:
        self.pending_player = None
        self.player = None
        self.server.players.discard(self)

    async def on_rtp(self, packet: RtpPacket) -> None:
        port = self.port
        assert port is not None and port.audio is not None
        recv = port.audio.recv
        pt = packet.payload_type
        if pt not in recv:
            return
        if self.pending_player is not None:
            name, self.pending_player = self.pending_player, None
            self.start_player(name)
        spec = recv[pt]
        peer = self.peer
        if spec is None:  # telephone-event
            event = self.detector.feed(packet.timestamp, packet.payload)
            if event is not None:
                self.server.emit(DtmfReceived(self.id, event.digit))
            if peer is not None and peer.player is None:
                await peer.relay_dtmf(self, packet)
            return
        if self.muted or peer is None or peer.player is not None:
            return
        await peer.forward(self, packet, spec)

    async def forward(self, src: _Endpoint, packet: RtpPacket, spec: CodecSpec) -> None:
        port, clock = self.port, self.clock
        if port is None or port.audio is None or clock is None:
            return
        mine = port.audio
        if spec is mine.codec:
            ts, marker = clock.map(src, packet.timestamp)
            await port.send(packet.payload, mine.payload_type, ts, marker | packet.marker)
            return
        tc = self.transcoders.get(id(src))
        if tc is None or tc.decoder.spec is not spec:
            tc = self.transcoders[id(src)] = _Transcoder(spec, mine.codec)
        for payload in tc.process(packet.payload):
            ts, marker = clock.map(tc, tc.timestamp)
            tc.timestamp += tc.step
            await port.send(payload, mine.payload_type, ts, marker)

    async def relay_dtmf(self, src: _Endpoint, packet: RtpPacket) -> None:
        """Relay an RFC 4733 event to this endpoint's device, in its clock and payload type."""
        port, clock = self.port, self.clock
        src_audio = src.port.audio if src.port else None
        if port is None or port.audio is None or clock is None or src_audio is None:
            return
        mine = port.audio
        if mine.te_payload_type is None:
            return  # this device did not negotiate telephone-event; `call.dtmf` still tells it
        payload, timestamp = packet.payload, packet.timestamp
        src_rate, dst_rate = src_audio.codec.clock_rate, mine.codec.clock_rate
        key: object = src
        if src_rate != dst_rate:
            event = decode_event(payload)
            if event is None:
                return
            duration = event.duration * dst_rate // src_rate
            payload = encode_event(event.digit, end=event.end, duration=duration)
            timestamp = timestamp * dst_rate // src_rate
            key = src.dtmf_key
        ts, marker = clock.map(key, timestamp)
        await port.send(payload, mine.te_payload_type, ts, marker | packet.marker)

    async def tick(self) -> None:
        player, port, clock = self.player, self.port, self.clock
        if player is None or port is None or port.audio is None or clock is None:
            return
        payload = player.next_payload()
        if payload is not None:
            ts, marker = clock.map(player, player.timestamp)
            await port.send(payload, port.audio.payload_type, ts, marker)

    async def close(self) -> None:
        if self.ready_task is not None:
            self.ready_task.cancel()
        self.stop_player()
        if self.peer is not None and self.peer.peer is self:
            self.peer.peer = None
        self.peer = None
        await self.pc.close()


class InProcessMediaServer:
    """The embedded MediaServer (see :mod:`callbridge.media.interface`)."""

    def __init__(
        self,
        media_addresses: list[str] | None,
        ice_servers: list[dict[str, Any]] | None = None,
    ) -> None:
        register_codecs()
        restrict_ice_addresses(media_addresses)
        self.ice_servers = list(ice_servers or [])
        self._endpoints: dict[str, _Endpoint] = {}
        self._handlers: list[Callable[[MediaEvent], None]] = []
        self.players: set[_Endpoint] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._reconnects = 0

    @property
    def endpoint_count(self) -> int:
        return len(self._endpoints)

    # events ---------------------------------------------------------------------------------
    def subscribe(self, handler: Callable[[MediaEvent], None]) -> None:
        self._handlers.append(handler)

    def emit(self, event: MediaEvent) -> None:
        for handler in self._handlers:
            try:
                handler(event)
            except Exception:
                log.exception("media event handler failed for %r", event)

    # endpoints ------------------------------------------------------------------------------
    def _get(self, endpoint_id: str) -> _Endpoint:
        ep = self._endpoints.get(endpoint_id)
        if ep is None:
            raise MediaError(ErrorCode.CALL_NOT_FOUND, f"no media endpoint {endpoint_id}")
        return ep

    def _new(self, endpoint_id: str) -> _Endpoint:
        if endpoint_id in self._endpoints:
            raise MediaError(ErrorCode.INVALID_STATE, f"media endpoint {endpoint_id} exists")
        ep = _Endpoint(self, endpoint_id)
        self._endpoints[endpoint_id] = ep
        return ep

    async def _fail(self, ep: _Endpoint, code: ErrorCode, message: str) -> MediaError:
        self._endpoints.pop(ep.id, None)
        await ep.close()
        return MediaError(code, message)

    async def answer(self, endpoint_id: str, offer_sdp: str, video: bool = True) -> str:
        ep = self._new(endpoint_id)
        try:
            await ep.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except Exception as exc:  # aiortc raises ValueError, OperationError, … for bad SDP
            raise await self._fail(
                ep, ErrorCode.INVALID_SDP, f"the offer could not be used: {exc}"
            ) from exc
        audio = [t for t in ep.pc.getTransceivers() if t.kind == "audio"]
        if not audio:
            raise await self._fail(ep, ErrorCode.INVALID_SDP, "the offer has no audio m-line")
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
            raise await self._fail(
                ep,
                ErrorCode.UNSUPPORTED_CODEC,
                "the offer has no audio codec callbridge carries (opus, PCMU, PCMA)",
            )
        ep.attach(audio[0])
        await ep.pc.setLocalDescription(await ep.pc.createAnswer())
        self._prepare_clock(ep)
        return str(ep.pc.localDescription.sdp)

    def current(self, endpoint_id: str) -> _Endpoint | None:
        return self._endpoints.get(endpoint_id)

    async def reconnect(self, endpoint_id: str, offer_sdp: str) -> str:
        """Replace an endpoint's peer connection with one from the device's new offer.

        This is how a device gets its media back after its network changed: aiortc has no
        ICE restart, so the device makes a new peer connection and the server answers it with
        a new one of its own. The bridge, the mute and the player carry over, so the far
        party notices nothing but a short gap.
        """
        old = self._get(endpoint_id)
        self._reconnects += 1
        temp = f"{endpoint_id}#{self._reconnects}"
        answer = await self.answer(temp, offer_sdp, video=old.video is not None)
        new = self._endpoints.pop(temp)
        new.id = endpoint_id
        self._endpoints[endpoint_id] = new
        new.muted = old.muted
        playing = old.player.name if old.player is not None else old.pending_player
        old.stop_player()
        if playing is not None:
            new.start_player(playing)
        peer, old.peer = old.peer, None
        if peer is not None:
            new.peer = peer
            if peer.peer is old:
                peer.peer = new
        await old.close()
        return answer

    async def offer(
        self, endpoint_id: str, prefer_codec: str | None = None, video: bool = False
    ) -> str:
        ep = self._new(endpoint_id)
        transceiver = ep.pc.addTransceiver("audio", direction="sendrecv")
        transceiver.setCodecPreferences(audio_codec_preferences(prefer_codec))
        ep.attach(transceiver)
        if video:
            self._add_video(ep, "sendrecv")
        await ep.pc.setLocalDescription(await ep.pc.createOffer())
        self._prepare_clock(ep)
        return str(ep.pc.localDescription.sdp)

    def _add_video(self, ep: _Endpoint, direction: str) -> None:
        transceiver = ep.pc.addTransceiver("video", direction=direction)
        transceiver.setCodecPreferences(video_codec_preferences())
        ep.attach_video(transceiver)

    async def accept_answer(self, endpoint_id: str, answer_sdp: str) -> None:
        ep = self._get(endpoint_id)
        try:
            await ep.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))
        except Exception as exc:
            raise MediaError(ErrorCode.INVALID_SDP, f"the answer could not be used: {exc}") from exc
        await self._video_changed(ep)

    async def renegotiate(self, endpoint_id: str, offer_sdp: str, send_video: bool) -> str:
        ep = self._get(endpoint_id)
        pc = ep.pc
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
        await pc.setLocalDescription(await pc.createAnswer())
        await self._video_changed(ep)
        return str(pc.localDescription.sdp)

    async def reoffer(self, endpoint_id: str, send_video: bool, recv_video: bool) -> str:
        ep = self._get(endpoint_id)
        direction = {
            (True, True): "sendrecv",
            (True, False): "sendonly",
            (False, True): "recvonly",
            (False, False): "inactive",
        }[(send_video, recv_video)]
        if ep.transceiver is not None:  # offer again what the leg carries, its codec first
            ep.transceiver.setCodecPreferences(audio_codec_preferences(self.codec(endpoint_id)))
        if ep.video is None:
            if direction != "inactive":
                self._add_video(ep, direction)
        else:
            ep.video.transceiver.setCodecPreferences(video_codec_preferences())
            ep.video.transceiver.direction = direction
        await ep.pc.setLocalDescription(await ep.pc.createOffer())
        return str(ep.pc.localDescription.sdp)

    def video_state(self, endpoint_id: str) -> tuple[bool, bool]:
        video = self._get(endpoint_id).video
        if video is None:
            return False, False
        server_sends, server_receives = video_directions(video.transceiver)
        return server_receives, server_sends

    async def _video_changed(self, ep: _Endpoint) -> None:
        """A negotiation completed: both devices of the bridge may need a key frame now."""
        for e in (ep, ep.peer):
            if e is not None and e.video is not None:
                try:
                    await e.keyframe_wanted()
                except ConnectionError:
                    pass

    def _prepare_clock(self, ep: _Endpoint) -> None:
        assert ep.port is not None

        async def when_ready() -> None:
            assert ep.port is not None
            await ep.port.ready.wait()
            spec = ep.spec
            assert spec is not None
            ep.clock = OutboundClock(spec.clock_rate, spec.timestamp_step)
            if ep.pending_player is not None:
                name, ep.pending_player = ep.pending_player, None
                ep.start_player(name)

        # Cancelled by close(): a leg that never connects must not leave a task behind.
        ep.ready_task = asyncio.get_running_loop().create_task(when_ready())

    async def add_candidate(
        self, endpoint_id: str, candidate: str | None, sdp_mid: str | None, mline: int | None
    ) -> None:
        ep = self._get(endpoint_id)
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

    def local_candidates(self, endpoint_id: str) -> list[tuple[str, str | None, int]]:
        transceiver = self._get(endpoint_id).transceiver
        if transceiver is None:
            return []
        gatherer = transceiver.sender.transport.transport.iceGatherer
        index = transceiver._get_mline_index() or 0
        return [
            ("candidate:" + candidate_to_sdp(c), transceiver.mid, index)
            for c in gatherer.getLocalCandidates()
        ]

    def codec(self, endpoint_id: str) -> str | None:
        spec = self._get(endpoint_id).spec
        return spec.name if spec else None

    # bridging and control -------------------------------------------------------------------
    async def bridge(self, a_id: str, b_id: str) -> None:
        a, b = self._get(a_id), self._get(b_id)
        for ep in (a, b):
            if ep.peer is not None and ep.peer.peer is ep:
                ep.peer.peer = None
        a.peer, b.peer = b, a
        await self._video_changed(a)

    async def unbridge(self, endpoint_id: str) -> None:
        ep = self._get(endpoint_id)
        if ep.peer is not None and ep.peer.peer is ep:
            ep.peer.peer = None
        ep.peer = None

    async def set_muted(self, endpoint_id: str, muted: bool) -> None:
        self._get(endpoint_id).muted = muted

    async def play(self, endpoint_id: str, player: PlayerName) -> None:
        self._get(endpoint_id).start_player(player)
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._run_ticker())

    async def stop_playing(self, endpoint_id: str) -> None:
        self._get(endpoint_id).stop_player()

    async def _run_ticker(self) -> None:
        """One 20 ms clock for every player, on an absolute schedule (no drift)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            for ep in list(self.players):
                await ep.tick()
            deadline += TICK
            delay = deadline - loop.time()
            if delay < -0.2:  # the loop stalled: skip ahead instead of bursting
                deadline = loop.time()
                delay = 0
            await asyncio.sleep(max(0.0, delay))

    async def close(self, endpoint_id: str) -> None:
        ep = self._endpoints.pop(endpoint_id, None)
        if ep is not None:
            await ep.close()

    async def shutdown(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        await asyncio.gather(*(self.close(i) for i in list(self._endpoints)))
