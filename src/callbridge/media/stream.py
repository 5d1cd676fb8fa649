"""Decoding audio files to 48 kHz mono int16 (the mixing format): streamed as a playback plays
it (:class:`PcmStream`), or whole (:func:`decode_whole`, for probing and short sounds).

A stream keeps at most :data:`AHEAD` samples decoded (1 s, 94 KiB) and asks for more when
fewer than half of that are left. FFmpeg (through PyAV) decodes on one of
:data:`DECODE_THREADS` worker threads shared by every stream, one request per stream at a
time, so the 20 ms media clock only ever copies from memory: a playback costs about
100 KiB of PCM plus FFmpeg's buffers, whether it lasts a second or an hour (decoding a
30-minute file whole took 165 MiB). If the decoder falls behind (a starved machine), the
player hears silence for that frame (:attr:`PcmStream.underruns` counts them) rather than
waiting.

Files are opened by Python and handed to FFmpeg as file objects: FFmpeg interprets no URL or
protocol name (``concat:``, ``subfile,``, ``http:`` inside a playlist), and a fetched file can
be deleted as soon as it is open (the open file stays readable), so nothing is left on disk
whatever happens to the playback. Looping reads the same open file again from the start.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import av
import numpy as np

from callbridge.errors import ErrorCode, MediaError
from callbridge.media.fetch import Claim
from callbridge.rtp.codecs import MIX_RATE, Pcm

__all__ = ["AHEAD", "DECODE_THREADS", "MAX_SECONDS", "PcmStream", "decode_pool", "decode_whole"]

log = logging.getLogger(__name__)

BAD_AUDIO = ErrorCode.INVALID_AUDIO
MAX_SECONDS = 30 * 60  # longest sound decoded whole (≈ 165 MiB of 48 kHz PCM when kept)
AHEAD = MIX_RATE  # samples a stream keeps decoded ahead of its player at most: 1 s
_REFILL_BELOW = AHEAD // 2  # ... and asks for more below this
DECODE_THREADS = 4  # worker threads decoding for every stream (and opening files)

_pool: ThreadPoolExecutor | None = None


def decode_pool() -> ThreadPoolExecutor:
    """The threads that open and decode files (not the default executor, so that decoding
    waits for nothing else and nothing else for it)."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="callbridge-decode")
    return _pool


@contextmanager
def _decode_errors(name: str) -> Iterator[None]:
    """Say what was wrong with ``name`` in a :class:`MediaError` (invalid_audio)."""
    try:
        yield
    except MediaError:
        raise
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
        raise MediaError(
            BAD_AUDIO, f"audio file not found: {name} (give a path on the media server)"
        ) from exc
    except (av.error.InvalidDataError, av.error.DecoderNotFoundError) as exc:
        raise MediaError(
            BAD_AUDIO, f"{name} is not audio that can be decoded (WAV, MP3, Ogg, …)"
        ) from exc
    except (av.error.FFmpegError, OSError, ValueError) as exc:  # permissions, a broken file
        reason = getattr(exc, "strerror", None) or exc
        raise MediaError(BAD_AUDIO, f"{name} could not be read: {reason}") from exc


class _Decoder:
    """One open file decoded pass after pass (blocking: worker threads only, one call at a
    time). ``passes``: how many times to play it, ``None`` for ever."""

    def __init__(self, file: BinaryIO, name: str, passes: int | None) -> None:
        self.file = file
        self.name = name
        self.passes_left = passes
        self._container: Any = None
        self._frames: Iterator[Any] = iter(())
        self._resampler: Any = None
        self._pass_samples = 0
        self._start_pass()

    @classmethod
    def open(cls, path: Path, name: str, passes: int | None) -> _Decoder:
        with _decode_errors(name):
            file = path.open("rb")
            try:
                return cls(file, name, passes)
            except BaseException:
                file.close()
                raise

    def _start_pass(self) -> None:
        with _decode_errors(self.name):
            self.close_container()
            self.file.seek(0)
            container = av.open(self.file, mode="r")
            if not container.streams.audio:
                container.close()
                raise MediaError(BAD_AUDIO, f"{self.name} has no audio in it")
            self._container = container
            self._frames = iter(container.decode(container.streams.audio[0]))
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=MIX_RATE)
            self._pass_samples = 0

    def read(self, want: int) -> tuple[list[Pcm], bool]:
        """At least ``want`` samples (fewer at the end): the chunks, and whether the last pass
        ended."""
        chunks: list[Pcm] = []
        got = 0
        with _decode_errors(self.name):
            while got < want:
                frame = next(self._frames, None)
                for out in self._resampler.resample(frame):  # None: flush the resampler
                    chunk = np.asarray(out.to_ndarray(), dtype=np.int16).reshape(-1)
                    chunks.append(chunk)
                    got += chunk.size
                    self._pass_samples += chunk.size
                if frame is not None:
                    continue
                if self._pass_samples == 0:
                    raise MediaError(BAD_AUDIO, f"{self.name} contains no audio samples")
                if self.passes_left is not None:
                    self.passes_left -= 1
                    if self.passes_left <= 0:
                        return chunks, True
                self._start_pass()
        return chunks, False

    def close_container(self) -> None:
        container, self._container = self._container, None
        self._frames = iter(())
        if container is not None:
            container.close()

    def close(self) -> None:
        try:
            self.close_container()
        except Exception:  # a broken file: closing is all that is left to do
            log.debug("closing the decoder of %s failed", self.name, exc_info=True)
        self.file.close()


def decode_whole(path: Path, name: str, keep: bool) -> Pcm | int:
    """Decode ``path`` once (blocking): its PCM when ``keep``, else only its number of
    samples (a chunk in memory at a time).

    :raises MediaError: not found, not audio, no samples, or longer than :data:`MAX_SECONDS`.
    """
    decoder = _Decoder.open(path, name, 1)
    chunks: list[Pcm] = []
    total = 0
    try:
        finished = False
        while not finished:
            got, finished = decoder.read(MIX_RATE)
            total += sum(c.size for c in got)
            if keep:
                chunks.extend(got)
            if total > MAX_SECONDS * MIX_RATE:
                raise MediaError(BAD_AUDIO, f"{name} is longer than {MAX_SECONDS // 60} minutes")
    finally:
        decoder.close()
    if not keep:
        return total
    return np.concatenate(chunks).astype(np.int16, copy=False)


def _dispose(decoder: _Decoder, claim: Claim | None) -> None:
    """A stream's end (or its garbage collection): its slot back, its file closed."""
    if claim is not None:
        claim.release()
    try:
        decode_pool().submit(decoder.close)
    except RuntimeError:  # the pool shut down (interpreter exit): close here
        decoder.close()


class PcmStream:
    """The PCM of one open file, decoded a little ahead of :meth:`take` on worker threads.

    Made by :meth:`open`; ``claim`` is the playback slot it holds until :meth:`close` (or
    until it is garbage-collected without being closed: the engine may drop a stream whose
    mixer went away while it opened).
    """

    def __init__(
        self,
        decoder: _Decoder,
        first: list[Pcm],
        finished: bool,
        claim: Claim | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.name = decoder.name
        self.underruns = 0  # frames the decoder was late for (silence was played instead)
        self.error = ""  # why decoding failed part-way ("" if it did not)
        self._decoder = decoder
        self._chunks: deque[Pcm] = deque(first)
        self._offset = 0  # samples of _chunks[0] already taken
        self._buffered = sum(c.size for c in first)
        self._eof = finished
        self._closed = False
        self._job: asyncio.Future[tuple[list[Pcm], bool]] | None = None
        self._loop = loop
        self._claim = claim
        self._finalizer = weakref.finalize(self, _dispose, decoder, claim)
        self._finalizer.atexit = False

    @classmethod
    async def open(
        cls, path: Path, name: str, loops: int = 1, claim: Claim | None = None
    ) -> PcmStream:
        """Open ``path`` and decode its first second (so a file that is not audio is refused
        here, by the request that asked for it). ``loops``: passes, 0 for until stopped.

        :raises MediaError: (invalid_audio) not found, not audio, no samples.
        """
        loop = asyncio.get_running_loop()
        try:
            decoder, first, finished = await loop.run_in_executor(
                decode_pool(), _open_and_read, path, name, loops or None
            )
        except BaseException:
            if claim is not None:
                claim.release()
            raise
        return cls(decoder, first, finished, claim, loop)

    @property
    def buffered(self) -> int:
        """Samples decoded and not taken yet (at most :data:`AHEAD` plus one chunk)."""
        return self._buffered

    @property
    def finished(self) -> bool:
        """Everything was taken and nothing more will come (the end, an error, or closed)."""
        return self._closed or (self._eof and self._buffered == 0 and self._job is None)

    def take(self, out: Pcm) -> int:
        """Copy the next samples into ``out``: how many (fewer than ``len(out)`` at the end,
        or when the decoder is late). Never blocks."""
        filled = 0
        while filled < out.size and self._chunks:
            chunk = self._chunks[0]
            n = min(out.size - filled, chunk.size - self._offset)
            out[filled : filled + n] = chunk[self._offset : self._offset + n]
            filled += n
            self._offset += n
            if self._offset == chunk.size:
                self._chunks.popleft()
                self._offset = 0
        self._buffered -= filled
        if filled < out.size and not self._eof and not self._closed:
            self.underruns += 1
        self._refill()
        return filled

    async def decoded(self) -> None:
        """Wait until the decoding asked for so far is done (for tests and tools: the player
        itself never waits)."""
        job = self._job
        if job is not None:
            await asyncio.wait({job})

    def _refill(self) -> None:
        if self._closed or self._eof or self._job is not None:
            return
        if self._buffered >= _REFILL_BELOW:
            return
        future: Future[tuple[list[Pcm], bool]] = decode_pool().submit(
            self._decoder.read, AHEAD - self._buffered
        )
        self._job = asyncio.wrap_future(future, loop=self._loop)
        self._job.add_done_callback(self._refilled)

    def _refilled(self, job: asyncio.Future[tuple[list[Pcm], bool]]) -> None:
        self._job = None
        if self._closed:
            self._finalizer()
            return
        if job.cancelled():
            self._eof = True
            return
        exc = job.exception()
        if exc is not None:
            self._eof = True
            self.error = exc.message if isinstance(exc, MediaError) else str(exc)
            log.warning("playing %s: decoding failed part-way: %s", self.name, self.error)
            return
        chunks, self._eof = job.result()
        self._chunks.extend(chunks)
        self._buffered += sum(c.size for c in chunks)

    def close(self) -> None:
        """Stop decoding, close the file and give the playback slot back (once)."""
        if self._closed:
            return
        self._closed = True
        self._chunks.clear()
        self._buffered = 0
        if self._claim is not None:
            self._claim.release()  # at once: the playback is over, whatever the decoder does
        if self._job is None:  # else _refilled closes the file once the decoder is free
            self._finalizer()


def _open_and_read(path: Path, name: str, passes: int | None) -> tuple[_Decoder, list[Pcm], bool]:
    decoder = _Decoder.open(path, name, passes)
    try:
        first, finished = decoder.read(AHEAD)
    except BaseException:
        decoder.close()
        raise
    return decoder, first, finished
