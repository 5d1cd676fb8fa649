"""Call queues with the official telnyx SDK: callers wait hearing hold music, the queue and its
calls are listed with positions and wait times, an agent is bridged to the longest-waiting
caller (and learns who it got), callers leave or time out, and full or empty queues refuse."""

from __future__ import annotations

import asyncio

import pytest
import telnyx

from api_helpers import Api, api_fixture, messages  # noqa: F401  (the fixture)
from callbridge.client import Call
from callbridge.media.players import HOLD_MUSIC_NOTES
from conftest import MakeParty
from parties import ALICE, BOB, CAROL, HEARD, SILENT, Party, level

pytestmark = pytest.mark.timeout(90)
MUSIC = HOLD_MUSIC_NOTES[0]


async def answered(api: Api, p: Party, line: str) -> tuple[Call, str]:
    call = await p.call(line)
    initiated = await api.sink.wait("call.initiated", call_control_id=call.id)
    ccid = initiated.payload["call_control_id"]
    await api.client.calls.actions.answer(ccid)
    await call.wait_for("answered", timeout=5)
    return call, ccid


async def hears_music(p: Party) -> float:
    return max([await level(p.sink, f, 0.7) for f in HOLD_MUSIC_NOTES[:3]])


async def test_an_agent_gets_the_longest_waiting_caller_and_knows_who_it_is(
    api: Api, party: MakeParty
) -> None:
    support, agents = await api.line(), await api.line()
    alice, bob, carol = await party(ALICE), await party(BOB), await party(CAROL)
    actions = api.client.calls.actions
    _, a = await answered(api, alice, support)
    await actions.enqueue(a, queue_name="support", max_size=5)
    _, b = await answered(api, bob, support)
    await actions.enqueue(b, queue_name="support")
    first = api.unwrap(await api.sink.wait("call.enqueued", call_control_id=a))
    assert type(first).__name__ == "CallEnqueuedWebhookEvent"
    assert first.data.payload.queue == "support" and first.data.payload.current_position == 1
    second = await api.sink.wait("call.enqueued", call_control_id=b)
    assert second.payload["current_position"] == 2
    assert await hears_music(alice) > HEARD

    queue = await api.client.queues.retrieve("support")
    assert queue.data is not None
    assert (queue.data.current_size, queue.data.max_size) == (2, 5)
    waiting = await api.client.queues.calls.list("support")
    assert [(c.call_control_id, c.queue_position) for c in waiting.data] == [(a, 1), (b, 2)]
    assert waiting.data[0].from_ == alice.user.number and waiting.data[0].wait_time_secs >= 0
    assert [q.name async for q in api.client.queues.list()].count("support") == 1

    agent_call, agent = await answered(api, carol, agents)
    seen = messages(carol.phone)
    await actions.bridge(agent, call_control_id_to_bridge_with="", queue="support")
    assert await level(carol.sink, ALICE) > HEARD
    assert await level(alice.sink, CAROL) > HEARD
    assert await level(alice.sink, MUSIC) < SILENT
    told = next(m for m in seen if m["type"] == "call.bridged")
    assert told["call_id"] == agent_call.id and told["peer"] == alice.user.number
    assert told["queue"] == "support" and told["wait_time_secs"] >= 0
    dequeued = api.unwrap(await api.sink.wait("call.dequeued", call_control_id=a))
    assert type(dequeued).__name__ == "CallLeftQueueWebhookEvent"
    assert dequeued.data.payload.reason == "bridged" and dequeued.data.payload.queue_position == 1
    still = await api.client.queues.calls.list("support")
    assert [(c.call_control_id, c.queue_position) for c in still.data] == [(b, 1)]

    await actions.leave_queue(b)
    left = await api.sink.wait("call.dequeued", call_control_id=b)
    assert left.payload["reason"] == "leave"
    assert await level(bob.sink, MUSIC) < SILENT
    await actions.enqueue(b, queue_name="support", max_wait_time_secs=1)
    timed_out = await api.sink.wait("call.dequeued", count=2, call_control_id=b)
    assert timed_out.payload["reason"] == "timeout"
    emptied = await api.client.queues.retrieve("support")
    assert emptied.data is not None and emptied.data.current_size == 0
    assert emptied.data.average_wait_time_secs >= 0

    with pytest.raises(telnyx.UnprocessableEntityError) as err:
        await actions.bridge(b, call_control_id_to_bridge_with="", queue="support")
    assert "empty" in str(err.value.body)
    await agent_call.hangup()
    await api.sink.wait("call.hangup", call_control_id=a)  # the bridged caller follows
    await actions.hangup(b)


async def test_full_queues_parked_calls_and_unknown_queues_are_refused(
    api: Api, party: MakeParty
) -> None:
    line = await api.line()
    alice, bob = await party(ALICE), await party(BOB)
    queues = api.client.queues
    made = await queues.create(queue_name="tiny", max_size=1)
    assert made.data is not None and made.data.max_size == 1
    with pytest.raises(telnyx.UnprocessableEntityError):
        await queues.create(queue_name="tiny")
    _, a = await answered(api, alice, line)
    await api.client.calls.actions.enqueue(a, queue_name="tiny")
    parked = await bob.call(line)
    initiated = await api.sink.wait("call.initiated", call_control_id=parked.id)
    b = initiated.payload["call_control_id"]
    with pytest.raises(telnyx.UnprocessableEntityError) as err:
        await api.client.calls.actions.enqueue(b, queue_name="tiny")
    assert "answer it first" in str(err.value.body)
    await api.client.calls.actions.answer(b)
    with pytest.raises(telnyx.UnprocessableEntityError) as err:
        await api.client.calls.actions.enqueue(b, queue_name="tiny")
    assert "full" in str(err.value.body)
    with pytest.raises(telnyx.UnprocessableEntityError) as err:
        await queues.delete("tiny")
    assert "waiting" in str(err.value.body)
    with pytest.raises(telnyx.NotFoundError):
        await queues.calls.list("no-such-queue")
    await queues.calls.remove(a, queue_name="tiny")
    await api.sink.wait("call.dequeued", call_control_id=a)
    await queues.delete("tiny")
    with pytest.raises(telnyx.NotFoundError):
        await queues.retrieve("tiny")
    for ccid in (a, b):
        await api.client.calls.actions.hangup(ccid)
    await asyncio.sleep(0)
