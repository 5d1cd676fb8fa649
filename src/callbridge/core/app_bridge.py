"""Bridging and transferring application calls.

Two calls bridged by an application keep their own controller ``Call`` (and CDR); only their
media and ``peer`` links join, and each device is told ``call.bridged`` (who its far party is
now). When one side ends, the other is hung up too unless it was bridged with
``park_after_unbridge="self"``: then it stays up, parked, for the application (Telnyx's rule).

A transfer dials the target (:meth:`~callbridge.core.app_dial.Dialer.dial`) while the call
hears ringback, and bridges the two when the target answers. If the target does not answer,
the call goes on as it was; a parked one waits for the application again, within the ring
timeout.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from callbridge.core.app_events import AppCallBridged, CallBridged
from callbridge.core.app_model import AppCall
from callbridge.core.calls import Leg, LegState, all_live
from callbridge.core.tenancy import DEFAULT_ACCOUNT_ID
from callbridge.errors import ErrorCode, ProtocolError
from callbridge.vocabulary import EndReason

if TYPE_CHECKING:
    from callbridge.core.appcalls import AppCalls
    from callbridge.core.queues import Queue

__all__ = ["Bridges"]

log = logging.getLogger(__name__)


class Bridges:
    """Bridges and transfers of application calls (one per :class:`AppCalls`)."""

    def __init__(self, apps: AppCalls) -> None:
        self.apps = apps

    def _connectable(self, call: AppCall) -> Leg:
        """The leg of a call that may be bridged or transferred: parked or answered, and in
        no conference."""
        leg = self.apps.live(call)
        if leg.conference is not None:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"call {call.id} is in conference {leg.conference.id}: make it leave first",
            )
        if not call.parked and not leg.answered:
            raise ProtocolError(
                ErrorCode.INVALID_STATE, f"call {call.id} is {leg.state}, not answered"
            )
        return leg

    async def bridge(
        self,
        a: AppCall,
        b: AppCall,
        *,
        park_after_unbridge: bool = False,
        queue: Queue | None = None,
        wait_secs: int | None = None,
    ) -> None:
        """Connect two calls: each hears the other. A parked call is answered first."""
        apps = self.apps
        if a is b or (a.leg is not None and a.leg is b.leg):
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, "a call cannot be bridged to itself")
        la, lb = self._connectable(a), self._connectable(b)
        if la.peer is lb:
            a.park_after_unbridge = park_after_unbridge
            return
        for call, leg in ((a, la), (b, lb)):
            if leg.peer is not None or call.bridge_peer is not None:
                raise ProtocolError(
                    ErrorCode.INVALID_STATE,
                    f"call {call.id} is bridged (or being bridged) to another call already: "
                    "hang that up or transfer it first",
                )
        a.bridge_peer, b.bridge_peer = lb.id, la.id  # claimed before any await
        for call in (a, b):
            apps.queues.leave(call, "bridged")
            apps.dialer.stop_waiting(call)
        try:
            for call, leg in ((a, la), (b, lb)):
                if call.parked:
                    await apps.dialer.answer_parked(call, leg)
            for leg in (la, lb):
                await apps.playing.stop_app_audio(leg)
            if not all_live(la, lb) or a.ended or b.ended:
                self._unclaim(a, b)
                return
            await apps.media.bridge(la.id, lb.id)
        except BaseException:
            self._unclaim(a, b)
            raise
        if not all_live(la, lb):  # a function: mypy must not keep the check above
            self._unclaim(a, b)
            return
        la.peer, lb.peer = lb, la
        a.park_after_unbridge = park_after_unbridge
        for call, leg, other in ((a, la, lb), (b, lb, la)):
            if leg.state is LegState.HELD:
                leg.transition(LegState.ACTIVE, cause="bridged by an application")
            leg.device.deliver(
                CallBridged(
                    call_id=leg.id,
                    peer=other.device.caller_id,
                    peer_name=other.device.display_name,
                    # b waited in the queue (both learn for how long)
                    queue=queue.name if queue is not None else None,
                    wait_secs=wait_secs if queue is not None else None,
                )
            )
            apps.publish(
                AppCallBridged(call=apps.facts(call), peer_call_control_id=apps.id_of(other.id))
            )

    @staticmethod
    def _unclaim(a: AppCall, b: AppCall) -> None:
        """A bridge that did not happen (one side ended meanwhile)."""
        a.bridge_peer = b.bridge_peer = None

    async def bridge_queue(
        self,
        call: AppCall,
        queue_name: str,
        *,
        park_after_unbridge: bool = False,
        account_id: str = DEFAULT_ACCOUNT_ID,
    ) -> AppCall:
        """Bridge ``call`` to the longest-waiting call of the account's queue (which leaves the
        queue)."""
        apps = self.apps
        apps.bridgeable(call, "bridge")
        queue, entry = apps.queues.head(queue_name, account_id=account_id)
        waiting = entry.call
        if waiting is call:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, "a call cannot be bridged to itself")
        wait_secs = entry.wait_secs
        apps.queues.leave(waiting, "bridged")  # always, even if bridging fails (Telnyx's rule)
        await self.bridge(
            call, waiting, park_after_unbridge=park_after_unbridge, queue=queue, wait_secs=wait_secs
        )
        return waiting

    def leg_left_bridge(self, leg: Leg, reason: EndReason) -> None:
        """``leg`` is ending; if an application bridged it, its partner follows the rule."""
        peer = leg.peer
        if peer is None or reason in (EndReason.TRANSFERRED, EndReason.MOVED):
            return
        partner = self.apps.by_leg.get(peer.id)
        if partner is None or partner.bridge_peer != leg.id:
            return
        partner.bridge_peer = None
        if partner.park_after_unbridge:
            return  # it stays up, parked: the application decides what comes next
        self.apps.scheduler.spawn(
            self.apps.dialer.hangup_leg(peer), f"hangup of {peer.id} (its bridge ended)"
        )

    # transfer ---------------------------------------------------------------------------------
    async def transfer(
        self,
        call: AppCall,
        to: str,
        *,
        from_: str | None = None,
        from_display_name: str = "",
        webhook_url: str | None = None,
        timeout_secs: float = 30.0,
        target_client_state: str | None = None,
    ) -> AppCall:
        """Dial ``to`` and bridge ``call`` to it when it answers; ``call`` hears ringback
        meanwhile. If ``to`` does not answer, ``call`` stays as it was (Telnyx's rule)."""
        apps = self.apps
        leg = self._connectable(call)
        if call.transfer_to is not None:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"call {call.id} is being transferred already (to {call.transfer_to.to})",
            )
        if call.application is None:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"call {call.id} belongs to no application: transfer it with the softphone "
                "(call.transfer) or dial and bridge",
            )
        apps.dialer.stop_waiting(call)  # a parked call waits for the transfer instead
        target = await apps.dialer.dial(
            call.application,
            to,
            from_ or call.from_,
            from_display_name=from_display_name or call.from_display_name,
            webhook_url=webhook_url or call.webhook_url,
            timeout_secs=timeout_secs,
            client_state=target_client_state,
            session_id=call.session_id,
        )
        if target.ended:
            return target
        if call.ended or not leg.live:
            await apps.dialer.hangup(target)
            return target
        target.transfer_of, call.transfer_to = call, target
        if leg.peer is not None and call.bridge_peer == leg.peer.id:
            # The transferred call leaves its bridge: the old partner follows its rule.
            old = leg.peer
            self.leg_left_bridge(leg, EndReason.HANGUP)
            call.bridge_peer = None
            await apps.media.unbridge(leg.id)
            leg.peer = old.peer = None
        if not call.parked:
            await apps.media.play(leg.id, "ringback")
        return target

    async def complete_transfer(self, original: AppCall, target: AppCall) -> None:
        """The transfer target answered: bridge it to the call being transferred."""
        target.transfer_of, original.transfer_to = None, None
        if original.ended or original.leg is None or not original.leg.live:
            await self.apps.dialer.hangup(target)
            return
        try:
            await self.bridge(original, target)
        except ProtocolError as exc:
            log.info("transfer of %s to %s failed: %s", original.id, target.id, exc)
            await self.apps.dialer.hangup(target)

    async def _transfer_failed(self, original: AppCall) -> None:
        """The transfer target did not answer: the original call goes on as it was (a parked
        one waits for the application again, within the ring timeout)."""
        leg = original.leg
        if leg is None or not leg.live or original.ended:
            return
        if original.parked:
            self.apps.dialer.wait_for_application(original)
        else:
            await self.apps.media.stop_playing(leg.id)

    def call_ended(self, call: AppCall) -> None:
        """``call`` is over: a transfer it was part of is over too."""
        target = call.transfer_to
        if target is not None and not target.ended:
            call.transfer_to = None
            target.transfer_of = None
            self.apps.scheduler.spawn(
                self.apps.dialer.hangup(target), f"hangup of transfer target {target.id}"
            )
        original = call.transfer_of
        if original is not None:
            call.transfer_of = None
            original.transfer_to = None
            self.apps.scheduler.spawn(
                self._transfer_failed(original), f"transfer of {original.id} failed"
            )
