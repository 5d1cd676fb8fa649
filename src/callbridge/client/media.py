"""The media of one call: a WebRTC peer connection with our own audio path and RFC 4733 DTMF.

:class:`CallMedia` is the SDK's ``RTCPeerConnection`` (seed 001's ``call.peerConnection`` is
``call.media.pc``). aiortc does ICE, DTLS, SRTP and SDP; the RTP path is callbridge's own
(:class:`callbridge.rtp.webrtc.RtpPort`):

- sending: one loop per call reads the :class:`~callbridge.client.audio.AudioSource` every
  20 ms on an absolute schedule, resamples 48 kHz to the negotiated codec, encodes and sends
  (with each frame's RFC 6464 audio level, :mod:`callbridge.client.audiolevel`);
  DTMF digits replace the audio packets while they play (RFC 4733, see :meth:`send_dtmf`);
- receiving: telephone-event packets go to a detector (:attr:`CallMedia.on_dtmf`), audio is
  decoded, resampled to 48 kHz and written to the :class:`~callbridge.client.audio.AudioSink`.

Video (optional, see :mod:`callbridge.client.video`) uses aiortc's own video path on a
second transceiver: a :class:`~callbridge.client.video.VideoSource` is wrapped in a track that
aiortc encodes (VP8; PLI/FIR from the far end make it send a key frame), and every decoded
picture received goes to the :class:`~callbridge.client.video.VideoSink`. Video can be
offered from the start (:meth:`CallMedia.enable_video` before :meth:`CallMedia.create_offer`)
or added, changed and removed later by renegotiation (:meth:`CallMedia.offer_video`,
:meth:`CallMedia.answer_reoffer`).

It can be used without a server: two ``CallMedia`` exchanging offer and answer in one process
form a complete call (that is how ``tests/test_client_media.py`` checks it).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCPeerConnection,
    RTCRtpCodecCapability,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.exceptions import OperationError
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import candidate_from_sdp

from callbridge.client.audio import (
    FRAME_SAMPLES,
    SAMPLE_RATE,
    AudioSink,
    AudioSource,
    SilenceSource,
)
from callbridge.client.audiolevel import audio_level
from callbridge.client.dtmf import DtmfSender, check_digits
from callbridge.client.mediastats import MediaStats, ReceiveCounters
from callbridge.client.video import TestPatternSource, VideoSink, VideoSource
from callbridge.client.videotrack import MAX_LAG, SourceTrack, direction
from callbridge.errors import ErrorCode, MediaError, ProtocolError
from callbridge.rtp.codecs import (
    CODECS,
    FRAME_MS,
    AudioDecoder,
    AudioEncoder,
    Pcm,
    Resampler,
    codec_for_mime,
)
from callbridge.rtp.rfc4733 import DtmfDetector
from callbridge.rtp.webrtc import (
    IdleTrack,
    NegotiatedAudio,
    RtpPacket,
    RtpPort,
    audio_codec_preferences,
    register_codecs,
    rtc_configuration,
    video_codec_preferences,
    video_directions,
)

__all__ = ["CallMedia", "MediaStats"]

log = logging.getLogger(__name__)

TICK = FRAME_MS / 1000
_TELEPHONE_EVENT = "audio/telephone-event"
_MAX_QUEUED_FRAMES = 3  # resampled frames waiting to be sent; more would only add latency
_CONNECT_TIMEOUT = 10.0  # send_dtmf() waits this long for media to connect


def _codec_preferences(
    codecs: Sequence[str] | None, telephone_event: bool
) -> list[RTCRtpCodecCapability]:
    """aiortc codec preferences: ``codecs`` (names, in order of preference) or all we carry,
    plus telephone-event at the clock rates of the kept codecs when ``telephone_event``."""
    caps = audio_codec_preferences()
    audio = [c for c in caps if codec_for_mime(c.mimeType) is not None]
    if codecs is not None:
        names = [n.lower() for n in codecs]
        by_name = {c.mimeType.lower().partition("/")[2]: c for c in audio}
        unknown = [n for n in codecs if n.lower() not in by_name]
        if unknown or not names:
            raise ValueError(
                f"codecs must name some of {', '.join(c.name for c in CODECS.values())}: {codecs!r}"
            )
        audio = [by_name[n] for n in dict.fromkeys(names)]
    if not telephone_event:
        return audio
    rates = {c.clockRate for c in audio}
    te = [c for c in caps if c.mimeType.lower() == _TELEPHONE_EVENT and c.clockRate in rates]
    return audio + te


async def _first_set(*events: asyncio.Event) -> None:
    """Wait until any of ``events`` is set."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


class CallMedia:
    """One call's WebRTC peer connection, audio source and sink, and DTMF.

    Offerer: :meth:`create_offer`, then :meth:`accept_answer`. Answerer:
    :meth:`answer_offer`. Candidates trickled by the far end go to
    :meth:`add_remote_candidate` / :meth:`end_of_candidates`; ours are all in our SDP (aiortc
    gathers before it returns a description), so there is nothing to trickle.

    :param source: what we send (default: silence). Read every 20 ms once media flows.
    :param sink: where received audio goes (default: nowhere).
    :param ice_servers: STUN/TURN servers as ``{"urls": ..., "username": ..., "credential":
        ...}`` dicts; none by default (no traffic to any public STUN server).
    :param codecs: restrict and order the audio codecs, e.g. ``["PCMU"]`` or
        ``["opus", "PCMA"]``; default: Opus, PCMU, PCMA.
    :param telephone_event: negotiate RFC 4733 telephone-event (needed by :meth:`send_dtmf`
        and for receiving DTMF in band).

    ICE gathers on the addresses set by
    :func:`callbridge.rtp.webrtc.restrict_ice_addresses` (process-wide); the
    :class:`~callbridge.client.Phone` sets them from its URL.
    """

    def __init__(
        self,
        source: AudioSource | None = None,
        sink: AudioSink | None = None,
        ice_servers: Iterable[dict[str, Any]] = (),
        codecs: Sequence[str] | None = None,
        telephone_event: bool = True,
        *,
        video_source: VideoSource | None = None,
        video_sink: VideoSink | None = None,
    ) -> None:
        register_codecs()
        preferences = _codec_preferences(codecs, telephone_event)
        self._source: AudioSource = source if source is not None else SilenceSource()
        self.sink = sink
        self.muted = False
        """Local mute: send silence instead of the source (a disabled browser track)."""
        self.on_dtmf: Callable[[str], object] | None = None
        """Called with each digit received in band (RFC 4733), once per event."""
        self.on_packet: Callable[[RtpPacket], object] | None = None
        """Diagnostics: called with every received RTP packet before it is handled."""
        self.pc = RTCPeerConnection(rtc_configuration(ice_servers))
        self._track = IdleTrack()
        self.transceiver = self.pc.addTransceiver(self._track, direction="sendrecv")
        self.transceiver.setCodecPreferences(preferences)
        self.port = RtpPort(self.transceiver, on_rtp=self._on_rtp, pump=self._pump)
        self._closed = asyncio.Event()
        self._state_changed = asyncio.Event()
        self.pc.on("connectionstatechange", self._state_changed.set)
        self._remote_sdp: str | None = None
        self._candidates_done = False
        self._early_candidates: list[tuple[str, str | None, int | None]] = []
        self._dtmf = DtmfSender()
        self._detector = DtmfDetector()
        self._decoders: dict[int, tuple[AudioDecoder, Resampler]] = {}
        self._counters = ReceiveCounters()
        self._failed_source = False
        self._failed_sink = False
        self.video_transceiver: RTCRtpTransceiver | None = None
        """The video transceiver, once video was offered or answered."""
        self.video_source: VideoSource | None = video_source
        self.video_sink: VideoSink | None = video_sink
        self._video_wanted = video_source is not None or video_sink is not None
        self._video_track: SourceTrack | None = None
        self._video_readers: set[asyncio.Task[None]] = set()
        self._failed_video_sink = False
        self.pc.on("track", self._on_track)

    # ------------------------------------------------------------------------------------------
    # state

    @property
    def audio(self) -> NegotiatedAudio | None:
        """What offer/answer settled (codec, payload types), once media is connected."""
        return self.port.audio

    @property
    def connected(self) -> bool:
        """True once ICE and DTLS are up and the codecs are known."""
        return self.port.ready.is_set()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def source(self) -> AudioSource:
        return self._source

    def swap_source(self, source: AudioSource) -> AudioSource:
        """Send from ``source`` from the next 20 ms on; returns the previous source.

        The previous source is not closed: it is the caller's again.
        """
        previous, self._source = self._source, source
        self._failed_source = False
        return previous

    async def wait_connected(self) -> NegotiatedAudio:
        """Wait until media is connected (bound it with ``asyncio.timeout``).

        :raises MediaError: the media closed, or ICE/DTLS failed, first.
        """
        while self.port.audio is None:
            if self.closed or self.pc.connectionState in ("failed", "closed"):
                raise MediaError(ErrorCode.INVALID_STATE, "the call's media is closed or failed")
            self._state_changed.clear()
            await _first_set(self.port.ready, self._closed, self._state_changed)
        return self.port.audio

    def reset_stats(self) -> None:
        """Start counting received packets afresh (e.g. after call set-up settled)."""
        self._counters = ReceiveCounters()

    def stats(self) -> MediaStats:
        """Packets sent, received, lost and late so far."""
        c = self._counters
        audio = self.port.audio
        return MediaStats(
            codec=audio.codec.name if audio else None,
            packets_sent=self.port.packets_sent,
            packets_received=c.received,
            packets_lost=c.lost,
            packets_late=c.late,
            packets_expected=c.expected,
            max_interarrival_ms=round(c.max_gap * 1000, 1),
        )

    # ------------------------------------------------------------------------------------------
    # video

    def enable_video(
        self, source: VideoSource | None = None, sink: VideoSink | None = None
    ) -> None:
        """Take part in video: send ``source`` (default: a grey :class:`TestPatternSource`)
        and show into ``sink``. Before :meth:`create_offer` it makes the offer a video one;
        before :meth:`answer_offer` it answers an offered video m-line."""
        if source is not None:
            self.video_source = source
        if sink is not None:
            self.video_sink = sink
        self._video_wanted = True

    @property
    def video_enabled(self) -> bool:
        """True when this media sends or receives video, or is set up to."""
        return self._video_wanted or any(self.video_state)

    @property
    def video_state(self) -> tuple[bool, bool]:
        """(we send video, we receive video) as the last completed negotiation settled it."""
        return video_directions(self.video_transceiver)

    def _source_track(self) -> SourceTrack:
        if self.video_source is None:
            self.video_source = TestPatternSource()
        if self._video_track is None or self._video_track.source is not self.video_source:
            self._video_track = SourceTrack(self.video_source)
        return self._video_track

    def _set_video(self, transceiver: RTCRtpTransceiver, send: bool, receive: bool) -> None:
        self.video_transceiver = transceiver
        transceiver.direction = direction(send, receive)
        # aiortc's sender keeps running whatever the direction: no track means nothing is sent.
        transceiver.sender.replaceTrack(self._source_track() if send else None)

    async def offer_video(self, send: bool, receive: bool) -> str:
        """A new offer (renegotiation) with video in the given directions; a video m-line is
        added if there is none (``send=False, receive=False`` turns video off: aiortc cannot
        remove an m-line, it becomes ``inactive``). Apply the answer with
        :meth:`accept_answer`."""
        transceiver = self.video_transceiver
        if transceiver is None:
            transceiver = self.pc.addTransceiver("video", direction=direction(send, receive))
            transceiver.setCodecPreferences(video_codec_preferences())
        if send or receive:
            self._video_wanted = True
        self._set_video(transceiver, send, receive)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def answer_reoffer(self, offer_sdp: str, send: bool, receive: bool) -> str:
        """Answer the far end's new offer (renegotiation) with video in the given directions
        (as far as the offer allows); returns our answer."""
        await self._set_remote(offer_sdp, "offer")
        for t in self.pc.getTransceivers():
            if t.kind == "video" and self.video_transceiver in (None, t):
                self._set_video(t, send, receive)
            elif t is not self.transceiver:
                t.direction = "inactive"
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video":
            task = asyncio.get_running_loop().create_task(self._read_video(track))
            self._video_readers.add(task)
            task.add_done_callback(self._video_readers.discard)

    async def _read_video(self, track: MediaStreamTrack) -> None:
        """Decoded pictures (aiortc's decoder thread) -> the video sink."""
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            sink = self.video_sink
            if sink is None or not isinstance(frame, av.VideoFrame):
                continue
            try:
                picture = np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
                sink.write(picture)
            except Exception:
                if not self._failed_video_sink:
                    log.exception("video sink %r failed (further failures not logged)", sink)
                    self._failed_video_sink = True

    # ------------------------------------------------------------------------------------------
    # offer / answer / ICE

    async def create_offer(self) -> str:
        """Our SDP offer, with all our ICE candidates in it (with video after
        :meth:`enable_video`)."""
        if self._video_wanted and self.video_transceiver is None:
            transceiver = self.pc.addTransceiver("video", direction="sendrecv")
            transceiver.setCodecPreferences(video_codec_preferences())
            self._set_video(transceiver, True, True)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def accept_answer(self, sdp: str) -> None:
        """Apply the far end's answer to our offer; media starts connecting."""
        await self._set_remote(sdp, "answer")

    async def answer_offer(self, offer_sdp: str) -> str:
        """Apply the far end's offer and return our answer (with all our candidates)."""
        await self._set_remote(offer_sdp, "offer")
        if self.transceiver.mid is None:
            raise MediaError(ErrorCode.INVALID_SDP, "the offer has no audio m-line")
        for other in self.pc.getTransceivers():
            if other.kind == "video" and self._video_wanted and self.video_transceiver is None:
                self._set_video(other, True, True)  # one video stream per call
            elif other is not self.transceiver and other is not self.video_transceiver:
                other.direction = "inactive"  # one audio stream per call
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)

    async def _set_remote(self, sdp: str, kind: str) -> None:
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
        except OperationError as exc:  # no codec in common with our preferences
            raise MediaError(
                ErrorCode.UNSUPPORTED_CODEC, f"the {kind} has no audio codec in common: {exc}"
            ) from exc
        except Exception as exc:  # aiortc raises ValueError, InvalidStateError, … for bad SDP
            raise MediaError(ErrorCode.INVALID_SDP, f"the {kind} could not be used: {exc}") from exc
        self._remote_sdp = sdp
        early, self._early_candidates = self._early_candidates, []
        for candidate, mid, index in early:
            await self.add_remote_candidate(candidate, mid, index)

    @property
    def _remote_ended_candidates(self) -> bool:
        # aioice refuses candidates after end-of-candidates; a server that puts its candidates
        # in the SDP and also trickles them (docs/protocol.md) would otherwise cause errors.
        return self._candidates_done or (
            self._remote_sdp is not None and "a=end-of-candidates" in self._remote_sdp
        )

    async def add_remote_candidate(
        self, candidate: str, sdp_mid: str | None = None, sdp_m_line_index: int | None = None
    ) -> None:
        """Add a trickled ICE candidate (``candidate:...`` as ``RTCIceCandidate.candidate``).

        Kept until the remote description is set; ignored once the far end said it has no
        more candidates. :class:`MediaError` (``invalid_candidate``) for an unparsable line.
        """
        if self.closed or self._remote_ended_candidates:
            return
        if self._remote_sdp is None:
            self._early_candidates.append((candidate, sdp_mid, sdp_m_line_index))
            return
        try:
            parsed = candidate_from_sdp(candidate.removeprefix("candidate:"))
        except (AssertionError, ValueError, IndexError) as exc:
            raise MediaError(
                ErrorCode.INVALID_CANDIDATE, f"cannot parse ICE candidate {candidate!r}"
            ) from exc
        parsed.sdpMid = sdp_mid
        parsed.sdpMLineIndex = (
            sdp_m_line_index if sdp_m_line_index is not None or sdp_mid is not None else 0
        )
        try:
            await self.pc.addIceCandidate(parsed)
        except Exception as exc:  # aioice: ValueError and friends
            raise MediaError(ErrorCode.INVALID_CANDIDATE, f"ICE candidate refused: {exc}") from exc

    async def end_of_candidates(self) -> None:
        """The far end has no more candidates (``ice.done``)."""
        if self.closed or self._remote_ended_candidates:
            return
        if self._remote_sdp is None:
            self._candidates_done = True  # the SDP to come is then complete
            return
        self._candidates_done = True
        await self.pc.addIceCandidate(None)

    # ------------------------------------------------------------------------------------------
    # DTMF (RFC 4733 sender)

    async def send_dtmf(self, digits: str, duration_ms: int = 100, gap_ms: int = 70) -> None:
        """Send ``digits`` in band as RFC 4733 telephone-events; return once all are sent.

        Digits are ``0-9 * # A-D``; ``,`` pauses 500 ms. Like the browser's
        ``RTCDTMFSender.insertDTMF``, ``duration_ms`` is clamped to 40..6000 (and to what the
        16-bit duration field holds at the codec's clock) and ``gap_ms`` to at least 30. Calls
        queue behind each other. Waits for media to connect first (up to 10 s).

        Digits received from the far end are reported to :attr:`on_dtmf`.

        Each event replaces the audio packets for its ticks: updates every 20 ms sharing the
        event's start timestamp (marker on the first) with a growing duration, then the end
        packet three times (RFC 4733 §2.5.1); the audio clock keeps running underneath.

        :raises ProtocolError: ``invalid_digits`` for other characters, or
            ``dtmf_not_negotiated`` when the call has no telephone-event.
        """
        check_digits(digits)
        async with asyncio.timeout(_CONNECT_TIMEOUT):
            audio = await self.wait_connected()
        if audio.te_payload_type is None:
            raise ProtocolError(
                ErrorCode.DTMF_NOT_NEGOTIATED,
                "this call did not negotiate telephone-event (RFC 4733): DTMF cannot be sent",
            )
        await self._dtmf.send(digits, duration_ms, gap_ms, audio.codec.timestamp_step)

    # ------------------------------------------------------------------------------------------
    # sending

    def _read_frame(self) -> Pcm:
        """The source's next 20 ms (read even while muted, so it keeps time)."""
        try:
            pcm = self._source.read()
        except Exception:
            if not self._failed_source:
                log.exception("audio source %r failed; sending silence", self._source)
                self._failed_source = True
            pcm = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        if pcm.shape != (FRAME_SAMPLES,) or pcm.dtype != np.int16:
            fixed = np.zeros(FRAME_SAMPLES, dtype=np.int16)
            flat = np.asarray(pcm).reshape(-1)[:FRAME_SAMPLES]
            fixed[: flat.size] = flat
            pcm = fixed
        if self.muted:
            return np.zeros(FRAME_SAMPLES, dtype=np.int16)
        return pcm

    async def _pump(self, port: RtpPort) -> None:
        """The sending loop (run by the RtpPort once the sender starts)."""
        await port.ready.wait()
        audio = port.audio
        assert audio is not None
        codec = audio.codec
        encoder = AudioEncoder(codec)
        resampler = Resampler(SAMPLE_RATE, codec.sample_rate)
        queued: deque[Pcm] = deque(maxlen=_MAX_QUEUED_FRAMES)
        silence = np.zeros(codec.samples_per_frame, dtype=np.int16)
        step = codec.timestamp_step
        timestamp = random.getrandbits(32)  # RFC 3550 §5.1: random initial timestamp
        marker = 1  # first packet of the stream (RFC 3551 §4.1)
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            queued.extend(resampler.process(self._read_frame()))  # first call: 0 frames
            frame = queued.popleft() if queued else silence
            event = self._dtmf.next_packet(timestamp, step)
            if event is None:
                # RFC 6464 level from the PCM (browsers send it): the mixer skips silent legs.
                level = audio_level(frame)
                await port.send(encoder.encode(frame), audio.payload_type, timestamp, marker, level)
                marker = 0
            else:
                assert audio.te_payload_type is not None
                await port.send(event[0], audio.te_payload_type, event[1], event[2])
            timestamp = (timestamp + step) & 0xFFFFFFFF
            deadline += TICK
            delay = deadline - loop.time()
            if delay < -MAX_LAG:  # the loop stalled: skip the lost ticks instead of bursting
                skipped = int(-delay / TICK)
                deadline += skipped * TICK
                timestamp = (timestamp + skipped * step) & 0xFFFFFFFF
                delay = deadline - loop.time()
            await asyncio.sleep(max(0.0, delay))

    # ------------------------------------------------------------------------------------------
    # receiving

    async def _on_rtp(self, packet: RtpPacket) -> None:
        audio = self.port.audio
        if audio is not None:
            self._counters.on_packet(
                packet.sequence_number,
                packet.timestamp,
                audio.codec.clock_rate,
                time.monotonic(),
                timed=packet.payload_type == audio.payload_type,
            )
        try:
            if self.on_packet is not None:
                self.on_packet(packet)
            self._handle(packet)
        except Exception:
            if not self._failed_sink:
                log.exception("handling received audio failed (further failures not logged)")
                self._failed_sink = True

    def _handle(self, packet: RtpPacket) -> None:
        audio = self.port.audio
        if audio is None:
            return
        pt = packet.payload_type
        if pt not in audio.recv:
            return  # not negotiated: ignore
        spec = audio.recv[pt]
        if spec is None:  # telephone-event
            event = self._detector.feed(packet.timestamp, packet.payload)
            if event is not None and self.on_dtmf is not None:
                self.on_dtmf(event.digit)
            return
        if self.sink is None:
            return
        codec = self._decoders.get(pt)
        if codec is None:
            codec = self._decoders[pt] = (
                AudioDecoder(spec),
                Resampler(spec.sample_rate, SAMPLE_RATE),
            )
        decoder, resampler = codec
        pcm = decoder.decode(packet.payload)
        if pcm.size:
            for frame in resampler.process(pcm):
                self.sink.write(frame)

    # ------------------------------------------------------------------------------------------

    async def close(self, *, release_io: bool = True) -> None:
        """Stop media and close the peer connection and (with ``release_io``) the sources and
        sinks; ``release_io=False`` leaves them open for a new CallMedia. Idempotent."""
        if self.closed:
            return
        self._closed.set()
        try:
            await self.pc.close()
        finally:
            self._track.stop()
            if self._video_track is not None:
                self._video_track.stop()
            for task in list(self._video_readers):
                task.cancel()
            if self._video_readers:
                await asyncio.gather(*self._video_readers, return_exceptions=True)
            self._dtmf.fail()
            video = [x.close for x in (self.video_source, self.video_sink) if x is not None]
            closers = (self._source.close, *((self.sink.close,) if self.sink else ()), *video)
            if not release_io:
                closers = ()
            for closer in closers:
                try:
                    closer()
                except Exception:
                    log.exception("closing %r failed", closer)
