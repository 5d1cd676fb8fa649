"""One endpoint's media path: a leg's aiortc peer connection and what its RTP does.

Per inbound packet the hot path is: SRTP unprotect (in the ICE socket's datagram callback
once aiortc has routed the SSRC: ``callbridge.rtp.webrtc._fast_inbound``) ->
:meth:`Endpoint.on_rtp` -> either a header rewrite and SRTP protect (same codec on both
legs: no decode, no encode) or decode -> resample -> encode (:class:`Transcoder`, different
codecs). Nothing on that path logs or allocates more than the packet it sends. A mixer
member's packets are decoded to 48 kHz frames into its FIFO instead
(:mod:`callbridge.media.mixer`); a 1:1 leg's audio is decoded otherwise only while a
recording of it runs (a *tap*, :class:`LegRecording`).

Everything an endpoint sends goes through :meth:`Endpoint.send_audio`, :meth:`Endpoint.forward`
or :meth:`Endpoint.relay_dtmf`; while the server sends an RFC 4733 event to the device
(:attr:`Endpoint.sending_event`) those drop their packets, so the event's packets replace the
audio for its duration, as a browser's DTMF sender does.

Offer/answer and ICE of an endpoint are :mod:`callbridge.media.negotiation`; the registry of
endpoints, the ticker and the mixers are :mod:`callbridge.media.engine`.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, Protocol, cast

import numpy as np
from aiortc import RTCPeerConnection

from callbridge.media.counters import ReceiveStats
from callbridge.media.interface import (
    DtmfReceived,
    EndpointState,
    EndpointStateChanged,
    MediaEvent,
    PlayerName,
)
from callbridge.media.mixer import FrameFifo, Member, Mixer
from callbridge.media.playback import Playback
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
from callbridge.rtp.fastpath import RtpView
from callbridge.rtp.rfc4733 import DtmfDetector, decode_event, encode_event
from callbridge.rtp.webrtc import (
    IdleTrack,
    OutboundClock,
    RtpPort,
    VideoPort,
    rtc_configuration,
)

__all__ = ["Endpoint", "EndpointHost", "LegRecording", "Transcoder", "VideoLink"]


class VideoLink(Protocol):
    """Where an endpoint's video goes and whom a key-frame request for it reaches: a device's
    :class:`~callbridge.rtp.webrtc.VideoPort`, or a relay endpoint's
    :class:`~callbridge.media.relay_video.RelayVideo` to another media worker."""

    @property
    def sending(self) -> bool: ...

    async def relay(self, source: object, packet: Any) -> None: ...

    async def request_keyframe(self) -> None: ...


class EndpointHost(Protocol):
    """What an endpoint needs of the server that holds it."""

    ice_servers: list[dict[str, Any]]
    players: set[Endpoint]  # endpoints that play something of their own (the ticker's)
    tapped: dict[str, int]  # endpoint id -> running recordings of its 1:1 leg

    def current(self, endpoint_id: str) -> Endpoint | None:
        """The live endpoint of that id (a reconnect replaces the object)."""

    def emit(self, event: MediaEvent) -> None:
        """Deliver a media event to the subscribers."""


_G711 = ("PCMU", "PCMA")


@functools.cache
def g711_table(src: CodecSpec, dst: CodecSpec) -> bytes:
    """PCMA <-> PCMU as a byte translation table: both are sample-wise codecs at 8 kHz, so
    decoding each of the 256 codes and encoding the result is the whole transcoding (~1 us a
    packet against ~100 us through PyAV's decoder, frames and encoder)."""
    pcm = AudioDecoder(src).decode(bytes(range(256)))
    table = AudioEncoder(dst).encode(pcm)
    assert len(table) == 256
    return table


class Transcoder:
    """Decode one codec, resample, encode another: one direction of a mixed-codec bridge.

    Its output timestamps follow the source's, as an RTP translator's do (RFC 3550 section
    7.1): the source timestamp scaled by the clock-rate ratio, from a position fixed at the
    first packet. Counting output frames alone left every gap in the input (a lost packet, a
    stalled loop, a talk-spurt pause) as a permanent lag behind the wall clock (bench/sip.py's
    22 % late); now a gap in the input is a gap of the same length in the output, the
    resampler's leftover samples (from before the gap) are dropped, and the first packet after
    it carries the marker bit (RFC 3551 section 4.1). Between two G.711 codecs it translates
    bytes (:func:`g711_table`) and cuts them into 20 ms packets.
    """

    def __init__(self, src: CodecSpec, dst: CodecSpec) -> None:
        self.src = src
        self.dst = dst
        self.table = g711_table(src, dst) if src.name in _G711 and dst.name in _G711 else None
        self.decoder = AudioDecoder(src)
        self.resampler = Resampler(src.sample_rate, dst.sample_rate)
        self.encoder = AudioEncoder(dst)
        self.timestamp = 0  # output timestamp of the next frame (before the stream's offset)
        self.step = dst.timestamp_step
        self._expected: int | None = None  # source timestamp of the next contiguous packet
        self._position = 0  # ... as an unwrapped count of source clock units since the first
        self._marker = 0  # the next frame out is the first after a gap
        self._rest = b""  # G.711: translated bytes short of a 20 ms packet

    def process(self, payload: bytes, source_ts: int) -> list[tuple[bytes, int, int]]:
        """The packet at ``source_ts`` as (payload, output timestamp, marker) per 20 ms frame
        (none while the resampler fills, nor for a late or duplicate packet)."""
        src = self.src
        expected = self._expected
        if expected is not None:
            # Signed distance, modulo 2^32 (RFC 3550 timestamps wrap).
            ahead = ((source_ts - expected + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            if ahead != 0:
                if ahead < 0 and -ahead <= src.clock_rate:
                    return []  # reordered or duplicated: its time has been sent already
                if ahead < 0:  # the source's clock jumped back: carry on one frame later
                    ahead = src.timestamp_step
                self._position += ahead
                self.resampler = Resampler(src.sample_rate, self.dst.sample_rate)
                self._rest = b""
                self.timestamp = self._position * self.dst.clock_rate // src.clock_rate
                self._marker = 1
        if self.table is not None:
            duration = len(payload)  # one byte a sample, one sample a clock unit
            data = self._rest + payload.translate(self.table)
            n = self.step
            whole = len(data) // n * n
            self._rest = data[whole:]
            payloads = [data[i : i + n] for i in range(0, whole, n)]
        else:
            pcm = self.decoder.decode(payload)
            duration = pcm.size * src.clock_rate // src.sample_rate
            payloads = [self.encoder.encode(f) for f in self.resampler.process(pcm)]
        self._position += duration
        self._expected = (source_ts + duration) & 0xFFFFFFFF
        out = []
        for encoded in payloads:
            out.append((encoded, self.timestamp, self._marker))
            self._marker = 0
            self.timestamp += self.step
        return out


class Endpoint:
    """One leg's media at the server: its peer connection, RTP ports, and what it hears."""

    def __init__(self, server: EndpointHost, endpoint_id: str) -> None:
        self.id = endpoint_id
        self.server = server
        self.pc = self._make_pc()
        self.port: RtpPort | None = None
        self.transceiver: Any = None
        self.video: VideoPort | None = None
        self.clock: OutboundClock | None = None
        self.peer: Endpoint | None = None
        self.muted = False
        self.own_audio = False  # plays_own_audio(), kept as player and override change
        self._watchers: list[Callable[[], None]] = []  # told when spec or own_audio change
        self._player: PayloadLoop | None = None
        self.pending_player: PlayerName | None = None
        self._override: Playback | None = None  # play_to: replaces what the device hears
        self.mixer: Mixer | None = None
        self.member: Member | None = None
        self.tap: FrameFifo | None = None  # decoded inbound audio for a 1:1 recording
        self._encoder: FrameEncoder | None = None
        self._decoder: FrameDecoder | None = None
        self.detector = DtmfDetector()
        self.stats = ReceiveStats()  # packets in, lost, late, relayed (for /metrics)
        self.transcoders: dict[int, Transcoder] = {}
        self.dtmf_key = object()
        self.sending_event = False  # an RFC 4733 event goes to the device: its audio waits
        self.state = "connecting"
        self.ready_task: asyncio.Task[None] | None = None
        self.pc.on("connectionstatechange", self._on_connection_state)

    def _make_pc(self) -> RTCPeerConnection:
        """The leg's aiortc peer connection (ICE, DTLS-SRTP). A plain RTP endpoint
        (:class:`~callbridge.media.rtp_plain.PlainEndpoint`) overrides this: a SIP leg
        negotiates neither, and each peer connection costs a DTLS certificate."""
        return RTCPeerConnection(rtc_configuration(self.server.ice_servers))

    def attach(self, transceiver: Any) -> None:
        self.transceiver = transceiver
        self.port = RtpPort(transceiver, on_rtp=self.on_rtp, fast_inbound=True)
        self.stats.port = self.port  # its SRTP rejections and handler errors (/metrics)
        if self._watchers:
            self.port.on_audio_changed = self._media_changed
        transceiver.sender.replaceTrack(IdleTrack())
        transceiver.direction = "sendrecv"

    def attach_video(self, transceiver: Any) -> None:
        self.video = VideoPort(
            transceiver, on_rtp=self.on_video, on_keyframe_request=self.keyframe_wanted
        )
        transceiver.sender.replaceTrack(IdleTrack("video"))

    def video_link(self) -> VideoLink | None:
        """This endpoint's way to send video (its device's video port; a relay endpoint's
        link to the other worker, :class:`~callbridge.media.rtp_plain.PlainEndpoint`)."""
        return self.video

    async def on_video(self, packet: Any) -> None:  # an aiortc RtpPacket (video)
        """Relay the device's video to the bridged device (not while either holds the call)."""
        peer = self.peer
        if peer is None or peer.player is not None or self.player is not None:
            return
        port = peer.video_link()
        if port is not None and port.sending:
            await port.relay(self, packet)

    async def keyframe_wanted(self) -> None:
        """This endpoint's device needs a key frame: ask the device whose video it gets."""
        peer = self.peer
        link = peer.video_link() if peer is not None else None
        if link is not None:
            await link.request_keyframe()

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
        return self.own_audio

    @property
    def player(self) -> PayloadLoop | None:
        return self._player

    @player.setter
    def player(self, player: PayloadLoop | None) -> None:
        self._player = player
        self._media_changed()

    @property
    def override(self) -> Playback | None:
        """A play_to playback that replaces what the device hears."""
        return self._override

    @override.setter
    def override(self, override: Playback | None) -> None:
        self._override = override
        self._media_changed()

    def watch_media(self, changed: Callable[[], None]) -> None:
        """Call ``changed`` whenever :attr:`spec` or :meth:`plays_own_audio` may have changed
        (a mixer member caches both for its per-tick loop); see :meth:`unwatch_media`."""
        self._watchers.append(changed)
        if self.port is not None:
            self.port.on_audio_changed = self._media_changed

    def unwatch_media(self, changed: Callable[[], None]) -> None:
        if changed in self._watchers:
            self._watchers.remove(changed)

    def _media_changed(self) -> None:
        self.own_audio = self._override is not None or self._player is not None
        for changed in self._watchers:
            changed()

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
        self.send_audio_now(payload, source, source_ts)

    def send_audio_now(
        self, payload: bytes, source: object, source_ts: int, now: float = 0.0
    ) -> None:
        """:meth:`send_audio` without a coroutine (the mixer's send loop, once per member
        per tick); ``now``: the tick's ``time.monotonic()`` (OutboundClock.map)."""
        port, clock = self.port, self.clock
        if port is None or clock is None or self.sending_event:
            return
        audio = port._audio  # RtpPort.audio without its property, once per packet
        if audio is None:
            return
        ts, marker = clock.map(source, source_ts, now)
        port.send_now(payload, audio.payload_type, ts, marker)

    async def on_rtp(self, packet: RtpView) -> None:
        self.stats.feed(packet.ssrc, packet.sequence_number)
        port = self.port
        audio = port._audio if port is not None else None  # RtpPort.audio, per packet
        assert audio is not None
        recv = audio.recv
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
                peer.relay_dtmf(self, packet)
            return
        member = self.member
        if member is not None:
            if member.contributes:  # decoded (or not: RFC 6464 silence) by the member's input
                member.fifo.feed(packet.payload, packet.sequence_number, spec, packet.audio_level)
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
        peer.forward(self, packet, spec)

    def forward(self, src: Endpoint, packet: RtpView, spec: CodecSpec) -> None:
        """Send ``src``'s audio packet to this endpoint's device (relayed or transcoded)."""
        port, clock = self.port, self.clock
        if port is None or clock is None or self.sending_event:
            return
        mine = port._audio  # RtpPort.audio without its property, once per packet
        if mine is None:
            return
        src.stats.relayed += 1
        if spec is mine.codec:
            ts, marker = clock.map(src, packet.timestamp)
            port.send_now(packet.payload, mine.payload_type, ts, marker | packet.marker)
            return
        tc = self.transcoders.get(id(src))
        if tc is None or tc.src is not spec:
            tc = self.transcoders[id(src)] = Transcoder(spec, mine.codec)
        for payload, out_ts, gap in tc.process(packet.payload, packet.timestamp):
            ts, marker = clock.map(tc, out_ts)
            port.send_now(payload, mine.payload_type, ts, marker | gap)

    def relay_dtmf(self, src: Endpoint, packet: RtpView) -> None:
        """Relay an RFC 4733 event to this endpoint's device, in its clock and payload type."""
        port, clock = self.port, self.clock
        src_audio = src.port.audio if src.port else None
        if port is None or port.audio is None or clock is None or src_audio is None:
            return
        if self.sending_event:
            return  # one event at a time on a stream: the server's own DTMF goes first
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
        port.send_now(payload, mine.te_payload_type, ts, marker | packet.marker)

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

    def prepare_clock(self) -> None:
        """Start this endpoint's outbound clock (and a player asked for early) once its
        negotiation completes."""
        port = self.port
        assert port is not None

        async def when_ready() -> None:
            await port.ready.wait()
            spec = self.spec
            assert spec is not None
            self.clock = OutboundClock(spec.clock_rate, spec.timestamp_step)
            if self.pending_player is not None:
                name, self.pending_player = self.pending_player, None
                self.start_player(name)

        # Cancelled by close(): a leg that never connects must not leave a task behind.
        self.ready_task = asyncio.get_running_loop().create_task(when_ready())

    async def close(self) -> None:
        if self.ready_task is not None:
            self.ready_task.cancel()
        self.override = None
        self.stop_player()
        if self.peer is not None and self.peer.peer is self:
            self.peer.peer = None
        self.peer = None
        await self.pc.close()


class LegRecording:
    """A recording of a 1:1 leg: what the endpoint and its bridge partner send, mixed.

    Both endpoints' inbound audio is decoded into their taps only while it runs (see
    ``InProcessMediaServer.tapped``); each tick takes one frame from each.
    """

    def __init__(self, recorder: Recorder, endpoint_id: str) -> None:
        self.recorder = recorder
        self.endpoint_id = endpoint_id
        self._sum = np.zeros(MIX_FRAME, dtype=np.int32)
        self._pcm = np.zeros(MIX_FRAME, dtype=np.int16)

    def tick(self, ep: Endpoint | None) -> None:
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
