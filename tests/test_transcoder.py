"""A transcoded stream keeps the source's timing across a gap in its input (RFC 3550 section 7).

The regression of bench/sip.py's 22 % "late" at N = 50: the transcoder stamped its output by
counting frames, so 300 ms of input that never arrived left every later packet 290 ms behind
its due time at the far end. The phones are :class:`test_media_rtp.RtpPhone` sockets on
127.0.0.1; the server is the in-process media server.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from callbridge.media.engine import InProcessMediaServer
from callbridge.rtp.codecs import AudioEncoder
from test_media_rtp import PHONE_TONE, RtpPhone, _TimedPhone

pytestmark = pytest.mark.timeout(60)

GAP_S = 0.3
BEFORE_S = 0.6
AFTER_S = 0.6


@pytest.fixture
async def server() -> AsyncIterator[InProcessMediaServer]:
    media = InProcessMediaServer(["127.0.0.1"])
    yield media
    await media.shutdown()


async def _until(check: Any, within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110 - packets arrive on a socket; no event to wait on
            await asyncio.sleep(0.02)


@pytest.mark.parametrize(
    ("src", "dst", "ptime"), [("PCMA", "PCMU", 30), ("PCMU", "opus", 20), ("opus", "PCMU", 20)]
)
async def test_a_gap_in_a_transcoded_input_is_the_same_gap_in_its_output(
    server: InProcessMediaServer, src: str, dst: str, ptime: int
) -> None:
    a, b = RtpPhone(src, tone=None), _TimedPhone(dst)
    await a.open()
    await b.open()
    a.use_answer(await server.answer_rtp("a", a.offer()))
    b.use_answer(await server.answer_rtp("b", b.offer()))
    await server.bridge("a", "b")
    encoder = AudioEncoder(a.spec)
    n = a.spec.sample_rate * ptime // 1000  # samples in one packet
    units = a.spec.clock_rate * ptime // 1000  # RTP timestamp units in one packet
    total = round((BEFORE_S + GAP_S + AFTER_S) * 1000) // ptime
    first_lost, after = round(BEFORE_S * 1000) // ptime, round((BEFORE_S + GAP_S) * 1000) // ptime
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        for k in range(total):
            if not first_lost <= k < after:  # 300 ms of packets lost (their seq and ts skipped)
                t = (np.arange(n) + k * n) / a.spec.sample_rate
                pcm = (0.3 * 32767 * np.sin(2 * np.pi * PHONE_TONE * t)).astype(np.int16)
                a.send_packet(encoder.encode(pcm), a.pt, ts=k * units)
            else:
                a._seq = (a._seq + 1) & 0xFFFF  # lost on the way
            await asyncio.sleep(max(0.0, start + (k + 1) * ptime / 1000 - loop.time()))
        expected = (total - (after - first_lost)) * ptime // 20
        await _until(lambda: len(b.packets) >= expected - 3, within=5.0)
    finally:
        a.close()
        b.close()
    got = [
        (p, at) for (p, _), at in zip(b.packets, b.arrivals, strict=True) if p.payload_type == b.pt
    ]
    rate, step = b.spec.clock_rate, b.spec.timestamp_step
    steps = [(q.timestamp - p.timestamp) & 0xFFFFFFFF for (p, _), (q, _) in itertools.pairwise(got)]
    jump = max(range(len(steps)), key=steps.__getitem__)
    # Before and after the gap: one 20 ms frame per packet, as before the fix.
    assert set(steps[:jump]) == {step} and set(steps[jump + 1 :]) == {step}, steps
    # Across it: the gap itself plus the frame before it, within one frame.
    assert abs(steps[jump] / rate - (GAP_S + 0.02)) <= 0.02 + 1e-9, steps[jump] / rate
    assert got[jump + 1][0].marker == 1  # a talk spurt starts (RFC 3551 section 4.1)
    assert not any(p.marker for p, _ in got[1 : jump + 1] + got[jump + 2 :])
    # The far end's lateness (arrival against timestamp) is the same after the gap as before;
    # frame counting had it 290 ms worse.
    p0, t0 = got[0]
    lag = np.array([at - t0 - ((p.timestamp - p0.timestamp) & 0xFFFFFFFF) / rate for p, at in got])
    before, behind = float(np.median(lag[: jump + 1])), float(np.median(lag[jump + 1 :]))
    assert abs(behind - before) < 0.06, f"{(behind - before) * 1000:.0f} ms later after the gap"
