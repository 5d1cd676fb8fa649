"""Seed 000's call group (``phone.conference_group``): merge calls into one conversation,
add and remove calls, hold and resume the group, hang it up; with real audio."""

# These tests assert a call's state, act (await), then assert the new state; mypy keeps the
# first assertion's narrowing across the await and calls what follows unreachable.
# mypy: no-warn-unreachable, no-strict-equality

from __future__ import annotations

import asyncio

from callbridge.client import Call, CallGroup
from conftest import MakeParty
from parties import ABSENT, ALICE, BOB, CAROL, HEARD, Party, connect, level

DAVE = 1900.0


async def dial(me: Party, them: Party) -> Call:
    """``tel.dial(number)``, and the far party answers."""
    call, _ = await connect(me, them)
    return call


class GroupLog:
    """The group's events, in order."""

    def __init__(self, group: CallGroup) -> None:
        self.names: list[str] = []
        for name in ("callschanged", "statechange", "connected", "holding", "held", "resuming"):
            group.on(name, lambda name=name: self.names.append(name))


async def test_the_mdn_example_line_by_line(party: MakeParty) -> None:
    me, bob, carol, dave = [await party(t) for t in (ALICE, BOB, CAROL, DAVE)]
    tel = me.phone

    # Make two calls; assume they are both answered
    call1 = await dial(me, bob)
    call2 = await dial(me, carol)

    # Add both calls to the conference call
    # Two entries will appear in conference.calls (call1, call2)
    # but nothing in tel.calls
    conference = tel.conference_group
    log = GroupLog(conference)
    await conference.add(call1, call2)
    assert conference.calls == [call1, call2]
    assert tel.calls == []
    assert conference.state == "connected"

    # Make another call; this will appear in tel.calls, not conference.calls
    call3 = await dial(me, dave)
    assert tel.calls == [call3] and conference.calls == [call1, call2]

    # Add call3 to the conference; it will now appear in conference.calls too
    await conference.add(call3)
    assert conference.calls == [call1, call2, call3] and tel.calls == []

    # Remove call2 from the conference
    # Now we have two entries in conference.calls (call1, call3)
    # and one entry in telephony.calls (call2)
    await conference.remove(call2)
    assert conference.calls == [call1, call3]
    assert tel.calls == [call2]

    # Hang up the entire conference call
    # only one entry now remains, in telephony.calls (call2)
    await conference.hang_up()
    assert tel.calls == [call2]
    assert conference.calls == [] and conference.state == ""
    assert call1.state == "ended" and call3.state == "ended" and call2.state == "active"
    assert log.names == [
        "callschanged",
        "statechange",
        "connected",
        "callschanged",
        "callschanged",
        "callschanged",
        "statechange",
    ]
    # call2 is an ordinary call again: carol and I hear each other
    assert await level(carol.sink, ALICE) > HEARD
    await call2.hangup()


async def test_everyone_in_the_group_hears_everyone_else(party: MakeParty) -> None:
    me, bob, carol = [await party(t) for t in (ALICE, BOB, CAROL)]
    call1 = await dial(me, bob)
    call2 = await dial(me, carol)
    group = me.phone.conference_group
    await group.add(call1, call2)
    assert group.media_call is call1  # the group's audio flows on its oldest call
    assert await level(bob.sink, CAROL) > HEARD
    assert await level(bob.sink, ALICE) > HEARD
    assert await level(carol.sink, BOB) > HEARD
    assert await level(carol.sink, ALICE) > HEARD
    assert await level(me.sink, BOB) > HEARD
    assert await level(me.sink, CAROL) > HEARD
    assert await level(me.sink, ALICE) < ABSENT  # not myself
    assert await level(bob.sink, BOB) < ABSENT
    await group.hang_up()


async def test_holding_the_group_leaves_the_others_talking(party: MakeParty) -> None:
    me, bob, carol = [await party(t) for t in (ALICE, BOB, CAROL)]
    call1 = await dial(me, bob)
    call2 = await dial(me, carol)
    group = me.phone.conference_group
    await group.add(call1, call2)
    log = GroupLog(group)
    await group.hold()
    assert group.state == "held" and call1.state == "held" and call2.state == "held"
    assert await level(bob.sink, CAROL) > HEARD  # they go on talking to each other
    assert await level(bob.sink, ALICE) < ABSENT
    assert await level(me.sink, BOB) < ABSENT
    await group.resume()
    assert group.state == "connected" and call1.state == "active"
    assert await level(bob.sink, ALICE) > HEARD
    assert log.names == [
        "statechange",
        "holding",
        "statechange",
        "held",
        "statechange",
        "resuming",
        "statechange",
        "connected",
    ]
    await group.hang_up()


async def test_merging_a_held_call_resumes_it(party: MakeParty) -> None:
    me, bob, carol = [await party(t) for t in (ALICE, BOB, CAROL)]
    call1 = await dial(me, bob)
    call2 = await me.phone.add_call(carol.user.extension, source=None, sink=None)
    await carol.answer()
    await call2.wait_for("answered", timeout=5)
    assert call1.state == "held"  # add_call held it
    await me.phone.conference_group.add(call1, call2)
    await call1.wait_for("resumed", timeout=5)
    assert call1.state == "active"
    assert await level(bob.sink, CAROL) > HEARD
    await me.phone.conference_group.hang_up()


async def test_a_far_party_hanging_up_dissolves_a_group_of_two(party: MakeParty) -> None:
    me, bob, carol = [await party(t) for t in (ALICE, BOB, CAROL)]
    call1 = await dial(me, bob)
    call2 = await dial(me, carol)
    group = me.phone.conference_group
    await group.add(call1, call2)
    changed = asyncio.Event()
    group.on("statechange", changed.set)
    at_carol = carol.phone.active_calls[0]
    await at_carol.hangup()
    await asyncio.wait_for(changed.wait(), 5)
    await call2.wait_for("ended", timeout=5)
    assert group.state == "" and group.calls == [] and me.phone.calls == [call1]
    # call1 is a 1:1 call again, with its audio on its own bridge
    assert await level(bob.sink, ALICE) > HEARD
    assert await level(me.sink, BOB) > HEARD
    await call1.hangup()


async def test_group_requests_that_cannot_be_done_get_clear_errors(party: MakeParty) -> None:
    from callbridge.client.errors import CallStateError
    from callbridge.errors import RemoteError

    me, bob, carol = [await party(t) for t in (ALICE, BOB, CAROL)]
    group = me.phone.conference_group
    call1 = await dial(me, bob)
    errors: list[Exception] = []
    group.on("error", errors.append)
    try:
        await group.add(call1)
    except RemoteError as exc:
        assert exc.code == "invalid_message" and "two calls" in exc.message
    else:
        raise AssertionError("a group of one call was made")
    assert len(errors) == 1
    try:
        await group.hold()
    except CallStateError:
        pass
    else:
        raise AssertionError("an empty group was held")
    call2 = await dial(me, carol)
    await group.add(call1, call2)
    try:
        await call1.hold()
    except RemoteError as exc:
        assert exc.code == "invalid_state" and "group" in exc.message
    else:
        raise AssertionError("a grouped call was held on its own")
    await group.hang_up()
