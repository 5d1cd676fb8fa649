"""Playbacks: files, URLs, text to speech and tones, as 48 kHz PCM ready to mix.

A :class:`Playback` hands out one 20 ms frame of 48 kHz mono int16 (the mixing format,
:data:`~callbridge.rtp.codecs.MIX_RATE`) per tick. Its sound is either

- an array in memory: conference tones and DTMF, short sounds made here; or
- a :class:`~callbridge.media.stream.PcmStream`: files, URLs and text to speech, decoded from
  disk a second ahead of the player on worker threads. Memory per playback stays about
  100 KiB whatever the sound's length (the whole 30-minute file decoded took 165 MiB).

:func:`open_audio` makes either; the request that starts a playback waits until the sound is
open and its first second decoded, so a bad file, URL or voice is refused by that request
rather than by an event later. A URL is first fetched to disk through the process's
:class:`~callbridge.media.fetch.MediaFetcher` (the outbound policy, one deadline, a size cap
and limits per user; FFmpeg never opens a URL itself) and the file deleted once open; text to
speech is written by ``espeak-ng -w`` to a file that goes the same way. Every stream holds a
slot of :func:`~callbridge.media.fetch.playback_limit` (``max_playbacks`` in all,
``max_playbacks_per_user`` per owner) until it ends.

Nothing here blocks the event loop: FFmpeg (through PyAV) runs on the decode threads
(:func:`~callbridge.media.stream.decode_pool`), fetches are async I/O, and espeak-ng is a
subprocess (:func:`asyncio.create_subprocess_exec`, text on stdin, never on the command line).
:func:`load_audio` and :func:`probe_audio` decode a sound whole (up to
:data:`~callbridge.media.stream.MAX_SECONDS`), for checks and tests.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from callbridge.errors import ErrorCode, MediaError
from callbridge.media.checks import check_audio
from callbridge.media.fetch import fetcher, playback_limit, remove
from callbridge.media.interface import AudioSpec, PlaybackStatus
from callbridge.media.players import tone_pcm
from callbridge.media.stream import MAX_SECONDS, PcmStream, decode_pool, decode_whole
from callbridge.rtp.codecs import MIX_FRAME, MIX_RATE, Pcm

__all__ = [
    "BAD_AUDIO",
    "MAX_SECONDS",
    "TTS_VOICES",
    "Playback",
    "Sound",
    "load_audio",
    "open_audio",
    "probe_audio",
]

TTS_VOICES = {"female": "+f3", "male": "+m3"}  # espeak-ng voice variants
_MAX_TTS_CHARS = 10_000
BAD_AUDIO = ErrorCode.INVALID_AUDIO  # a file, URL, voice or language that cannot be used

Sound = Pcm | PcmStream  # what a playback plays: an array in memory, or a stream from disk
EndCallback = Callable[["Playback", PlaybackStatus, str], None]


class Playback:
    """One playing sound: a cursor over its PCM that hands out one 20 ms frame per tick.

    ``sound`` is an array (played ``loops`` times, 0 for until stopped) or a stream (which
    was opened with its loops: ``loops`` is not used again). ``targets`` are the endpoint ids
    it is mixed for (empty: every member of its mixer). :meth:`end` reports the end once (the
    server turns it into a ``PlaybackStateChanged``) and closes a stream.
    """

    def __init__(
        self,
        playback_id: str,
        sound: Sound,
        loops: int = 1,
        targets: frozenset[str] = frozenset(),
        on_end: EndCallback | None = None,
    ) -> None:
        self.stream = sound if isinstance(sound, PcmStream) else None
        pcm = np.zeros(0, dtype=np.int16) if isinstance(sound, PcmStream) else sound
        if self.stream is None and pcm.size == 0:
            raise ValueError("a playback needs some audio")
        self.id = playback_id
        self.pcm = pcm
        self.targets = targets
        self.frames = 0  # frames handed out: the playback's own RTP clock, in ticks
        self.done = False  # the last frame was handed out
        self.ended = False  # end() was called
        self._passes_left: int | None = loops if loops > 0 else None  # None: until stopped
        self._position = 0
        self._buffer = np.zeros(MIX_FRAME, dtype=np.int16)
        self._on_end = on_end

    def next_frame(self) -> Pcm | None:
        """The next 20 ms, or ``None`` once the sound has played ``loops`` times.

        The frame may be a view of the sound or a buffer reused by the next call: use it
        before calling again.
        """
        if self.done:
            return None
        if self.stream is not None:
            return self._next_streamed(self.stream)
        pcm, pos = self.pcm, self._position
        self.frames += 1
        if pos + MIX_FRAME < pcm.size:  # the common case: a slice, no copy
            self._position = pos + MIX_FRAME
            return pcm[pos : pos + MIX_FRAME]
        buf, filled = self._buffer, 0
        while filled < MIX_FRAME:  # the end of a pass: wrap around or pad with silence
            take = min(MIX_FRAME - filled, pcm.size - pos)
            buf[filled : filled + take] = pcm[pos : pos + take]
            filled += take
            pos += take
            if pos >= pcm.size:
                pos = 0
                if self._passes_left is not None:
                    self._passes_left -= 1
                    if self._passes_left == 0:
                        buf[filled:] = 0
                        self.done = True
                        break
        self._position = pos
        return buf

    def _next_streamed(self, stream: PcmStream) -> Pcm | None:
        buf = self._buffer
        filled = stream.take(buf)
        if filled < MIX_FRAME:
            buf[filled:] = 0  # the end, or the decoder is late: silence
            if stream.finished:
                if stream.error:
                    self.end("failed", stream.error)
                    return None
                self.done = True
                if filled == 0:
                    return None
        self.frames += 1
        return buf

    def end(self, status: PlaybackStatus, detail: str = "") -> None:
        """Report the end (``completed``, ``stopped`` or ``failed``); later calls do nothing."""
        if self.ended:
            return
        self.ended = self.done = True
        if self.stream is not None:
            self.stream.close()
        if self._on_end is not None:
            self._on_end(self, status, detail)


# ------------------------------------------------------------------------------------ loading
async def open_audio(audio: AudioSpec) -> Sound:
    """``audio`` ready to play: a tone as an array, anything else as an open stream holding a
    slot of the playback limit (close it, or end its :class:`Playback`, to free it).

    :raises MediaError: (:data:`BAD_AUDIO`) for a file that does not exist or is not audio, a
        URL that is refused or cannot be fetched, an unknown voice or language, an unknown
        tone, bad loops; (``invalid_state``) too many playbacks or fetches in progress.
    """
    check_audio(audio)
    if audio.kind == "tone":
        return tone_pcm(audio.location)
    claim = playback_limit().claim()
    try:
        if audio.kind == "file":
            return await PcmStream.open(Path(audio.location), audio.location, audio.loops, claim)
        async with _local_copy(audio) as (path, name):
            return await PcmStream.open(path, name, audio.loops, claim)
    except BaseException:
        claim.release()
        raise


async def load_audio(audio: AudioSpec) -> Pcm:
    """Decode or synthesise ``audio`` whole to 48 kHz mono int16 (off the event loop).

    :raises MediaError: as :func:`open_audio`, and for a sound longer than
        :data:`MAX_SECONDS`.
    """
    pcm = await _whole(audio, keep=True)
    assert isinstance(pcm, np.ndarray)
    return pcm


async def probe_audio(audio: AudioSpec) -> float:
    """How many seconds ``audio`` lasts (one pass), checked exactly as :func:`load_audio`
    checks it, but counting samples instead of keeping them: probing a long file costs
    FFmpeg's buffers, not the decoded PCM.

    :raises MediaError: as :func:`load_audio`.
    """
    found = await _whole(audio, keep=False)
    samples = found.size if isinstance(found, np.ndarray) else found
    return samples / MIX_RATE


async def _whole(audio: AudioSpec, keep: bool) -> Pcm | int:
    """The PCM of ``audio`` when ``keep``, else how many samples it has."""
    check_audio(audio)
    if audio.kind == "tone":
        return tone_pcm(audio.location)
    loop = asyncio.get_running_loop()
    if audio.kind == "file":
        path = Path(audio.location)
        return await loop.run_in_executor(decode_pool(), decode_whole, path, audio.location, keep)
    async with _local_copy(audio) as (path, name):
        return await loop.run_in_executor(decode_pool(), decode_whole, path, name, keep)


class _local_copy:
    """``async with _local_copy(audio) as (path, name):`` a URL fetched, or text spoken, to a
    file that is deleted on the way out (a stream opened inside keeps reading it)."""

    def __init__(self, audio: AudioSpec) -> None:
        self.audio = audio
        self.path: Path | None = None

    async def __aenter__(self) -> tuple[Path, str]:
        audio = self.audio
        if audio.kind == "url":
            self.path = (await fetcher().fetch(audio.location)).path
            return self.path, audio.location
        self.path = await _speak(audio.location, audio.voice, audio.language)
        return self.path, "the synthesised speech"

    async def __aexit__(self, *_: object) -> None:
        if self.path is not None:
            remove(self.path)


# ----------------------------------------------------------------------------- text to speech
_espeak_languages: frozenset[str] | None = None


async def _run_espeak(*args: str, text: str | None = None) -> bytes:
    """Run espeak-ng; its standard output (``-w FILE``: nothing, the file has the speech)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise MediaError(
            ErrorCode.INVALID_STATE,
            "text to speech needs espeak-ng on the media server (Debian: apt install espeak-ng)",
        )
    # No stdin pipe without text: `--voices` exits at once without reading it, and writing to
    # a pipe whose reader has exited raises RuntimeError on uvloop (asyncio ignores it).
    proc = await asyncio.create_subprocess_exec(
        exe,
        *args,
        stdin=asyncio.subprocess.PIPE if text is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await proc.communicate(text.encode() if text is not None else None)
    except (RuntimeError, BrokenPipeError, ConnectionResetError) as exc:  # exited unread
        await proc.wait()
        raise MediaError(
            BAD_AUDIO, f"espeak-ng exited (status {proc.returncode}) before reading the text"
        ) from exc
    if proc.returncode != 0:
        message = err.decode(errors="replace").strip() or f"exit status {proc.returncode}"
        raise MediaError(BAD_AUDIO, f"espeak-ng could not speak the text: {message}")
    return out


async def _espeak_language(language: str) -> str:
    """The espeak-ng language for a BCP 47 tag: ``en-US`` -> ``en-us``, ``de-DE`` -> ``de``."""
    global _espeak_languages
    if _espeak_languages is None:
        listing = (await _run_espeak("--voices")).decode(errors="replace").splitlines()[1:]
        _espeak_languages = frozenset(line.split()[1] for line in listing if len(line.split()) > 1)
    tag = language.strip().lower().replace("_", "-")
    for candidate in (tag, tag.partition("-")[0]):
        if candidate in _espeak_languages:
            return candidate
    raise MediaError(
        BAD_AUDIO,
        f"no text-to-speech voice for language {language!r}: use a tag such as en-US, en-GB, "
        "de-DE, fr-FR (espeak-ng --voices lists them)",
    )


async def _speak(text: str, voice: str, language: str) -> Path:
    """``text`` spoken by espeak-ng into a new WAV file (22.05 kHz mono; the caller deletes
    it): a long text never sits in memory whole."""
    variant = TTS_VOICES.get(voice)
    if variant is None:
        raise MediaError(BAD_AUDIO, f"unknown voice {voice!r}: use one of {', '.join(TTS_VOICES)}")
    if not text.strip():
        raise MediaError(BAD_AUDIO, "there is no text to speak")
    if len(text) > _MAX_TTS_CHARS:
        raise MediaError(
            BAD_AUDIO, f"the text is longer than {_MAX_TTS_CHARS} characters: split it"
        )
    lang = await _espeak_language(language)
    fd, name = tempfile.mkstemp(prefix="speech-", suffix=".wav", dir=fetcher().spool())
    os.close(fd)
    path = Path(name)
    try:
        await _run_espeak("-b", "1", "-v", lang + variant, "-w", name, "--stdin", text=text)
    except BaseException:
        remove(path)
        raise
    return path
