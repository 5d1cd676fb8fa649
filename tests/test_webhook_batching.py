"""The webhook outbox under batching: claims and outcomes written many at a time, deliveries
spread over destinations, and still at least once and in order per key.

Real parts only: a real HTTP receiver on 127.0.0.1 (``test_webhooks.Receiver``, answering by
script), the real store on SQLite and PostgreSQL, and for the crash a real process killed with
SIGKILL while its request is in the receiver's hands.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap

import pg
from callbridge.store import Store
from callbridge.webhooks import RetryPolicy, WebhookOutbox
from test_webhooks import Action, Receiver, receiver  # noqa: F401 (the fixture)

database = pg.database  # the fixture: SQLite and PostgreSQL

BATCHING = RetryPolicy(
    first_delay=0.05, max_delay=0.2, max_attempts=8, timeout=0.5, poll_interval=5.0
)


async def test_each_keys_order_holds_with_batches_retries_and_dropped_connections(
    database: pg.Database,
    receiver: Receiver,  # noqa: F811
) -> None:
    keys = [f"call-{n}" for n in range(6)]
    # Some keys' receivers fail some attempts: a 500, a dropped connection, no answer.
    receiver.script("/call-1", 500, 500)
    receiver.script("/call-2", "drop")
    receiver.script("/call-3", 200, "hang", 500)
    store = await Store.open(database.url)
    outbox = await WebhookOutbox.create(store, policy=BATCHING)
    try:
        # Interleaved, and in two batches with the worker running in between.
        first = [
            {"event_type": "call.dtmf.received", "payload": {"n": n}, "url": receiver.url(f"/{k}"),
             "ordering_key": k, "event_id": f"{k}#{n}"}
            for n in range(4) for k in keys
        ]  # fmt: skip
        await outbox.enqueue_many(first)
        await outbox.start()
        for n in range(4, 8):
            for k in keys:
                await outbox.enqueue(
                    "call.dtmf.received", {"n": n}, url=receiver.url(f"/{k}"), ordering_key=k,
                    event_id=f"{k}#{n}",
                )  # fmt: skip
        for k in keys:
            expected = 8 + {"call-1": 2, "call-2": 1, "call-3": 2}.get(k, 0)
            await receiver.wait_for(expected, f"/{k}", within=15)
    finally:
        await outbox.stop()
        await store.close()
    for k in keys:
        got = [r.event_id for r in receiver.at(f"/{k}")]
        # Every attempt of a message comes before the first of the next one.
        assert got == sorted(got, key=lambda e: int(e.split("#")[1])), (k, got)
        assert list(dict.fromkeys(got)) == [f"{k}#{n}" for n in range(8)]
    assert receiver.at("/call-1")[:3] == [
        r for r in receiver.at("/call-1") if r.event_id.endswith("#0")
    ]


async def test_a_slow_destination_does_not_hold_back_a_fast_one(
    receiver: Receiver,  # noqa: F811
    tmp_path: os.PathLike[str],
) -> None:
    slow = Receiver()
    await slow.start()
    policy = RetryPolicy(timeout=5.0, poll_interval=5.0, per_destination=2, concurrency=16)
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path}/outbox.db")
    outbox = await WebhookOutbox.create(store, policy=policy)
    try:
        hang: Action = "hang"
        slow.script("/hook", *[hang] * 6)  # nothing it is sent is answered
        for n in range(6):
            await outbox.enqueue("call.hangup", {"n": n}, url=slow.url(), ordering_key=f"s{n}")
        for n in range(12):
            await outbox.enqueue(
                "call.hangup", {"n": n}, url=receiver.url(), ordering_key=f"f{n % 3}"
            )
        await outbox.start()
        await receiver.wait_for(12)  # all of the fast one's, while the slow one holds ...
        assert len(slow.requests) == 2  # ... only its own limit's worth, still unanswered
    finally:
        await outbox.stop(grace=0.1)
        await store.close()
        await slow.close()


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from callbridge import outbound
    from callbridge.store import Store
    from callbridge.webhooks import RetryPolicy, WebhookOutbox

    async def main(url, hook):
        outbound.configure(allow_webhooks_to=["127.0.0.1"])
        store = await Store.open(url)
        outbox = await WebhookOutbox.create(store, node_id="node-a", policy=RetryPolicy())
        await outbox.enqueue("call.answered", {"n": 1}, url=hook, ordering_key="k",
                             event_id="first")
        await outbox.enqueue("call.hangup", {"n": 2}, url=hook, ordering_key="k",
                             event_id="second")
        await outbox.start()
        await asyncio.Event().wait()

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


async def test_a_crash_between_send_and_acknowledgement_sends_again_then_the_next(
    database: pg.Database,
    receiver: Receiver,  # noqa: F811
) -> None:
    receiver.script("/hook", "hang")  # the first request is in the receiver's hands ...
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, database.url, receiver.url()
    )
    try:
        await receiver.wait_for(1, within=30)
    finally:
        child.send_signal(signal.SIGKILL)  # ... when the process dies: no outcome written
        await child.wait()
    store = await Store.open(database.url)
    outbox = await WebhookOutbox.create(store, node_id="node-a", policy=BATCHING)
    try:
        assert await outbox.release_stale_leases() == 1  # the restart takes it back at once
        await outbox.start()
        await receiver.wait_for(3)
    finally:
        await outbox.stop()
        await store.close()
    first, again, second = receiver.requests
    assert [first.event_id, again.event_id, second.event_id] == ["first", "first", "second"]
    assert first.headers["webhook-id"] == again.headers["webhook-id"]
    assert (first.attempt, again.attempt, second.attempt) == (1, 2, 1)
