"""callbridge.testing: the ear of the end-to-end tests, checked on synthetic signals."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from callbridge.client import ToneSource
from callbridge.testing import (
    SILENCE_DB,
    dominant_frequency,
    rms_dbfs,
    tone_level_db,
    tones_present,
)

RATE = 48000


def sine(
    freq: float, amplitude: float, seconds: float = 0.8, rate: int = RATE
) -> npt.NDArray[np.float64]:
    t = np.arange(int(seconds * rate)) / rate
    return amplitude * 32767 * np.sin(2 * np.pi * freq * t + 0.3)


def pcm(x: npt.NDArray[np.float64]) -> npt.NDArray[np.int16]:
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def expected_db(amplitude: float) -> float:
    return 20 * math.log10(amplitude * 32767 / math.sqrt(2) / 32768)


@pytest.mark.parametrize("freq", [440.0, 441.3, 997.7, 1000.0, 3150.6])
def test_a_pure_tone_measures_its_level_on_or_between_bins(freq: float) -> None:
    x = pcm(sine(freq, 0.3))
    assert tone_level_db(x, RATE, freq) == pytest.approx(expected_db(0.3), abs=0.3)
    assert rms_dbfs(x) == pytest.approx(expected_db(0.3), abs=0.1)
    assert dominant_frequency(x, RATE) == pytest.approx(freq, abs=0.5)


def test_a_mixture_of_440_and_1000_hz_shows_both_and_not_1400() -> None:
    x = pcm(sine(440, 0.15) + sine(1000, 0.15))
    assert tones_present(x, RATE, [440, 1000, 1400]) == {440, 1000}
    assert tone_level_db(x, RATE, 440) == pytest.approx(expected_db(0.15), abs=0.3)
    assert tone_level_db(x, RATE, 1400) < -90


def test_silence_has_no_tones_and_a_floor_level() -> None:
    x = np.zeros(RATE, dtype=np.int16)
    assert rms_dbfs(x) == SILENCE_DB
    assert tone_level_db(x, RATE, 440) == SILENCE_DB
    assert tones_present(x, RATE, [440, 1000]) == set()
    assert dominant_frequency(x, RATE) == 0.0
    assert rms_dbfs(np.zeros(0, dtype=np.int16)) == SILENCE_DB


def test_loud_noise_is_not_a_tone_but_a_quiet_tone_in_it_is_found() -> None:
    rng = np.random.default_rng(7)
    noise = rng.standard_normal(int(0.8 * RATE)) * 32768 * 10 ** (-20 / 20)  # -20 dBFS
    assert rms_dbfs(pcm(noise)) == pytest.approx(-20, abs=0.5)
    # Spread over ~19 000 bins, -20 dBFS of noise is far below the detection threshold.
    assert tones_present(pcm(noise), RATE, [440, 1000, 1400]) == set()
    mixed = pcm(noise + sine(1000, 0.025))  # a tone at -35 dBFS under the noise
    assert tones_present(mixed, RATE, [440, 1000, 1400]) == {1000}
    assert tone_level_db(mixed, RATE, 1000) == pytest.approx(expected_db(0.025), abs=1.0)


def test_g711_rate_and_short_windows_work() -> None:
    x = pcm(sine(1000, 0.5, seconds=0.1, rate=8000))
    assert tone_level_db(x, 8000, 1000) == pytest.approx(expected_db(0.5), abs=0.5)
    assert tone_level_db(x, 8000, 5000) == SILENCE_DB  # above Nyquist: nothing to measure


def test_tone_source_is_continuous_across_frames() -> None:
    src = ToneSource(440)
    x = np.concatenate([src.read() for _ in range(40)])
    assert all(src.read().shape == (960,) for _ in range(3))
    assert tone_level_db(x, RATE, 440) == pytest.approx(expected_db(0.3), abs=0.3)
    # A phase jump at a frame boundary would leave a residual far above int16 rounding.
    residual = x.astype(np.float64) - tone_fit(x, 440)
    assert rms_dbfs(residual) < -80


def tone_fit(x: npt.NDArray[np.int16], freq: float) -> npt.NDArray[np.float64]:
    """Least-squares fit of one sinusoid at ``freq`` (what a click-free tone must match)."""
    t = np.arange(x.size) / RATE
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, x.astype(np.float64), rcond=None)
    fitted: npt.NDArray[np.float64] = basis @ coef
    return fitted


def test_two_tone_source_keeps_the_peak_within_amplitude() -> None:
    src = ToneSource(350, 440, amplitude=0.5)
    x = np.concatenate([src.read() for _ in range(50)])
    assert np.abs(x).max() <= 0.5 * 32767 + 1
    assert tones_present(x, RATE, [350, 440, 1000], threshold_db=-30) == {350, 440}


def test_notes_of_a_melody_count_for_the_time_they_sound_wherever_they_are() -> None:
    notes = [523.25, 659.25, 783.99, 880.0]
    x = pcm(np.concatenate([sine(f, 0.3, seconds=0.25) for f in notes]))
    levels = [tone_level_db(x, RATE, f) for f in notes]
    # Each note sounds a quarter of the time: 6 dB under a steady tone, first as much as last.
    assert levels == pytest.approx([expected_db(0.3) - 6.02] * 4, abs=1.0)
    assert tones_present(x, RATE, [*notes, 440.0], threshold_db=-25) == set(notes)
