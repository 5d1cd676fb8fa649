"""Playbacks: files, URLs, text to speech and tones, as 48 kHz PCM ready to mix.

A sound is decoded (or synthesised) completely, to 20 ms frames of 48 kHz mono int16 (the
mixing format, :data:`~callbridge.rtp.codecs.MIX_RATE`), before it starts. That keeps the
per-tick path to a slice of an array (no decoder, no I/O, nothing that can fail mid-way), lets
a bad file or URL be refused by the request that asked for it rather than by an event later,
and makes looping free. The cost is memory: 48 kHz mono is 5.6 MiB a minute, so sounds are
limited to :data:`MAX_SECONDS`. :func:`probe_audio` (is this usable audio, how long is it?)
decodes the same way and keeps nothing but the count of samples.

Loading never blocks the event loop: FFmpeg (through PyAV) decodes in a worker thread
(:func:`asyncio.to_thread`), reading files with its ``file`` protocol only and URLs with its
``http``/``https`` protocols only (an FFmpeg "URL" such as ``concat:`` or ``subfile,`` cannot
sneak through either kind); text to speech runs ``espeak-ng --stdout`` as a subprocess
(:func:`asyncio.create_subprocess_exec`, text on stdin, never on the command line).
"""

from __future__ import annotations

import asyncio
import io
import shutil
import time
from collections.abc import Callable
from typing import Any

import av
import numpy as np

from callbridge.errors import ErrorCode, MediaError
from callbridge.media.checks import check_audio
from callbridge.media.interface import AudioSpec, PlaybackStatus
from callbridge.media.players import tone_pcm
from callbridge.rtp.codecs import MIX_FRAME, MIX_RATE, Pcm

__all__ = [
    "BAD_AUDIO",
    "MAX_SECONDS",
    "TTS_VOICES",
    "Playback",
    "load_audio",
    "probe_audio",
]

MAX_SECONDS = 30 * 60  # longest sound accepted: 30 minutes is ≈ 165 MiB of 48 kHz PCM
TTS_VOICES = {"female": "+f3", "male": "+m3"}  # espeak-ng voice variants
_MAX_TTS_CHARS = 10_000
_URL_TIMEOUT = (10.0, 10.0)  # seconds: (open, each read)
_LOAD_DEADLINE = 30.0  # seconds a URL may take to load in all (a live stream never ends)
_FILE_PROTOCOLS = "file"
_URL_PROTOCOLS = "http,https,tcp,tls"
BAD_AUDIO = ErrorCode.INVALID_AUDIO  # a file, URL, voice or language that cannot be used

EndCallback = Callable[["Playback", PlaybackStatus, str], None]


class Playback:
    """One playing sound: a cursor over its PCM that hands out one 20 ms frame per tick.

    ``targets`` are the endpoint ids it is mixed for (empty: every member of its mixer).
    :meth:`end` reports the end once (the server turns it into a ``PlaybackStateChanged``).
    """

    def __init__(
        self,
        playback_id: str,
        pcm: Pcm,
        loops: int = 1,
        targets: frozenset[str] = frozenset(),
        on_end: EndCallback | None = None,
    ) -> None:
        if pcm.size == 0:
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

    def end(self, status: PlaybackStatus, detail: str = "") -> None:
        """Report the end (``completed``, ``stopped`` or ``failed``); later calls do nothing."""
        if self.ended:
            return
        self.ended = self.done = True
        if self._on_end is not None:
            self._on_end(self, status, detail)


# ------------------------------------------------------------------------------------ loading
async def load_audio(audio: AudioSpec) -> Pcm:
    """Decode or synthesise ``audio`` to 48 kHz mono int16 (off the event loop).

    :raises MediaError: (:data:`BAD_AUDIO`) for a file that does not exist or is not audio, a
        URL that cannot be fetched, an unknown voice or language, an unknown tone, bad loops.
    """
    pcm = await _load(audio, keep=True)
    assert isinstance(pcm, np.ndarray)
    return pcm


async def probe_audio(audio: AudioSpec) -> float:
    """How many seconds ``audio`` lasts (one pass), checked exactly as :func:`load_audio`
    checks it, but counting samples instead of keeping them: probing a long file costs
    FFmpeg's buffers, not the decoded PCM.

    :raises MediaError: as :func:`load_audio`.
    """
    found = await _load(audio, keep=False)
    samples = found.size if isinstance(found, np.ndarray) else found
    return samples / MIX_RATE


async def _load(audio: AudioSpec, keep: bool) -> Pcm | int:
    """The PCM of ``audio`` when ``keep``, else how many samples it has."""
    check_audio(audio)
    if audio.kind == "tone":
        return tone_pcm(audio.location)
    if audio.kind == "file":
        path = audio.location
        return await asyncio.to_thread(
            _decode, f"file:{path}", path, {"protocol_whitelist": _FILE_PROTOCOLS}, keep
        )
    if audio.kind == "url":
        url = audio.location
        options = {"protocol_whitelist": _URL_PROTOCOLS}
        return await asyncio.to_thread(_decode, url, url, options, keep, _LOAD_DEADLINE)
    wav = await _speak(audio.location, audio.voice, audio.language)  # tts
    return await asyncio.to_thread(_decode, io.BytesIO(wav), "the synthesised speech", {}, keep)


def _decode(
    source: Any, name: str, options: dict[str, str], keep: bool, deadline: float | None = None
) -> Pcm | int:
    """Decode the first audio stream of ``source`` to 48 kHz mono int16 (blocking), within
    ``deadline`` seconds: the PCM when ``keep``, else only its number of samples."""
    give_up = time.monotonic() + deadline if deadline is not None else None
    try:
        with av.open(source, options=options, timeout=_URL_TIMEOUT) as container:
            if not container.streams.audio:
                raise MediaError(BAD_AUDIO, f"{name} has no audio in it")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="s16", layout="mono", rate=MIX_RATE)
            chunks: list[Pcm] = []
            total = 0
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunk = _samples(out)
                    total += chunk.size
                    if keep:
                        chunks.append(chunk)
                if total > MAX_SECONDS * MIX_RATE:
                    raise MediaError(
                        BAD_AUDIO, f"{name} is longer than {MAX_SECONDS // 60} minutes"
                    )
                if give_up is not None and time.monotonic() > give_up:
                    raise MediaError(
                        BAD_AUDIO,
                        f"{name} did not load within {deadline:.0f} s (a slow server or a "
                        "live stream): give a file that can be fetched whole",
                    )
            for out in resampler.resample(None):
                chunk = _samples(out)
                total += chunk.size
                if keep:
                    chunks.append(chunk)
    except MediaError:
        raise
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
        raise MediaError(
            BAD_AUDIO, f"audio file not found: {name} (give a path on the media server)"
        ) from exc
    except av.error.HTTPError as exc:
        raise MediaError(BAD_AUDIO, f"fetching {name} failed: {_reason(exc)}") from exc
    except (av.error.InvalidDataError, av.error.DecoderNotFoundError) as exc:
        raise MediaError(
            BAD_AUDIO, f"{name} is not audio that can be decoded (WAV, MP3, Ogg, …)"
        ) from exc
    except (av.error.FFmpegError, OSError) as exc:  # connection refused, timeout, permissions
        raise MediaError(BAD_AUDIO, f"{name} could not be read: {_reason(exc)}") from exc
    if total == 0:
        raise MediaError(BAD_AUDIO, f"{name} contains no audio samples")
    if not keep:
        return total
    return np.concatenate(chunks).astype(np.int16, copy=False)


def _samples(frame: Any) -> Pcm:
    return np.asarray(frame.to_ndarray(), dtype=np.int16).reshape(-1)


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "strerror", None) or exc)


# ----------------------------------------------------------------------------- text to speech
_espeak_languages: frozenset[str] | None = None


async def _run_espeak(*args: str, text: str | None = None) -> bytes:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise MediaError(
            ErrorCode.INVALID_STATE,
            "text to speech needs espeak-ng on the media server (Debian: apt install espeak-ng)",
        )
    proc = await asyncio.create_subprocess_exec(
        exe,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(text.encode() if text is not None else b"")
    if proc.returncode != 0 or not out:
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


async def _speak(text: str, voice: str, language: str) -> bytes:
    """``text`` spoken by espeak-ng as WAV bytes (22.05 kHz mono)."""
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
    return await _run_espeak("-b", "1", "-v", lang + variant, "--stdout", "--stdin", text=text)
