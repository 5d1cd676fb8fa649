"""Where a trunk's inbound call goes when its number routes to an application, a conference or
a queue (issue 12); numbers routed to a user ring the user as any call does.

:class:`TrunkTargets` sits in front of the application router (``controller.router``, the
:class:`~callbridge.core.app_dial.Dialer`): a call whose caller is a trunk's
(:class:`~callbridge.sip.trunk_inbound.TrunkCaller`) and whose destination is the number it
arrived on goes to the number's target; every other call goes on to the Dialer unchanged.

- ``application``: parked for that application (its id is the target), exactly as a call to
  one of its routes: ``call.initiated`` webhook, ringback until the application answers,
  rejects or the ring timeout passes. No route is needed.
- ``queue``: answered at once and put in the account's queue of that name (made when first
  used, as REST ``enqueue`` does), hearing the hold music until an application bridges with
  the queue; it has no application of its own (an adopted call: no webhooks of its own).
- ``conference``: answered at once and joined to the account's live conference of that name,
  or, when none is live, to a new one of that name it creates (REST-style conferences: their
  owner is no application; they end when the last participant leaves).

A target that refuses (a full queue or conference) ends the call ``failed``; the carrier
gets the end as a BYE (it was answered).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from callbridge.core.app_conferences import ConferenceFull
from callbridge.core.tenancy import account_of
from callbridge.errors import ProtocolError
from callbridge.vocabulary import EndReason

if TYPE_CHECKING:
    from callbridge.core.app_dial import Dialer
    from callbridge.core.app_model import AppCall
    from callbridge.core.calls import Call
    from callbridge.core.controller import CallController, CallRouter
    from callbridge.trunks import NumberRoute

__all__ = ["TrunkTargets"]

log = logging.getLogger(__name__)

TARGETS = ("application", "conference", "queue")


class TrunkTargets:
    """The router for inbound trunk calls to applications, conferences and queues."""

    def __init__(self, controller: CallController, dialer: Dialer) -> None:
        self.controller = controller
        self.dialer = dialer
        self.inner: CallRouter = dialer

    def attach(self) -> None:
        self.controller.router = self

    async def route(self, call: Call, destination: str) -> bool:
        number: NumberRoute | None = getattr(call.origin.device, "inbound_number", None)
        if (
            number is None
            or number.target_kind not in TARGETS
            or not number.target_id
            or destination != number.e164
        ):
            return await self.inner.route(call, destination)
        apps = self.dialer.apps
        application = None
        if number.target_kind == "application":
            application = await apps.directory.get_application(number.target_id)
            if application is None or not application.active:
                log.warning("SIP: %s routes to application %s, which is gone or inactive",
                            number.e164, number.target_id)  # fmt: skip
                await self.controller.end_call(call, EndReason.FAILED, EndReason.FAILED)
                return True
        parked = await self.dialer.park(call, application, destination)
        if parked is None or application is not None:
            return True
        try:
            await self._place(parked, number)
        except ProtocolError as exc:
            log.warning("SIP: trunk call for %s: %s %s refused it: %s",
                        number.e164, number.target_kind, number.target_id, exc.message)  # fmt: skip
            await self.controller.end_call(call, EndReason.FAILED, EndReason.FAILED)
        return True

    async def _place(self, parked: AppCall, number: NumberRoute) -> None:
        """Answer the parked call and put it in the number's queue or conference."""
        apps = self.dialer.apps
        leg = parked.leg
        assert leg is not None and number.target_id is not None
        account = account_of(leg.device)
        await self.dialer.answer_parked(parked, leg)
        if parked.ended or not leg.live:
            return
        if number.target_kind == "queue":
            await apps.queues.enqueue(parked, number.target_id, account_id=account)
            return
        conferences = apps.conferences
        live = [
            r
            for r in conferences.records.values()
            if (r.name, r.account_id) == (number.target_id, account) and r.id and not r.ended_at
        ]
        for record in live:
            try:
                await conferences.join(record.id, parked)
                return
            except ConferenceFull:
                raise
            except ProtocolError:  # ended meanwhile: the next, or a new one
                continue
        await conferences.create(parked, number.target_id, account_id=account)
