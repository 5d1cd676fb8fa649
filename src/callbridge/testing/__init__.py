"""Test kit for applications built on callbridge (and for callbridge's own tests).

- :mod:`~callbridge.testing.audio`: which tones are in a recording, and how loud; check a call
  by what was *heard*.
- :mod:`~callbridge.testing.fake_media`: :class:`FakeMediaServer`, the ``MediaServer``
  interface in memory (deterministic; state to inspect, injected media events, staged races
  with :class:`Gate`), for fast tests of call logic without real media.
"""

from callbridge.testing.audio import (
    SILENCE_DB,
    dominant_frequency,
    rms_dbfs,
    tone_level_db,
    tones_present,
)
from callbridge.testing.fake_media import FakeMediaServer, Gate

__all__ = [
    "SILENCE_DB",
    "FakeMediaServer",
    "Gate",
    "dominant_frequency",
    "rms_dbfs",
    "tone_level_db",
    "tones_present",
]
