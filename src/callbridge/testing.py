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
# sits anywhere between bins or is off by up to half a bin (a few Hz over a second).
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


def tone_level_db(pcm: npt.ArrayLike, rate: int, freq: float) -> float:
    """Level in dBFS (RMS) of the sinusoid at ``freq`` Hz in ``pcm`` sampled at ``rate`` Hz.

    The windowed (Hann) spectrum is evaluated exactly at ``freq`` and around it (± half a bin),
    so the frequency need not fall on an FFT bin. For a pure tone this equals
    :func:`rms_dbfs`; other tones and noise contribute little (Hann side lobes fall fast).
    Use at least ~0.1 s of audio: shorter windows cannot separate tones a few Hz apart.
    """
    x = _as_float(pcm)
    n = x.size
    if n == 0 or freq <= 0 or freq >= rate / 2:
        return SILENCE_DB
    window = np.hanning(n)
    xw = x * window
    t = np.arange(n) / rate
    bin_hz = rate / n
    best = 0.0
    for k in _BIN_OFFSETS:
        f = freq + k * bin_hz
        if not 0 < f < rate / 2:
            continue
        # One DFT coefficient at exactly f (a Goertzel in vector form).
        coef = complex(np.dot(xw, np.exp(-2j * np.pi * f * t)))
        best = max(best, abs(coef))
    peak = 2.0 * best / float(window.sum())  # undo the window's coherent gain
    return _to_db(peak / np.sqrt(2.0))


def tones_present(
    pcm: npt.ArrayLike, rate: int, freqs: Iterable[float], threshold_db: float = -40.0
) -> set[float]:
    """The members of ``freqs`` whose level (see :func:`tone_level_db`) is ≥ ``threshold_db``."""
    x = _as_float(pcm)
    return {f for f in freqs if tone_level_db(x, rate, f) >= threshold_db}


def dominant_frequency(pcm: npt.ArrayLike, rate: int) -> float:
    """The frequency (Hz) of the strongest spectral peak, refined between bins.

    DC is ignored; returns 0.0 for silence or fewer than 4 samples. Precision is a small
    fraction of a bin (``rate / len(pcm)``) for a clean tone.
    """
    x = _as_float(pcm)
    n = x.size
    if n < 4:
        return 0.0
    spectrum = np.abs(np.fft.rfft((x - x.mean()) * np.hanning(n)))
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
    return (k + offset) * rate / n
