"""What a CDR says beyond its start and end: who answered, the queue and the wait, the
conference, the transfer, which side hung up, and per-leg media quality.

:class:`CdrDetails` listens to the core's bus while calls live and keeps, per call (the CDR's
``call_id``), the facts that the call object itself forgets; the journal
(:mod:`callbridge.journal`) asks for them (:meth:`CdrDetails.take`) when it writes the call's
end. Where each fact comes from:

==================  ===============================================================
``answered_*``      the call's answered leg (its device and user); an application's
                    bridge replaces it with the bridged call's device (the agent who
                    took a queued call)
``queue_*``         ``AppCallDequeued`` (reason ``bridged``): the queue and the wait;
                    the agent's own call learns them from the bridge
``conference_id``   the last ``ParticipantJoined`` / ``AppParticipantJoined``
``transferred_to``  a call ended ``transferred``: the call its legs belong to now
``hangup_source``   the first leg of the call to end (``caller``: the leg that placed
                    it; ``callee``: a rung leg) when it ended by a person's hangup,
                    reject or busy; ``application`` when the application hung up;
                    ``unknown`` otherwise (a timeout, a failure, a shutdown)
``quality``         the legs' RTCP figures, sampled while they are answered (below)
==================  ===============================================================

**Media quality.** While a leg is answered, its RTCP figures are sampled every
:data:`QUALITY_INTERVAL` seconds through the media plane's ``endpoint_info`` (its ``rtcp``:
:class:`~callbridge.media.interface.RtcpStats`); the CDR keeps the last sample of each leg
(``{leg_id: LegQuality as a dict}``), so a leg's quality is as of at most one interval before
its end (RTCP reports come every ~5 s anyway: RFC 3550 section 6.2). Both kinds of legs
report them: plain RTP (SIP) legs from their own RTCP counters, WebRTC legs from their peer
connection's ``getStats`` (:mod:`callbridge.media.rtcp_webrtc`); a leg whose endpoint has no
figures yet (``rtcp`` is ``None``: no audio arrived) has none in the CDR. The legs sampled are
those answered in a device-to-device call (``LegAnswered``) and the media legs of answered
application calls (``AppCallAnswered``). :func:`call_quality_stats` turns one leg's figures
into the ``call_quality_stats`` object of Telnyx's ``call.hangup`` webhook;
:meth:`CdrDetails.leg_quality` gives an application call's last one for that webhook (the
application layer asks for it when the call ends: ``AppCalls.leg_quality``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from callbridge.core.app_events import (
    AppCallAnswered,
    AppCallBridged,
    AppCallDequeued,
    AppCallEvent,
    AppCallHangup,
    AppParticipantJoined,
)
from callbridge.core.app_model import AppCall
from callbridge.core.call_events import StateChangedEvent
from callbridge.core.calls import Call, Leg
from callbridge.core.controller import CallController
from callbridge.core.events import LegAnswered, LegEnded, ParticipantJoined
from callbridge.media.interface import RtcpStats
from callbridge.vocabulary import EndReason

__all__ = [
    "QUALITY_INTERVAL",
    "CdrDetails",
    "LegQuality",
    "call_quality_stats",
    "estimate_mos",
    "stored_quality_stats",
]

log = logging.getLogger(__name__)

# End reasons a person chose (a hangup, a reject, a busy): the leg that ended first with one
# of them is the side that ended the call.
_BY_A_PERSON = frozenset({EndReason.HANGUP, EndReason.REJECTED, EndReason.BUSY, EndReason.CANCELED})
TRANSFER_WAIT = 3.0  # seconds a transferred call's record waits for the call it goes on as
QUALITY_INTERVAL = 5.0  # seconds between two samples of a leg's RTCP figures (RFC 3550 6.2)
_KEPT = 10_000  # calls whose details are kept at most (a call whose end never came is dropped)


@dataclass(frozen=True, slots=True)
class LegQuality:
    """One leg's media figures from RTCP (RFC 3550 section 6.4): the device's stream as the
    server received it (``packets_received``, ``packets_lost``, ``jitter_ms``), the device's
    reports about the server's stream (``remote_*``), and the round trip when known."""

    packets_received: int
    packets_lost: int  # cumulative: expected - received (RFC 3550 appendix A.3)
    jitter_ms: float  # interarrival jitter (RFC 3550 section 6.4.1), in milliseconds
    remote_packets_lost: int = 0  # the device's report blocks about our stream
    remote_jitter_ms: float = 0.0
    round_trip_ms: float | None = None  # from the reports' LSR/DLSR, once known

    @classmethod
    def from_rtcp(cls, rtcp: RtcpStats) -> LegQuality:
        return cls(
            packets_received=rtcp.received_packets,
            packets_lost=rtcp.received_lost,
            jitter_ms=rtcp.received_jitter_ms,
            remote_packets_lost=rtcp.packets_lost,
            remote_jitter_ms=rtcp.jitter_ms,
            round_trip_ms=rtcp.round_trip_ms,
        )

    @property
    def loss_percent(self) -> float:
        expected = self.packets_received + self.packets_lost
        return 0.0 if expected <= 0 else 100.0 * max(0, self.packets_lost) / expected

    @property
    def mos(self) -> float:
        return estimate_mos(self.loss_percent, self.jitter_ms, self.round_trip_ms)


def estimate_mos(loss_percent: float, jitter_ms: float, round_trip_ms: float | None) -> float:
    """An estimated MOS (1-4.5) from loss, jitter and delay: the ITU-T G.107 E-model cut down
    to the figures RTCP gives (the common simplification: effective latency = one-way delay
    + 2 x jitter + 10 ms codec delay; R from latency and loss; MOS from R, G.107 annex B)."""
    latency = (round_trip_ms or 0.0) / 2 + 2 * jitter_ms + 10.0
    r = 93.2 - (latency / 40 if latency < 160 else (latency - 120) / 10)
    r -= 2.5 * loss_percent
    if r <= 0:
        return 1.0
    return round(min(4.5, 1 + 0.035 * r + 7e-6 * r * (r - 60) * (100 - r)), 2)


def call_quality_stats(quality: LegQuality) -> dict[str, dict[str, str]]:
    """One leg's figures as the ``call_quality_stats`` of Telnyx's ``call.hangup``: strings,
    as Telnyx sends them, and only the figures RTCP gives (Telnyx leaves out what it lacks).
    ``inbound`` is what the server received from the device (jitter_max_variance,
    jitter_packet_count, mos, packet_count, skip_packet_count); ``outbound`` what the device
    reported about the server's stream (skip_packet_count: its lost packets)."""
    return {
        "inbound": {
            "jitter_max_variance": f"{quality.jitter_ms:.2f}",
            "jitter_packet_count": str(quality.packets_received),
            "mos": f"{quality.mos:.2f}",
            "packet_count": str(quality.packets_received),
            "skip_packet_count": str(max(0, quality.packets_lost)),
        },
        "outbound": {"skip_packet_count": str(max(0, quality.remote_packets_lost))},
    }


def sip_cause_of(controller: CallController, call_id: str) -> int | None:
    """The SIP status that ended the trunk leg of call ``call_id`` (issue 12), if it had one
    (:meth:`callbridge.sip.trunk_calls.TrunkCalls.sip_cause`; no trunks, no cause)."""
    lookup = getattr(controller.trunk_router, "sip_cause", None)
    cause = lookup(call_id) if lookup is not None else None
    return cause if isinstance(cause, int) else None


def _status_of(device: Any) -> int | None:
    status = getattr(device, "sip_status", None)
    return status if isinstance(status, int) else None


def stored_quality_stats(stored: dict[str, Any] | None) -> dict[str, Any] | None:
    """A CDR's stored quality (``{leg_id: LegQuality as a dict}``) as ``call_quality_stats``
    per leg; a leg whose figures do not read (a newer or damaged record) is left out."""
    out: dict[str, Any] = {}
    for leg_id, figures in (stored or {}).items():
        try:
            out[leg_id] = call_quality_stats(LegQuality(**figures))
        except (TypeError, ValueError):
            log.warning("CDR quality of leg %s does not read: %.200r", leg_id, figures)
    return out or None


class AppCallLookup(Protocol):
    """What the details need of :class:`~callbridge.core.appcalls.AppCalls`: finding an
    application call by its id or its leg's."""

    calls: dict[str, AppCall]

    def call_of_leg(self, leg_id: str) -> AppCall | None: ...


class CdrDetails:
    """Collects the details of each live call's CDR (see the module docstring)."""

    def __init__(self, controller: CallController, apps: AppCallLookup) -> None:
        self.controller = controller
        self.apps = apps
        self.interval = QUALITY_INTERVAL
        self._details: dict[str, dict[str, Any]] = {}  # call id -> details so far
        self._answered: set[str] = set()  # legs whose RTCP figures are sampled
        self._leg_call: dict[str, str] = {}  # live leg id -> the id of the call it is in
        self._moved: dict[str, str] = {}  # a transferred call's id -> its legs' new call's
        self._waiting: dict[str, asyncio.Future[None]] = {}  # settle() waits for _moved
        self._taken: OrderedDict[str, None] = OrderedDict()  # calls whose details went out
        self._last: OrderedDict[str, LegQuality] = OrderedDict()  # leg id -> its last sample
        self._sampler: asyncio.Task[None] | None = None
        bus = controller.bus
        self._unsubscribe = [
            bus.subscribe(LegAnswered, self._leg_answered),
            bus.subscribe(AppCallAnswered, self._app_answered),
            bus.subscribe(StateChangedEvent, self._state_changed),
            bus.subscribe(LegEnded, self._leg_ended),
            bus.subscribe(ParticipantJoined, self._joined),
            bus.subscribe(AppParticipantJoined, self._app_joined),
            bus.subscribe(AppCallDequeued, self._dequeued),
            bus.subscribe(AppCallBridged, self._bridged),
            bus.subscribe(AppCallHangup, self._app_hangup),
        ]

    def close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        if self._sampler is not None:
            self._sampler.cancel()  # it holds no state worth finishing: the next sample

    def take(self, call: Call) -> dict[str, Any]:
        """The details of ``call``'s CDR (the :class:`~callbridge.store.records.Cdr` fields
        they fill), forgotten here."""
        details = self._details.pop(call.id, {})
        far = call.answered_leg
        if far is not None and "answered_user" not in details:
            details["answered_device"] = far.device.id
            details["answered_user"] = far.device.user_name
        details.setdefault("hangup_source", "unknown")
        sip_cause = sip_cause_of(self.controller, call.id)
        if sip_cause is None:  # a carrier's inbound call: the status its INVITE got
            sip_cause = _status_of(call.origin.device)
        if sip_cause is not None:
            details["sip_cause"] = sip_cause
        steps = self.controller.routing.followme.steps_of(call.id)  # issue 16
        if steps:
            details["forwarding"] = steps
        moved_to = self._moved.pop(call.id, None)
        if moved_to is not None:
            details["transferred_to"] = moved_to
        self._taken[call.id] = None
        while len(self._taken) > _KEPT:
            self._taken.popitem(last=False)
        return details

    async def settle(self, call: Call, end_reason: str) -> dict[str, Any]:
        """:meth:`take`, once a transferred call's legs have their new call: a transfer ends
        the old call's record before it builds the new call, so this waits (at most
        :data:`TRANSFER_WAIT` seconds: a transfer whose far party hung up has no new call)."""
        if end_reason == EndReason.TRANSFERRED.value and call.id not in self._moved:
            waiter = self._waiting.setdefault(call.id, asyncio.get_running_loop().create_future())
            try:
                await asyncio.wait_for(asyncio.shield(waiter), TRANSFER_WAIT)
            except TimeoutError:
                pass
            finally:
                self._waiting.pop(call.id, None)
        return self.take(call)

    # collecting -------------------------------------------------------------------------------
    def _of(self, call: Call) -> dict[str, Any]:
        if call.id in self._taken:  # its record is written: a late fact has nowhere to go
            return {}
        details = self._details.get(call.id)
        if details is None:
            if len(self._details) >= _KEPT:  # calls whose end went missing: drop the oldest
                self._details.pop(next(iter(self._details)))
            details = self._details[call.id] = {}
        return details

    def _state_changed(self, event: StateChangedEvent) -> None:
        if event.kind == "leg":
            self._follow(self.controller.legs.get(event.id))

    def _follow(self, leg: Leg | None) -> None:
        """Note which call ``leg`` is in; a leg that changed calls was transferred: its old
        call goes on as the new one (``transferred_to``)."""
        if leg is None or leg.call is None:
            return
        new = leg.call.id
        old = self._leg_call.get(leg.id)
        self._leg_call[leg.id] = new
        if old is not None and old != new and old not in self._moved:
            self._moved[old] = new
            waiter = self._waiting.get(old)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def _leg_ended(self, event: LegEnded) -> None:
        self._follow(self.controller.legs.get(event.leg.call_control_id))
        self._leg_call.pop(event.leg.call_control_id, None)
        self._answered.discard(event.leg.call_control_id)
        if not self._answered and self._sampler is not None:
            self._sampler.cancel()  # no leg to sample: none runs between calls (or after)
            self._sampler = None
        leg = self.controller.legs.get(event.leg.call_control_id)
        call = leg.call if leg is not None else None
        if leg is None or call is None:
            return
        details = self._of(call)
        if "hangup_source" not in details:
            source = "unknown"
            if event.reason in _BY_A_PERSON:
                source = "caller" if leg is call.origin else "callee"
            details["hangup_source"] = source

    def leg_quality(self, leg_id: str) -> dict[str, dict[str, str]] | None:
        """The last RTCP figures sampled for leg ``leg_id`` as Telnyx's ``call_quality_stats``
        (the ``call.hangup`` webhook's); ``None`` when it never had any. Kept a while after
        the leg ends (the last :data:`_KEPT` legs sampled), so a hangup reported after the
        leg's end still finds them."""
        quality = self._last.get(leg_id)
        return call_quality_stats(quality) if quality is not None else None

    def _leg_answered(self, event: LegAnswered) -> None:
        self._sample(event.leg.call_control_id)

    def _app_answered(self, event: AppCallAnswered) -> None:
        # An application's answer publishes no LegAnswered: its media leg is sampled from here.
        leg = self._leg_of(event.call.call_control_id)
        if leg is not None and leg.live:
            self._sample(leg.id)

    def _sample(self, leg_id: str) -> None:
        self._answered.add(leg_id)
        if self._sampler is None or self._sampler.done():
            self._sampler = asyncio.get_running_loop().create_task(
                self._sample_quality(), name="CDR quality sampler"
            )

    async def _sample_quality(self) -> None:
        """Every ``interval``, each answered leg's RTCP figures (while there are any legs)."""
        while self._answered:
            await asyncio.sleep(self.interval)
            for leg_id in list(self._answered):
                try:
                    info = await self.controller.media.endpoint_info(leg_id)
                except Exception:  # gone meanwhile, or the media plane refused: no sample
                    log.debug("no RTCP figures for leg %s", leg_id, exc_info=True)
                    continue
                leg = self.controller.legs.get(leg_id)
                if info.rtcp is None or leg is None or leg.call is None:
                    continue
                quality = LegQuality.from_rtcp(info.rtcp)
                self._of(leg.call).setdefault("quality", {})[leg_id] = asdict(quality)
                self._last[leg_id] = quality
                self._last.move_to_end(leg_id)
                while len(self._last) > _KEPT:
                    self._last.popitem(last=False)

    def _joined(self, event: ParticipantJoined) -> None:
        leg = self.controller.legs.get(event.call_control_id)
        if leg is not None and leg.call is not None:
            self._of(leg.call)["conference_id"] = event.conference_id

    def _app_joined(self, event: AppParticipantJoined) -> None:
        call = self._call_of(event.participant.call_control_id)
        if call is not None:
            self._of(call)["conference_id"] = event.conference.conference_id

    def _dequeued(self, event: AppCallDequeued) -> None:
        call = self._call_of_event(event)
        if call is not None and event.reason == "bridged":
            details = self._of(call)
            details["queue_name"] = event.queue
            details["queue_wait_secs"] = event.wait_secs

    def _bridged(self, event: AppCallBridged) -> None:
        call = self._call_of_event(event)
        peer_leg = self._leg_of(event.peer_call_control_id)
        if call is None or peer_leg is None:
            return
        details = self._of(call)
        details["answered_device"] = peer_leg.device.id
        details["answered_user"] = peer_leg.device.user_name
        peer_call = peer_leg.call
        peer = self._details.get(peer_call.id) if peer_call is not None else None
        if peer is not None and "queue_name" in peer and "queue_name" not in details:
            # The agent's side of a queue bridge: its CDR names the queue it took a call from.
            details["queue_name"] = peer["queue_name"]
            details["queue_wait_secs"] = peer.get("queue_wait_secs")

    def _app_hangup(self, event: AppCallHangup) -> None:
        call = self._call_of_event(event)
        if call is not None and event.by_application:
            self._of(call)["hangup_source"] = "application"

    # lookups ----------------------------------------------------------------------------------
    def _leg_of(self, call_control_id: str) -> Leg | None:
        """The media leg of an application call (or a device leg) named ``call_control_id``."""
        app_call = self.apps.calls.get(call_control_id) or self.apps.call_of_leg(call_control_id)
        if app_call is not None and app_call.leg is not None:
            return app_call.leg
        return self.controller.legs.get(call_control_id)

    def _call_of(self, call_control_id: str) -> Call | None:
        leg = self._leg_of(call_control_id)
        return leg.call if leg is not None else None

    def _call_of_event(self, event: AppCallEvent) -> Call | None:
        return self._call_of(event.call.call_control_id)
