"""Test kit for applications built on callbridge (and for callbridge's own tests).

- :mod:`~callbridge.testing.audio`: which tones are in a recording, and how loud; check a call
  by what was *heard*.
"""

from callbridge.testing.audio import (
    SILENCE_DB,
    dominant_frequency,
    rms_dbfs,
    tone_level_db,
    tones_present,
)

__all__ = [
    "SILENCE_DB",
    "dominant_frequency",
    "rms_dbfs",
    "tone_level_db",
    "tones_present",
]
