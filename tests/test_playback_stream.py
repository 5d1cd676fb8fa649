"""Streamed playback (issue 10, defect 2): a play decodes from disk a second ahead of the
player instead of decoding the whole file (a 30-minute file took ≈ 165 MiB per play, five
plays +1.27 GB), and concurrent plays are limited per user and in all.
"""

from __future__ import annotations

import asyncio
import gc
import http.server
import os
import threading
import tracemalloc
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from callbridge.client import BufferSink, Conference, Phone, SilenceSource
from callbridge.config import ServerConfig
from callbridge.errors import MediaError, RemoteError
from callbridge.media.fetch import acting_for, configure_outbound, playback_limit
from callbridge.media.interface import AudioSpec
from callbridge.media.playback import Playback, open_audio
from callbridge.media.stream import AHEAD, PcmStream
from callbridge.rtp.codecs import MIX_FRAME, MIX_RATE
from callbridge.testing import tone_level_db
from callbridge.testing.server import serve
from conftest import TEST_OUTBOUND
from media_peers import sine

TONE = 700.0
FRAMES_PER_SECOND = 50


def write_wav(path: Path, seconds: float, freq: float = TONE, rate: int = 8000) -> Path:
    """A mono 16-bit WAV of a tone, written a minute at a time (a long one never sits in
    memory whole here either)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        minute = sine(freq, 60.0, rate).tobytes()  # a whole number of periods of 700 Hz
        whole, rest = divmod(seconds, 60.0)
        for _ in range(int(whole)):
            w.writeframes(minute)
        w.writeframes(sine(freq, rest, rate).tobytes())
    return path


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def play_ahead(pb: Playback, stream: PcmStream, frames: int) -> list[np.ndarray]:
    """Take ``frames`` frames as fast as the decoder gives them (waiting for it, never
    hearing silence for want of it); returns copies of the last second."""
    kept: list[np.ndarray] = []
    for i in range(frames):
        if stream.buffered < MIX_FRAME:
            await stream.decoded()
        frame = pb.next_frame()
        assert frame is not None, f"the sound ended after {i} frames"
        if i >= frames - FRAMES_PER_SECOND:
            kept.append(frame.copy())
    return kept


@pytest.fixture
def limits() -> Iterator[None]:
    """Small playback limits for the test (3 in all, 2 per user), restored afterwards."""
    configure_outbound(
        ServerConfig(
            max_playbacks=3,
            max_playbacks_per_user=2,
            allow_fetch_from=TEST_OUTBOUND.allow_fetch_from,
            allow_webhooks_to=TEST_OUTBOUND.allow_webhooks_to,
        )
    )
    yield
    configure_outbound(TEST_OUTBOUND)


async def test_a_30_minute_file_plays_in_bounded_memory(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "long.wav", 30 * 60)  # 28.8 MB on disk, 165 MiB decoded
    before = rss_bytes()
    tracemalloc.start()
    try:
        stream = await open_audio(AudioSpec("file", str(path)))
        assert isinstance(stream, PcmStream)
        pb = Playback("long", stream)
        most = 0
        for _ in range(20):  # 20 times 3 s: the buffer never holds more than a second or so
            heard = await play_ahead(pb, stream, 3 * FRAMES_PER_SECOND)
            most = max(most, stream.buffered)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    grew = rss_bytes() - before
    assert most <= AHEAD + 4 * 1024, most
    assert peak < 2 * 1024 * 1024, peak  # Python-side: the PCM buffer and its chunks
    assert grew < 40 * 1024 * 1024, grew  # the whole process: FFmpeg's buffers included
    assert stream.underruns == 0
    assert tone_level_db(np.concatenate(heard), MIX_RATE, TONE) > -25  # it is the file's tone
    pb.end("stopped")
    assert playback_limit().running == 0


async def test_a_streamed_sound_loops_then_ends_and_gives_its_slot_back(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "short.wav", 0.3)
    stream = await open_audio(AudioSpec("file", str(path), loops=3))
    assert isinstance(stream, PcmStream) and playback_limit().running == 1
    ended: list[str] = []
    pb = Playback("short", stream, on_end=lambda _pb, status, _detail: ended.append(status))
    frames: list[np.ndarray] = []
    while True:
        if stream.buffered < MIX_FRAME:
            await stream.decoded()
        frame = pb.next_frame()
        if frame is None:
            break
        frames.append(frame.copy())
    assert len(frames) == 45  # three passes of 0.3 s, 20 ms each
    pcm = np.concatenate(frames)
    for third in np.array_split(pcm, 3):  # each pass is the tone
        assert tone_level_db(third, MIX_RATE, TONE) > -25
    pb.end("completed")
    assert ended == ["completed"] and playback_limit().running == 0


async def test_playbacks_over_the_limits_are_refused_with_the_limit(
    limits: None, tmp_path: Path
) -> None:
    spec = AudioSpec("file", str(write_wav(tmp_path / "a.wav", 1.0)))
    with acting_for("user:alice"):
        first = [await open_audio(spec), await open_audio(spec)]
        with pytest.raises(MediaError) as err:
            await open_audio(spec)
        assert err.value.message == (
            "too many playbacks in progress: at most 2 per user; wait for one to end (an "
            "operator sets the limit with --max-playbacks-per-user)"
        )
        tone = await open_audio(AudioSpec("tone", "beep"))  # conference tones do not count
        assert isinstance(tone, np.ndarray)
    with acting_for("user:bob"):
        bobs = await open_audio(spec)
    with acting_for("user:carol"), pytest.raises(MediaError, match="at most 3 at once"):
        await open_audio(spec)
    # A stream dropped without being closed (its mixer went while it opened) frees its slot.
    del bobs
    gc.collect()
    with acting_for("user:carol"):
        carols = await open_audio(spec)
    for stream in [*first, carols]:
        assert isinstance(stream, PcmStream)
        stream.close()
    assert playback_limit().running == 0


# ----------------------------------------------------------------------------- on the wire
@pytest.fixture
def long_wav_site(tmp_path: Path) -> Iterator[str]:
    """A static HTTP server on 127.0.0.1 with ``long.wav`` (a minute of 700 Hz)."""
    folder = tmp_path / "site"
    folder.mkdir()
    write_wav(folder / "long.wav", 60.0, rate=16000)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, directory=str(folder), **kw)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/long.wav"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
async def one_play_each(tmp_path: Path) -> AsyncIterator[Any]:
    async with serve(
        tmp_path / "server", users=["alice", "bob"], args=["--max-playbacks-per-user", "1"]
    ) as server:
        yield server


async def heard_level(sink: BufferSink) -> float:
    sink.clear()
    await asyncio.sleep(1.0)  # the measurement: 0.8 s of what arrived (and 0.2 s spare)
    pcm = sink.samples(0.8)
    return tone_level_db(pcm, MIX_RATE, TONE) if pcm.size > MIX_RATE * 0.4 else -120.0


async def test_a_user_playing_at_their_limit_gets_a_clear_error_and_the_play_goes_on(
    one_play_each: Any, long_wav_site: str
) -> None:
    server = one_play_each
    alice, bob = server.users["alice"], server.users["bob"]
    async with Phone(server.ws_url, alice.token) as a, Phone(server.ws_url, bob.token) as b:
        invited: asyncio.Queue[Conference] = asyncio.Queue()
        b.on("conference:invitation-received", invited.put_nowait)
        conf = await a.start_conference(source=SilenceSource())
        await conf.add_participant(bob.extension)
        await asyncio.wait_for(invited.get(), 5)
        bob_sink = BufferSink()
        await b.join_conference(source=SilenceSource(), sink=bob_sink)
        await conf.play(long_wav_site, loops=0)
        assert await heard_level(bob_sink) > -30  # bob hears the file
        with pytest.raises(RemoteError) as err:
            await conf.play(long_wav_site)
        assert err.value.code == "invalid_state"
        assert err.value.message.startswith(
            "too many playbacks in progress: at most 1 per user; wait for one to end"
        )
        assert await heard_level(bob_sink) > -30  # the first play goes on
        await conf.stop()
        assert await heard_level(bob_sink) < -45
        await conf.play(long_wav_site)  # the slot came back with the stop
        assert await heard_level(bob_sink) > -30
        await conf.end()
