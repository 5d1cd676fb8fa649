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

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

import pg
from callbridge.store import Store
from callbridge.webhooks import RetryPolicy, WebhookOutbox
from parties import until_async
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


# PostgreSQL: several dispatchers on one database, woken by NOTIFY, claiming with SKIP LOCKED --
async def test_several_dispatchers_on_one_postgresql_deliver_each_once_in_order_per_key(
    receiver: Receiver,  # noqa: F811
) -> None:
    keys = [f"call-{n}" for n in range(12)]
    per_key = 25
    receiver.script("/call-1", 500, "drop")  # retried, possibly by another dispatcher
    # A long poll interval: the dispatchers find work enqueued elsewhere only through NOTIFY.
    policy = RetryPolicy(first_delay=0.05, max_delay=0.2, timeout=0.5, poll_interval=60.0)
    async with pg.postgres_database() as url:
        stores = [await Store.open(url) for _ in range(4)]
        dispatchers = [await WebhookOutbox.create(s, policy=policy) for s in stores[:3]]
        enqueuer = await WebhookOutbox.create(stores[3])  # never started: enqueues only
        try:
            for outbox in dispatchers:
                await outbox.start()
            for n in range(0, per_key, 5):  # interleaved batches while the dispatchers run
                await enqueuer.enqueue_many(
                    [
                        {
                            "event_type": "call.dtmf.received",
                            "payload": {"n": i},
                            "url": receiver.url(f"/{k}"),
                            "ordering_key": k,
                            "event_id": f"{k}#{i}",
                        }
                        for i in range(n, n + 5)
                        for k in keys
                    ]
                )
            await receiver.wait_for(len(keys) * per_key + 2, within=30)
            await until_async(lambda: _all_settled(stores[3]))
        finally:
            for outbox in dispatchers:
                await outbox.stop()
            for store in stores:
                await store.close()
    counts = [outbox.stats.delivered for outbox in dispatchers]
    assert sum(counts) == len(keys) * per_key
    assert sum(1 for c in counts if c) >= 2, counts  # the work was shared
    for k in keys:
        got = [r.event_id for r in receiver.at(f"/{k}")]
        assert list(dict.fromkeys(got)) == [f"{k}#{i}" for i in range(per_key)], (k, got)
        if k == "call-1":  # its first message three times (two failed attempts), in a row
            assert got[:3] == ["call-1#0"] * 3 and len(got) == per_key + 2, got
        else:  # no duplicate
            assert len(got) == per_key, (k, got)


async def _all_settled(store: Store) -> bool | None:
    return (await store.webhook_backlog())[0] == 0 or None


async def test_a_dispatcher_listens_on_postgresql_and_listens_again_after_its_connection_drops(
    receiver: Receiver,  # noqa: F811
) -> None:
    # A long poll interval: a delivery within the test can only follow a NOTIFY.
    policy = RetryPolicy(first_delay=0.05, timeout=0.5, poll_interval=60.0)
    async with pg.postgres_database() as url:
        store, other = await Store.open(url), await Store.open(url)
        outbox = await WebhookOutbox.create(store, policy=policy)
        enqueuer = await WebhookOutbox.create(other)  # never started: enqueues only
        try:
            await outbox.start()
            await until_async(lambda: _listening(outbox))
            await enqueuer.enqueue("call.answered", {}, url=receiver.url(), event_id="before")
            await receiver.wait_for(1, within=10)
            # The LISTEN connection is killed (as a database restart or a network cut would).
            killed = await _terminate_listeners(url)
            assert killed == 1
            await until_async(lambda: _listening(outbox, False))
            await until_async(lambda: _listening(outbox))  # ... and it listens again
            await enqueuer.enqueue("call.hangup", {}, url=receiver.url(), event_id="after")
            await receiver.wait_for(2, within=10)
        finally:
            await outbox.stop()
            await store.close()
            await other.close()
    assert [r.event_id for r in receiver.requests] == ["before", "after"]


async def _listening(outbox: WebhookOutbox, up: bool = True) -> bool | None:
    return outbox.listening == up or None


async def _terminate_listeners(url: str) -> int:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE query LIKE 'LISTEN %' AND usename = current_user"
                )
            )
            return len(result.all())
    finally:
        await engine.dispose()


async def test_slow_receivers_with_more_calls_than_the_outbox_holds_do_not_starve_the_others(
    database: pg.Database,
    receiver: Receiver,  # noqa: F811
) -> None:
    # Two receivers that never answer, each with more calls (keys) than the outbox holds at
    # once, enqueued first: their messages are claimed first. The fast receiver's still go.
    slow = [Receiver(), Receiver()]
    for r in slow:
        await r.start()
        hang: Action = "hang"
        r.script("/hook", *[hang] * 10)
    policy = RetryPolicy(timeout=5.0, poll_interval=5.0, per_destination=2, concurrency=8)
    store = await Store.open(database.url)
    outbox = await WebhookOutbox.create(store, policy=policy)
    try:
        await outbox.enqueue_many(
            [
                {
                    "event_type": "call.hangup",
                    "payload": {"n": n},
                    "url": r.url(),
                    "ordering_key": f"slow{i}-{n}",
                }
                for i, r in enumerate(slow)
                for n in range(10)
            ]
        )
        await outbox.enqueue_many(
            [
                {
                    "event_type": "call.hangup",
                    "payload": {"n": n},
                    "url": receiver.url(),
                    "ordering_key": f"f{n % 2}",
                    "event_id": f"f{n % 2}#{n}",
                }
                for n in range(6)
            ]
        )
        await outbox.start()
        await receiver.wait_for(6, within=3)  # well before any slow attempt times out
        assert [len(r.requests) for r in slow] == [2, 2]  # each its limit, unanswered
    finally:
        await outbox.stop(grace=0.1)
        await store.close()
        for r in slow:
            await r.close()
    for key in ("f0", "f1"):
        got = [r.event_id for r in receiver.requests if r.event_id.startswith(key)]
        assert got == sorted(got, key=lambda e: int(e.split("#")[1])) and len(got) == 3
