"""Audio analysis for tests: which tones are in a recording, and how loud.

Check a call by what was *heard*, not by which methods were called::

    sink = BufferSink()
    call = await phone.call("105", source=ToneSource(440), sink=sink)
    await call.wait_for("answered")
    sink.clear()
    await asyncio.sleep(1.0)
    pcm = sink.samples(0.8)
    assert tone_level_db(pcm, 48000, 1000) > -35  # the far party's 1000 Hz tone arrived
    assert tones_present(pcm, 48000, [440, 1000]) == {1000}  # ... and not our own

Levels are dBFS of the RMS, so a full-scale square wave is 0 dB and a sine of peak amplitude
``a`` (as a fraction of full scale) is ``20·log10(a/√2)`` dB: ``ToneSource(440)`` (peak 0.3)
measures about -13.5 dB. Silence is reported as :data:`SILENCE_DB` rather than ``-inf``.
Only numpy is used.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

__all__ = [
    "SILENCE_DB",
    "dominant_frequency",
    "rms_dbfs",
    "tone_level_db",
    "tones_present",
]

SILENCE_DB = -120.0
_FULL_SCALE = 32768.0
# Where a tone is measured: the nominal frequency and ± a quarter and half of a bin, keeping
# the highest. With a Hann window that makes the estimate exact within ~0.5 dB for a tone that
# sits anywhere between bins or is off by up to half a bin (±2.5 Hz with 200 ms segments).
_BIN_OFFSETS = (-0.5, -0.25, 0.0, 0.25, 0.5)


def _as_float(pcm: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """int16 samples (or floats already in ±32768) as float64, flattened to one channel."""
    return np.asarray(pcm, dtype=np.float64).reshape(-1)


def _to_db(amplitude_rms: float) -> float:
    if amplitude_rms <= 0.0:
        return SILENCE_DB
    return max(SILENCE_DB, 20.0 * float(np.log10(amplitude_rms / _FULL_SCALE)))


def rms_dbfs(pcm: npt.ArrayLike) -> float:
    """Overall level of ``pcm`` in dBFS (RMS); :data:`SILENCE_DB` for silence or no samples."""
    x = _as_float(pcm)
    if x.size == 0:
        return SILENCE_DB
    return _to_db(float(np.sqrt(np.mean(x * x))))


def _segments(x: npt.NDArray[np.float64], size: int) -> npt.NDArray[np.float64]:
    """Overlapping (50 %) segments of ``size`` samples covering all of ``x``, one per row.

    The last segment is aligned to the end, so no sample is left out; with a Hann window the
    segments weigh every part of the signal about equally (Welch's method).
    """
    if x.size <= size:
        return x[None, :]
    hop = size // 2
    starts = list(range(0, x.size - size + 1, hop))
    if starts[-1] != x.size - size:
        starts.append(x.size - size)
    return np.stack([x[s : s + size] for s in starts])


def tone_level_db(pcm: npt.ArrayLike, rate: int, freq: float) -> float:
    """Level in dBFS (RMS) of the sinusoid at ``freq`` Hz in ``pcm`` sampled at ``rate`` Hz.

    The tone's power is measured in overlapping 200 ms Hann-windowed segments (Welch) and
    averaged, so a tone present for only part of the recording (a note of a melody, a tone
    that starts late) counts for the time it sounds, wherever that is. In each segment the
    spectrum is evaluated exactly at ``freq`` and within ± half a bin, so the frequency need
    not fall on an FFT bin. For a steady pure tone this equals :func:`rms_dbfs`; other tones
    and noise contribute little (Hann side lobes fall fast). Use at least ~0.1 s of audio.
    """
    x = _as_float(pcm)
    if x.size == 0 or freq <= 0 or freq >= rate / 2:
        return SILENCE_DB
    segments = _segments(x, max(1, rate // 5))
    size = segments.shape[1]
    window = np.hanning(size) if size > 1 else np.ones(1)
    t = np.arange(size) / rate
    offsets = np.array(_BIN_OFFSETS) * rate / size
    probes = np.clip(freq + offsets, 1e-9, rate / 2 - 1e-9)
    # One DFT coefficient per probe frequency and segment (Goertzel in matrix form).
    basis = np.exp(-2j * np.pi * probes[None, :] * t[:, None])  # size × probes
    coefs = np.abs((segments * window) @ basis)  # segments × probes
    peaks = 2.0 * coefs.max(axis=1) / float(window.sum())  # amplitude per segment
    return _to_db(float(np.sqrt(np.mean(peaks**2))) / np.sqrt(2.0))


def tones_present(
    pcm: npt.ArrayLike, rate: int, freqs: Iterable[float], threshold_db: float = -40.0
) -> set[float]:
    """The members of ``freqs`` whose level (see :func:`tone_level_db`) is ≥ ``threshold_db``."""
    x = _as_float(pcm)
    return {f for f in freqs if tone_level_db(x, rate, f) >= threshold_db}


def dominant_frequency(pcm: npt.ArrayLike, rate: int) -> float:
    """The frequency (Hz) of the strongest spectral peak, refined between bins.

    The spectrum is averaged over overlapping Hann-windowed segments of up to one second.
    DC is ignored; returns 0.0 for silence or fewer than 4 samples. Precision is a small
    fraction of a bin (``rate`` / segment length) for a clean tone.
    """
    x = _as_float(pcm)
    if x.size < 4:
        return 0.0
    segments = _segments(x - x.mean(), rate)
    size = segments.shape[1]
    spectrum = np.sqrt(np.mean(np.abs(np.fft.rfft(segments * np.hanning(size))) ** 2, axis=0))
    spectrum[0] = 0.0
    k = int(np.argmax(spectrum))
    if spectrum[k] <= 0.0:
        return 0.0
    offset = 0.0
    if 0 < k < spectrum.size - 1:
        # Parabolic interpolation on the log magnitude of the peak and its neighbours.
        a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-12)
        denom = a - 2 * b + c
        if denom != 0:
            offset = float(0.5 * (a - c) / denom)
    return float((k + offset) * rate / size)
