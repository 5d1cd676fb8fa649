"""The in-process media server: aiortc endpoints, RTP relay/transcode bridges, players,
conference mixers, playbacks and recordings.

Video (VP8 only) is relayed between bridged endpoints and never decoded: each endpoint may
have one :class:`~callbridge.rtp.webrtc.VideoPort` next to its audio port; a packet from one
device is re-stamped and sent to the bridged device, and key-frame requests (RTCP PLI/FIR)
travel the other way.

Per inbound packet the hot path is: SRTP unprotect (aiortc) -> :meth:`_Endpoint.on_rtp` ->
either a header rewrite and SRTP protect (same codec on both legs: no decode, no encode) or
decode -> resample -> encode (different codecs). Nothing on that path logs or allocates more
than the packet it sends.

A mixer member's packets take a third way: decoded to 48 kHz frames into the member's FIFO,
where the mixer's tick picks them up (:mod:`callbridge.media.mixer`). An endpoint's audio is
decoded otherwise only while a recording of its 1:1 leg runs (a *tap*).

One 20 ms ticker, on an absolute schedule, drives everything that produces audio by the clock:
players and ``play_to`` playbacks of endpoints outside mixers, every mixer (which sends to its
members, including their own playbacks), and 1:1 recordings. Playbacks are loaded completely
before they start (:mod:`callbridge.media.playback`), so a tick never waits on I/O.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast

import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp, candidate_to_sdp

from callbridge.errors import ErrorCode, MediaError
from callbridge.media.interface import (
    AudioSpec,
    Candidate,
    DtmfReceived,
    EndpointInfo,
    EndpointState,
    EndpointStateChanged,
    MediaEvent,
    PlaybackStateChanged,
    PlaybackStatus,
    PlayerName,
    RecordingFormat,
    SupervisorRole,
)
from callbridge.media.mixer import FrameFifo, Member, Mixer
from callbridge.media.playback import Playback, load_audio
from callbridge.media.players import PayloadLoop, sound_payloads
from callbridge.media.recording import Recorder
from callbridge.rtp.codecs import (
    MIX_FRAME,
    AudioDecoder,
    AudioEncoder,
    CodecSpec,
    FrameDecoder,
    FrameEncoder,
    Pcm,
    Resampler,
)
from callbridge.rtp.rfc4733 import DtmfDetector, decode_event, encode_event
from callbridge.rtp.webrtc import (
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
_LATE_TICK = 0.010  # a tick that starts this much after its due time counts as late
_ROLES = ("none", "barge", "monitor", "whisper")
# errors.py has no code for "no such mixer / playback / recording"; CALL_NOT_FOUND ("no call
# with this id exists") is the closest. One name, so the code changes in one place.
_NOT_FOUND = ErrorCode.CALL_NOT_FOUND


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
        self.player: PayloadLoop | None = None
        self.pending_player: PlayerName | None = None
        self.override: Playback | None = None  # play_to: replaces what the device hears
        self.mixer: Mixer | None = None
        self.member: Member | None = None
        self.tap: FrameFifo | None = None  # decoded inbound audio for a 1:1 recording
        self._encoder: FrameEncoder | None = None
        self._decoder: FrameDecoder | None = None
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
        # silence: no payloads, nothing is sent (receivers play silence / comfort noise)
        payloads = () if name == "silence" else sound_payloads(name, spec)
        self.player = PayloadLoop(name, payloads, spec.timestamp_step)
        self.update_ticking()

    def stop_player(self) -> None:
        self.pending_player = None
        self.player = None
        self.update_ticking()

    def plays_own_audio(self) -> bool:
        """A player or a play_to playback replaces what this endpoint's device hears."""
        return self.override is not None or self.player is not None

    def update_ticking(self) -> None:
        """The server's ticker drives this endpoint while it plays something of its own."""
        if self.plays_own_audio():
            self.server.players.add(self)
        else:
            self.server.players.discard(self)

    def frame_encoder(self) -> FrameEncoder | None:
        """This endpoint's encoder of 48 kHz frames (mixes, playbacks), once negotiated."""
        spec = self.spec
        if spec is None:
            return None
        encoder = self._encoder
        if encoder is None or encoder.spec is not spec:
            encoder = self._encoder = FrameEncoder(spec)
        return encoder

    def decode(self, payload: bytes, spec: CodecSpec) -> list[Pcm]:
        """The device's audio payload as 48 kHz frames (for a mixer or a recording)."""
        decoder = self._decoder
        if decoder is None or decoder.spec is not spec:
            decoder = self._decoder = FrameDecoder(spec)
        return decoder.decode(payload)

    async def send_audio(self, payload: bytes, source: object, source_ts: int) -> None:
        """Send one audio payload, its timestamp mapped from ``source``'s clock."""
        port, clock = self.port, self.clock
        if port is None or port.audio is None or clock is None:
            return
        ts, marker = clock.map(source, source_ts)
        await port.send(payload, port.audio.payload_type, ts, marker)

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
            if peer is not None and not peer.plays_own_audio():
                await peer.relay_dtmf(self, packet)
            return
        member = self.member
        if member is not None:
            if member.contributes:
                member.fifo.extend(self.decode(packet.payload, spec))
            return
        if self.muted:
            return
        tapped = self.server.tapped
        if tapped and (self.id in tapped or (peer is not None and peer.id in tapped)):
            if self.tap is None:
                self.tap = FrameFifo()
            self.tap.extend(self.decode(packet.payload, spec))
        if peer is None or peer.plays_own_audio():
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
        """Send the next 20 ms of this endpoint's own audio: its play_to playback, else its
        player."""
        override = self.override
        if override is not None:
            frame = override.next_frame()
            if frame is None:
                self.override = None
                self.update_ticking()
                override.end("completed")
                return
            encoder = self.frame_encoder()
            payload = encoder.encode(frame) if encoder is not None else None
            if encoder is not None and payload is not None:
                ts = override.frames * encoder.spec.timestamp_step
                await self.send_audio(payload, override, ts)
            return
        player = self.player
        if player is None or self.clock is None:
            return
        payload = player.next_payload()
        if payload is not None:
            await self.send_audio(payload, player, player.timestamp)

    async def close(self) -> None:
        if self.ready_task is not None:
            self.ready_task.cancel()
        self.override = None
        self.stop_player()
        if self.peer is not None and self.peer.peer is self:
            self.peer.peer = None
        self.peer = None
        await self.pc.close()


class _LegRecording:
    """A recording of a 1:1 leg: what the endpoint and its bridge partner send, mixed.

    Both endpoints' inbound audio is decoded into their taps only while it runs (see
    ``InProcessMediaServer.tapped``); each tick takes one frame from each.
    """

    def __init__(self, recorder: Recorder, endpoint_id: str) -> None:
        self.recorder = recorder
        self.endpoint_id = endpoint_id
        self._sum = np.zeros(MIX_FRAME, dtype=np.int32)
        self._pcm = np.zeros(MIX_FRAME, dtype=np.int16)

    def tick(self, ep: _Endpoint | None) -> None:
        if self.recorder.paused:
            return
        acc = self._sum
        acc.fill(0)
        if ep is not None:
            for side in (ep, ep.peer):
                tap = side.tap if side is not None else None
                frame = tap.take() if tap is not None else None
                if frame is not None:
                    acc += frame
        np.clip(acc, -32768, 32767, out=acc)
        np.copyto(self._pcm, acc, casting="unsafe")
        self.recorder.write(self._pcm)


_PlaybackOwner = Mixer | str  # a mixer, or the id of the endpoint it plays to
_RecordingSource = Mixer | _LegRecording


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
        self.players: set[_Endpoint] = set()  # endpoints that play something of their own
        self._mixers: dict[str, Mixer] = {}
        self._playbacks: dict[str, tuple[Playback, _PlaybackOwner]] = {}
        self._recordings: dict[str, tuple[Recorder, _RecordingSource]] = {}
        self._loading: set[str] = set()  # playback and recording ids being set up
        self.tapped: dict[str, int] = {}  # endpoint id -> running recordings of its 1:1 leg
        self._ticker: asyncio.Task[None] | None = None
        self._reconnects = 0
        self._failed_ticks: set[str] = set()  # mixers whose tick raised (logged once each)
        self.ticks = 0  # ticks run (diagnostics)
        self.late_ticks = 0  # ticks that started more than 10 ms after their due time

    @property
    def endpoint_count(self) -> int:
        """Media objects alive: endpoints, mixers, playbacks and recordings.

        All of them count, so that a leak of any of them shows (``/healthz`` reports it and the
        test suite checks it is 0 at the end).
        """
        return (
            len(self._endpoints) + len(self._mixers) + len(self._playbacks) + len(self._recordings)
        )

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
        playing = cast(PlayerName, old.player.name) if old.player else old.pending_player
        old.stop_player()
        if playing is not None:
            new.start_player(playing)
        new.override, old.override = old.override, None
        if old.member is not None and old.mixer is not None:
            new.member, new.mixer = old.member, old.mixer
            new.member.leg = new
            new.member.fifo.clear()
            old.member = old.mixer = None
            new.mixer.changed()
        old.update_ticking()
        new.update_ticking()
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

    async def endpoint_info(self, endpoint_id: str) -> EndpointInfo:
        sends, receives = self.video_state(endpoint_id)
        candidates = tuple(Candidate(*c) for c in self.local_candidates(endpoint_id))
        return EndpointInfo(self.codec(endpoint_id), sends, receives, candidates)

    # bridging and control -------------------------------------------------------------------
    async def bridge(self, a_id: str, b_id: str) -> None:
        a, b = self._get(a_id), self._get(b_id)
        for ep in (a, b):
            self._leave_mixer(ep)  # an endpoint is bridged or in a mixer, never both
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
        ep = self._get(endpoint_id)
        ep.muted = muted
        if ep.mixer is not None:
            ep.mixer.changed()

    async def play(self, endpoint_id: str, player: PlayerName) -> None:
        self._get(endpoint_id).start_player(player)
        self._ensure_ticker()

    async def stop_playing(self, endpoint_id: str) -> None:
        self._get(endpoint_id).stop_player()

    def _ensure_ticker(self) -> None:
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._run_ticker())

    async def _run_ticker(self) -> None:
        """One 20 ms clock for players, playbacks, mixers and recordings, on an absolute
        schedule (no drift)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            self.ticks += 1
            if loop.time() - deadline > _LATE_TICK:
                self.late_ticks += 1
            for ep in list(self.players):
                if ep.member is None:  # a mixer sends to its members
                    await ep.tick()
            for mixer in list(self._mixers.values()):
                await self._tick_mixer(mixer)
            for _, source in list(self._recordings.values()):
                if isinstance(source, _LegRecording):
                    source.tick(self._endpoints.get(source.endpoint_id))
            deadline += TICK
            delay = deadline - loop.time()
            if delay < -0.2:  # the loop stalled: skip ahead instead of bursting
                deadline = loop.time()
                delay = 0
            await asyncio.sleep(max(0.0, delay))

    async def _tick_mixer(self, mixer: Mixer) -> None:
        try:
            await mixer.tick()
        except Exception:  # a bug in one mixer must not stop every other's audio
            if mixer.id not in self._failed_ticks:
                self._failed_ticks.add(mixer.id)
                log.exception("mixer %s: tick failed (further failures not logged)", mixer.id)

    async def close(self, endpoint_id: str) -> None:
        ep = self._endpoints.pop(endpoint_id, None)
        if ep is None:
            return
        self._leave_mixer(ep)
        if ep.override is not None:
            self._stop(ep.override, "stopped", "the endpoint closed")
        for rid, (_, source) in list(self._recordings.items()):
            if isinstance(source, _LegRecording) and source.endpoint_id == endpoint_id:
                await self.record_stop(rid)
        await ep.close()

    async def shutdown(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            try:
                await self._ticker
            except asyncio.CancelledError:
                pass
            self._ticker = None
        for mixer_id in list(self._mixers):
            await self.destroy_mixer(mixer_id)
        for pb, _ in list(self._playbacks.values()):
            self._stop(pb, "stopped", "the media server shut down")
        for rid in list(self._recordings):
            await self.record_stop(rid)
        await asyncio.gather(*(self.close(i) for i in list(self._endpoints)))

    # mixers ---------------------------------------------------------------------------------
    def _mixer(self, mixer_id: str) -> Mixer:
        mixer = self._mixers.get(mixer_id)
        if mixer is None:
            raise MediaError(_NOT_FOUND, f"no mixer {mixer_id} (create it with create_mixer)")
        return mixer

    def mixer(self, mixer_id: str) -> Mixer:
        """The mixer object itself, for diagnostics (encode counters, floor)."""
        return self._mixer(mixer_id)

    async def create_mixer(self, mixer_id: str) -> None:
        if mixer_id in self._mixers:
            raise MediaError(ErrorCode.INVALID_STATE, f"mixer {mixer_id} exists already")
        self._mixers[mixer_id] = Mixer(mixer_id, self.emit)
        self._ensure_ticker()

    async def destroy_mixer(self, mixer_id: str) -> None:
        """Remove a mixer (see the interface). Unknown ids are ignored."""
        mixer = self._mixers.pop(mixer_id, None)
        if mixer is None:
            return
        self._failed_ticks.discard(mixer_id)
        for member in mixer.members:
            ep = self._endpoints.get(member.id)
            if ep is not None:
                self._leave_mixer(ep)
        for pb in list(mixer.playbacks):
            self._stop(pb, "stopped", "the mixer was removed")
        for rid, (_, source) in list(self._recordings.items()):
            if source is mixer:
                await self.record_stop(rid)

    async def mixer_add(self, mixer_id: str, endpoint_id: str) -> None:
        mixer, ep = self._mixer(mixer_id), self._get(endpoint_id)
        self._leave_mixer(ep)
        await self.unbridge(endpoint_id)
        ep.stop_player()
        ep.member, ep.mixer = mixer.add(ep), mixer
        ep.tap = None

    async def mixer_remove(self, endpoint_id: str) -> None:
        ep = self._endpoints.get(endpoint_id)
        if ep is not None:
            self._leave_mixer(ep)

    def _leave_mixer(self, ep: _Endpoint) -> None:
        if ep.mixer is not None:
            ep.mixer.remove(ep.id)
        ep.member = ep.mixer = None
        ep.update_ticking()  # its own playback (if any) is the server ticker's again

    async def mixer_update(
        self,
        endpoint_id: str,
        *,
        deaf: bool | None = None,
        held: bool | None = None,
        role: SupervisorRole | None = None,
        whisper_to: tuple[str, ...] | None = None,
    ) -> None:
        ep = self._get(endpoint_id)
        member, mixer = ep.member, ep.mixer
        if member is None or mixer is None:
            raise MediaError(
                ErrorCode.INVALID_STATE,
                f"endpoint {endpoint_id} is in no mixer: add it with mixer_add first",
            )
        if role is not None and role not in _ROLES:
            raise MediaError(
                ErrorCode.INVALID_MESSAGE,
                f"unknown supervisor role {role!r}: use one of {', '.join(_ROLES)}",
            )
        if deaf is not None:
            member.deaf = deaf
        if held is not None:
            member.held = held
        if role is not None:
            member.role = role
        if whisper_to is not None:
            member.whisper_to = frozenset(whisper_to)
        mixer.changed()

    def mixer_members(self, mixer_id: str) -> tuple[str, ...]:
        return tuple(m.id for m in self._mixer(mixer_id).members)

    # playback -------------------------------------------------------------------------------
    def _reserve(self, kind: str, ident: str, taken: dict[str, Any]) -> None:
        if ident in taken or ident in self._loading:
            raise MediaError(ErrorCode.INVALID_STATE, f"{kind} {ident} exists already")
        self._loading.add(ident)

    async def _load(self, playback_id: str, audio: AudioSpec) -> Pcm:
        self._reserve("playback", playback_id, self._playbacks)
        try:
            return await load_audio(audio)
        finally:
            self._loading.discard(playback_id)

    def _start(self, pb: Playback, owner: _PlaybackOwner) -> None:
        self._playbacks[pb.id] = (pb, owner)
        self._ensure_ticker()
        self.emit(PlaybackStateChanged(pb.id, "started", "playing"))

    def _playback_ended(self, pb: Playback, status: PlaybackStatus, detail: str) -> None:
        self._playbacks.pop(pb.id, None)
        self.emit(PlaybackStateChanged(pb.id, "ended", status, detail))

    def _stop(self, pb: Playback, status: PlaybackStatus, detail: str = "") -> None:
        """Take a playback off its mixer or endpoint and report its end."""
        entry = self._playbacks.get(pb.id)
        owner = entry[1] if entry is not None else None
        if isinstance(owner, Mixer):
            if pb in owner.playbacks:
                owner.playbacks.remove(pb)
        elif owner is not None:
            ep = self._endpoints.get(owner)
            if ep is not None and ep.override is pb:
                ep.override = None
                ep.update_ticking()
        pb.end(status, detail)

    async def mixer_play(
        self, mixer_id: str, playback_id: str, audio: AudioSpec, targets: tuple[str, ...] = ()
    ) -> None:
        mixer = self._mixer(mixer_id)
        for target in targets:
            if mixer.member(target) is None:
                raise MediaError(
                    ErrorCode.INVALID_STATE, f"endpoint {target} is not in mixer {mixer_id}"
                )
        pcm = await self._load(playback_id, audio)
        if self._mixers.get(mixer_id) is not mixer:
            raise MediaError(
                ErrorCode.INVALID_STATE, f"mixer {mixer_id} was removed while the audio loaded"
            )
        pb = Playback(playback_id, pcm, audio.loops, frozenset(targets), self._playback_ended)
        mixer.playbacks.append(pb)
        self._start(pb, mixer)

    async def play_to(self, endpoint_id: str, playback_id: str, audio: AudioSpec) -> None:
        self._get(endpoint_id)
        pcm = await self._load(playback_id, audio)
        ep = self._endpoints.get(endpoint_id)
        if ep is None:
            raise MediaError(
                _NOT_FOUND, f"media endpoint {endpoint_id} closed while the audio loaded"
            )
        if ep.override is not None:
            self._stop(ep.override, "stopped", f"replaced by playback {playback_id}")
        pb = Playback(playback_id, pcm, audio.loops, on_end=self._playback_ended)
        ep.override = pb
        ep.update_ticking()
        self._start(pb, endpoint_id)

    async def stop_playback(self, playback_id: str) -> None:
        entry = self._playbacks.get(playback_id)
        if entry is not None:
            self._stop(entry[0], "stopped")

    async def stop_all(self, mixer_id: str, targets: tuple[str, ...] = ()) -> None:
        mixer = self._mixer(mixer_id)
        wanted = set(targets)
        for pb in list(mixer.playbacks):
            if not wanted or pb.targets & wanted:
                self._stop(pb, "stopped")
        for member in mixer.members:
            ep = self._endpoints.get(member.id)
            if ep is not None and ep.override is not None and (not wanted or ep.id in wanted):
                self._stop(ep.override, "stopped")

    # recording ------------------------------------------------------------------------------
    async def record_start(
        self, recording_id: str, source_id: str, path: str, fmt: RecordingFormat = "wav"
    ) -> None:
        self._recording_source(source_id)  # fail before creating a file
        self._reserve("recording", recording_id, self._recordings)
        try:
            recorder = await Recorder.open(recording_id, path, fmt)
        finally:
            self._loading.discard(recording_id)
        try:
            found = self._recording_source(source_id)
        except MediaError:
            await recorder.finish()  # the source went away while the file was created
            raise
        source: _RecordingSource
        if isinstance(found, Mixer):
            source = found
            found.recorders.append(recorder)
        else:
            self._tap(source_id, +1)
            source = _LegRecording(recorder, source_id)
        self._recordings[recording_id] = (recorder, source)
        self._ensure_ticker()

    def _recording_source(self, source_id: str) -> Mixer | _Endpoint:
        mixer = self._mixers.get(source_id)
        if mixer is not None:
            return mixer
        ep = self._endpoints.get(source_id)
        if ep is None:
            raise MediaError(_NOT_FOUND, f"no mixer or media endpoint {source_id} to record")
        if ep.mixer is not None:
            raise MediaError(
                ErrorCode.INVALID_STATE,
                f"endpoint {source_id} is in mixer {ep.mixer.id}: record the mixer instead",
            )
        return ep

    def _tap(self, endpoint_id: str, delta: int) -> None:
        """Start (+1) or stop (-1) decoding a 1:1 leg's audio for a recording of it."""
        count = self.tapped.get(endpoint_id, 0) + delta
        if count > 0:
            self.tapped[endpoint_id] = count
        else:
            self.tapped.pop(endpoint_id, None)
        ep = self._endpoints.get(endpoint_id)
        for side in (ep, ep.peer if ep is not None else None):
            if side is not None and side.tap is not None:
                side.tap.clear()  # nothing stale when it starts (again)

    def _recording(self, recording_id: str) -> tuple[Recorder, _RecordingSource]:
        entry = self._recordings.get(recording_id)
        if entry is None:
            raise MediaError(_NOT_FOUND, f"no recording {recording_id} in progress")
        return entry

    async def record_pause(self, recording_id: str) -> None:
        recorder, source = self._recording(recording_id)
        if not recorder.paused and isinstance(source, _LegRecording):
            self._tap(source.endpoint_id, -1)
        recorder.paused = True

    async def record_resume(self, recording_id: str) -> None:
        recorder, source = self._recording(recording_id)
        if recorder.paused and isinstance(source, _LegRecording):
            self._tap(source.endpoint_id, +1)
        recorder.paused = False

    async def record_stop(self, recording_id: str) -> None:
        recorder, source = self._recording(recording_id)
        del self._recordings[recording_id]
        if isinstance(source, Mixer):
            source.recorders.remove(recorder)
        elif not recorder.paused:
            self._tap(source.endpoint_id, -1)
        self.emit(await recorder.finish())
