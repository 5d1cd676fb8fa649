"""Plain RTP and SDES-SRTP endpoints (SIP phones' media) in the in-process media server.

The phone side is :class:`RtpPhone` below: a UDP socket on 127.0.0.1 that writes an SDP as a
desk phone would, sends a tone in PCMU, PCMA or G.722 every 20 ms (SRTP through pylibsrtp when
asked), and keeps what it receives. The WebRTC side is a real aiortc peer
(``tests/media_peers.py``). What each side hears is analysed for frequency and level.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import random
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pylibsrtp
import pytest
from aiortc.rtp import RtpPacket

from callbridge.errors import MediaError
from callbridge.media.engine import InProcessMediaServer
from callbridge.media.interface import DtmfReceived, MediaDirectionChanged, MediaEvent, RtpTimeout
from callbridge.media.sdp_plain import CARRIED, parse
from callbridge.rtp.codecs import AudioDecoder, AudioEncoder, CodecSpec
from callbridge.rtp.rfc4733 import decode_event, encode_event
from callbridge.testing import tone_level_db
from media_peers import close_all, connect, hear, level

pytestmark = pytest.mark.timeout(60)

PHONE_TONE = 700.0
WEB_TONE = 1000.0
_STATIC = {"PCMU": 0, "PCMA": 8, "G722": 9}


class _Proto(asyncio.DatagramProtocol):
    def __init__(self, phone: RtpPhone, index: int) -> None:
        self.phone = phone
        self.index = index

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.phone.received(data, self.index)


class RtpPhone:
    """A SIP phone's media (see the module docstring)."""

    def __init__(self, codec: str = "PCMU", tone: float | None = PHONE_TONE) -> None:
        self.spec: CodecSpec = CARRIED[codec.lower()]
        self.pt = _STATIC.get(codec, 107)
        self.te_pt = 101
        self.tone = tone
        self.key = secrets.token_bytes(30)
        self.srtp_out: pylibsrtp.Session | None = None
        self.srtp_in: pylibsrtp.Session | None = None
        self.transports: list[asyncio.DatagramTransport] = []
        self.sending_from = 0  # index into transports
        self.remote: tuple[str, int] | None = None
        self.packets: list[tuple[RtpPacket, int]] = []  # and the socket it came in on
        self.payloads: list[bytes] | None = None  # fixed payloads to send instead of a tone
        self._task: asyncio.Task[None] | None = None
        self._seq = random.randint(0, 30000)
        self._ts = random.getrandbits(31)
        self._ssrc = random.getrandbits(32)
        self._sent = 0
        self.got_packet = asyncio.Event()

    async def open(self, sockets: int = 1) -> None:
        loop = asyncio.get_running_loop()
        for i in range(sockets):
            proto = _Proto(self, i)
            transport, _ = await loop.create_datagram_endpoint(
                lambda: proto,  # noqa: B023 - used at once
                local_addr=("127.0.0.1", 0),
            )
            self.transports.append(transport)

    @property
    def port(self) -> int:
        return int(self.transports[0].get_extra_info("sockname")[1])

    def offer(
        self, direction: str = "sendrecv", srtp: bool = False, address: str = "127.0.0.1",
        port: int | None = None, pt: int | None = None,
    ) -> str:  # fmt: skip
        """An SDP as a desk phone writes it (our codec, telephone-event/8000 or /48000)."""
        pt = self.pt if pt is None else pt
        rate = self.spec.clock_rate
        rtpmap = {"PCMU": "PCMU/8000", "PCMA": "PCMA/8000", "G722": "G722/8000"}
        name = rtpmap.get(self.spec.name, "opus/48000/2")
        lines = [
            "v=0",
            "o=phone 1234 1 IN IP4 127.0.0.1",
            "s=call",
            f"c=IN IP4 {address}",
            "t=0 0",
            f"m=audio {port or self.port} {'RTP/SAVP' if srtp else 'RTP/AVP'} {pt} {self.te_pt}",
            f"a=rtpmap:{pt} {name}",
            f"a=rtpmap:{self.te_pt} telephone-event/{rate}",
            f"a=fmtp:{self.te_pt} 0-15",
            "a=ptime:20",
        ]
        if srtp:
            inline = base64.b64encode(self.key).decode()
            lines.append(f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{inline}")
        if direction != "sendrecv":
            lines.append(f"a={direction}")
        return "\r\n".join(lines) + "\r\n"

    def use_answer(self, sdp: str, srtp: bool = False) -> None:
        """Take the server's SDP (an answer, or an offer we accept as it is)."""
        session = parse(sdp, "answer")
        m = session.media[0]
        self.remote = (session.media_address(m), m.port)
        if srtp:
            theirs = m.crypto[0]
            profile = pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80
            if theirs.suite.endswith("_32"):
                profile = pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32
            self.srtp_in = pylibsrtp.Session(
                pylibsrtp.Policy(
                    theirs.key, pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=profile
                )
            )
            self.srtp_out = pylibsrtp.Session(
                pylibsrtp.Policy(self.key, pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile)
            )

    def answer_to(self, offer_sdp: str, srtp: bool = False) -> str:
        """Answer the server's offer with our codec (its payload type from the offer)."""
        m = parse(offer_sdp, "offer").media[0]
        self.pt = next(pt for pt in map(int, m.fmts) if m.codec_of(pt)[0] == self.spec.name.lower())  # type: ignore[index]
        self.te_pt = next(
            pt for pt in map(int, m.fmts)
            if m.codec_of(pt) == ("telephone-event", self.spec.clock_rate, 1)
        )  # fmt: skip
        tag = ""
        if srtp:
            crypto = m.crypto[0]
            self.key = secrets.token_bytes(30)
            inline = base64.b64encode(self.key).decode()
            tag = f"a=crypto:{crypto.tag} {crypto.suite} inline:{inline}\r\n"
        answer = self.offer(srtp=srtp).replace(
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80", "x-removed"
        )  # our own offer's crypto line is replaced by the answer's
        answer = "".join(ln + "\r\n" for ln in answer.split("\r\n") if ln and "x-removed" not in ln)
        self.use_answer(offer_sdp, srtp=False)
        if srtp:
            answer += tag
            self.use_answer(offer_sdp, srtp=True)
        return answer

    def send_packet(self, payload: bytes, pt: int, marker: int = 0, ts: int | None = None) -> None:
        assert self.remote is not None
        packet = RtpPacket(
            payload_type=pt, marker=marker, sequence_number=self._seq,
            timestamp=(self._ts if ts is None else ts) & 0xFFFFFFFF, ssrc=self._ssrc,
            payload=payload,
        )  # fmt: skip
        self._seq = (self._seq + 1) & 0xFFFF
        data = packet.serialize()
        if self.srtp_out is not None:
            data = self.srtp_out.protect(data)
        self.transports[self.sending_from].sendto(data, self.remote)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        encoder = AudioEncoder(self.spec)
        n = self.spec.samples_per_frame
        rate = self.spec.sample_rate
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            if self.payloads is not None:
                payload = self.payloads[self._sent % len(self.payloads)]
            else:
                t = (np.arange(n) + self._sent * n) / rate
                amp = 0.3 * 32767 if self.tone is not None else 0
                pcm = (amp * np.sin(2 * np.pi * (self.tone or 0) * t)).astype(np.int16)
                payload = encoder.encode(pcm)
            self.send_packet(payload, self.pt)
            self._ts += self.spec.timestamp_step
            self._sent += 1
            await asyncio.sleep(max(0.0, start + self._sent * 0.02 - loop.time()))

    def received(self, data: bytes, index: int) -> None:
        if len(data) > 1 and 192 <= data[1] <= 223:
            return  # RTCP
        if self.srtp_in is not None:
            try:
                data = self.srtp_in.unprotect(data)
            except pylibsrtp.Error:
                return
        self.packets.append((RtpPacket.parse(data), index))
        self.got_packet.set()

    def audio(self, seconds: float) -> np.ndarray[Any, np.dtype[np.int16]]:
        """The last ``seconds`` of audio received (decoded)."""
        decoder = AudioDecoder(self.spec)
        frames = [decoder.decode(p.payload) for p, _ in self.packets if p.payload_type == self.pt]
        pcm = np.concatenate(frames) if frames else np.zeros(0, dtype=np.int16)
        return pcm[-int(seconds * self.spec.sample_rate) :]

    def level(self, freq: float, seconds: float = 0.4) -> float:
        pcm = self.audio(seconds)
        if pcm.size < self.spec.sample_rate * 0.1:
            return -120.0
        return tone_level_db(pcm, self.spec.sample_rate, freq)

    def close(self) -> None:
        for t in self.transports:
            t.close()


@pytest.fixture
async def media() -> AsyncIterator[tuple[InProcessMediaServer, list[MediaEvent]]]:
    server = InProcessMediaServer(["127.0.0.1"])
    events: list[MediaEvent] = []
    server.subscribe(events.append)
    yield server, events
    await server.shutdown()
    assert server.endpoint_count == 0


async def _phone(codec: str = "PCMU", tone: float | None = PHONE_TONE) -> RtpPhone:
    phone = RtpPhone(codec, tone)
    await phone.open()
    return phone


async def _until(check: Any, within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110 - packets arrive on a socket; no event to wait on
            await asyncio.sleep(0.02)


@pytest.mark.parametrize("codec", ["PCMU", "PCMA", "G722"])
async def test_a_phone_bridged_to_a_browser_hears_it_and_is_heard(media: Any, codec: str) -> None:
    server, _ = media
    phone = await _phone(codec)
    answer = await server.answer_rtp("sip", phone.offer())
    phone.use_answer(answer)
    assert f" {phone.pt} " in answer.splitlines()[5] + " "
    web = await connect(server, "web", WEB_TONE, codec="opus")
    await server.bridge("sip", "web")
    phone.start()
    try:
        [heard] = await hear(web, seconds=0.6, settle=0.4)
        assert level(heard, PHONE_TONE) > -30  # transcoded codec -> opus
        assert level(heard, WEB_TONE) < -50
        assert phone.level(WEB_TONE) > -30  # opus -> the phone's codec
        assert phone.level(PHONE_TONE) < -45
        info = await server.endpoint_info("sip")
        assert (info.codec, info.transport, info.remote_hold) == (codec, "rtp", False)
    finally:
        await phone.stop()
        phone.close()
        await close_all(server, [web])


async def test_pcmu_to_pcmu_is_relayed_byte_for_byte(media: Any) -> None:
    server, _ = media
    a, b = await _phone(), await _phone(tone=None)
    a.payloads = [bytes([i]) * 160 for i in range(1, 50)]  # not a tone: exact bytes
    a.use_answer(await server.answer_rtp("a", a.offer()))
    b.use_answer(await server.answer_rtp("b", b.offer()))
    await server.bridge("a", "b")
    a.start()
    try:
        await _until(lambda: len(b.packets) >= 30)
        got = [p.payload for p, _ in b.packets if p.payload_type == 0]
        assert all(p in a.payloads for p in got)  # untouched
        assert len(set(got)) > 20
        assert server.endpoint("b").transcoders == {}  # no decoder or encoder was made
        assert server.endpoint("a").transcoders == {}
    finally:
        await a.stop()
        a.close()
        b.close()


async def test_srtp_both_ways_the_server_answering_and_offering(media: Any) -> None:
    server, _ = media
    caller, callee = await _phone("PCMU", 700.0), await _phone("PCMA", 1200.0)
    answer = await server.answer_rtp("in", caller.offer(srtp=True))
    assert " RTP/SAVP " in answer and "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" in answer
    caller.use_answer(answer, srtp=True)
    offer = await server.offer_rtp("out", prefer_codec="PCMA", srtp=True)
    assert "AES_CM_128_HMAC_SHA1_80" in offer and "AES_CM_128_HMAC_SHA1_32" in offer
    await server.accept_answer("out", callee.answer_to(offer, srtp=True))
    await server.bridge("in", "out")
    caller.start()
    callee.start()
    try:
        await asyncio.sleep(0.8)
        assert caller.level(1200.0) > -30 and caller.level(700.0) < -45  # PCMA -> PCMU
        assert callee.level(700.0) > -30 and callee.level(1200.0) < -45
        assert (await server.endpoint_info("out")).transport == "srtp"
    finally:
        for p in (caller, callee):
            await p.stop()
            p.close()


async def test_a_forged_packet_is_dropped_under_srtp(media: Any) -> None:
    server, events = media
    phone = await _phone()
    phone.use_answer(await server.answer_rtp("s", phone.offer(srtp=True)), srtp=True)
    phone.srtp_out = None  # plain RTP to an SRTP endpoint: not authentic
    phone.send_packet(encode_event("5", end=False, duration=160), phone.te_pt, marker=1)
    port = server.endpoint("s").port
    await _until(lambda: port.srtp_rejected == 1)  # counted for /metrics, then dropped
    assert not [e for e in events if isinstance(e, DtmfReceived)]


async def test_payload_types_stay_across_reoffers(media: Any) -> None:
    server, _ = media
    phone = RtpPhone("opus")
    await phone.open()
    phone.te_pt = 100
    await server.answer_rtp("x", phone.offer(pt=107))
    first = parse(await server.reoffer_rtp("x"), "offer").media[0]
    assert first.fmts[0] == "107"  # the current codec first, in the device's number
    numbers = {first.codec_of(int(f)): f for f in first.fmts}
    assert numbers[("opus", 48000, 2)] == "107"
    assert numbers[("telephone-event", 48000, 1)] == "100"
    await server.accept_answer("x", phone.offer(pt=107))
    second = parse(await server.reoffer_rtp("x", "sendonly"), "offer").media[0]
    assert second.fmts == first.fmts and second.direction == "sendonly"
    # the server's own offer, then two re-offers: the same numbers every time
    offer = parse(await server.offer_rtp("y"), "offer").media[0]
    for _ in range(2):
        again = parse(await server.reoffer_rtp("y"), "offer").media[0]
        assert sorted(again.fmts) == sorted(offer.fmts)
    phone.close()


async def test_hold_by_sendonly_and_by_c_0000_is_reported(media: Any) -> None:
    server, events = media
    phone = await _phone()
    phone.use_answer(await server.answer_rtp("h", phone.offer()))
    await server.play("h", "hold-music")  # something to send
    await _until(lambda: len(phone.packets) > 5)

    def held() -> list[tuple[str, bool]]:
        return [(e.direction, e.held) for e in events if isinstance(e, MediaDirectionChanged)]

    answer = await server.renegotiate_rtp("h", phone.offer("sendonly"))
    assert "a=recvonly" in answer
    assert held() == [("sendonly", True)]
    assert (await server.endpoint_info("h")).remote_hold
    await asyncio.sleep(0.1)
    count = len(phone.packets)
    await asyncio.sleep(0.3)
    assert len(phone.packets) == count  # nothing sent to a device that holds
    await server.renegotiate_rtp("h", phone.offer())
    assert held()[-1] == ("sendrecv", False)
    await _until(lambda: len(phone.packets) > count + 5)
    answer = await server.renegotiate_rtp("h", phone.offer(address="0.0.0.0"))
    assert held()[-1] == ("sendrecv", True) and "a=recvonly" in answer
    await server.renegotiate_rtp("h", phone.offer("inactive"))
    assert held()[-1] == ("inactive", True)
    phone.close()


async def test_symmetric_rtp_latches_onto_the_source_and_follows_it(media: Any) -> None:
    server, _ = media
    phone = RtpPhone()
    await phone.open(sockets=2)
    # The SDP names an address nobody listens on (a phone behind NAT writes its private one).
    phone.use_answer(await server.answer_rtp("n", phone.offer(port=9)))
    await server.play("n", "hold-music")
    phone.start()
    try:
        await _until(lambda: len(phone.packets) > 3)  # to where the packets came from
        phone.sending_from = 1  # the NAT rebinds: packets now come from another port
        await _until(lambda: phone.packets[-1][1] == 1)
        assert all(i == 0 for _, i in phone.packets[:3])
    finally:
        await phone.stop()
        phone.close()


async def test_a_silent_phone_times_out_but_not_while_on_hold(media: Any) -> None:
    server, events = media
    phone = await _phone()
    phone.use_answer(await server.answer_rtp("t", phone.offer(), rtp_timeout=0.6))
    await server.renegotiate_rtp("t", phone.offer("inactive"))
    await asyncio.sleep(1.2)  # on hold and silent for twice the timeout
    assert not [e for e in events if isinstance(e, RtpTimeout)]
    await server.renegotiate_rtp("t", phone.offer())
    phone.start()
    await asyncio.sleep(0.8)
    assert not [e for e in events if isinstance(e, RtpTimeout)]  # it sends: alive
    await phone.stop()
    await _until(lambda: any(isinstance(e, RtpTimeout) for e in events), within=3)
    assert [getattr(e, "state", None) for e in events][-1] == "failed"
    phone.close()


async def test_rfc4733_dtmf_both_ways(media: Any) -> None:
    server, events = media
    phone = await _phone()
    phone.use_answer(await server.answer_rtp("d", phone.offer()))
    for i, digit in enumerate("19#"):
        ts = 1000 + i * 8000
        for k in range(1, 4):
            phone.send_packet(encode_event(digit, end=False, duration=160 * k), 101, k == 1, ts)
        for _ in range(3):
            phone.send_packet(encode_event(digit, end=True, duration=640), 101, 0, ts)
    await _until(lambda: len([e for e in events if isinstance(e, DtmfReceived)]) == 3)
    assert [e.digit for e in events if isinstance(e, DtmfReceived)] == ["1", "9", "#"]
    await server.send_dtmf("d", "42", duration_ms=100)
    got: list[tuple[str, int]] = []  # (digit, event timestamp), once per event
    for packet, _ in phone.packets:
        ev = decode_event(packet.payload) if packet.payload_type == 101 else None
        if ev is not None and (not got or got[-1][1] != packet.timestamp):
            got.append((ev.digit, packet.timestamp))
    assert [d for d, _ in got] == ["4", "2"]
    phone.close()


async def test_a_phone_in_a_mixer_hears_the_others(media: Any) -> None:
    server, _ = media
    phone = await _phone("G722", 500.0)
    phone.use_answer(await server.answer_rtp("p", phone.offer()))
    web1 = await connect(server, "w1", 1000.0)
    web2 = await connect(server, "w2", 1500.0)
    await server.create_mixer("m")
    for ep in ("p", "w1", "w2"):
        await server.mixer_add("m", ep)
    phone.start()
    try:
        [h1] = await hear(web1, seconds=0.6, settle=0.5)
        assert level(h1, 500.0) > -35 and level(h1, 1500.0) > -35
        assert phone.level(1000.0) > -35 and phone.level(1500.0) > -35
        assert phone.level(500.0) < -45  # not itself
    finally:
        await phone.stop()
        phone.close()
        await close_all(server, [web1, web2])


async def test_offers_that_cannot_be_used_are_refused(media: Any) -> None:
    server, _ = media
    phone = await _phone()
    bad = {
        "not sdp": "hello",
        "dtls": phone.offer().replace("RTP/AVP", "UDP/TLS/RTP/SAVPF"),
        "savp without key": phone.offer().replace("RTP/AVP", "RTP/SAVP"),
        "no carried codec": phone.offer().replace("RTP/AVP 0 101", "RTP/AVP 18 101")
        .replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:18 G729/8000"),
    }  # fmt: skip
    for name, sdp in bad.items():
        with pytest.raises(MediaError) as err:
            await server.answer_rtp(name, sdp)
        assert err.value.code in ("invalid_sdp", "unsupported_codec"), name
    assert server.endpoint_count == 0  # nothing left behind
    # a video m-line is refused with port 0, audio kept in its place
    answer = await server.answer_rtp(
        "v", phone.offer() + "m=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    )
    assert "m=video 0 RTP/AVP 96" in answer and answer.index("m=audio") < answer.index("m=video")
    phone.close()


class _TimedPhone(RtpPhone):
    """An :class:`RtpPhone` that also notes when each RTP packet arrived (monotonic s)."""

    def __init__(self, codec: str) -> None:
        super().__init__(codec, tone=None)
        self.arrivals: list[float] = []

    def received(self, data: bytes, index: int) -> None:
        before = len(self.packets)
        super().received(data, index)
        if len(self.packets) > before:
            self.arrivals.append(time.monotonic())


@pytest.mark.parametrize(
    ("src", "dst", "ptime"), [("PCMA", "PCMU", 30), ("PCMA", "PCMU", 20), ("PCMU", "PCMA", 10)]
)
async def test_a_transcoded_stream_is_stamped_in_20_ms_steps_and_paced_by_them(
    media: Any, src: str, dst: str, ptime: int
) -> None:
    """The regression of bench/sip.py's 96 % "late": SIPp's PCMA pcap is 30 ms a packet, and
    each one came out as one PCMU packet of 30 ms stamped 20 ms later than the one before,
    so the far end's timestamps fell behind real time by 10 ms a packet."""
    server, _ = media
    a, b = RtpPhone(src, tone=None), _TimedPhone(dst)
    await a.open()
    await b.open()
    a.use_answer(await server.answer_rtp("a", a.offer()))
    b.use_answer(await server.answer_rtp("b", b.offer()))
    await server.bridge("a", "b")
    encoder = AudioEncoder(a.spec)
    n = 8 * ptime  # samples (= RTP units at 8 kHz) in one packet
    sent = 1500 // ptime  # 1.5 s of audio
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        for k in range(sent):
            t = (np.arange(n) + k * n) / 8000
            pcm = (0.3 * 32767 * np.sin(2 * np.pi * PHONE_TONE * t)).astype(np.int16)
            a.send_packet(encoder.encode(pcm), a.pt, ts=k * n)
            await asyncio.sleep(max(0.0, start + (k + 1) * ptime / 1000 - loop.time()))
        expected = sent * ptime // 20
        await _until(lambda: len(b.packets) >= expected - 1, within=5.0)
    finally:
        a.close()
        b.close()
    got = [
        (p, at) for (p, _), at in zip(b.packets, b.arrivals, strict=True) if p.payload_type == b.pt
    ]
    assert len(got) >= expected - 1
    assert {len(p.payload) for p, _ in got} == {160}  # 20 ms of G.711 each
    pairs = list(itertools.pairwise(p for p, _ in got))
    assert {(q.sequence_number - p.sequence_number) & 0xFFFF for p, q in pairs} == {1}
    assert {(q.timestamp - p.timestamp) & 0xFFFFFFFF for p, q in pairs} == {160}
    # Arrival tracks the timestamps: the far end's measure of lateness (arrival against
    # first arrival + timestamp delta) stays within a jitter buffer's reach, with no drift.
    p0, t0 = got[0]
    media_s = np.array([((p.timestamp - p0.timestamp) & 0xFFFFFFFF) / 8000 for p, _ in got])
    arrival_s = np.array([at - t0 for _, at in got])
    slope = float(np.polyfit(media_s, arrival_s, 1)[0])
    assert 0.85 < slope < 1.15, f"arrival runs at {slope:.2f}x the timestamps' time"
    offset = arrival_s - media_s
    off_beat = np.abs(offset - np.median(offset)) > 0.05
    assert off_beat.mean() < 0.1, f"{off_beat.sum()} of {len(got)} packets >50 ms off their time"


def test_g722_is_clocked_at_8000_for_16_khz_audio() -> None:
    from callbridge.rtp.codecs import G722

    assert (G722.clock_rate, G722.sample_rate, G722.timestamp_step) == (8000, 16000, 160)


async def test_the_fake_media_server_negotiates_plain_rtp_as_the_engine_does() -> None:
    from callbridge.testing.fake_media import FakeMediaServer

    fake = FakeMediaServer()
    events: list[MediaEvent] = []
    fake.subscribe(events.append)
    phone = RtpPhone("G722")
    offer = phone.offer(port=4000)
    answer = await fake.answer_rtp("f", offer, prefer_codec="opus")  # not offered: G722
    assert "a=rtpmap:9 G722/8000" in answer and fake.state("f") == "connected"
    await fake.renegotiate_rtp("f", phone.offer("sendonly", port=4000))
    info = await fake.endpoint_info("f")
    assert (info.codec, info.transport, info.remote_hold) == ("G722", "rtp", True)
    assert [e for e in events if isinstance(e, MediaDirectionChanged)] == [
        MediaDirectionChanged("f", "sendonly", True)
    ]
    server_offer = await fake.offer_rtp("g", srtp=True)
    assert "RTP/SAVP" in server_offer
    with pytest.raises(MediaError):
        await fake.answer_rtp("h", "v=0\r\n")
    fake.rtp_timeout("f", 1.0)
    assert events[-2:] == [RtpTimeout("f", 1.0), *events[-1:]] and fake.state("f") == "failed"
    await fake.close("f")
    await fake.close("g")
    assert fake.open_endpoints() == ()
