"""A burst of hang-ups: how long closing WebRTC legs blocks the server's event loop (issue 15).

One process: an in-process media server (``InProcessMediaServer``, the server's media engine)
and ``-n`` SDK peers (``CallMedia``, Opus tone) connected to it on 127.0.0.1. After ``-s``
seconds of audio every server leg is closed at once (``asyncio.gather`` of
``InProcessMediaServer.close``, as a burst of hang-ups does), and the bench prints:

- **join ms/leg** — wall time the server's receivers spent in aiortc's synchronous
  ``RTCRtpReceiver.__stop_decoder`` (the decoder thread's join), per leg;
- **close ms/leg** — the whole burst's wall time divided by the legs;
- **max / p99 lag** — the longest delays of a 1 ms ticker during the burst (how long the loop
  could not run anything else: the control plane, in a one-process server);
- **threads** — threads alive in the process before the burst (decoder threads included;
  the SDK peers' too).

Run it against another tree with ``PYTHONPATH=/that/tree/src``; it only uses names that
existed before the decoder thread was dropped. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import threading
import time
from typing import Any


async def run(n: int, seconds: float) -> dict[str, float]:
    from aiortc.rtcrtpreceiver import RTCRtpReceiver

    from callbridge.client import BufferSink, CallMedia, ToneSource
    from callbridge.media.engine import InProcessMediaServer

    server = InProcessMediaServer(["127.0.0.1"])
    peers = [CallMedia(ToneSource(440.0), BufferSink(), codecs=["opus"]) for _ in range(n)]
    for i, media in enumerate(peers):
        await media.accept_answer(await server.answer(f"leg{i}", await media.create_offer()))
    await asyncio.gather(*(m.wait_connected() for m in peers))
    await asyncio.sleep(seconds)
    server_receivers = {
        id(t.receiver) for i in range(n) for t in server.endpoint(f"leg{i}").pc.getTransceivers()
    }
    joins: list[float] = []
    stop_decoder = getattr(RTCRtpReceiver, "_RTCRtpReceiver__stop_decoder")  # noqa: B009

    def timed(self: Any) -> None:
        start = time.perf_counter()
        stop_decoder(self)
        if id(self) in server_receivers:
            joins.append(time.perf_counter() - start)

    setattr(RTCRtpReceiver, "_RTCRtpReceiver__stop_decoder", timed)  # noqa: B010
    threads = threading.active_count()
    lags: list[float] = []
    done = False

    async def ticker() -> None:
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            lags.append(now - last - 0.001)
            last = now

    tick = asyncio.ensure_future(ticker())
    await asyncio.sleep(0.05)
    lags.clear()
    start = time.perf_counter()
    await asyncio.gather(*(server.close(f"leg{i}") for i in range(n)))
    burst = time.perf_counter() - start
    done = True
    await tick
    setattr(RTCRtpReceiver, "_RTCRtpReceiver__stop_decoder", stop_decoder)  # noqa: B010
    for media in peers:
        await media.close()
    await server.shutdown()
    lags.sort()
    return {
        "join": 1000 * sum(joins) / n,
        "close": 1000 * burst / n,
        "max_lag": 1000 * max(lags, default=0.0),
        "p99_lag": 1000 * lags[int(0.99 * (len(lags) - 1))] if lags else 0.0,
        "threads": threads,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50, help="legs hung up at once (50)")
    parser.add_argument("-s", type=float, default=2.0, help="seconds of audio first (2)")
    parser.add_argument("-r", "--repeat", type=int, default=3, help="runs (3)")
    args = parser.parse_args()
    print(f"# {args.n} WebRTC legs closed at once; loadavg {os.getloadavg()[0]:.2f}", flush=True)
    print(f"{'join ms/leg':>11} {'close ms/leg':>12} {'max lag ms':>10} {'p99 lag ms':>10} "
          f"{'threads':>7}", flush=True)  # fmt: skip
    rows = []
    for _ in range(args.repeat):
        r = asyncio.run(run(args.n, args.s))
        rows.append(r)
        print(f"{r['join']:>11.3f} {r['close']:>12.3f} {r['max_lag']:>10.1f} "
              f"{r['p99_lag']:>10.1f} {r['threads']:>7.0f}", flush=True)  # fmt: skip
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    load = os.getloadavg()[0]
    print(f"median: join {med['join']:.3f} ms/leg, close {med['close']:.3f} ms/leg, "
          f"max lag {med['max_lag']:.1f} ms; loadavg {load:.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
