"""``MediaServer.probe_audio``: is this sound usable, and how long is it (no endpoint needed)."""

from __future__ import annotations

import tracemalloc
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callbridge.errors import ErrorCode, MediaError
from callbridge.media.engine import InProcessMediaServer
from callbridge.media.interface import AudioSpec
from callbridge.media.playback import load_audio
from media_peers import sine


@pytest.fixture
async def server() -> AsyncIterator[InProcessMediaServer]:
    media = InProcessMediaServer(["127.0.0.1"])
    yield media
    await media.shutdown()
    assert media.endpoint_count == 0  # a probe leaves nothing behind


def write_wav(path: Path, seconds: float, rate: int = 16000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(sine(700.0, seconds, rate).tobytes())
    return path


async def test_a_wav_file_is_probed_for_its_length(
    server: InProcessMediaServer, tmp_path: Path
) -> None:
    path = write_wav(tmp_path / "hello.wav", 1.5)
    assert await server.probe_audio(AudioSpec("file", str(path))) == pytest.approx(1.5, abs=0.01)


async def test_a_conference_tone_is_probed_for_its_length(server: InProcessMediaServer) -> None:
    assert await server.probe_audio(AudioSpec("tone", "beep")) == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("missing.wav", None, "audio file not found"),
        ("notes.txt", b"these are not the sounds you are looking for\n" * 20, "has no audio"),
        ("empty.wav", b"", "not audio"),
    ],
)
async def test_unusable_files_are_refused_with_a_clear_error(
    server: InProcessMediaServer, tmp_path: Path, name: str, content: bytes | None, says: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(MediaError) as err:
        await server.probe_audio(AudioSpec("file", str(path)))
    assert err.value.code is ErrorCode.INVALID_AUDIO
    assert says in err.value.message


async def test_an_unknown_tone_or_kind_is_refused(server: InProcessMediaServer) -> None:
    for spec in (AudioSpec("tone", "fanfare"), AudioSpec("url", "ftp://example.org/a.wav")):
        with pytest.raises(MediaError) as err:
            await server.probe_audio(spec)
        assert err.value.code is ErrorCode.INVALID_AUDIO


async def test_probing_keeps_no_decoded_audio(server: InProcessMediaServer, tmp_path: Path) -> None:
    spec = AudioSpec("file", str(write_wav(tmp_path / "long.wav", 60.0)))
    pcm_bytes = 60 * 48000 * 2  # what the whole sound takes decoded: 5.8 MB
    tracemalloc.start()
    try:
        assert await server.probe_audio(spec) == pytest.approx(60.0, abs=0.01)
        probe_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        loaded = await load_audio(spec)
        load_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert loaded.nbytes == pcm_bytes
    assert load_peak > pcm_bytes  # the measure sees the PCM when it is kept ...
    assert probe_peak < pcm_bytes / 10  # ... and a probe holds a chunk at a time at most
