"""The byte-level RTP path (callbridge.rtp.fastpath) against aiortc's RtpPacket, byte for byte.

The relay used to parse every packet into an aiortc RtpPacket and serialize a new one; the
fast path reads and writes the header on bytes (RFC 3550 section 5.1, RFC 8285 extensions).
These tests hold it to what the RtpPacket code did: the same fields read (CSRC lists,
one- and two-byte extensions, padding), the same packets refused, the same bytes written.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from typing import Any

import pylibsrtp
import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from callbridge.rtp.fastpath import RtpWriter, Srtp, parse_rtp

MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"


def ext_map(mid_id: int = 0, level_id: int = 0) -> HeaderExtensionsMap:
    ids = [(mid_id, MID), (level_id, LEVEL)]
    m = HeaderExtensionsMap()
    m.configure(
        RTCRtpParameters(
            headerExtensions=[RTCRtpHeaderExtensionParameters(id=i, uri=u) for i, u in ids if i]
        )
    )
    return m


def packet(**kw: object) -> RtpPacket:
    p = RtpPacket(
        payload_type=int(kw.get("pt", 111)),  # type: ignore[call-overload]
        marker=int(kw.get("marker", 0)),  # type: ignore[call-overload]
        sequence_number=int(kw.get("seq", 65535)),  # type: ignore[call-overload]
        timestamp=int(kw.get("ts", 0xFFFFFFF0)),  # type: ignore[call-overload]
        ssrc=0x89ABCDEF,
        payload=bytes(kw.get("payload", b"\x01\x02\x03\x04\x05")),  # type: ignore[call-overload]
    )
    p.csrc = list(kw.get("csrc", []))  # type: ignore[call-overload]
    p.extensions.mid = kw.get("mid")
    p.extensions.audio_level = kw.get("level")
    p.padding_size = int(kw.get("padding", 0))  # type: ignore[call-overload]
    return p


@pytest.mark.parametrize(
    ("mid_id", "level_id", "mid", "level"),
    [
        (0, 0, None, None),  # no extension block at all
        (1, 0, "0", None),  # MID only (one-byte header)
        (1, 2, "0", (True, 30)),  # MID and level
        (1, 2, "0", None),  # level negotiated, none given for this packet
        (0, 3, None, (False, 127)),  # level only
        (4, 9, "audio-mid-long", (True, 0)),  # a longer MID: padding to 32 bits
        (15, 2, "0", (False, 5)),  # an id above 14: the two-byte header (RFC 8285 4.3)
    ],
)
def test_the_written_header_is_what_rtppacket_serialize_writes(
    mid_id: int, level_id: int, mid: str | None, level: tuple[bool, int] | None
) -> None:
    m = ext_map(mid_id, level_id)
    writer = RtpWriter(0x89ABCDEF, m, mid)
    for pt, marker, seq, ts in [(111, 0, 0, 0), (0, 1, 65535, 0xFFFFFFFF), (96, 1, 7, 123456)]:
        payload = bytes(range(pt % 7, pt % 7 + 20))
        ours = bytes(writer.header(pt, marker, seq, ts, level)) + payload
        theirs = packet(pt=pt, marker=marker, seq=seq, ts=ts, payload=payload, mid=mid, level=level)
        assert ours == theirs.serialize(m)
        back = RtpPacket.parse(ours, m)
        assert (back.payload_type, back.marker, back.sequence_number, back.timestamp) == (
            pt,
            marker,
            seq,
            ts,
        )
        assert back.extensions.mid == (mid if mid_id else None)
        assert back.extensions.audio_level == (level if level_id else None)


def test_a_header_buffer_is_reused_and_a_level_does_not_stick() -> None:
    m = ext_map(1, 2)
    writer = RtpWriter(1, m, "0")
    first = writer.header(111, 0, 1, 960, (True, 10))
    assert RtpPacket.parse(bytes(first), m).extensions.audio_level == (True, 10)
    second = writer.header(111, 0, 2, 1920, (False, 127))
    assert second is first  # written in place, no new buffer per packet
    assert RtpPacket.parse(bytes(second), m).extensions.audio_level == (False, 127)
    assert RtpPacket.parse(bytes(writer.header(111, 0, 3, 2880)), m).extensions.audio_level is None


CASES = list(
    itertools.product(
        [[], [1], [0xDEADBEEF, 2, 3]],  # CSRC lists
        [None, "0", "x" * 17],  # MID: none, one-byte header, two-byte (17 bytes > 16)
        [None, (True, 3), (False, 127)],  # audio level
        [0, 1, 9],  # padding bytes
    )
)


@pytest.mark.parametrize(("csrc", "mid", "level", "padding"), CASES)
def test_parsing_reads_what_rtppacket_parse_reads(
    csrc: list[int], mid: str | None, level: tuple[bool, int] | None, padding: int
) -> None:
    m = ext_map(1, 2)
    data = packet(csrc=csrc, mid=mid, level=level, padding=padding, marker=1).serialize(m)
    theirs = RtpPacket.parse(data, m)
    ours = parse_rtp(data, 2)
    assert ours is not None
    assert (ours.marker, ours.payload_type, ours.sequence_number, ours.timestamp, ours.ssrc) == (
        theirs.marker,
        theirs.payload_type,
        theirs.sequence_number,
        theirs.timestamp,
        theirs.ssrc,
    )
    assert ours.payload == theirs.payload == b"\x01\x02\x03\x04\x05"
    # RFC 6464 levels are read from one-byte headers (what browsers send); aiortc reads both.
    one_byte = mid is None or len(mid) <= 16
    assert ours.audio_level == (theirs.extensions.audio_level if one_byte else None)
    assert ours.extensions.audio_level == ours.audio_level


def test_a_relayed_packet_is_rewritten_as_before() -> None:
    """What RtpPort.send made of a relayed packet: our header (MID, no CSRC, no padding) and
    the payload; the device's CSRCs, extensions and padding do not pass."""
    inbound_map, outbound_map = ext_map(3, 5), ext_map(1, 2)
    data = packet(csrc=[7, 8], mid="a1", level=(True, 40), padding=4).serialize(inbound_map)
    view = parse_rtp(data, 5)
    assert view is not None
    writer = RtpWriter(0x01020304, outbound_map, "0")
    ours = bytes(writer.header(96, view.marker | 1, 100, 5000)) + view.payload
    before = RtpPacket(
        payload_type=96, marker=1, sequence_number=100, timestamp=5000, ssrc=0x01020304,
        payload=RtpPacket.parse(data, inbound_map).payload,
    )  # fmt: skip
    before.extensions.mid = "0"
    assert ours == before.serialize(outbound_map)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80" * 11,  # shorter than the fixed header
        b"\x40" + bytes(15),  # version 1
        b"\x82" + bytes(15),  # two CSRCs announced, one present
        b"\x90" + bytes(13),  # extension announced, no room for its head
        b"\x90" + bytes(11) + b"\xbe\xde\x00\x02" + bytes(4),  # extension longer than the data
        b"\xa0" + bytes(11) + b"\x01\x00",  # padding count 0
        b"\xa0" + bytes(11) + b"\x01\x09",  # padding longer than the payload
    ],
)
def test_what_rtppacket_refuses_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError, match="RTP"):
        RtpPacket.parse(data, ext_map(1, 2))
    assert parse_rtp(data, 2) is None


def test_srtp_straight_through_libsrtp_interoperates_with_pylibsrtp() -> None:
    key = bytes(range(30))

    def session(direction: int) -> pylibsrtp.Session:
        return pylibsrtp.Session(pylibsrtp.Policy(key, direction))

    ours_out = Srtp(session(pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    theirs_in = session(pylibsrtp.Policy.SSRC_ANY_INBOUND)
    theirs_out = session(pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    ours_in = Srtp(session(pylibsrtp.Policy.SSRC_ANY_INBOUND))
    writer = RtpWriter(42, ext_map(1), "0")
    for seq in range(5):
        header = writer.header(0, 0, seq, 160 * seq)
        payload = bytes([seq]) * 160
        wire = bytes(ours_out.protect(header, payload))
        assert theirs_in.unprotect(wire) == bytes(header) + payload
        assert (
            ours_in.unprotect(theirs_out.protect(bytes(header) + payload))
            == bytes(header) + payload
        )
    with pytest.raises(pylibsrtp.Error):  # a replay (RFC 3711 3.3.2)
        ours_in.unprotect(theirs_out.protect(bytes(writer.header(0, 0, 4, 640)) + b"x"))
    with pytest.raises(pylibsrtp.Error):  # not authentic
        ours_in.unprotect(bytes(writer.header(0, 0, 9, 0)) + bytes(30))
    with pytest.raises(ValueError, match="too long"):
        ours_out.protect(bytes(12), bytes(1500))


async def test_rtcp_sender_reports_count_what_rtpport_sent() -> None:
    """RtpPort.send bypasses aiortc's sender loop; the sender's counts still advance, so its
    RTCP SR (RFC 3550 6.4.1) tells the other end what was sent (remote-outbound-rtp)."""
    from callbridge.client import BufferSink, CallMedia, ToneSource
    from callbridge.media.engine import InProcessMediaServer

    server = InProcessMediaServer(["127.0.0.1"])
    media = CallMedia(ToneSource(440.0), BufferSink(), codecs=["opus"])
    try:
        await media.accept_answer(await server.answer("sr", await media.create_offer()))
        await media.wait_connected()
        pc = server.endpoint("sr").pc
        async with asyncio.timeout(6):  # aiortc sends an SR every 0.5-1.5 s
            while True:
                report = await pc.getStats()
                remote = [s for s in report.values() if s.type == "remote-outbound-rtp"]
                if remote and remote[0].packetsSent > 0:
                    break
                await asyncio.sleep(0.1)
        sent = media.port.packets_sent
        assert 0 < remote[0].packetsSent <= sent
        assert remote[0].bytesSent > 0
        local = [s for s in (await media.pc.getStats()).values() if s.type == "outbound-rtp"]
        assert local[0].packetsSent >= remote[0].packetsSent
    finally:
        await media.close()
        await server.shutdown()


def _is_rtp(data: bytes) -> bool:
    """RFC 7983 section 7 / RFC 5761 section 4: an RTP (not RTCP) packet."""
    return len(data) >= 2 and 127 < data[0] < 192 and not 191 < data[1] < 224


def _is_rtcp(data: bytes) -> bool:
    return len(data) >= 2 and 127 < data[0] < 192 and 191 < data[1] < 224


async def test_a_keyed_legs_rtp_skips_aiortcs_queue_and_bad_srtp_is_dropped_and_counted() -> None:
    """Two SDK peers bridged through the server: once the server's leg has routed the SSRC,
    its RTP is handled in the ICE socket's datagram callback, so aioice's queue (and the DTLS
    task behind it) sees no RTP any more, only RTCP; the audio still arrives, aiortc's receive
    statistics still count. A replayed or tampered SRTP packet is dropped and counted."""
    from aiortc.rtp import RtpPacket

    from callbridge.client import BufferSink, CallMedia, SilenceSource, ToneSource
    from callbridge.media.engine import InProcessMediaServer
    from callbridge.testing.audio import tone_level_db

    server = InProcessMediaServer(["127.0.0.1"])
    sink = BufferSink()
    a = CallMedia(ToneSource(440.0), BufferSink(), codecs=["opus"])
    b = CallMedia(SilenceSource(), sink, codecs=["opus"])
    try:
        for name, media in (("a", a), ("b", b)):
            await media.accept_answer(await server.answer(name, await media.create_offer()))
            await media.wait_connected()
        ep_a, ep_b = server.endpoint("a"), server.endpoint("b")
        async with asyncio.timeout(5):
            while ep_a.stats.received < 10 or ep_a.clock is None or ep_b.clock is None:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        await server.bridge("a", "b")
        port = ep_a.port
        assert port is not None
        dtls = ep_a.pc.getTransceivers()[0].sender.transport
        connection = dtls.transport._connection
        queued: list[bytes] = []  # what reaches aioice's queue (aiortc's receive loop)
        orig_data_received = connection.data_received

        def data_received(data: bytes, component: int) -> None:
            queued.append(data)
            orig_data_received(data, component)

        connection.data_received = data_received  # type: ignore[method-assign]
        start = ep_a.stats.received
        rx_packets = functools.partial(getattr, dtls, "_RTCDtlsTransport__rx_packets")
        rx_start = rx_packets()
        sink.clear()
        async with asyncio.timeout(6):  # ~1.2 s of packets, and an RTCP report (every 0.5-1.5 s)
            while ep_a.stats.received - start < 60 or not any(map(_is_rtcp, queued)):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert not [d for d in queued if _is_rtp(d)]
        assert rx_packets() - rx_start >= 60  # getStats' transport count
        inbound = [s for s in (await ep_a.pc.getStats()).values() if s.type == "inbound-rtp"]
        assert inbound[0].packetsReceived >= ep_a.stats.received - 1  # RR statistics fed
        assert port.srtp_rejected == port.handler_errors == 0
        assert tone_level_db(sink.samples(0.8), 48000, 440.0) > -30.0  # relayed, audible

        # Packets of a new SSRC, protected by peer A's own SRTP session with its MID.
        await server.unbridge("a")  # leg B does not need these
        seen: list[int] = []
        orig_on_rtp = port._on_rtp

        async def on_rtp(view: object) -> None:
            if getattr(view, "ssrc", None) == 0x1234567:
                seen.append(view.sequence_number)  # type: ignore[attr-defined]
                if view.sequence_number == 5:  # type: ignore[attr-defined]
                    raise RuntimeError("a handler's failure")
            await orig_on_rtp(view)

        port._on_rtp = on_rtp
        tx = a.transceiver.sender.transport._tx_srtp
        assert a.port.audio is not None
        wire = []
        for seq in range(7):
            payload = bytes([seq] * 80)
            p = RtpPacket(payload_type=a.port.audio.payload_type, sequence_number=seq,
                          timestamp=960 * seq, ssrc=0x1234567, payload=payload)  # fmt: skip
            p.extensions.mid = a.transceiver.mid
            wire.append(tx.protect(p.serialize(a.port._ext_map)))
        pair = connection._nominated[1]
        feed = functools.partial(pair.protocol.datagram_received, addr=pair.remote_addr)
        feed(wire[0])  # an SSRC not routed yet: aiortc's queue and router, which learn it
        async with asyncio.timeout(2):
            while seen != [0]:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        feed(wire[1])
        assert seen == [0, 1]  # handled within the datagram callback: no loop turn needed
        feed(wire[1])  # a replay (RFC 3711 section 3.3.2)
        tampered = bytearray(wire[2])
        tampered[20] ^= 1  # one bit of the encrypted payload: the tag no longer matches
        feed(bytes(tampered))
        feed(wire[2][:-1])  # a truncated tag
        assert seen == [0, 1] and port.srtp_rejected == 3
        feed(wire[2])
        feed(wire[5])  # its handler raises: counted, and the next packet is handled
        feed(wire[6])
        assert seen == [0, 1, 2, 5, 6] and port.handler_errors == 1
        assert [d for d in queued if d in wire] == [wire[0]]  # only the first went that way
    finally:
        for media in (a, b):
            await media.close()
        await server.shutdown()


async def test_a_packet_handler_that_suspends_finishes_in_a_task() -> None:
    """The datagram callback runs a handler to its end when nothing in it waits (the relay);
    one that does wait is resumed from there by a task, as asyncio would."""
    from callbridge.rtp.fastpath import run_now

    done: list[str] = []

    async def quick() -> None:
        done.append("quick")

    async def slow() -> None:
        done.append("slow started")
        await asyncio.sleep(0.01)
        done.append("slow done")

    run_now(quick())
    run_now(slow())
    assert done == ["quick", "slow started"]
    async with asyncio.timeout(2):
        while len(done) < 3:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
    assert done == ["quick", "slow started", "slow done"]


async def test_a_reinvite_that_changes_the_codec_mid_conference_still_mixes_right() -> None:
    """The mixer keeps each member's codec and own-audio flag between ticks; a SIP
    re-INVITE that moves a phone from PCMU to G722 on the same endpoint (RFC 3264 section 8)
    and a player (ringback) started and stopped on a member must reach that cache."""
    from callbridge.media.engine import InProcessMediaServer
    from callbridge.media.sdp_plain import CARRIED
    from media_peers import close_all, connect, hear, level
    from test_media_rtp import RtpPhone, _until

    server = InProcessMediaServer(["127.0.0.1"])
    phone = RtpPhone("PCMU", 500.0)
    await phone.open()
    web = await connect(server, "w", 1000.0)
    try:
        phone.use_answer(await server.answer_rtp("p", phone.offer()))
        await server.create_mixer("m")
        for ep in ("p", "w"):
            await server.mixer_add("m", ep)
        phone.start()
        await _until(lambda: phone.level(1000.0) > -35)  # PCMU: the phone hears the web peer
        await phone.stop()
        phone.spec = CARRIED["g722"]
        phone.pt = 9
        phone.packets.clear()
        await server.renegotiate_rtp("p", phone.offer())
        phone.start()
        # G722 both ways now: what the mixer sends is encoded for the new codec (PCMU decoded
        # as G722 would be noise, not a 1 kHz tone), and the phone's G722 is mixed for the peer
        await _until(lambda: phone.level(1000.0) > -35)
        [heard] = await hear(web, seconds=0.5, settle=0.3)
        assert level(heard, 500.0) > -35
        # a player on the phone's endpoint replaces the mix it hears, and stopping it returns it
        await server.play("p", "ringback")
        await _until(
            lambda: phone.level(440.0, seconds=0.3) > -35 and phone.level(1000.0, 0.3) < -45
        )
        await server.stop_playing("p")
        await _until(lambda: phone.level(1000.0, seconds=0.3) > -35)
    finally:
        await phone.stop()
        phone.close()
        await close_all(server, [web])
        await server.shutdown()


async def test_sends_follow_a_new_nominated_pair() -> None:
    """RtpPort resolves its send route once per stream; a new nominated ICE pair (RFC 8445
    8.1.1; aioice nominates once, so the change is made by hand here) takes the next packet,
    and going back to the first pair sends there again."""
    import socket
    import types

    from callbridge.client import BufferSink, CallMedia, SilenceSource
    from callbridge.media.engine import InProcessMediaServer

    server = InProcessMediaServer(["127.0.0.1"])
    media = CallMedia(SilenceSource(), BufferSink(), codecs=["opus"])
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(2.0)
    try:
        await media.accept_answer(await server.answer("np", await media.create_offer()))
        await media.wait_connected()
        port = server.endpoint("np").port
        assert port is not None
        async with asyncio.timeout(5):
            while port.audio is None:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        port.send_now(bytes(40), port.audio.payload_type, 0, 1)
        route = port._route
        assert route is not None
        nominated = route.nominated
        first = nominated[1]
        nominated[1] = types.SimpleNamespace(
            protocol=first.protocol, remote_addr=sink.getsockname()
        )
        port.send_now(bytes(40), port.audio.payload_type, 960, 0)
        data = sink.recv(2048)
        assert _is_rtp(data) and len(data) > 12 + 40  # SRTP: with its authentication tag
        second = port._route
        assert second is not None and second is not route
        assert second.dest == sink.getsockname()
        nominated[1] = first
        port.send_now(bytes(40), port.audio.payload_type, 1920, 0)
        third = port._route
        assert third is not None and third.pair is first and third.dest == first.remote_addr
    finally:
        sink.close()
        await media.close()
        await server.shutdown()


async def test_a_hang_up_joins_no_decoder_thread_on_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aiortc starts a decoder thread per receiver and joins it inside RTCPeerConnection.close,
    on the event loop. The server's receivers (audio RtpPort, video VideoPort) replace aiortc's
    RTP handler, so nothing would feed that thread: none is started, and closing the leg joins
    no thread. The device here is stock aiortc, which decodes, so its receivers have one."""
    import threading

    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    from callbridge.media.engine import InProcessMediaServer
    from callbridge.rtp.receiver import decodes

    server = InProcessMediaServer(["127.0.0.1"])
    device = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        device.addTransceiver("audio", direction="sendrecv")
        device.addTransceiver("video", direction="sendrecv")
        await device.setLocalDescription(await device.createOffer())
        answer = await server.answer("leg", device.localDescription.sdp, video=True)
        await device.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        ep = server.endpoint("leg")
        receivers = [t.receiver for t in ep.pc.getTransceivers()]
        assert sorted(r.track.kind for r in receivers) == ["audio", "video"]
        async with asyncio.timeout(10):
            while ep.pc.connectionState != "connected":  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert not any(map(decodes, receivers))

        def thread(receiver: object) -> threading.Thread | None:
            return getattr(receiver, "_RTCRtpReceiver__decoder_thread")  # type: ignore[no-any-return]  # noqa: B009

        assert [thread(r) for r in receivers] == [None, None]
        # The device's (stock aiortc) receivers did start theirs; it gets the server's DTLS
        # close_notify in this same process and joins them: those are the only joins allowed.
        device_threads = {thread(t.receiver) for t in device.getTransceivers()}
        assert None not in device_threads and len(device_threads) == 2

        joined: list[threading.Thread] = []
        orig_join = threading.Thread.join

        def join(self: threading.Thread, timeout: float | None = None) -> None:
            joined.append(self)
            orig_join(self, timeout)

        monkeypatch.setattr(threading.Thread, "join", join)
        await server.close("leg")  # a hang-up
        monkeypatch.undo()
        assert ep.pc.connectionState == "closed"
        assert [t for t in joined if t not in device_threads] == []
    finally:
        await device.close()
        await server.shutdown()


async def test_receiver_reports_ride_in_sender_reports() -> None:
    """RFC 3550 6.4.1: an audio leg that sends puts its reception report blocks in its SR
    instead of a separate RR, so each end sends one RTCP packet per interval, not two; the
    reports still give both ends their remote-inbound-rtp figures (loss, jitter, RTT). A leg
    whose sender loop does not run sends RRs of its own again."""
    from callbridge.client import BufferSink, CallMedia, ToneSource
    from callbridge.media.engine import InProcessMediaServer

    server = InProcessMediaServer(["127.0.0.1"])
    a = CallMedia(ToneSource(440.0), BufferSink(), codecs=["opus"])
    b = CallMedia(ToneSource(660.0), BufferSink(), codecs=["opus"])
    try:
        for name, media in (("a", a), ("b", b)):
            await media.accept_answer(await server.answer(name, await media.create_offer()))
            await media.wait_connected()
        await server.bridge("a", "b")
        ep = server.endpoint("a")
        rtcp = _rtcp_arriving(ep.pc)  # what reaches the server's leg from device A

        def remote_inbound(stats: dict[str, Any]) -> list[Any]:
            return [s for s in stats.values() if s.type == "remote-inbound-rtp"]

        def with_blocks(data: bytes) -> bool:
            return data[1] == 200 and data[0] & 0x1F >= 1  # an SR with report count >= 1

        # Reports every 0.5-1.5 s. Until the first SR with blocks (the device's loop had not
        # received anything yet, or its RR's turn came first) an RR may go out on its own.
        async with asyncio.timeout(8):
            while not any(map(with_blocks, rtcp)):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            rtcp.clear()
            while len(rtcp) < 3:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert all(map(with_blocks, rtcp)), [d[:2] for d in rtcp]  # and no RR of its own
        for pc in (ep.pc, a.pc):
            (report,) = remote_inbound(await pc.getStats())
            assert report.packetsLost == 0 and report.roundTripTime is not None

        # Once the server leg's sender loop ends (it sends no more), its receiver reports
        # again in RRs of its own: what reaches device A's end shows it.
        to_device = _rtcp_arriving(a.pc)
        getattr(ep.pc.getTransceivers()[0].sender, "_RTCRtpSender__rtcp_task").cancel()  # noqa: B009
        async with asyncio.timeout(5):
            while not [d for d in to_device if d[1] == 201 and d[0] & 0x1F >= 1]:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    finally:
        for media in (a, b):
            await media.close()
        await server.shutdown()


def _rtcp_arriving(pc: Any) -> list[bytes]:
    """The RTCP datagrams that reach ``pc``'s ICE connection from now on (a tap in front of
    aioice's ``data_received``; SRTCP keeps the first packet's header in clear, RFC 3711
    3.4)."""
    connection = pc.getTransceivers()[0].sender.transport.transport._connection
    seen: list[bytes] = []
    received = connection.data_received

    def data_received(data: bytes, component: int) -> None:
        if _is_rtcp(data):
            seen.append(data)
        received(data, component)

    connection.data_received = data_received
    return seen
