"""Application-controlled calls (seed 003): calls that an application drives over REST.

:class:`AppCalls` is the hub: the registry of application calls (by ``call_control_id`` and
by leg), the lookups every command starts with, the end of a call, and the events in and out.
The logic lives in one module per concept, each a small service holding a reference to it:

=======================  ====================================================================
:mod:`.app_model`        AppCall and its state machine, errors, the store's view, the
                         application as a device (:class:`ApplicationDevice`)
:mod:`.app_events`       the typed facts published on the bus (``AppCall*``,
                         ``AppConference*``) and the ``call.bridged`` device event
:mod:`.app_dial`         parking incoming calls, answer, reject, dialling a user, hangup
:mod:`.app_bridge`       bridge (also to the head of a queue) and transfer
:mod:`.queues`           call queues
:mod:`.gather`           collecting DTMF digits
:mod:`.app_media`        play, speak, send DTMF, record
:mod:`.app_conferences`  REST conferences: records, operations, conference events
=======================  ====================================================================

The REST API reaches all of it through one facade, :class:`~callbridge.core.control.CallControl`.

Events in: the controller's typed bus (a leg answered, ended, sent a DTMF digit; conference
events) and the media plane's (playbacks and recordings this module started). Events out:
application events on the same bus, for calls and conferences, in the order they happen (the
webhook adapter, :mod:`callbridge.webhooks.telnyx`, turns them into deliveries), and device
events to the devices of the legs (``device.deliver``: ``call.ringing``, ``call.answered``,
``call.incoming``, ``call.bridged``, ``call.dtmf``; docs/protocol.md, "Calls driven by
applications"). Nothing here builds a wire message or a webhook payload.

All methods run on the server's event loop; state is re-checked after every ``await``.
Errors are :class:`~callbridge.errors.ProtocolError` with a message that says what to do;
:class:`UnknownCall` and :class:`CallHasEnded` tell a missing call from one that has ended.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from callbridge.core.app_bridge import Bridges
from callbridge.core.app_conferences import AppConferences, ConferenceRecord
from callbridge.core.app_dial import Dialer
from callbridge.core.app_events import (
    AppCallBridged,
    AppCallHangup,
    AppDtmfReceived,
    AppEvent,
    CallFacts,
)
from callbridge.core.app_media import AppMedia
from callbridge.core.app_model import (
    DTMF_DIGITS,
    RECENTLY_ENDED,
    AppCall,
    AppCallState,
    AppDirectory,
    ApplicationDevice,
    CallHasEnded,
    UnknownCall,
    now,
)
from callbridge.core.calls import Leg
from callbridge.core.events import (
    ConferenceCreated,
    ConferenceEnded,
    ConferenceFloorChanged,
    ConferencePlaybackChanged,
    ConferenceRecordingFailed,
    ConferenceRecordingSaved,
    LegAnswered,
    LegDtmf,
    LegEnded,
    ParticipantJoined,
    ParticipantLeft,
)
from callbridge.core.gather import Gather, Gathers
from callbridge.core.queues import Queue, QueueEntry, Queues
from callbridge.core.scheduler import Scheduler
from callbridge.errors import ErrorCode, ProtocolError
from callbridge.vocabulary import EndReason

if TYPE_CHECKING:
    from callbridge.core.controller import CallController

__all__ = [
    "DTMF_DIGITS",
    "AppCall",
    "AppCallState",
    "AppCalls",
    "AppDirectory",
    "AppEvent",
    "ApplicationDevice",
    "CallFacts",
    "CallHasEnded",
    "ConferenceRecord",
    "Gather",
    "Queue",
    "QueueEntry",
    "UnknownCall",
]

log = logging.getLogger(__name__)


class AppCalls:
    """Every application call of this server: the registry and the services around it."""

    def __init__(
        self,
        controller: CallController,
        directory: AppDirectory,
        *,
        recordings_dir: Path,
        ring_timeout: float | None = None,
    ) -> None:
        self.controller = controller
        self.media = controller.media
        self.directory = directory
        self.bus = controller.bus
        self.scheduler = Scheduler("applications")
        self._storing = Scheduler("applications: storing")  # what drain() waits for
        self.ring_timeout = ring_timeout if ring_timeout is not None else controller.ring_timeout
        self.calls: dict[str, AppCall] = {}  # call_control_id -> live call
        self.by_leg: dict[str, AppCall] = {}  # media or ringing leg id -> live call
        self._ended: OrderedDict[str, AppCall] = OrderedDict()  # by call and leg id
        self.dialer = Dialer(self)
        self.bridges = Bridges(self)
        self.queues = Queues(self)
        self.gathers = Gathers(self)
        self.playing = AppMedia(self, recordings_dir)
        self.conferences = AppConferences(self)
        # Told when a call registers and at each change of what its end webhooks need (the
        # server's journal keeps that in the database: ``callbridge.journal``).
        self.on_call_change: Callable[[AppCall], None] | None = None
        # A media leg's last RTCP figures as call_quality_stats (the CDR details', issue 14).
        self.leg_quality: Callable[[str], dict[str, dict[str, str]] | None] | None = None
        bus = self.bus
        bus.subscribe(LegEnded, self._leg_ended)
        bus.subscribe(LegAnswered, self._leg_answered)
        bus.subscribe(LegDtmf, self._dtmf)
        bus.subscribe(ConferenceCreated, self.conferences.on_created)
        bus.subscribe(ParticipantJoined, self.conferences.on_joined)
        bus.subscribe(ParticipantLeft, self.conferences.on_left)
        bus.subscribe(ConferenceFloorChanged, self.conferences.on_floor_changed)
        bus.subscribe(ConferencePlaybackChanged, self.conferences.on_playback)
        bus.subscribe(ConferenceRecordingSaved, self.conferences.on_recording_saved)
        bus.subscribe(ConferenceRecordingFailed, self.conferences.on_recording_failed)
        bus.subscribe(ConferenceEnded, self.conferences.on_ended)
        self.media.subscribe(self.playing.on_media_event)
        controller.router = self.dialer  # inbound calls to an application's route come here

    # events -----------------------------------------------------------------------------------
    def publish(self, event: AppEvent) -> None:
        self.bus.publish(event)

    def facts(self, call: AppCall) -> CallFacts:
        """What every event of ``call`` says about it, now."""
        return CallFacts(
            call_control_id=call.id,
            call_session_id=call.session_id,
            application=call.application,
            webhook_url=call.webhook_url,
            client_state=call.client_state,
            from_=call.from_,
            to=call.to,
            direction=call.direction,
            started_at=call.started_at,
        )

    # lookups ----------------------------------------------------------------------------------
    def get(self, call_control_id: str) -> AppCall:
        """The live call with this id (an application call, or any device leg, adopted).

        :raises CallHasEnded: it has ended. :raises UnknownCall: there never was such a call.
        """
        call = self.calls.get(call_control_id) or self.by_leg.get(call_control_id)
        if call is not None and not call.ended:
            return call
        leg = self.controller.legs.get(call_control_id)
        if leg is not None and leg.live:
            return self._adopt(leg)
        ended = self._ended.get(call_control_id)
        if ended is not None:
            raise CallHasEnded(call_control_id, ended.reason)
        raise UnknownCall(call_control_id)

    def find(self, call_control_id: str) -> AppCall | None:
        """A live or recently ended call, for status queries (a live leg is adopted)."""
        call = self.calls.get(call_control_id) or self.by_leg.get(call_control_id)
        if call is not None:
            return call
        leg = self.controller.legs.get(call_control_id)
        if leg is not None and leg.live:
            return self._adopt(leg)
        return self._ended.get(call_control_id)

    def call_of_leg(self, leg_id: str) -> AppCall | None:
        """The call whose media leg (or ringing device leg) this is, live or recently ended."""
        return self.by_leg.get(leg_id) or self._ended.get(leg_id)

    def id_of(self, leg_id: str) -> str:
        """How applications name a leg: its call's ``call_control_id``, else its own id."""
        call = self.by_leg.get(leg_id)
        return call.id if call is not None else leg_id

    def _adopt(self, leg: Leg) -> AppCall:
        call = leg.call
        adopted = AppCall(
            id=leg.id,
            direction="incoming" if leg.direction == "outgoing" else "outgoing",
            session_id=call.id if call is not None else leg.id,
            from_=call.caller_id if call is not None else leg.device.caller_id,
            to=call.destination if call is not None else "",
            state=AppCallState.ANSWERED if leg.answered else AppCallState.RINGING,
            leg=leg,
        )
        if call is not None:
            adopted.started_at = call.started_at
            adopted.answered_at = call.answered_at
        self.register(adopted)
        return adopted

    def register(self, call: AppCall) -> None:
        call.state_observer = self.controller.observer
        self.calls[call.id] = call
        if call.leg is not None:
            self.by_leg[call.leg.id] = call
        if self.on_call_change is not None:
            call.on_change = self.on_call_change
            self.on_call_change(call)

    def remember_ended(self, call: AppCall) -> None:
        """Know of a call that ended elsewhere (one a crash cut off, closed at start-up), so
        that status queries answer for it as for any recently ended call."""
        self._forget_later(call)

    def live(self, call: AppCall) -> Leg:
        """The call's media leg, which must be up."""
        if call.ended:
            raise CallHasEnded(call.id, call.reason)
        leg = call.leg
        if leg is None:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"call {call.id} is still ringing: wait for call.answered",
            )
        if not leg.live:
            reason = leg.end_reason.value if leg.end_reason else "hangup"
            raise CallHasEnded(call.id, reason)
        return leg

    def answered_leg(self, call: AppCall, action: str) -> Leg:
        """The media leg of an answered call (``action`` names the command, for the error)."""
        leg = self.live(call)
        if call.parked:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"{action}: call {call.id} is not answered: answer it first",
            )
        if not leg.answered:
            raise ProtocolError(
                ErrorCode.INVALID_STATE, f"{action}: call {call.id} is {leg.state}, not answered"
            )
        return leg

    def bridgeable(self, call: AppCall, action: str) -> Leg:
        """The leg of an answered call in no conference."""
        leg = self.answered_leg(call, action)
        if leg.conference is not None:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"{action}: call {call.id} is in conference {leg.conference.id}: "
                "make it leave the conference first",
            )
        return leg

    async def ready_for_conference(self, call: AppCall) -> Leg:
        """The call's leg, out of its queue and with the application's audio stopped, to join
        a conference (the conference refuses legs that are not answered or are bridged)."""
        leg = self.bridgeable(call, "join")
        self.queues.leave(call, "leave")
        await self.playing.stop_app_audio(leg)
        return leg

    # the end of a call ------------------------------------------------------------------------
    def finish(self, call: AppCall, reason: EndReason, *, offline: bool = False) -> None:
        """The call is over: its queue, gather, playbacks and transfer end with it, then the
        application hears ``call.hangup``."""
        if call.ended:
            return
        call.end_reason = reason
        call.ended_at = now()
        call.transition(AppCallState.ENDED, cause=reason.value)
        self.dialer.stop_waiting(call)
        self.queues.leave(call, "hangup")
        self.gathers.call_ended(call)
        self.playing.call_ended(call)
        self.bridges.call_ended(call)
        self.publish(
            AppCallHangup(
                call=self.facts(call),
                reason=reason,
                by_application=call.by_app,
                offline=offline,
                sip_cause=self._sip_cause(call),
                quality=self._quality(call),
            )
        )
        self.calls.pop(call.id, None)
        ringing = call.ring.legs if call.ring is not None else []
        for leg in [call.leg, *ringing]:
            if leg is not None and self.by_leg.get(leg.id) is call:
                del self.by_leg[leg.id]
        self._forget_later(call)

    def _quality(self, call: AppCall) -> dict[str, dict[str, str]] | None:
        """The call's media leg's last RTCP figures (``call.hangup``'s call_quality_stats)."""
        if self.leg_quality is None or call.leg is None:
            return None
        return self.leg_quality(call.leg.id)

    def _sip_cause(self, call: AppCall) -> int | None:
        """The SIP status that ended the call's trunk leg (issue 12: sip/trunk_calls.py)."""
        inbound = getattr(call.leg.device, "sip_status", None) if call.leg is not None else None
        if isinstance(inbound, int):  # a carrier's inbound call: the status its INVITE got
            return inbound
        lookup = getattr(self.controller.trunk_router, "sip_cause", None)
        if lookup is None:
            return None
        leg_call = call.leg.call if call.leg is not None else None
        for key in (leg_call.id if leg_call is not None else None, call.id):
            cause = lookup(key) if key is not None else None
            if isinstance(cause, int):
                return cause
        return None

    def _forget_later(self, call: AppCall) -> None:
        """Keep an ended call for errors and status queries, up to ``RECENTLY_ENDED``."""
        self._ended[call.id] = call
        if call.leg is not None and call.leg.id != call.id:
            self._ended[call.leg.id] = call
        while len(self._ended) > RECENTLY_ENDED:
            self._ended.popitem(last=False)

    # bus events -------------------------------------------------------------------------------
    def _leg_ended(self, event: LegEnded) -> None:
        leg_id, reason = event.leg.call_control_id, event.reason
        call = self.by_leg.get(leg_id)
        if call is None or call.ended:
            return
        if call.leg is None or call.leg.id != leg_id:
            # A device rung for an outgoing call: its ring group keeps track of it. The
            # winner hanging up before it was connected ends the call.
            del self.by_leg[leg_id]
            winner = call.ring.winner if call.ring is not None else None
            if winner is not None and winner.id == leg_id and call.leg is None:
                self.finish(call, reason)
            return
        leg = self.controller.legs.get(leg_id)
        if reason is EndReason.MOVED and leg is not None and leg.peer is not None:
            successor = leg.peer.peer
            if successor is not None and successor is not leg:
                # call.move: another device of the same user took the call over.
                del self.by_leg[leg_id]
                call.leg = successor
                self.by_leg[successor.id] = call
                return
        if leg is not None:
            self.bridges.leg_left_bridge(leg, reason)
        self.finish(call, reason)

    def _leg_answered(self, event: LegAnswered) -> None:
        """The controller answered a call involving an application call's leg: an adopted
        call is answered now; after a ``/ws`` transfer the far party changed, so the
        application hears ``call.bridged``."""
        leg_id = event.leg.call_control_id
        call = self.by_leg.get(leg_id)
        leg = self.controller.legs.get(leg_id)
        if call is None or leg is None or call.ended:
            return
        if call.state is AppCallState.RINGING:
            call.transition(AppCallState.ANSWERED, cause="its leg was answered")
        if call.parked or leg.peer is None:
            return
        call.bridge_peer = None
        self.publish(
            AppCallBridged(call=self.facts(call), peer_call_control_id=self.id_of(leg.peer.id))
        )

    def _dtmf(self, event: LegDtmf) -> None:
        leg_id = event.leg.call_control_id
        call = self.by_leg.get(leg_id)
        if call is None or call.ended or call.leg is None or call.leg.id != leg_id:
            return
        self.publish(AppDtmfReceived(call=self.facts(call), digit=event.digit))
        self.gathers.digit(call, event.digit)

    # housekeeping -----------------------------------------------------------------------------
    def store_later(self, work: Coroutine[Any, Any, None], what: str) -> None:
        """Store something (a recording) in a task that :meth:`drain` waits for."""
        self._storing.spawn(work, f"storing {what}")

    async def drain(self) -> None:
        """Wait for what is being stored at this moment (recordings saved a moment ago)."""
        await self._storing.drain()

    async def shutdown(self) -> None:
        """End every call that is still ringing (the controller ends the others)."""
        await self.dialer.shutdown()
        await self.drain()

    async def close(self) -> None:
        """After the controller's shutdown: store what its last events saved, stop timers."""
        await self.drain()
        await self._storing.close()
        await self.scheduler.close()
