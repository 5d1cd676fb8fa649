"""Relays: a bridge or a mixer membership whose two sides live on different workers.

Why relay rather than move: moving a WebRTC endpoint to another worker means a new peer
connection, i.e. renegotiating with the device (an ICE restart aiortc does not have, or a new
offer the device must answer), in the middle of a transfer or a conference join. A relay needs
nothing from the device: each worker gets one plain RTP endpoint (RTP/AVP on the media address,
RFC 3264 offer/answer between the two workers, the first side's codec preferred so neither side
transcodes), the device's endpoint is bridged to the relay endpoint on its worker, and the far
endpoint (or the mixer) takes the other relay endpoint. It costs one more relay hop per packet
on each worker, only for these legs; calls whose legs were created together meet on one worker
and have no relay (see :mod:`.proxy`).

A bridge's relay carries video too, whether or not either leg has video yet (an upgrade may
come later): each relay endpoint gets a :class:`~callbridge.media.relay_video.RelayVideo`
and the two learn each other's address here. VP8 goes across as RTP, key-frame requests come
back as RTCP PLI. A mixer carries audio only, so a mixer's relay has no video.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass
from typing import Literal

from callbridge.errors import MediaError
from callbridge.media.engine_plain import RELAY_PREFIX  # their events are internal
from callbridge.media.workers.process import WorkerProcess

__all__ = ["RELAY_PREFIX", "Link", "Relays"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Link:
    """``a`` (an endpoint on ``wa``, bridged there to ``ra``) reaches ``b`` on ``wb`` through
    ``rb``: ``b`` is the far endpoint (kind ``bridge``, ``rb`` bridged to it) or a mixer
    (kind ``mixer``, ``rb`` its member standing in for ``a``)."""

    kind: Literal["bridge", "mixer"]
    a: str
    wa: WorkerProcess
    ra: str
    b: str
    wb: WorkerProcess
    rb: str


class Relays:
    """The live links, by endpoint and by the relay endpoint standing in for one."""

    def __init__(self) -> None:
        self.of: dict[str, Link] = {}  # endpoint id (either side of a bridge) -> its link
        self.stand_in: dict[str, str] = {}  # mixer-side relay id -> the endpoint it stands for
        self._ids = itertools.count(1)

    def alias(self, endpoint_id: str) -> str:
        """The control plane's id for an id a worker reported (a relay stands for its leg)."""
        return self.stand_in.get(endpoint_id, endpoint_id)

    def member_id(self, endpoint_id: str) -> str:
        """The id under which ``endpoint_id`` is a member of its mixer's worker."""
        link = self.of.get(endpoint_id)
        return link.rb if link is not None and link.kind == "mixer" else endpoint_id

    def counts(self) -> dict[str, int]:
        """Live links in ``/healthz``: bridges and mixer memberships that span two workers."""
        bridges = {id(k) for k in self.of.values() if k.kind == "bridge"}
        return {"bridges": len(bridges), "mixer_members": len(self.stand_in)}

    def mixer_links(self, mixer_id: str) -> list[Link]:
        return [k for k in self.of.values() if k.kind == "mixer" and k.b == mixer_id]

    async def link(
        self,
        kind: Literal["bridge", "mixer"],
        a: str,
        wa: WorkerProcess,
        b: str,
        wb: WorkerProcess,
    ) -> Link:
        """Join ``a`` on ``wa`` to ``b`` on ``wb`` (the caller dropped older links of both)."""
        n = next(self._ids)
        link = Link(kind, a, wa, f"{RELAY_PREFIX}{n}a", b, wb, f"{RELAY_PREFIX}{n}b")
        codec = (await wa.call("endpoint_info", a)).codec
        # rtp_timeout 0: a relay is never "dead" (a muted or held side sends nothing).
        offer = await wa.call("offer_rtp", link.ra, codec, False, 0)
        try:
            answer = await wb.call("answer_rtp", link.rb, offer, codec, 0)
            await wa.call("accept_answer", link.ra, answer)
            if kind == "bridge":  # video crosses too (media/relay_video.py): swap addresses
                here, there = await asyncio.gather(
                    wa.call("relay_video", link.ra), wb.call("relay_video", link.rb)
                )
                await asyncio.gather(
                    wa.call("relay_video", link.ra, there), wb.call("relay_video", link.rb, here)
                )
        except BaseException:
            await _quietly(wa, "close", link.ra)
            await _quietly(wb, "close", link.rb)
            raise
        self.of[a] = link
        if kind == "bridge":
            self.of[b] = link
        else:
            self.stand_in[link.rb] = a
        return link

    async def drop(self, endpoint_id: str) -> Link | None:
        """Undo ``endpoint_id``'s link, if any: both real endpoints hear nothing from it (as
        after ``unbridge`` / ``mixer_remove``) and the relay endpoints close."""
        link = self.of.pop(endpoint_id, None)
        if link is None:
            return None
        if link.kind == "bridge":
            self.of.pop(link.b if endpoint_id == link.a else link.a, None)
            await _quietly(link.wb, "unbridge", link.b)
        else:
            self.stand_in.pop(link.rb, None)
        await _quietly(link.wa, "unbridge", link.a)
        await _quietly(link.wa, "close", link.ra)
        await _quietly(link.wb, "close", link.rb)
        return link

    def forget_worker(self, worker: WorkerProcess) -> list[Link]:
        """A worker died: its links go (the relay endpoints on it are gone with it)."""
        dead = [k for k in self.of.values() if worker in (k.wa, k.wb)]
        for link in dead:
            self.of.pop(link.a, None)
            if link.kind == "bridge":
                self.of.pop(link.b, None)
            self.stand_in.pop(link.rb, None)
        return dead


async def _quietly(worker: WorkerProcess, method: str, endpoint_id: str) -> None:
    """Clean-up that may find the endpoint (or its worker) already gone."""
    try:
        await worker.call(method, endpoint_id)
    except MediaError as exc:
        log.debug("relay clean-up %s(%s) on worker %d: %s", method, endpoint_id, worker.index, exc)
