"""CallMedia end to end without a server: two real peer connections on 127.0.0.1.

One side offers, the other answers, and each sends its own tone (440 Hz vs 1000 Hz), so what a
side hears tells exactly whose audio reached it. Audio is checked by analysis
(callbridge.testing), DTMF by the digits and the RFC 4733 packets the far side received.
"""

from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pytest

from callbridge.client import (
    BufferSink,
    CallMedia,
    SilenceSource,
    ToneSource,
    WavRecorder,
    WavSource,
)
from callbridge.errors import ErrorCode, ProtocolError
from callbridge.rtp.rfc4733 import decode_event
from callbridge.rtp.webrtc import RtpPacket, restrict_ice_addresses
from callbridge.testing import tone_level_db, tones_present
from parties import until  # the conditions are counters of audio arriving: no event

restrict_ice_addresses(["127.0.0.1"])

A_TONE, B_TONE = 440.0, 1000.0
HEARD = -20.0  # dBFS: the sources send about -13.5 dBFS
SILENT = -60.0
RATE = 48000


async def listen(sink: BufferSink, seconds: float = 0.4) -> np.ndarray[Any, np.dtype[np.int16]]:
    """Everything that arrives in the next ``seconds`` of audio (counted in frames)."""
    start = sink.frames_received
    sink.clear()
    await until(lambda: sink.frames_received >= start + int(seconds * 50))
    return sink.samples()


class Side:
    def __init__(self, media: CallMedia, sink: BufferSink) -> None:
        self.media = media
        self.sink = sink
        self.digits: list[str] = []
        self.packets: list[RtpPacket] = []
        media.on_dtmf = self.digits.append
        media.on_packet = self.packets.append


class Connect(Protocol):
    """The ``connect`` fixture: a connected (offerer, answerer) pair, with CallMedia options."""

    async def __call__(
        self, a_kw: dict[str, Any] | None = None, b_kw: dict[str, Any] | None = None
    ) -> tuple[Side, Side]: ...


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """Factory: a connected (offerer, answerer) pair; both are closed after the test."""
    made: list[CallMedia] = []

    async def make(
        a_kw: dict[str, Any] | None = None, b_kw: dict[str, Any] | None = None
    ) -> tuple[Side, Side]:
        sides = []
        for tone, kw in ((A_TONE, a_kw or {}), (B_TONE, b_kw or {})):
            sink = BufferSink()
            media = CallMedia(ToneSource(tone), sink, **kw)
            made.append(media)
            sides.append(Side(media, sink))
        a, b = sides
        await a.media.accept_answer(await b.media.answer_offer(await a.media.create_offer()))
        async with asyncio.timeout(5):
            await a.media.wait_connected()
            await b.media.wait_connected()
        # Past the decoders' start-up: a few frames in both directions.
        await until(lambda: a.sink.frames_received >= 5 and b.sink.frames_received >= 5)
        return a, b

    yield make
    for media in made:
        await media.close()


@pytest.mark.parametrize("codec", ["opus", "PCMU", "PCMA"])
async def test_each_side_hears_the_others_tone_and_not_its_own(
    connect: Connect, codec: str
) -> None:
    kw = {"codecs": [codec]} if codec != "opus" else {}
    a, b = await connect(kw, kw)
    assert a.media.audio is not None and b.media.audio is not None  # connected
    assert a.media.audio.codec.name == b.media.audio.codec.name == codec
    heard_by_a, heard_by_b = await listen(a.sink), await listen(b.sink)
    assert tone_level_db(heard_by_a, RATE, B_TONE) > HEARD
    assert tone_level_db(heard_by_a, RATE, A_TONE) < SILENT
    assert tone_level_db(heard_by_b, RATE, A_TONE) > HEARD
    assert tone_level_db(heard_by_b, RATE, B_TONE) < SILENT
    stats = b.media.stats()
    assert stats.codec == codec and stats.packets_received > 20 and stats.packets_lost == 0


async def test_the_answerer_picks_from_its_own_codec_list(connect: Connect) -> None:
    a, b = await connect({"codecs": ["PCMU", "opus"]}, {"codecs": ["PCMA", "opus"]})
    assert a.media.audio is not None and b.media.audio is not None  # connected
    assert a.media.audio.codec.name == b.media.audio.codec.name == "opus"
    assert tones_present(await listen(a.sink), RATE, [A_TONE, B_TONE]) == {B_TONE}


@pytest.mark.parametrize("codec", ["opus", "PCMU"])
async def test_dtmf_159_hash_arrives_as_exactly_those_digits(connect: Connect, codec: str) -> None:
    kw = {"codecs": [codec]} if codec != "opus" else {}
    a, b = await connect(kw, kw)
    audio = a.media.audio
    assert audio is not None  # connected
    assert audio.te_payload_type is not None
    step = audio.codec.timestamp_step
    b.packets.clear()
    await a.media.send_dtmf("159#")
    await until(lambda: len(b.digits) >= 4)
    await asyncio.sleep(0.1)  # an absence: nothing more may follow (repeated end packets)
    assert b.digits == ["1", "5", "9", "#"]
    assert a.digits == []

    # The RFC 4733 packets, in sequence order: one sequence space with the audio.
    packets = sorted(b.packets, key=lambda p: p.sequence_number)
    seqs = [p.sequence_number for p in packets]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # (no wrap in a few seconds)
    te = [p for p in packets if p.payload_type == audio.te_payload_type]
    events: dict[int, list[RtpPacket]] = {}
    for p in te:
        events.setdefault(p.timestamp, []).append(p)
    assert len(events) == 4
    starts = sorted(events)
    for ts, digit in zip(starts, "159#", strict=True):
        group = events[ts]
        decoded = [decode_event(p.payload) for p in group]
        assert all(e is not None and e.digit == digit for e in decoded)
        assert [p.marker for p in group] == [1] + [0] * (len(group) - 1)
        durations = [e.duration for e in decoded if e is not None]
        ends = [e.end for e in decoded if e is not None]
        assert durations == [step * k for k in range(1, 6)] + [step * 5] * 3  # 100 ms
        assert ends == [False] * 5 + [True] * 3
        # The audio clock ran on under the event: the next audio packet is 8 ticks later.
        after = packets[packets.index(group[-1]) + 1]
        assert after.payload_type == audio.payload_type
        assert after.timestamp == (ts + 8 * step) & 0xFFFFFFFF
    # 100 ms event + 2 more end packets + 70 ms gap (4 ticks) between starts.
    assert [(s - starts[0]) // step for s in starts] == [0, 12, 24, 36]


async def test_a_comma_pauses_and_calls_queue_in_order(connect: Connect) -> None:
    a, b = await connect()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(a.media.send_dtmf("1,2", duration_ms=40), a.media.send_dtmf("3"))
    assert loop.time() - started > 0.5
    await until(lambda: len(b.digits) >= 3)
    assert b.digits == ["1", "2", "3"]


async def test_local_mute_sends_silence_that_the_far_side_hears_as_such(connect: Connect) -> None:
    a, b = await connect()
    assert tone_level_db(await listen(b.sink), RATE, A_TONE) > HEARD
    a.media.muted = True
    await listen(b.sink, 0.1)  # packets already in flight
    muted = await listen(b.sink)
    assert len(muted) >= 0.4 * RATE  # packets keep flowing: silence is sent, not nothing
    assert tone_level_db(muted, RATE, A_TONE) < SILENT
    a.media.muted = False
    await listen(b.sink, 0.1)
    assert tone_level_db(await listen(b.sink), RATE, A_TONE) > HEARD


async def test_swapping_the_source_changes_what_the_far_side_hears(connect: Connect) -> None:
    a, b = await connect()
    previous = a.media.swap_source(ToneSource(1400))
    assert isinstance(previous, ToneSource) and previous.freqs == (A_TONE,)
    await listen(b.sink, 0.1)
    assert tones_present(await listen(b.sink), RATE, [A_TONE, 1400]) == {1400}


async def test_dtmf_without_telephone_event_is_refused(connect: Connect) -> None:
    a, b = await connect({"codecs": ["PCMU"], "telephone_event": False})
    assert a.media.audio is not None and b.media.audio is not None  # connected
    assert a.media.audio.te_payload_type is None and b.media.audio.te_payload_type is None
    for side in (a, b):
        with pytest.raises(ProtocolError) as info:
            await side.media.send_dtmf("1")
        assert info.value.code is ErrorCode.DTMF_NOT_NEGOTIATED


@pytest.mark.parametrize("digits", ["", "12x", "1 2", "#E"])
async def test_invalid_digits_are_refused_before_anything_is_sent(digits: str) -> None:
    media = CallMedia(SilenceSource())  # not even connected: digits are checked first
    try:
        with pytest.raises(ProtocolError) as info:
            await media.send_dtmf(digits)
        assert info.value.code is ErrorCode.INVALID_DIGITS
    finally:
        await media.close()


async def test_unknown_codec_names_are_a_value_error() -> None:
    with pytest.raises(ValueError, match="G729"):
        CallMedia(codecs=["G729"])


# --------------------------------------------------------------------------------------------
# audio sources and sinks


def write_wav(path: Path, rate: int, channels: int, freq: float, seconds: float) -> None:
    t = np.arange(int(rate * seconds)) / rate
    mono = (0.3 * 32767 * np.sin(2 * np.pi * freq * t)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.repeat(mono, channels).tobytes())


def test_a_stereo_8khz_wav_plays_as_48khz_mono_and_loops(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    write_wav(path, 8000, 2, 600, 0.5)
    src = WavSource(path)
    frames = [src.read() for _ in range(60)]  # 1.2 s: more than two rounds of the file
    assert all(f.shape == (960,) and f.dtype == np.int16 for f in frames)
    pcm = np.concatenate(frames)
    assert tone_level_db(pcm[9600:28800], RATE, 600) > -15
    once = WavSource(path, loop=False)
    tail = np.concatenate([once.read() for _ in range(30)])
    assert once.finished and not np.any(tail[-4000:])  # silence after the 0.5 s file


def test_wav_recorder_writes_what_it_gets(tmp_path: Path) -> None:
    path = tmp_path / "rec.wav"
    rec = WavRecorder(path)
    src = ToneSource(700)
    for _ in range(25):
        rec.write(src.read())
    rec.close()
    rec.write(src.read())  # after close: dropped
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, RATE)
        assert w.getnframes() == 25 * 960
    assert tone_level_db(WavSource(path).read(), RATE, 700) > -15


def test_buffer_sink_keeps_recent_audio_by_arrival_time() -> None:
    sink = BufferSink(max_seconds=0.1)
    frame = np.ones(960, dtype=np.int16)
    for _ in range(10):
        sink.write(frame)
    assert sink.frames_received == 10
    assert len(sink.samples()) == 5 * 960  # only max_seconds are kept
    assert len(sink.samples(5.0)) == 5 * 960
    sink.clear()
    assert len(sink.samples()) == 0 and sink.frames_received == 10


def test_the_client_exports_what_it_documents() -> None:
    import inspect

    import callbridge.client as client

    assert len(client.__all__) == len(set(client.__all__))
    for name in client.__all__:
        member = getattr(client, name)  # AttributeError if __all__ promises too much
        if inspect.isclass(member) or inspect.isfunction(member):
            assert inspect.getdoc(member), f"{name} has no docstring"
