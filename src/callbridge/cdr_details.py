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
``quality``         :attr:`CdrDetails.leg_quality` (a hook, below), per leg
==================  ===============================================================

**Media quality (the hook).** ``leg_quality(leg_id)`` returns a leg's RTCP figures as
:class:`LegQuality`, or ``None``; it is called when the leg ends, so the media plane must
answer for a leg whose endpoint is closing (keep the last figures). Until the media plane
provides it (``CdrDetails.leg_quality`` is ``None``), CDRs carry no quality. The stored shape
is ``{leg_id: LegQuality as a dict}``; :func:`call_quality_stats` turns one leg's figures into
the ``call_quality_stats`` object of Telnyx's ``call.hangup`` webhook.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from callbridge.core.app_events import (
    AppCallBridged,
    AppCallDequeued,
    AppCallEvent,
    AppCallHangup,
    AppParticipantJoined,
)
from callbridge.core.appcalls import AppCalls
from callbridge.core.calls import Call, Leg
from callbridge.core.controller import CallController
from callbridge.core.events import LegEnded, ParticipantJoined
from callbridge.vocabulary import EndReason

__all__ = ["CdrDetails", "LegQuality", "call_quality_stats", "estimate_mos"]

log = logging.getLogger(__name__)

# End reasons a person chose (a hangup, a reject, a busy): the leg that ended first with one
# of them is the side that ended the call.
_BY_A_PERSON = frozenset({EndReason.HANGUP, EndReason.REJECTED, EndReason.BUSY, EndReason.CANCELED})
_KEPT = 10_000  # calls whose details are kept at most (a call whose end never came is dropped)


@dataclass(frozen=True, slots=True)
class LegQuality:
    """One leg's media figures from RTCP (RFC 3550 section 6.4): what the server received
    from the device (``inbound``) and sent to it (``outbound``)."""

    packets_received: int
    packets_lost: int  # cumulative number of packets lost (receiver report)
    jitter_ms: float  # interarrival jitter (RFC 3550 section 6.4.1), in milliseconds
    packets_sent: int
    round_trip_ms: float | None = None  # from the reports' LSR/DLSR, when known

    @property
    def loss_percent(self) -> float:
        expected = self.packets_received + self.packets_lost
        return 0.0 if expected == 0 else 100.0 * self.packets_lost / expected

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
    """One leg's figures as the ``call_quality_stats`` of Telnyx's ``call.hangup`` (strings,
    as Telnyx sends them: ``inbound`` {jitter_max_variance, jitter_packet_count, mos,
    packet_count, skip_packet_count}, ``outbound`` {packet_count, skip_packet_count})."""
    return {
        "inbound": {
            "jitter_max_variance": f"{quality.jitter_ms:.2f}",
            "jitter_packet_count": str(quality.packets_received),
            "mos": f"{quality.mos:.2f}",
            "packet_count": str(quality.packets_received),
            "skip_packet_count": str(quality.packets_lost),
        },
        "outbound": {"packet_count": str(quality.packets_sent), "skip_packet_count": "0"},
    }


class CdrDetails:
    """Collects the details of each live call's CDR (see the module docstring)."""

    def __init__(self, controller: CallController, apps: AppCalls) -> None:
        self.controller = controller
        self.apps = apps
        # The media plane's RTCP figures of a leg (the hook; see the module docstring).
        self.leg_quality: Callable[[str], LegQuality | None] | None = None
        self._details: dict[str, dict[str, Any]] = {}  # call id -> details so far
        bus = controller.bus
        self._unsubscribe = [
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

    def take(self, call: Call) -> dict[str, Any]:
        """The details of ``call``'s CDR (the :class:`~callbridge.store.records.Cdr` fields
        they fill), forgotten here."""
        details = self._details.pop(call.id, {})
        far = call.answered_leg
        if far is not None and "answered_user" not in details:
            details["answered_device"] = far.device.id
            details["answered_user"] = far.device.user_name
        details.setdefault("hangup_source", "unknown")
        moved_to = _call_now(call)
        if moved_to is not None and moved_to is not call:
            details["transferred_to"] = moved_to.id
        return details

    # collecting -------------------------------------------------------------------------------
    def _of(self, call: Call) -> dict[str, Any]:
        details = self._details.get(call.id)
        if details is None:
            if len(self._details) >= _KEPT:  # calls whose end went missing: drop the oldest
                self._details.pop(next(iter(self._details)))
            details = self._details[call.id] = {}
        return details

    def _leg_ended(self, event: LegEnded) -> None:
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
        if self.leg_quality is not None:
            try:
                quality = self.leg_quality(leg.id)
            except Exception:  # the CDR is written whatever the media plane says
                log.exception("the media quality of leg %s could not be read", leg.id)
                quality = None
            if quality is not None:
                details.setdefault("quality", {})[leg.id] = asdict(quality)

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


def _call_now(call: Call) -> Call | None:
    """The call the legs of ``call`` belong to now (another one after a transfer)."""
    for leg in (call.origin, call.answered_leg):
        if leg is not None and leg.call is not None and leg.call is not call:
            return leg.call
    return None
