"""Calls to and from applications: parking, answering, rejecting, dialling, hanging up.

**Incoming.** The controller's router hook (:meth:`Dialer.route`) takes a call whose
destination a route sends to an application: the caller's leg is *parked* (``call.ringing``
with ringback) and the application gets ``call.initiated``. It answers (the device gets
``call.answered`` and hears what the application plays), rejects (``busy`` or ``rejected``),
or lets the ring timeout pass (``no-answer``).

**Outgoing.** :meth:`Dialer.dial` rings every device of a user (``/ws`` sessions and
registered SIP phones) in one :class:`~callbridge.core.ringgroup.RingGroup` (``call.incoming``
with ``from`` as the application gave it; an INVITE to a phone). The group is each rung
leg's ``ring_owner``: the first answer wins and :meth:`Dialer._connect` makes it the call's
media leg; the others end ``answered-elsewhere``.
When nobody answers in ``timeout_secs``, every device declines (``busy`` if one said busy) or
the application hangs up first, the call ends with that reason. A user with no reachable
device ends it at once (``failed``, offline).

**Forwarding.** A user with forwarding rules (issue 16) is rung by them instead, step by
step (:mod:`.app_forward`; the application gets ``call.forwarded`` at each new step).

**Accounts.** A route applies to the calls of its own account (the caller's), and an
application dials only users of its own account: a user of another account is "no such user".
What an application presents as ``from`` is checked (core.callerid: ``caller_id_not_allowed``)
and its ``from_display_name`` sanitised before anything rings.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING, Any

from callbridge.core.app_events import AppCallAnswered, AppCallInitiated
from callbridge.core.app_forward import AppForwarding
from callbridge.core.app_model import AppCall, AppCallState, CallHasEnded, now
from callbridge.core.callerid import CallerIds, clean_display_name
from callbridge.core.calls import Call, Caller, CallState, Leg, LegState, new_id
from callbridge.core.events import CallAnswered, CallRinging, LegInitiated
from callbridge.core.tenancy import account_of, application_account
from callbridge.errors import ErrorCode, ProtocolError
from callbridge.vocabulary import EndReason

if TYPE_CHECKING:
    from callbridge.core.appcalls import AppCalls

__all__ = ["Dialer"]

log = logging.getLogger(__name__)


class Dialer:
    """Application calls coming in and going out (one per :class:`AppCalls`)."""

    def __init__(self, apps: AppCalls) -> None:
        self.apps = apps
        self.caller_ids = CallerIds(apps.directory)
        self.forwarding = AppForwarding(self)

    # incoming ---------------------------------------------------------------------------------
    async def route(self, call: Call, destination: str) -> bool:
        """The controller's routing hook: park ``call`` for the application that a route sends
        ``destination`` to (returns False when no route applies: users are tried)."""
        apps = self.apps
        application_id = await apps.directory.find_route(
            destination, account_of(call.origin.device)
        )
        if application_id is None:
            return False
        application = await apps.directory.get_application(application_id)
        if application is None or not application.active:
            return False
        await self.park(call, application, destination)
        return True

    async def park(self, call: Call, application: Any, destination: str) -> AppCall | None:
        """Park ``call`` for ``application`` (None: no application, e.g. a trunk number routed
        to a queue or a conference): ringback, ``call.initiated``, the ring timeout. None when
        the caller hung up meanwhile."""
        apps = self.apps
        origin = call.origin
        if not origin.live or call.ended:
            return None
        old = apps.by_leg.get(origin.id)
        if old is not None and not old.ended:
            # An application call's leg is routed to an application again (a /ws transfer of
            # its far party): the old application is done with it.
            apps.finish(old, EndReason.TRANSFERRED)
        parked = AppCall(
            id=origin.id if origin.id not in apps.calls else new_id(),
            direction="incoming",
            session_id=call.id,
            from_=call.caller_id,
            to=destination,
            state=AppCallState.PARKED,
            application=application,
            leg=origin,
            from_display_name=call.caller_name,
        )
        apps.register(parked)
        if application is not None:
            call.callee_name = application.application_name
        if call.can(CallState.RINGING):
            call.transition(CallState.RINGING, cause="parked for an application")
        origin.transition(LegState.RINGING)
        await apps.media.play(origin.id, "ringback")
        if not origin.live or parked.ended:
            return None
        origin.device.deliver(CallRinging(call_id=origin.id))
        apps.publish(
            AppCallInitiated(call=apps.facts(parked), parked=True, caller_name=call.caller_name)
        )
        self.wait_for_application(parked)
        return parked

    def wait_for_application(self, call: AppCall) -> None:
        """A parked call rings out (``no-answer``) unless the application acts in time."""
        self.apps.scheduler.later(
            self.apps.ring_timeout,
            (call, "parked"),
            partial(self._parked_timeout, call),
            f"ring timeout of parked call {call.id}",
        )

    def stop_waiting(self, call: AppCall) -> None:
        self.apps.scheduler.cancel((call, "parked"))

    async def _parked_timeout(self, call: AppCall) -> None:
        leg = call.leg
        if call.parked and leg is not None and leg.call is not None:
            await self.apps.controller.end_call(leg.call, EndReason.NO_ANSWER, EndReason.NO_ANSWER)

    async def answer(self, call: AppCall) -> None:
        """Answer a parked incoming call: its device gets ``call.answered``."""
        leg = self.apps.live(call)
        if not call.parked:
            what = "answered already" if leg.answered else f"{leg.state}: nothing to answer"
            raise ProtocolError(ErrorCode.INVALID_STATE, f"call {call.id} is {what}")
        await self.answer_parked(call, leg)

    async def answer_parked(self, call: AppCall, leg: Leg) -> None:
        """The application takes a parked call (answer, or bridge, which answers first)."""
        call.transition(AppCallState.ANSWERED, cause="the application answered")  # claimed
        self.stop_waiting(call)
        await self.apps.media.stop_playing(leg.id)
        if not leg.live or call.ended:
            return
        leg.transition(LegState.ACTIVE)
        call.answered_at = now()
        if leg.call is not None:
            leg.call.answered_at = call.answered_at
            if leg.call.can(CallState.ANSWERED):
                leg.call.transition(CallState.ANSWERED, cause="the application answered")
        leg.device.deliver(CallAnswered(call_id=leg.id, media_type=leg.media_type))
        self.apps.publish(AppCallAnswered(call=self.apps.facts(call)))

    async def reject(self, call: AppCall, busy: bool) -> None:
        leg = self.apps.live(call)
        if not call.parked:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"call {call.id} is not a parked incoming call: only those can be rejected "
                "(hang it up instead)",
            )
        reason = EndReason.BUSY if busy else EndReason.REJECTED
        call.by_app = True
        self.stop_waiting(call)
        assert leg.call is not None  # a parked call is a routed device call
        await self.apps.controller.end_call(leg.call, reason, reason)

    # outgoing ---------------------------------------------------------------------------------
    async def dial(
        self,
        application: Any,
        to: str,
        from_: str,
        *,
        from_display_name: str = "",
        webhook_url: str | None = None,
        timeout_secs: float = 30.0,
        client_state: str | None = None,
        session_id: str | None = None,
    ) -> AppCall:
        """Ring every device of the user ``to`` names; the first to answer is the call."""
        apps, controller = self.apps, self.apps.controller
        account = application_account(application)
        from_ = await self.caller_ids.for_application(account, from_)
        from_display_name = clean_display_name(from_display_name)
        user = await apps.directory.find_user(to, account)
        # Not a user: an E.164 number or sip: URI goes out through a trunk (issue 12; the
        # toll-fraud policy is asked before anything is registered or rung).
        plan_out = getattr(controller.trunk_router, "plan", None)
        trunk_plan = await plan_out(to, application, account) if user is None and plan_out else None
        if user is None and trunk_plan is None:
            if await apps.directory.find_route(to, account) is not None:
                raise ProtocolError(
                    ErrorCode.DESTINATION_NOT_FOUND,
                    f"{to!r} is routed to an application: dial a user's extension, number or "
                    "name (an application cannot call an application)",
                )
            raise ProtocolError(
                ErrorCode.DESTINATION_NOT_FOUND,
                f"no user has the extension, number or name {to!r}",
            )
        call = AppCall(
            id=new_id(),
            direction="outgoing",
            session_id=session_id or new_id(),
            from_=from_,
            to=to,
            state=AppCallState.DIALING,
            application=application,
            webhook_url=webhook_url,
            client_state=client_state,
            from_display_name=from_display_name,
        )
        apps.register(call)
        apps.publish(AppCallInitiated(call=apps.facts(call), parked=False))
        caller = Caller(call.from_, call.from_display_name, call.to, "audio")
        # A user with forwarding rules is rung by them, as a device's call to them is (issue
        # 16: DND, steps; core.app_forward).
        rules = await controller.routing.followme.rules_of(user.name) if user else None
        if user is not None and rules is not None:
            await self.forwarding.dial(call, user, rules, caller, timeout_secs, account)
            return call
        group = controller.ring_group(
            "application dial", partial(self._connect, call), partial(self._exhausted, call)
        )
        call.ring = group
        rung = 0
        if trunk_plan is not None:  # the carrier is the one device rung
            assert controller.trunk_router is not None
            leg = await controller.trunk_router.ring(  # type: ignore[attr-defined]
                group, trunk_plan, caller, call.id, account
            )
            if leg is not None:
                rung += 1
                apps.by_leg[leg.id] = call
                controller.bus.publish(LegInitiated(leg=leg.facts()))
        # Every device of the user: /ws sessions and registered SIP phones (the store).
        for device in await controller.ringable_devices(user.name) if user is not None else ():
            if not group.open:
                break  # answered, or hung up, meanwhile
            leg = await controller.ring_device(group, device, caller, None)
            if leg is not None:
                rung += 1
                apps.by_leg[leg.id] = call
                controller.bus.publish(LegInitiated(leg=leg.facts()))
        if call.ended:
            return call
        if not rung:
            # Nobody to ring: the user is offline (SIP would answer 480 Temporarily Unavailable).
            await group.cancel(EndReason.FAILED)
            apps.finish(call, EndReason.FAILED, offline=True)
            return call
        await group.start(timeout_secs)
        return call

    async def _connect(self, call: AppCall, leg: Leg, sdp: str, req_id: str | None) -> None:
        """The ring group's winner: it becomes the call's media leg."""
        apps, controller = self.apps, self.apps.controller
        if call.ended:  # hung up while the other devices stopped ringing
            await controller.end_leg(leg, EndReason.CANCELED)
            return
        call.leg = leg
        call.transition(AppCallState.ANSWERED, cause=f"{leg.device.id} answered")
        # From here the leg is an ordinary call's origin (a hangup meanwhile ends it as such).
        leg.call = Call(
            id=leg.id,
            origin=leg,
            destination=call.to,
            caller_id=call.from_,
            caller_name=call.from_display_name,
            callee_name=leg.device.user_name,
            answered_leg=leg,
            started_at=call.started_at,
        )
        leg.call.state_observer = controller.observer
        early = getattr(leg.device, "answer_applied", False)  # a carrier's early media did it
        if not early and not await controller.accept_answer(leg, sdp, req_id):
            apps.finish(call, EndReason.FAILED)
            return
        if not leg.live or call.ended:  # hung up meanwhile
            return
        call.answered_at = leg.call.answered_at = now()
        leg.transition(LegState.ACTIVE)
        leg.device.deliver(CallAnswered(req_id=req_id, call_id=leg.id, media_type="audio"))
        apps.publish(AppCallAnswered(call=apps.facts(call)))
        original = call.transfer_of
        if original is not None:
            await apps.bridges.complete_transfer(original, call)

    async def _exhausted(self, call: AppCall, reason: EndReason) -> None:
        """Nobody will answer: the call ends with why."""
        if reason in (EndReason.REJECTED, EndReason.BUSY):
            busy = call.ring is not None and call.ring.busy
            reason = EndReason.BUSY if busy else EndReason.REJECTED
        self.apps.finish(call, reason)

    # hanging up -------------------------------------------------------------------------------
    async def hangup(self, call: AppCall) -> None:
        """End the call (cancel it while it rings). Its device gets ``call.ended``."""
        if call.ended:
            raise CallHasEnded(call.id, call.reason)
        call.by_app = True
        leg = call.leg
        if leg is None:
            if call.ring is not None:
                await call.ring.cancel(EndReason.CANCELED)
            self.apps.finish(call, EndReason.CANCELED)
            return
        await self.hangup_leg(leg)

    async def hangup_leg(self, leg: Leg) -> None:
        """Hang up a device leg as its device would (a conference member leaves, a call ends)."""
        if not leg.live:
            return
        try:
            await self.apps.controller.hangup(leg.device, leg.id, None)
        except ProtocolError as exc:  # it ended meanwhile
            log.debug("hangup of %s: %s", leg.id, exc)

    async def shutdown(self) -> None:
        """End every call that is still ringing (the controller ends the others)."""
        for call in list(self.apps.calls.values()):
            if call.leg is None and not call.ended:
                if call.ring is not None:
                    await call.ring.cancel(EndReason.CANCELED)
                self.apps.finish(call, EndReason.CANCELED)
