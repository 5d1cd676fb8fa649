"""The SDK sends the RFC 6464 client-to-mixer audio level, so the mixer skips its silent legs.

Real WebRTC peers (the SDK's CallMedia) in a real mixer (the media engine a server runs): what
the mixer's inputs count is what the levels in the packets made them do.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest

from callbridge.client.audiolevel import SILENCE_LEVEL, audio_level
from callbridge.media.engine import InProcessMediaServer
from callbridge.rtp.webrtc import restrict_ice_addresses
from media_peers import connect
from parties import until

restrict_ice_addresses(["127.0.0.1"])


def sine(amplitude: float, samples: int = 960) -> np.ndarray:
    t = np.arange(samples) / 48000
    return (amplitude * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


def test_levels_are_minus_dbov_from_0_to_127() -> None:
    # RFC 6464 §3: 0 dBov is a full-scale square wave; a full-scale sine is -3 dBov.
    assert audio_level(np.full(960, -32768, dtype=np.int16)) == (True, 0)
    assert audio_level(sine(1.0)) == (True, 3)
    assert audio_level(sine(0.3)) == (True, 13)  # the SDK's ToneSource: about -13.5 dBFS
    assert audio_level(sine(0.001)) == (False, 63)
    assert audio_level(np.zeros(960, dtype=np.int16)) == (False, SILENCE_LEVEL)
    assert audio_level(np.ones(960, dtype=np.int16)) == (False, 90)  # 1 LSB: -90 dBov
    assert audio_level(np.zeros(0, dtype=np.int16)) == (False, SILENCE_LEVEL)


@pytest.fixture
async def server() -> AsyncIterator[InProcessMediaServer]:
    server = InProcessMediaServer(["127.0.0.1"])
    await server.create_mixer("room")
    yield server
    await server.shutdown()


async def test_the_mixer_decodes_the_talking_sdk_leg_and_skips_the_silent_one(
    server: InProcessMediaServer,
) -> None:
    talker = await connect(server, "talker", 440.0)
    quiet = await connect(server, "quiet", None)
    try:
        await server.mixer_add("room", "talker")
        await server.mixer_add("room", "quiet")
        mixer = server.mixer("room")
        assert mixer is not None
        members = [mixer.member("talker"), mixer.member("quiet")]
        assert members[0] is not None and members[1] is not None
        loud, silent = members[0].fifo, members[1].fifo
        await until(lambda: silent.skipped >= 25 and loud.decoded >= 25)
        # Without levels the silent leg's Opus packets would all be decoded.
        assert silent.decoded == 0
        assert loud.skipped == 0
    finally:
        await talker.media.close()
        await quiet.media.close()
