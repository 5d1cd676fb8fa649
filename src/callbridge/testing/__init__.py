"""Test kit for applications built on callbridge (and for callbridge's own tests).

- :mod:`~callbridge.testing.server`: :func:`serve` (and its synchronous twin :func:`running`)
  starts a real callbridge server on 127.0.0.1 for a test, with users, tokens and API keys made
  as the CLI makes them, and checks on the way out that nothing leaked and the log holds no
  traceback.
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
from callbridge.testing.server import (
    Health,
    Server,
    ServerError,
    ServerOptions,
    ServerUser,
    create_user,
    free_port,
    running,
    serve,
)

__all__ = [
    "SILENCE_DB",
    "FakeMediaServer",
    "Gate",
    "Health",
    "Server",
    "ServerError",
    "ServerOptions",
    "ServerUser",
    "create_user",
    "dominant_frequency",
    "free_port",
    "rms_dbfs",
    "running",
    "serve",
    "tone_level_db",
    "tones_present",
]
