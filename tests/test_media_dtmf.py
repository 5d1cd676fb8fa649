"""DTMF the media server sends to a device (``MediaServer.send_dtmf``), with real WebRTC peers.

A peer that negotiated telephone-event must receive the digits as RFC 4733 events: checked
packet by packet (one timestamp per event, the marker on its first packet, a growing duration,
the end packet three times) and by the SDK's detector. A peer without telephone-event must hear
each digit's two ITU-T Q.23 frequencies in band, and no other key's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from callbridge.errors import ErrorCode, MediaError
from callbridge.media.dtmf import Q23
from callbridge.media.engine import InProcessMediaServer
from callbridge.media.interface import AudioSpec, MediaEvent, PlaybackStateChanged
from callbridge.rtp.codecs import Pcm
from callbridge.rtp.rfc4733 import (
    END_REPEATS,
    DtmfDetector,
    DtmfEvent,
    EventTick,
    decode_event,
    event_plan,
    event_ticks,
)
from callbridge.rtp.webrtc import RtpPacket, restrict_ice_addresses
from callbridge.testing import rms_dbfs, tones_present
from media_peers import RATE, Peer, connect, level
from parties import ABSENT, HEARD

restrict_ice_addresses(["127.0.0.1"])

KEYS = "1234567890*#ABCD"
ALL_FREQS = sorted({f for pair in Q23.values() for f in pair})
TALK = 450.0  # what the far party says while the digits go out (no DTMF frequency near it)


@dataclass(frozen=True)
class Received:
    """One RTP packet as a peer received it."""

    payload_type: int
    sequence: int
    timestamp: int
    marker: bool
    payload: bytes


@pytest.fixture
async def server() -> AsyncIterator[InProcessMediaServer]:
    media = InProcessMediaServer(["127.0.0.1"])
    yield media
    await media.shutdown()
    assert media.endpoint_count == 0


async def peer(server: InProcessMediaServer, name: str, codec: str, **kw: object) -> Peer:
    """A silent peer: only what the server sends it arrives."""
    return await connect(server, name, None, codec, **kw)


def record(p: Peer) -> list[Received]:
    """Every RTP packet ``p`` receives from now on."""
    packets: list[Received] = []

    def on_packet(packet: RtpPacket) -> None:
        packets.append(
            Received(
                packet.payload_type,
                packet.sequence_number,
                packet.timestamp,
                bool(packet.marker),
                packet.payload,
            )
        )

    p.media.on_packet = on_packet
    return packets


def events_of(packets: list[Received], te: int) -> list[list[Received]]:
    """The telephone-event packets grouped by event (their shared timestamp), in order."""
    events: dict[int, list[Received]] = {}
    for pkt in packets:
        if pkt.payload_type == te:
            events.setdefault(pkt.timestamp, []).append(pkt)
    return list(events.values())


# --------------------------------------------------------------------------------------------
# RFC 4733


@pytest.mark.parametrize("codec", ["opus", "PCMU"])
async def test_a_device_with_telephone_event_receives_each_digit_as_one_rfc4733_event(
    server: InProcessMediaServer, codec: str
) -> None:
    a = await peer(server, "a", codec)
    await connect(server, "b", TALK, codec)
    await server.bridge("a", "b")  # a hears b talk: the events must replace that audio
    audio = a.media.audio
    assert audio is not None and audio.te_payload_type is not None
    te, step = audio.te_payload_type, audio.codec.timestamp_step
    packets = record(a)

    await server.send_dtmf("a", KEYS, duration_ms=100)
    await asyncio.sleep(0.1)  # the last packets are on the wire

    assert a.digits == list(KEYS)  # the SDK's detector: each digit once, in order
    detector = DtmfDetector()
    detected = [detector.feed(p.timestamp, p.payload) for p in packets if p.payload_type == te]
    assert [e.digit for e in detected if e is not None] == list(KEYS)

    events = events_of(packets, te)
    assert len(events) == len(KEYS)
    starts = [e[0].timestamp for e in events]
    assert starts == sorted(starts)  # one timestamp per event, moving on
    ticks = 100 // 20
    for digit, event in zip(KEYS, events, strict=True):
        decoded = [decode_event(p.payload) for p in event]
        assert all(d is not None and d.digit == digit for d in decoded)
        assert [p.marker for p in event] == [True] + [False] * (len(event) - 1)
        assert [d.end for d in decoded if d] == [False] * ticks + [True] * END_REPEATS
        assert [d.duration for d in decoded if d] == [
            *(step * k for k in range(1, ticks + 1)),
            *[step * ticks] * END_REPEATS,
        ]
        # No audio packet between an event's first and last packet: it replaced the talk.
        first, last = event[0].sequence, event[-1].sequence
        assert not [p for p in packets if p.payload_type != te and first < p.sequence < last]
    assert any(p.payload_type == audio.payload_type for p in packets)  # talk around them
    assert await _hears(a, TALK)  # and after them


async def _hears(p: Peer, freq: float) -> bool:
    p.sink.clear()
    await asyncio.sleep(0.45)
    return level(p.sink.samples(0.4), freq) > HEARD


async def test_digits_sent_twice_at_once_arrive_in_the_order_they_were_asked(
    server: InProcessMediaServer,
) -> None:
    a = await peer(server, "a", "opus")
    await asyncio.gather(server.send_dtmf("a", "12", 40), server.send_dtmf("a", "#9", 40))
    await asyncio.sleep(0.1)
    assert a.digits == ["1", "2", "#", "9"]


async def test_a_pause_holds_the_next_digit_back(server: InProcessMediaServer) -> None:
    a = await peer(server, "a", "opus")
    te = a.media.audio.te_payload_type if a.media.audio else None
    assert te is not None
    packets = record(a)
    await server.send_dtmf("a", "1W2", 40)
    await asyncio.sleep(0.1)
    events = events_of(packets, te)
    assert a.digits == ["1", "2"] and len(events) == 2
    gap = (events[1][0].timestamp - events[0][-1].timestamp) / 48000
    assert 1.0 <= gap < 1.3  # W: one second, plus the gap after the digit


# --------------------------------------------------------------------------------------------
# in band


def tone_bursts(pcm: Pcm) -> list[Pcm]:
    """The loud stretches of ``pcm`` (10 ms frames above -40 dBFS), at least 50 ms each."""
    frame = RATE // 100
    loud = [rms_dbfs(pcm[i : i + frame]) > -40 for i in range(0, pcm.size - frame + 1, frame)]
    bursts: list[Pcm] = []
    start: int | None = None
    for i, on in enumerate([*loud, False]):
        if on and start is None:
            start = i
        elif not on and start is not None:
            if i - start >= 5:
                bursts.append(pcm[start * frame : i * frame])
            start = None
    return bursts


@pytest.mark.parametrize("codec", ["opus", "PCMU"])
async def test_a_device_without_telephone_event_hears_each_digits_q23_pair(
    server: InProcessMediaServer, codec: str
) -> None:
    a = await peer(server, "a", codec, telephone_event=False)
    audio = a.media.audio
    assert audio is not None and audio.te_payload_type is None
    a.sink.clear()
    digits = "159#0A"
    await server.send_dtmf("a", digits, duration_ms=200)
    await asyncio.sleep(0.15)  # the last tones arrive
    bursts = tone_bursts(a.sink.samples())
    heard = [tones_present(b, RATE, ALL_FREQS, threshold_db=HEARD) for b in bursts]
    assert heard == [set(Q23[d]) for d in digits]
    for burst, digit in zip(bursts, digits, strict=True):
        assert 0.15 < burst.size / RATE < 0.25
        others = [f for f in ALL_FREQS if f not in Q23[digit]]
        assert not tones_present(burst, RATE, others, threshold_db=ABSENT), digit
    assert a.digits == []  # nothing came as events


async def test_in_band_digits_replace_a_playback_and_leave_no_playback_events(
    server: InProcessMediaServer,
) -> None:
    a = await peer(server, "a", "opus", telephone_event=False)
    events: list[MediaEvent] = []
    server.subscribe(events.append)
    await server.play_to("a", "music", AudioSpec("tone", "beep", loops=0))
    await server.send_dtmf("a", "7", 100)
    assert events == [
        PlaybackStateChanged("music", "started", "playing"),
        PlaybackStateChanged("music", "ended", "stopped", "replaced by DTMF tones"),
    ]
    assert server.endpoint_count == 1  # the endpoint; the tones' playback is gone
    assert not a.digits


async def test_a_member_of_a_mixer_gets_events_in_place_of_the_mix(
    server: InProcessMediaServer,
) -> None:
    await server.create_mixer("room")
    a = await peer(server, "a", "opus")
    await connect(server, "b", TALK)
    await server.mixer_add("room", "a")
    await server.mixer_add("room", "b")
    await server.send_dtmf("a", "*0", 60)
    await asyncio.sleep(0.1)
    assert a.digits == ["*", "0"]
    assert await _hears(a, TALK)  # the mix comes back after the digits


# --------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize(
    ("digits", "duration", "says"),
    [
        ("12x4", 250, "'x' not allowed"),
        ("", 250, "use 0-9, A-D, * and #"),
        ("1,2", 250, "',' not allowed"),
        ("123", 5000, "5000 ms: use 40 to 1000 ms"),
    ],
)
async def test_bad_digits_or_durations_are_refused_before_anything_is_sent(
    server: InProcessMediaServer, digits: str, duration: int, says: str
) -> None:
    a = await peer(server, "a", "opus")
    with pytest.raises(MediaError) as err:
        await server.send_dtmf("a", digits, duration)
    assert err.value.code is ErrorCode.INVALID_DIGITS
    assert says in err.value.message
    assert a.digits == []


async def test_dtmf_to_an_unknown_endpoint_is_refused(server: InProcessMediaServer) -> None:
    with pytest.raises(MediaError) as err:
        await server.send_dtmf("nobody", "1")
    assert err.value.code is ErrorCode.CALL_NOT_FOUND


@pytest.mark.parametrize("telephone_event", [True, False], ids=["rfc4733", "in-band"])
async def test_closing_the_endpoint_cuts_the_digits_short_with_an_error(
    server: InProcessMediaServer, telephone_event: bool
) -> None:
    await peer(server, "a", "opus", telephone_event=telephone_event)
    sending = asyncio.ensure_future(server.send_dtmf("a", "123456", 200))
    await asyncio.sleep(0.3)
    await server.close("a")
    with pytest.raises(MediaError) as err:
        await sending
    assert err.value.code is ErrorCode.INVALID_STATE
    assert "closed" in err.value.message
    assert server.endpoint_count == 0


async def test_cancelling_a_send_stops_it_and_leaves_nothing_behind(
    server: InProcessMediaServer,
) -> None:
    a = await peer(server, "a", "opus")
    sending = asyncio.ensure_future(server.send_dtmf("a", "123456", 200))
    await asyncio.sleep(0.35)
    sending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sending
    assert server.endpoint_count == 1  # the endpoint alone: no sender left
    # The digit cut short is still ended with its end packets (RFC 4733 §2.5.1.4), which may
    # land after the cancel returns (seen under load): settle before taking the count.
    sent = await _settled(a.digits)
    assert sent and len(sent) < 6
    await server.send_dtmf("a", "9", 40)  # the endpoint still sends DTMF
    assert await _settled(a.digits, more_than=len(sent)) == [*sent, "9"]


async def _settled(digits: list[str], more_than: int = 0, quiet: float = 0.2) -> list[str]:
    """``digits`` once it holds more than ``more_than`` and has not changed for ``quiet`` s
    (at most 5 s)."""
    async with asyncio.timeout(5):
        while True:
            seen = list(digits)
            await asyncio.sleep(quiet)
            if len(seen) > more_than and digits == seen:
                return seen


# --------------------------------------------------------------------------------------------
# the plan both senders share (callbridge.rtp.rfc4733)


def test_the_plan_is_updates_then_three_end_packets_then_a_gap_per_digit() -> None:
    plan = event_plan("1w#", per_event=3, gap=2, pauses={"w": 4})
    assert plan == [
        EventTick("1", True, False, 1),
        EventTick("1", False, False, 2),
        EventTick("1", False, False, 3),
        *[EventTick("1", False, True, 3)] * END_REPEATS,
        None,
        None,  # the gap after "1"
        *[None] * 4,  # w (no gap after a pause: it is one)
        EventTick("#", True, False, 1),
        EventTick("#", False, False, 2),
        EventTick("#", False, False, 3),
        *[EventTick("#", False, True, 3)] * END_REPEATS,
    ]
    assert decode_event(plan[0].payload(960) if plan[0] else b"") == DtmfEvent("1", False, 10, 960)
    assert event_ticks(250, 960) == 13  # 260 ms in 20 ms ticks
    assert event_ticks(5000, 960) == 0xFFFF // 960  # the 16-bit duration field at 48 kHz
