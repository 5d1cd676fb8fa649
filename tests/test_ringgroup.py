"""The ring group on its own: several device legs ring, the first answer wins, and each way it
can end (every device declines, nobody answers in time, the owner cancels) has one path."""

from __future__ import annotations

import asyncio

import pytest

from callbridge.core.calls import Leg, LegState
from callbridge.core.ringgroup import RingGroup, RingState
from callbridge.core.scheduler import Scheduler
from callbridge.errors import ErrorCode, ProtocolError
from callbridge.vocabulary import EndReason
from core_world import Phone, User


class Ender:
    """The controller's part: ends legs and remembers how."""

    def __init__(self) -> None:
        self.ended: list[tuple[str, EndReason, str | None]] = []

    async def end_leg(self, leg: Leg, reason: EndReason, req_id: str | None = None) -> None:
        if leg.live:
            leg.transition(LegState.ENDED)
            self.ended.append((leg.id, reason, req_id))


class Owner:
    """Whoever rang: records the outcome the group reports."""

    def __init__(self) -> None:
        self.answered: list[tuple[str, str, str | None]] = []
        self.exhausted: list[EndReason] = []
        self.over = asyncio.Event()

    async def on_answer(self, leg: Leg, sdp: str, req_id: str | None) -> None:
        self.answered.append((leg.id, sdp, req_id))
        self.over.set()

    async def on_exhausted(self, reason: EndReason) -> None:
        self.exhausted.append(reason)
        self.over.set()


def state_of(group: RingGroup) -> RingState:
    """Its state now (a call, so that mypy does not narrow it across awaits)."""
    return group.state


def make(
    n: int, refusal: EndReason | None = None
) -> tuple[RingGroup, list[Leg], Ender, Owner, Scheduler]:
    ender, owner, scheduler = Ender(), Owner(), Scheduler("test")
    group = RingGroup(
        ender,
        scheduler,
        on_answer=owner.on_answer,
        on_exhausted=owner.on_exhausted,
        refusal=refusal,
    )
    user = User("bob", "Bob", "201")
    legs = [Leg(device=Phone(user, str(i)), direction="incoming", id=f"leg-{i}") for i in range(n)]
    for leg in legs:
        leg.transition(LegState.RINGING)
        group.add(leg)
    return group, legs, ender, owner, scheduler


async def test_the_first_answer_wins_and_the_other_devices_stop_ringing() -> None:
    group, (a, b, c), ender, owner, scheduler = make(3)
    assert await group.start(30)
    assert all(leg.ring_owner is group for leg in (a, b, c))
    await group.answer(b, "sdp-b", "r1")
    assert owner.answered == [("leg-1", "sdp-b", "r1")]
    assert ender.ended == [
        ("leg-0", EndReason.ANSWERED_ELSEWHERE, None),
        ("leg-2", EndReason.ANSWERED_ELSEWHERE, None),
    ]
    assert state_of(group) is RingState.ANSWERED and group.winner is b
    assert b.ring_owner is None and b.live  # the winner is the owner's now
    assert not scheduler.armed(group)  # no timeout left
    with pytest.raises(ProtocolError) as late:
        await group.answer(a, "sdp-a", "r2")
    assert late.value.code is ErrorCode.INVALID_STATE
    assert "answered elsewhere" in late.value.message
    await scheduler.close()


async def test_every_device_declines_and_one_said_busy() -> None:
    group, (a, b), ender, owner, scheduler = make(2)
    await group.start(30)
    await group.decline(a, EndReason.BUSY, "r1")
    assert owner.exhausted == [] and state_of(group) is RingState.RINGING
    await group.decline(b, EndReason.REJECTED, "r2")
    assert owner.exhausted == [EndReason.REJECTED] and group.busy
    assert ender.ended == [("leg-0", EndReason.BUSY, "r1"), ("leg-1", EndReason.REJECTED, "r2")]
    assert state_of(group) is RingState.EXHAUSTED and not scheduler.armed(group)
    await scheduler.close()


async def test_a_group_with_a_refusal_ends_every_declined_leg_with_it() -> None:
    # A conference invitation's group: busy, a hangup and a lost device all mean "rejected".
    group, (a, b, c), ender, owner, scheduler = make(3, refusal=EndReason.REJECTED)
    await group.start(30)
    await group.decline(a, EndReason.BUSY, "r1")
    await group.decline(b, EndReason.DISCONNECTED, None)
    await group.decline(c, EndReason.HANGUP, "h1")
    assert ender.ended == [
        ("leg-0", EndReason.REJECTED, "r1"),
        ("leg-1", EndReason.REJECTED, None),
        ("leg-2", EndReason.REJECTED, "h1"),
    ]
    assert owner.exhausted == [EndReason.REJECTED] and not group.busy
    await scheduler.close()


async def test_a_device_declines_while_the_others_are_still_being_rung() -> None:
    group, (a,), _ender, owner, scheduler = make(1)
    await group.decline(a, EndReason.REJECTED, None)  # the group is not started yet
    assert owner.exhausted == [] and state_of(group) is RingState.NEW
    assert not await group.start(30)  # nobody rings any more: the one outcome path
    assert owner.exhausted == [EndReason.REJECTED] and state_of(group) is RingState.EXHAUSTED
    await scheduler.close()


async def test_a_group_that_could_ring_nobody_failed() -> None:
    group, _, _, owner, scheduler = make(0)
    assert not await group.start(30)
    assert owner.exhausted == [EndReason.FAILED]
    await scheduler.close()


async def test_nobody_answers_before_the_timeout() -> None:
    group, (a, b), ender, owner, scheduler = make(2)
    await group.start(0.01)
    async with asyncio.timeout(1):
        await owner.over.wait()
    assert owner.exhausted == [EndReason.NO_ANSWER]
    assert ender.ended == [
        ("leg-0", EndReason.NO_ANSWER, None),
        ("leg-1", EndReason.NO_ANSWER, None),
    ]
    assert state_of(group) is RingState.EXHAUSTED and a.ring_owner is None and b.ring_owner is None
    await scheduler.close()


async def test_the_owner_cancels_and_a_late_answer_is_refused() -> None:
    group, (a, _b), ender, owner, scheduler = make(2)
    await group.start(30)
    await group.cancel(EndReason.CANCELED)
    assert ender.ended == [("leg-0", EndReason.CANCELED, None), ("leg-1", EndReason.CANCELED, None)]
    assert owner.answered == [] and owner.exhausted == []  # cancel reports nothing back
    assert state_of(group) is RingState.CANCELED and not scheduler.armed(group)
    with pytest.raises(ProtocolError) as late:
        await group.answer(a, "sdp", None)
    assert "no longer ringing" in late.value.message
    with pytest.raises(RuntimeError):
        group.add(Leg(device=a.device, direction="incoming"))
    await scheduler.close()


async def test_a_device_answers_before_the_group_is_started() -> None:
    group, (a, _b), ender, owner, scheduler = make(2)
    await group.answer(a, "sdp", None)  # while the owner was still ringing other devices
    assert not group.open
    assert await group.start(30)  # nothing to do: already answered
    assert not scheduler.armed(group)
    assert owner.answered == [("leg-0", "sdp", None)]
    assert ender.ended == [("leg-1", EndReason.ANSWERED_ELSEWHERE, None)]
    await scheduler.close()
