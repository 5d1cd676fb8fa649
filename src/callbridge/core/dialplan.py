"""The accounts' dial plans (issue 16): where a dialled destination goes, before anything else.

``Routing.route`` asks :meth:`DialPlans.route` first (``controller.dial_plan``). The caller's
account's rules (:mod:`callbridge.dialplan_model`) are tried in order; the first whose pattern
matches (and, for a timed rule, whose hours contain now in the account's time zone) sends the
call to its target. No rule matches, or the account has none: False, and the call goes on as
it always did (applications' routes, users, trunks).

Targets (the dialled destination rewritten by the rule's ``strip`` and ``prepend`` is "the
number" below):

===============  ==========================================================================
``user``         ring-all of the user the target names (extension, number or name), or of the
                 user whose extension or number is the number (an extension range to users)
``ring_group``   the account's ring group of that name or id (:mod:`core.huntgroup`); when
                 nobody answers, the group's no-answer destination, or the end
``queue``        answered and put in the account's queue of that name (made when first used),
                 as a trunk number routed to a queue (``sip/trunk_targets.py``)
``conference``   answered and joined to the account's live conference of that name, or a new one
``application``  parked for the application of that id (the account's): ``call.initiated``
``trunk``        out through the account's outbound routes with the number (``+44…``)
===============  ==========================================================================

A target that is gone (a removed group, a user or application of no such name) fails the call
with ``destination_not_found`` saying which rule pointed where. Time is read from
:attr:`DialPlans.clock` (injected in tests).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from callbridge.core.app_conferences import ConferenceFull
from callbridge.core.calls import Call
from callbridge.core.huntgroup import HuntGroups
from callbridge.core.tenancy import account_of, application_account
from callbridge.dialplan_model import DialRule, DialSettings, RingGroupDef
from callbridge.errors import ProtocolError
from callbridge.vocabulary import EndReason

if TYPE_CHECKING:
    from callbridge.core.appcalls import AppCalls
    from callbridge.core.controller import CallController
    from callbridge.store.dialplan import DialPlanRepository

__all__ = ["DialPlans"]

log = logging.getLogger(__name__)

_MAX_HOPS = 4  # ring group -> no-answer ring group -> ...: a loop of groups ends here


def _utcnow() -> datetime:
    return datetime.now(UTC)


class DialPlans:
    """The controller's dial plan router (``controller.dial_plan``)."""

    def __init__(
        self,
        controller: CallController,
        store: DialPlanRepository,
        apps: AppCalls | None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.controller = controller
        self.store = store
        self.apps = apps
        self.clock = clock
        self.hunts = HuntGroups(controller)

    def attach(self) -> None:
        self.controller.dial_plan = self

    async def match(self, account: str, destination: str) -> DialRule | None:
        """The account's first rule that takes ``destination`` now."""
        rules = await self.store.dial_rules(account)
        if not rules:
            return None
        settings = DialSettings(account)
        if any(r.timed for r in rules):
            settings = await self.store.dial_settings(account)
        at = self.clock()
        return next((r for r in rules if r.applies(destination, at, settings)), None)

    async def route(self, call: Call, destination: str) -> bool:
        account = account_of(call.origin.device)
        rule = await self.match(account, destination)
        if rule is None:
            return False
        if not call.origin.live or call.ended:
            return True
        number = rule.rewrite(destination)
        log.info("dial plan: %s -> rule %s (%s) -> %s %s", destination, rule.pattern,
                 rule.id, rule.target_kind, rule.target or number)  # fmt: skip
        await self.route_to(
            call, rule.target_kind, rule.target, number, account, f"rule {rule.pattern!r}"
        )
        return True

    async def route_to(
        self, call: Call, kind: str, target: str | None, number: str, account: str, why: str,
        hops: int = 0,
    ) -> None:  # fmt: skip
        """Send the call to one target (a rule's, or a ring group's no-answer destination)."""
        c = self.controller
        if kind == "user":
            user = await c.directory.find_user(target or number, account)
            if user is None:
                await self._fail(
                    call, f"{why} sends it to user {target or number!r}, who does not exist"
                )
                return
            await c.routing.ring_user(call, user, target or number)
        elif kind == "ring_group":
            group = await self.store.find_ring_group(target or "", account)
            if group is None:
                await self._fail(
                    call, f"{why} sends it to ring group {target!r}, which does not exist"
                )
                return
            await self.hunts.ring(
                call, group, partial(self._no_answer, call, group, number, account, hops)
            )
        elif kind == "trunk":
            trunks = c.trunk_router
            if trunks is None or not await trunks.route(call, number):
                await self._fail(
                    call, f"{why} sends {number!r} to a trunk, but no outbound route of the "
                    "account reaches it (callbridge outbound add PREFIX TRUNK)",
                )  # fmt: skip
        else:
            await self._place(call, kind, target or "", number, account, why)

    async def _no_answer(
        self, call: Call, group: RingGroupDef, number: str, account: str, hops: int,
        reason: EndReason, rang: bool,
    ) -> None:  # fmt: skip
        """Nobody in the group answered: its no-answer destination, or the end."""
        if call.ended:
            return
        if group.no_answer_kind != "hangup" and hops < _MAX_HOPS:
            why = f"ring group {group.name!r} (no answer)"
            await self.route_to(
                call, group.no_answer_kind, group.no_answer_target, number, account, why, hops + 1
            )
            return
        if not rang:
            await self._fail(call, f"no member of ring group {group.name!r} has a device logged in")
            return
        final = reason if reason in (EndReason.BUSY, EndReason.REJECTED) else EndReason.NO_ANSWER
        await self.controller.end_call(call, final, final)

    async def _place(
        self, call: Call, kind: str, target: str, number: str, account: str, why: str
    ) -> None:
        """Park the call and hand it to an application, or answer it into a queue or a
        conference (as ``sip/trunk_targets.py`` does for a trunk's numbers)."""
        if self.apps is None:
            await self._fail(call, f"{why}: {kind} targets need the application layer")
            return
        apps, dialer = self.apps, self.apps.dialer
        application: Any = None
        if kind == "application":
            application = await apps.directory.get_application(target)
            if (
                application is None
                or not application.active
                or application_account(application) != account
            ):
                await self._fail(
                    call,
                    f"{why} sends it to application {target!r}, which is gone or inactive",
                )
                return
        parked = await dialer.park(call, application, number)
        if parked is None or application is not None:
            return
        leg = parked.leg
        assert leg is not None
        try:
            await dialer.answer_parked(parked, leg)
            if parked.ended or not leg.live:
                return
            if kind == "queue":
                await apps.queues.enqueue(parked, target, account_id=account)
                return
            conferences = apps.conferences
            live = [
                r for r in conferences.records.values()
                if (r.name, r.account_id) == (target, account) and r.id and not r.ended_at
            ]  # fmt: skip
            for record in live:
                try:
                    await conferences.join(record.id, parked)
                    return
                except ConferenceFull:
                    raise
                except ProtocolError:  # ended meanwhile: the next, or a new one
                    continue
            await conferences.create(parked, target, account_id=account)
        except ProtocolError as exc:
            log.warning("dial plan: %s: %s %s refused the call: %s", why, kind, target, exc.message)
            await self.controller.end_call(call, EndReason.FAILED, EndReason.FAILED)

    async def _fail(self, call: Call, why: str) -> None:
        log.warning("dial plan: %s", why)
        await self.controller.routing._fail(call, why)
