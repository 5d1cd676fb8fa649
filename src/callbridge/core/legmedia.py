"""A leg's media as the controller sees it: events from the media plane (DTMF, an endpoint
that failed), the device's trickled ICE candidates, and restarting a leg's media.

Media events about conferences (floor, playbacks, recordings) go to core.conferences.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from callbridge.core.calls import Leg
from callbridge.core.devices import Device
from callbridge.core.events import CallDtmf, LegDtmf, SdpAnswer
from callbridge.media.interface import (
    DtmfReceived,
    EndpointLost,
    EndpointStateChanged,
    FloorChanged,
    MediaDirectionChanged,
    MediaEvent,
    PlaybackStateChanged,
    RecordingSaved,
    RtpTimeout,
)
from callbridge.vocabulary import EndReason

if TYPE_CHECKING:
    from callbridge.core.controller import CallController

__all__ = ["MEDIA_RESTART_GRACE", "LegMedia"]

log = logging.getLogger(__name__)
MEDIA_RESTART_GRACE = 10.0  # seconds a leg whose media failed waits for call.restart_media


class LegMedia:
    """Media events, candidates and media restarts of legs (one per controller)."""

    def __init__(self, calls: CallController) -> None:
        self.calls = calls

    def on_media_event(self, event: MediaEvent) -> None:
        c = self.calls
        if isinstance(event, FloorChanged | PlaybackStateChanged | RecordingSaved):
            c.conferences.on_media_event(event)
            return
        leg = c.legs.get(event.endpoint_id)
        if leg is None:
            return
        if isinstance(event, DtmfReceived):
            c.bus.publish(LegDtmf(leg=leg.facts(), digit=event.digit))
            if leg.peer is not None:
                leg.peer.device.deliver(CallDtmf(call_id=leg.peer.id, digit=event.digit))
        elif isinstance(event, RtpTimeout):  # a dead plain RTP leg (a SIP phone gone silent)
            call = leg.call
            if call is not None and not call.ended:
                log.warning("no RTP from %s for %.0f s; ending its call", leg.id, event.seconds)
                c.scheduler.spawn(
                    c.end_call(call, EndReason.FAILED, EndReason.FAILED), f"RTP timeout {leg.id}"
                )
        elif isinstance(event, EndpointLost):  # its media worker died (media/workers)
            call = leg.call
            if call is not None and not call.ended:
                log.warning("media of %s lost (%s); ending its call", leg.id, event.cause)
                c.scheduler.spawn(
                    c.end_call(call, EndReason.FAILED, EndReason.FAILED), f"media lost {leg.id}"
                )
        elif isinstance(event, MediaDirectionChanged):  # a SIP phone's hold / resume
            c.scheduler.spawn(self._device_hold(leg, event.held), f"hold of {leg.id}")
        elif isinstance(event, EndpointStateChanged) and event.state == "failed":
            # The device may restart its media (call.restart_media) in the meantime.
            generation = leg.media_generation
            c.scheduler.later(
                MEDIA_RESTART_GRACE,
                ("media-failed", leg.id),
                lambda: self._media_failed(leg, generation),
                f"media failure of {leg.id}",
            )

    async def _device_hold(self, leg: Leg, held: bool) -> None:
        """A plain RTP device put its call on hold by its SDP (RFC 3264 §8.4), or resumed:
        the core's hold by that leg (its far party hears hold music, ``call.held {by:
        remote}``). Nothing when the call's hold state already says so."""
        call = leg.call
        if not leg.answered or leg.peer is None or call is None:
            return
        if held == (call.held_by is leg):
            return
        try:
            await self.calls.incall._hold(leg.device, leg.id, held, None)
        except Exception as exc:  # held by the far party, ended meanwhile: nothing to do
            log.info("hold %s of %s by SDP not applied: %s", held, leg.id, exc)

    async def _media_failed(self, leg: Leg, generation: int) -> None:
        call = leg.call
        if leg.live and leg.media_generation == generation and call is not None and not call.ended:
            log.warning("media of %s failed and was not restarted; ending its call", leg.id)
            await self.calls.end_call(call, EndReason.FAILED, EndReason.FAILED)

    async def restart_media(
        self, device: Device, call_id: str, sdp: str, req_id: str | None
    ) -> None:
        """The device lost its media path (e.g. its network changed): answer its new offer on
        a new server-side peer connection; the far party stays bridged (see media.reconnect)."""
        c = self.calls
        leg = c.leg_of(device, call_id)
        answer = await c.media.reconnect(leg.id, sdp)
        leg.media_generation += 1
        info = await c.endpoint_info(leg)
        if info is None:
            raise c.too_late(leg)
        device.deliver(SdpAnswer(req_id=req_id, call_id=leg.id, sdp=answer))
        c.deliver_candidates(leg, info.candidates)

    async def add_candidate(
        self,
        device: Device,
        call_id: str,
        candidate: str | None,
        mid: str | None,
        index: int | None,
    ) -> None:
        """A candidate the device trickled (``None``: end of candidates)."""
        leg = self.calls.leg_of(device, call_id)
        await self.calls.media.add_candidate(leg.id, candidate, mid, index)
