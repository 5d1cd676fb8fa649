"""Real WebRTC peers for media-plane tests: the SDK's CallMedia connected straight to a
MediaServer in the test process (no signalling server), each sending its own tone.

A peer offers, the server answers (``server.answer``), and the peer applies the answer: that is
the whole setup, ≈ 30 ms on loopback. What a peer hears is analysed with callbridge.testing.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from callbridge.client import BufferSink, CallMedia, SilenceSource, ToneSource
from callbridge.rtp.codecs import Pcm
from callbridge.testing import tone_level_db

RATE = 48000


class Peer:
    """A device: its CallMedia, what it sends (``tone``, None for silence) and what it hears."""

    def __init__(self, endpoint_id: str, media: CallMedia, sink: BufferSink, tone: float | None):
        self.id = endpoint_id
        self.media = media
        self.sink = sink
        self.tone = tone
        self.digits: list[str] = []
        media.on_dtmf = self.digits.append

    def talk(self, tone: float | None) -> None:
        """Start sending ``tone`` (or silence)."""
        self.tone = tone
        self.media.swap_source(ToneSource(tone) if tone is not None else SilenceSource())


async def connect(
    server: Any, endpoint_id: str, tone: float | None, codec: str = "opus", **kw: Any
) -> Peer:
    """A peer connected to ``server`` as endpoint ``endpoint_id`` (its media flowing)."""
    sink = BufferSink()
    source = ToneSource(tone) if tone is not None else SilenceSource()
    media = CallMedia(source, sink, codecs=[codec], **kw)
    answer = await server.answer(endpoint_id, await media.create_offer())
    await media.accept_answer(answer)
    async with asyncio.timeout(5):
        await media.wait_connected()
        # Polling: the server's side of the negotiation has no event to wait on here.
        while (await server.endpoint_info(endpoint_id)).codec is None:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
    return Peer(endpoint_id, media, sink, tone)


async def hear(*peers: Peer, seconds: float = 0.4, settle: float = 0.15) -> list[Pcm]:
    """What each peer hears over the same ``seconds``, after ``settle`` seconds for a change
    to reach them. A peer that was sent nothing gets an empty array (silence)."""
    await asyncio.sleep(settle)
    for p in peers:
        p.sink.clear()
    await asyncio.sleep(seconds + 0.05)
    return [p.sink.samples(seconds) for p in peers]


def level(pcm: Pcm, freq: float) -> float:
    """dBFS of ``freq`` in ``pcm``; silence when (almost) nothing arrived."""
    if pcm.size < RATE * 0.1:
        return -120.0
    return tone_level_db(pcm, RATE, freq)


def levels(pcm: Pcm, freqs: list[float]) -> list[float]:
    return [round(level(pcm, f), 1) for f in freqs]


def sine(freq: float, seconds: float, rate: int = RATE, amplitude: float = 0.15) -> Pcm:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


async def close_all(server: Any, peers: list[Peer]) -> None:
    for p in peers:
        await p.media.close()
    await server.shutdown()
