"""An application's dial to a user who has forwarding rules (issue 16).

:meth:`Dialer.dial <callbridge.core.app_dial.Dialer.dial>` rings every device of a user with
no rules, as before. A user with rules (``routing.followme``, :mod:`callbridge.core.followme`)
is rung step by step, as a call from a device to them is: DND skips their own devices, each
step rings its targets at once for its seconds, and the rules' action after a step's outcome
(busy, no answer, offline, DND) picks the next step, a destination, or the end with the
outcome's reason. The application's ``timeout_secs`` bounds the whole: no step rings past it.

Each step is one :class:`~callbridge.core.ringgroup.RingGroup` whose winner becomes the call's
media leg exactly as a plain dial's (``Dialer._connect``). When a step after the first starts,
the application gets ``call.forwarded`` (:class:`AppCallForwarded`: step, targets, seconds and
why the step before ended).

What differs from a device's call: an outside ``number`` target is placed for the application
(its toll-fraud limits, as a REST dial to a number) and rung without the screening prompt
(the application hears the answer and can screen it itself); a ``queue``, ``application`` or
``conference`` target cannot take a call that no caller placed, so it counts as ``offline``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from callbridge.core.app_events import AppCallForwarded
from callbridge.core.app_model import AppCall
from callbridge.core.calls import Caller
from callbridge.core.events import LegInitiated
from callbridge.errors import ProtocolError
from callbridge.forwarding import OUTCOME_REASONS, TAKING, Forwarding, Step, Target
from callbridge.vocabulary import EndReason

if TYPE_CHECKING:
    from callbridge.core.app_dial import Dialer
    from callbridge.core.devices import Device

__all__ = ["AppForwarding"]

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Run:
    call: AppCall
    user: Any  # store User
    rules: Forwarding
    caller: Caller
    account: str
    deadline: float  # loop time: the application's timeout_secs


class AppForwarding:
    """Rings a user by their forwarding rules for an application's dial (one per Dialer)."""

    def __init__(self, dialer: Dialer) -> None:
        self.dialer = dialer

    async def dial(
        self,
        call: AppCall,
        user: Any,
        rules: Forwarding,
        caller: Caller,
        timeout_secs: float,
        account: str,
    ) -> None:
        """Ring ``user``'s steps for ``call`` until one answers or the rules end it."""
        deadline = asyncio.get_running_loop().time() + timeout_secs
        run = _Run(call, user, rules, caller, account, deadline)
        await self._ring(run, 1, rules.effective_steps()[0], 0, None)

    async def _ring(
        self, run: _Run, number: int, step: Step, index: int, reason: str | None
    ) -> None:
        """Ring ``step`` (``reason``: how the step before ended; None for the first)."""
        dialer = self.dialer
        apps = dialer.apps
        c = apps.controller
        call, rules = run.call, run.rules
        if call.ended:
            return
        remaining = run.deadline - asyncio.get_running_loop().time()
        if remaining <= 0:  # the application's timeout_secs is over
            apps.finish(call, EndReason.NO_ANSWER)
            return
        seconds = min(float(step.seconds or rules.ring_seconds or c.ring_timeout), remaining)
        devices: list[Device] = []
        numbers: list[Target] = []
        dnd_only = True
        for target in step.targets:
            if target.type == "devices":
                if rules.dnd:
                    continue
                devices += await c.ringable_devices(run.user.name)
            elif target.type == "user":
                devices += await c.routing.followme.devices_of(target.value or "", run.account)
            elif target.type == "number":
                numbers.append(target)
            else:
                log.info("application dial to %s: %s cannot take it", run.user.name, target)
            dnd_only = dnd_only and target.type == "devices"
        if run.call.ended:  # the application hung up meanwhile
            return
        if reason is not None:
            apps.publish(
                AppCallForwarded(
                    call=apps.facts(call),
                    user=run.user.name,
                    step=number,
                    targets=tuple(t.describe() for t in step.targets),
                    seconds=seconds,
                    reason=reason,
                )
            )
        if rules.dnd and dnd_only:
            await self._outcome(run, index, "dnd")
            return
        group = c.ring_group(
            f"application dial step {number}",
            partial(dialer._connect, call),
            partial(self._exhausted, run, index),
        )
        call.ring = group  # before any await: the application's hangup cancels it
        for device in {d.id: d for d in devices}.values():
            if not group.open:
                break
            leg = await c.ring_device(group, device, run.caller, None)
            if leg is not None:
                apps.by_leg[leg.id] = call
                c.bus.publish(LegInitiated(leg=leg.facts()))
        for target in numbers:
            if not group.open:
                break
            await self._ring_number(run, group, target)
        if not group.open and group.winner is None:  # the application hung up meanwhile
            return
        await group.start(seconds)  # nobody rang: _exhausted(FAILED) → offline

    async def _ring_number(self, run: _Run, group: Any, target: Target) -> None:
        apps = self.dialer.apps
        c = apps.controller
        trunks: Any = c.trunk_router
        if trunks is None or not hasattr(trunks, "plan") or target.value is None:
            return
        try:
            planned = await trunks.plan(target.value, run.call.application, run.account)
        except ProtocolError as exc:
            log.info("application dial: %s unreachable: %s", target.value, exc.message)
            return
        if planned is None or not group.open:
            return
        leg = await trunks.ring(group, planned, run.caller, run.call.id, run.account)
        if leg is not None:
            apps.by_leg[leg.id] = run.call
            c.bus.publish(LegInitiated(leg=leg.facts()))

    async def _exhausted(self, run: _Run, index: int, reason: EndReason) -> None:
        ring = run.call.ring
        if ring is not None and ring.busy:
            outcome = "busy"
        elif reason is EndReason.FAILED:
            outcome = "offline"  # nothing could be rung
        else:
            outcome = "no_answer"
        await self._outcome(run, index, outcome)

    async def _outcome(self, run: _Run, index: int, outcome: str) -> None:
        """What the rules say after a step ended ``outcome`` (index -1: a destination)."""
        call = run.call
        if call.ended:
            return
        action = run.rules.action(outcome) if index >= 0 else "end"
        steps = run.rules.effective_steps()
        if action == "next" and 0 <= index < len(steps) - 1:
            await self._ring(run, index + 2, steps[index + 1], index + 1, outcome)
            return
        kind, _, value = action.partition(":")
        if action == "next" or kind == "end" or kind in TAKING:
            reason = EndReason(value if kind == "end" and value else OUTCOME_REASONS[outcome])
            offline = reason is EndReason.FAILED
            self.dialer.apps.finish(call, reason, offline=offline)
            return
        final = Step((Target(kind, value),))  # type: ignore[arg-type]
        await self._ring(run, 0, final, -1, outcome)
