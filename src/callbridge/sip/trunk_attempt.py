"""One attempt of a call on a trunk (issue 12): the offer restricted to the trunk's codecs,
the time the carrier has to say anything, and the end reason of its final failure."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from callbridge.sip.call_dialog import quiet
from callbridge.vocabulary import EndReason

__all__ = [
    "NO_RESPONSE",
    "end_late_answer",
    "heard_in_time",
    "reason_of_carrier_status",
    "restrict_codecs",
]

# An attempt whose INVITE gets no response at all (not even 100 Trying, which RFC 3261 §8.2.6
# and §16.2 want within 200 ms) in this time is given up as a 408 and the next trunk tried,
# long before Timer B (64·T1 = 32 s, §17.1.1.2): by then the INVITE went out 4 times (T1).
NO_RESPONSE = 4.0


def reason_of_carrier_status(status: int) -> EndReason:
    """Seed 001's end reason for a carrier's final failure."""
    if status in (486, 600):
        return EndReason.BUSY
    if status in (408, 480):
        return EndReason.NO_ANSWER
    if status == 603:
        return EndReason.REJECTED
    return EndReason.FAILED


def restrict_codecs(sdp: str, codecs: tuple[str, ...]) -> str:
    """The offer with only the trunk's codecs (and telephone-event) on its audio m-line, in
    the trunk's order; the SDP unchanged when that would leave no codec."""
    wanted = [c.lower() for c in codecs]
    lines = sdp.replace("\r\n", "\n").split("\n")
    names: dict[str, str] = {}
    for line in lines:
        if line.startswith("a=rtpmap:"):
            pt, _, rest = line[9:].partition(" ")
            names[pt] = rest.split("/")[0].lower()
    static = {"0": "pcmu", "8": "pcma", "9": "g722"}
    out: list[str] = []
    keep: set[str] = set()
    for line in lines:
        if line.startswith("m=audio "):
            head = line.split(" ")
            fmts = head[3:]
            chosen = [f for f in fmts if names.get(f, static.get(f, "")) in wanted]
            if not chosen:
                return sdp
            chosen.sort(key=lambda f: wanted.index(names.get(f, static.get(f, ""))))
            chosen += [f for f in fmts if names.get(f) == "telephone-event"]
            keep = set(chosen)
            line = " ".join([*head[:3], *chosen])
        elif line.startswith(("a=rtpmap:", "a=fmtp:", "a=rtcp-fb:")) and keep:
            pt = line.split(":", 1)[1].split(" ", 1)[0]
            if pt not in keep:
                continue
        out.append(line)
    return "\r\n".join(out)


async def heard_in_time(sent: asyncio.Future[Any], heard: asyncio.Event) -> bool:
    """Whether the INVITE ``sent`` got any response (or its end) within :data:`NO_RESPONSE`."""
    waiter = asyncio.ensure_future(heard.wait())
    try:
        done, _ = await asyncio.wait(
            {sent, waiter}, timeout=NO_RESPONSE, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        waiter.cancel()
    return bool(done)


async def end_late_answer(sent: asyncio.Future[Any]) -> None:
    """An INVITE given up: a 2xx that still comes is ended with BYE (§15), nothing else."""
    with contextlib.suppress(Exception):
        _, dialog = await sent
        if dialog is not None:
            await quiet(dialog.bye())
