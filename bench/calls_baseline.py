"""The stock-aiortc baseline of bench/calls.py: a 1:1 relay built from aiortc alone.

Run by ``bench/calls.py --baseline`` as its own process (``python bench/calls_baseline.py``);
it imports nothing of callbridge, so its cost is aiortc's. Each call is two
``RTCPeerConnection``s answering the two legs' offers; each leg's received track is added to
the other leg's connection, as aiortc's own relay examples do. aiortc then does what it always
does with a track: its receiver decodes every packet (a decoder thread per receiver) and its
sender re-encodes the frames (Opus stereo 96 kbit/s), paced by its own clock. That is the
B2BUA a plain aiortc application gets; callbridge relays the same packets without decoding.

Two changes from aiortc's defaults, for the machine's sake and not the media path's: ICE
gathers on 127.0.0.1 only (aioice's ``get_host_addresses`` replaced, as callbridge does) and
no STUN server is configured (aiortc's default would ask a public one).

Control: one JSON object per line on a TCP socket on 127.0.0.1 (the port is printed on
stdout): ``{"op": "call", "a": OFFER, "b": OFFER}`` -> ``{"a": ANSWER, "b": ANSWER}``;
``{"op": "quit"}`` closes everything.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aioice.ice
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription


def _loopback_only(use_ipv4: bool = True, use_ipv6: bool = True) -> list[str]:
    return ["127.0.0.1"]


async def relay_call(pcs: list[RTCPeerConnection], offer_a: str, offer_b: str) -> dict[str, str]:
    a = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    b = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pcs += [a, b]
    tracks: dict[str, MediaStreamTrack] = {}
    a.on("track", lambda track: tracks.__setitem__("a", track))
    b.on("track", lambda track: tracks.__setitem__("b", track))
    # aiortc emits "track" inside setRemoteDescription, so both tracks exist afterwards.
    await a.setRemoteDescription(RTCSessionDescription(offer_a, "offer"))
    await b.setRemoteDescription(RTCSessionDescription(offer_b, "offer"))
    a.addTrack(tracks["b"])  # reuses the offered transceiver: sendrecv
    b.addTrack(tracks["a"])
    answers: dict[str, str] = {}
    for name, pc in (("a", a), ("b", b)):
        await pc.setLocalDescription(await pc.createAnswer())
        answers[name] = pc.localDescription.sdp
    return answers


async def run() -> None:
    aioice.ice.get_host_addresses = _loopback_only
    pcs: list[RTCPeerConnection] = []
    done = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            req = json.loads(line)
            reply: dict[str, Any] = {}
            if req["op"] == "call":
                reply = await relay_call(pcs, req["a"], req["b"])
            elif req["op"] == "quit":
                done.set()
            writer.write((json.dumps(reply) + "\n").encode())
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    await done.wait()
    server.close()
    await asyncio.gather(*(pc.close() for pc in pcs))


if __name__ == "__main__":
    asyncio.run(run())
