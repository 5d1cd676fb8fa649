"""Call groups (seed 000): a device merges its answered 1:1 calls into one conversation.

Each call keeps its two legs and its ``call_id``; only the media changes, from a bridge to the
group's mixer. The owner's device has one leg per call but one microphone and one loudspeaker:
only its *primary* leg (the oldest call in the group) is a mixer member; its other legs hear
nothing and are not heard. When a call leaves the group (split, or either party hangs up) the
group shrinks; a group of one call dissolves and that call is an ordinary bridged call again.
The far parties are not told: for them the call goes on.

Holding the group (``conference.hold``) takes the owner out of the conversation: its legs hear
nothing and are not heard, the others go on talking to each other (as GSM multiparty does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from callbridge.core.calls import Leg, LegState
from callbridge.core.conference_events import GroupChanged, GroupDissolved, GroupView
from callbridge.core.conference_model import Conference, ConferenceKind, ConferenceState, Member
from callbridge.core.devices import Device
from callbridge.core.events import CallHeld, CallResumed, ConferenceCreated, ParticipantLeft
from callbridge.errors import ErrorCode, ProtocolError

if TYPE_CHECKING:
    from callbridge.core.conferences import ConferenceManager

__all__ = ["CallGroups"]


class CallGroups:
    """Seed 000's call group operations, on the manager's registry and members."""

    def __init__(self, manager: ConferenceManager) -> None:
        self.manager = manager
        self.calls = manager.calls
        self.media = manager.media

    async def merge(
        self,
        device: Device,
        call_ids: list[str],
        conference_id: str | None,
        req_id: str | None,
    ) -> None:
        """Merge answered 1:1 calls of ``device`` into its call group (created if needed)."""
        legs = [self.calls.answered_leg(device, cid) for cid in dict.fromkeys(call_ids)]
        for leg in legs:
            if leg.conference is not None or leg.peer is None:
                raise ProtocolError(
                    ErrorCode.INVALID_STATE, f"call {leg.id} is in a conference already"
                )
            if leg.call is not None and leg.call.modification is not None:
                raise ProtocolError(
                    ErrorCode.INVALID_STATE, f"call {leg.id}: a media modification is under way"
                )
        if conference_id is not None:
            conf = self.manager.hosted(device, conference_id, "conference.merge")
            if conf.kind is not ConferenceKind.GROUP:
                raise ProtocolError(
                    ErrorCode.INVALID_STATE,
                    f"conference {conf.id} is hosted: invite participants instead",
                )
        else:
            if len(legs) < 2:
                raise ProtocolError(
                    ErrorCode.INVALID_MESSAGE,
                    "conference.merge: a new call group needs at least two calls (call_ids)",
                )
            conf = Conference(ConferenceKind.GROUP, device, "")
            conf.name = f"group-{conf.id[:8]}"
            conf.state_observer = self.calls.observer
            await self.media.create_mixer(conf.id)
            self.manager.conferences[conf.id] = conf
            self.manager.bus.publish(
                ConferenceCreated(
                    conference_id=conf.id, name=conf.name, call_control_id=legs[0].id, hosted=False
                )
            )
        for leg in legs:
            await self._merge_call(conf, leg)
        if conf.ended:
            return
        if conf.state is ConferenceState.STARTING:
            conf.transition(ConferenceState.ACTIVE, cause="its calls are merged")
        self._tell(conf, "merged", req_id)

    async def _merge_call(self, conf: Conference, leg: Leg) -> None:
        far, call = leg.peer, leg.call
        if far is None or call is None or not leg.live or conf.ended:
            return
        if call.held_by is not None:  # merging resumes a held call (as GSM multiparty does)
            holder = call.held_by
            call.held_by = None
            for x in (leg, far):
                await self.media.stop_playing(x.id)
                x.transition(LegState.ACTIVE)
                x.device.deliver(CallResumed(call_id=x.id, by="local" if x is holder else "remote"))
        conf.pairs[leg.id] = far
        primary = conf.host_leg is None or not conf.host_leg.live
        if primary:
            conf.host_leg = leg
        await self.media.unbridge(leg.id)
        await self.manager.add_member(
            conf,
            Member(leg, leg.device.caller_id, leg.device.display_name, in_mixer=primary),
        )
        await self.manager.add_member(
            conf, Member(far, far.device.caller_id, far.device.display_name)
        )
        if conf.self_held:
            await self._hold_owner_leg(conf, leg, True)

    def _view(self, conf: Conference) -> GroupView:
        return GroupView(
            call_ids=tuple(conf.pairs),
            media_call_id=conf.host_leg.id if conf.host_leg is not None else None,
            held=conf.self_held,
        )

    def _tell(
        self,
        conf: Conference,
        change: Literal["merged", "updated", "held", "resumed"],
        req_id: str | None,
        split: str | None = None,
    ) -> None:
        self.manager.tell_owner(
            conf,
            GroupChanged(
                req_id=req_id,
                conference_id=conf.id,
                roster=conf.roster(),
                change=change,
                group=self._view(conf),
                split_call_id=split,
            ),
        )

    async def split(
        self, device: Device, conference_id: str, call_id: str, req_id: str | None
    ) -> None:
        """Take one call out of the group: it is an ordinary 1:1 call again."""
        conf = self.manager.hosted(device, conference_id, "conference.split")
        if conf.kind is not ConferenceKind.GROUP or call_id not in conf.pairs:
            raise ProtocolError(
                ErrorCode.CALL_NOT_FOUND, f"call {call_id} is not in call group {conf.id}"
            )
        leg = self.calls.legs[call_id]
        far = conf.pairs[call_id]
        await self._unpair(conf, leg, far)
        if leg.live and far.live:
            await self._rebridge(leg, far)
        await self._after_pair_left(conf, req_id, split=call_id)

    async def hold(self, conf: Conference, held: bool, req_id: str | None) -> None:
        """``conference.hold`` / ``conference.resume`` of the whole group by its owner."""
        if conf.self_held == held:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"call group {conf.id} is {'held' if held else 'not held'} already",
            )
        conf.self_held = held
        for owner_id in list(conf.pairs):
            leg = self.calls.legs.get(owner_id)
            if leg is not None:
                await self._hold_owner_leg(conf, leg, held)
        self._tell(conf, "held" if held else "resumed", req_id)

    async def _hold_owner_leg(self, conf: Conference, leg: Leg, held: bool) -> None:
        member = conf.members.get(leg.id)
        if member is None or not leg.live:
            return
        member.self_held = held
        if member.in_mixer:
            await self.manager.apply(member)
        leg.transition(LegState.HELD if held else LegState.ACTIVE)
        fact = CallHeld if held else CallResumed
        leg.device.deliver(fact(call_id=leg.id, by="local"))

    async def leg_ending(self, leg: Leg) -> None:
        """One leg of a grouped call is ending (either party hung up, a device was lost)."""
        conf = leg.conference
        if not isinstance(conf, Conference) or conf.kind is not ConferenceKind.GROUP:
            return
        if leg.id in conf.pairs:
            owner_leg, far = leg, conf.pairs[leg.id]
        else:
            owner_id = next((o for o, f in conf.pairs.items() if f is leg), None)
            if owner_id is None:
                return
            owner_leg, far = self.calls.legs.get(owner_id) or leg, leg
        await self._unpair(conf, owner_leg, far)
        await self._after_pair_left(conf)

    async def _unpair(self, conf: Conference, leg: Leg, far: Leg) -> None:
        """Take one call's two legs out of the group's mixer (the primary passes on)."""
        conf.pairs.pop(leg.id, None)
        for x in (leg, far):
            member = conf.members.pop(x.id, None)
            x.conference = None
            if member is not None and member.in_mixer:
                await self.manager.leave_mixer(x)
        if conf.host_leg is leg:
            conf.host_leg = None
            successor = next(
                (self.calls.legs.get(i) for i in conf.pairs if i in self.calls.legs), None
            )
            if successor is not None and not conf.ended:
                conf.host_leg = successor
                member = conf.members[successor.id]
                member.in_mixer = True
                await self.media.mixer_add(conf.id, successor.id)
                await self.manager.apply(member)
        self.manager.bus.publish(
            ParticipantLeft(conference_id=conf.id, name=conf.name, call_control_id=far.id)
        )

    async def _rebridge(self, leg: Leg, far: Leg) -> None:
        await self.media.bridge(leg.id, far.id)
        await self.media.set_muted(leg.id, leg.muted)
        await self.media.set_muted(far.id, far.muted)
        for x in (leg, far):
            if x.state is LegState.HELD:
                x.transition(LegState.ACTIVE)
                x.device.deliver(CallResumed(call_id=x.id, by="local"))

    async def _after_pair_left(
        self, conf: Conference, req_id: str | None = None, split: str | None = None
    ) -> None:
        """A call left the group: tell the owner; a group of one call dissolves."""
        if conf.ended:
            return
        if len(conf.pairs) > 1:
            self._tell(conf, "updated", req_id, split)
            return
        released = tuple(conf.pairs)
        for owner_id, far in list(conf.pairs.items()):
            leg = self.calls.legs.get(owner_id)
            if leg is not None:
                await self._unpair(conf, leg, far)
                if leg.live and far.live:
                    await self._rebridge(leg, far)
        conf.pairs.clear()
        self.manager.tell_owner(
            conf,
            GroupDissolved(
                req_id=req_id,
                conference_id=conf.id,
                roster=conf.roster(),
                released_call_ids=released,
                split_call_id=split,
            ),
        )
        await self.manager.teardown(conf, "dissolved")
