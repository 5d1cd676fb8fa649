"""Ringing a dial plan's ring group (issue 16): simultaneous, sequential or round robin.

Each step is one :class:`~callbridge.core.ringgroup.RingGroup` (ring-all, first answer wins)
over the devices of that step's members, for the step's seconds:

- ``simultaneous``: one step, every member's devices, for the longest member's seconds;
- ``sequential``: one step per member, in the listed order, each for its own seconds;
- ``round_robin``: as sequential, but starting with the member after the one who was rung
  first on the group's previous call. The last start is remembered in memory per group id
  (:attr:`HuntGroups.last`): a restart begins again with the first member, and each node of a
  cluster keeps its own turn, which is enough to spread calls.

A member is rung through ring-all of their devices (the devices a call to the user rings);
their own forwarding steps, when those exist, are not followed from inside a group, but their
do-not-disturb is (``followme.limits``). A member on DND or with no device reachable is
skipped at once; a step that every device declines (busy,
rejected) or that times out goes on to the next. The caller hears ringback throughout (from
the first step that rings) and the winner is bridged as for any call
(``Routing._answered``). When no step is left, ``on_no_answer(reason, rang)`` decides (the
group's no-answer destination, or the end: ``no-answer``, ``busy`` if someone said busy, or
``rang`` False when no member had a device at all).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from callbridge.core.calls import Call, Caller, CallState, LegState
from callbridge.core.events import CallRinging, LegInitiated
from callbridge.core.ringgroup import RingState
from callbridge.dialplan_model import GroupMember, RingGroupDef
from callbridge.vocabulary import EndReason

if TYPE_CHECKING:
    from callbridge.core.controller import CallController

__all__ = ["HuntGroups", "NoAnswerHook"]

log = logging.getLogger(__name__)

NoAnswerHook = Callable[[EndReason, bool], Awaitable[None]]
"""``on_no_answer(reason, rang)``: every step is over (``rang``: some device was rung)."""


@dataclass
class _Hunt:
    call: Call
    group: RingGroupDef
    steps: list[list[GroupMember]]
    on_no_answer: NoAnswerHook
    rang: bool = False
    busy: bool = False
    reason: EndReason = EndReason.NO_ANSWER
    tried: list[str] = field(default_factory=list)


class HuntGroups:
    """Rings ring groups for calls (one per dial plan engine)."""

    def __init__(self, controller: CallController) -> None:
        self.calls = controller
        self.last: dict[str, int] = {}  # group id -> the member rung first on its last call

    def order(self, group: RingGroupDef) -> list[list[GroupMember]]:
        """The steps of the group's next call (advances a round robin's turn)."""
        members = list(group.members)
        if group.strategy == "simultaneous":
            return [members]
        if group.strategy == "round_robin":
            first = (self.last.get(group.id, -1) + 1) % len(members)
            self.last[group.id] = first
            members = members[first:] + members[:first]
        return [[m] for m in members]

    async def ring(self, call: Call, group: RingGroupDef, on_no_answer: NoAnswerHook) -> None:
        """Ring the group's steps for ``call`` until someone answers or none is left."""
        call.callee_name = group.name
        hunt = _Hunt(call, group, self.order(group), on_no_answer)
        await self._step(hunt, 0)

    async def _step(self, hunt: _Hunt, index: int) -> None:
        c, call = self.calls, hunt.call
        origin = call.origin
        while index < len(hunt.steps):
            if call.ended or not origin.live:
                return
            members = hunt.steps[index]
            devices, seen = [], set()
            for member in members:
                dnd, _ = await c.routing.followme.limits(member.user)
                if dnd:  # do-not-disturb: the member is skipped as one with no device
                    log.debug("ring group %s: %s is on DND", hunt.group.name, member.user)
                    continue
                for device in await c.ringable_devices(member.user, but=origin.device):
                    if device.id not in seen:
                        seen.add(device.id)
                        devices.append(device)
            if not devices:
                log.debug("ring group %s: %s has no device, next", hunt.group.name, members)
                index += 1
                continue
            hunt.rang = True
            hunt.tried += [m.user for m in members]
            ring = c.ring_group(
                f"ring group {hunt.group.name}",
                partial(c.routing._answered, call),
                partial(self._over, hunt, index + 1),
            )
            call.ring = ring  # before any await: a hangup meanwhile cancels it
            info = await c.endpoint_info(origin)
            caller = Caller(call.caller_id, call.caller_name, call.destination, call.media_type)
            prefer = info.codec if info else None
            for leg in await c.ring_devices(ring, devices, caller, prefer, call=call):
                c.bus.publish(LegInitiated(leg=leg.facts()))
            seconds = max(m.seconds for m in members)
            # start() False: nobody rang after all, and _over went on to the next step
            if call.ended or not await ring.start(seconds):
                return
            if ring.state is RingState.RINGING and call.state is CallState.ROUTING:
                call.transition(CallState.RINGING)
                origin.transition(LegState.RINGING)
                # Ringback from the first step on; later steps keep it playing.
                played = await c.on_live(c.media.play(origin.id, "ringback"), origin)
                if played and ring.state is RingState.RINGING:
                    origin.device.deliver(CallRinging(call_id=origin.id))
            return
        if not call.ended and origin.live:
            await hunt.on_no_answer(EndReason.BUSY if hunt.busy else hunt.reason, hunt.rang)

    async def _over(self, hunt: _Hunt, next_index: int, reason: EndReason) -> None:
        """A step's ring group is exhausted (declined, timed out): the next step."""
        ring = hunt.call.ring
        hunt.busy = hunt.busy or reason is EndReason.BUSY or bool(ring and ring.busy)
        if reason in (EndReason.NO_ANSWER, EndReason.REJECTED, EndReason.BUSY):
            hunt.reason = reason
        await self._step(hunt, next_index)
