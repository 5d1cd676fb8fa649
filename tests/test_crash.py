"""A server killed with ``kill -9`` in the middle of calls loses nothing (issue 10, defect 6).

Before: after ``kill -9`` the calls in flight had no CDR, the queues were gone, queued callers
never got ``call.hangup`` / ``call.dequeued`` and ``GET /v2/calls/{id}`` answered 404. Now a
call's CDR is written when it starts, an application call's end webhooks are kept in the
database while it lives, and the restarted server (same data directory, same node) closes
what the crash left: CDRs ``failed``, the webhooks sent, queues back (empty).

Real parts only: the server is a ``callbridge serve`` subprocess, the callers real aiortc
softphones, the application a real HTTP receiver on 127.0.0.1 checked with the telnyx SDK.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from telnyx import AsyncTelnyx

from api_helpers import WebhookSink
from callbridge.client import Phone
from callbridge.config import database_url_for
from callbridge.store import Store
from callbridge.testing.server import Server, ServerUser
from parties import ALICE, BOB, CAROL, HEARD, Party, level, until_async

pytestmark = pytest.mark.timeout(120)
T = TypeVar("T")


@asynccontextmanager
async def started(data_dir: Path, log: str) -> AsyncIterator[Server]:
    """A server on ``data_dir`` (with whatever an earlier one left there); stopped on the way
    out (a no-op for one the test killed)."""
    server = Server(data_dir, ring_timeout=20, session_grace=1, log_path=data_dir.parent / log)
    try:
        await asyncio.to_thread(server.wait_ready)
        yield server
    finally:
        await asyncio.to_thread(server.stop)


@asynccontextmanager
async def database(data_dir: Path) -> AsyncIterator[Store]:
    """The data directory's database, opened as another process would (the CLI, an operator)."""
    store = await Store.open(database_url_for(data_dir))
    try:
        yield store
    finally:
        await store.close()


async def soon(probe: Callable[[], Awaitable[T | None]], within: float = 10.0) -> T:
    return await until_async(probe, within)


async def party(server: Server, user: ServerUser, tone: float) -> Party:
    phone = Phone(server.ws_url, user.token)
    await phone.login()
    return Party(phone, tone, user)  # type: ignore[arg-type]  # any ServerUser will do


async def app_line(client: AsyncTelnyx, url: str, extension: str) -> str:
    """A call-control application sending its webhooks to ``url``, reached at ``extension``."""
    app = await client.call_control_applications.create(
        application_name="crash test", webhook_event_url=url
    )
    assert app.data is not None and app.data.id is not None
    await client.post(
        "/routes", body={"destination": extension, "application_id": app.data.id}, cast_to=object
    )
    return app.data.id


async def test_a_server_killed_mid_call_and_mid_queue_closes_every_call_at_restart(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    sink = WebhookSink()
    url = await sink.start()
    phones: list[Phone] = []
    try:
        async with started(data_dir, "first.log") as first:
            alice, bob, carol = await first.add_users(["alice", "bob", "carol"])
            key = await first.api_key("crash")
            client = AsyncTelnyx(api_key=key, base_url=f"{first.url}/v2", max_retries=0)
            await app_line(client, url, "7001")
            a = await party(first, alice, ALICE)
            b = await party(first, bob, BOB)
            c = await party(first, carol, CAROL)
            phones += [a.phone, b.phone, c.phone]

            # a 1:1 call between two softphones, audio flowing
            out = await a.call(bob.extension)
            await b.answer()
            await out.wait_for("answered", timeout=5)
            assert await level(b.sink, ALICE) > HEARD

            # an application call, answered and waiting in a queue (hold music)
            queued = await c.call("7001")
            initiated = await sink.wait("call.initiated", call_control_id=queued.id)
            ccid = initiated.payload["call_control_id"]
            await client.calls.actions.answer(ccid, client_state="d2FpdGluZw==")
            await client.calls.actions.enqueue(ccid, queue_name="support", max_size=7)
            await sink.wait("call.enqueued", call_control_id=ccid)

            # what the server wrote down: open CDRs, the queued call's state, the queue entry
            async with database(data_dir) as store:

                async def written() -> bool | None:
                    open_ids = await store.open_cdr_ids()
                    live = await store.list_live_calls()
                    entries = await store.list_queue_entries("support")
                    queued_row = next((r for r in live if r.call_control_id == ccid), None)
                    ok = (
                        {out.id, queued.id} <= set(open_ids)
                        and queued_row is not None
                        and json.loads(queued_row.data_json)["queue"] is not None
                        and [e.call_control_id for e in entries] == [ccid]
                    )
                    return ok or None

                await soon(written)
            await client.close()

            first.proc.kill()  # kill -9: no shutdown, no flush
            await asyncio.to_thread(first.proc.wait)
            for phone in phones:
                await phone.close()
            phones.clear()

        async with started(data_dir, "second.log") as second:
            client = AsyncTelnyx(api_key=key, base_url=f"{second.url}/v2", max_retries=0)
            dequeued = await sink.wait("call.dequeued", call_control_id=ccid)
            hangup = await sink.wait("call.hangup", call_control_id=ccid)
            assert dequeued.payload["reason"] == "hangup"
            assert dequeued.payload["queue"] == "support"
            assert dequeued.payload["queue_position"] == 1
            assert hangup.payload["hangup_cause"] == "unspecified"
            assert hangup.payload["hangup_source"] == "unknown"
            assert hangup.payload["client_state"] == "d2FpdGluZw=="
            types = sink.types(ccid)
            assert types.index("call.dequeued") < types.index("call.hangup")
            public = await client.get("/public_key", cast_to=dict[str, Any])
            for delivery in (dequeued, hangup):  # signed as any delivery, SDK-readable
                event = client.webhooks.unwrap(
                    delivery.body, headers=delivery.headers, key=public["data"]["public_key"]
                )
                assert type(event).__name__ in (
                    "CallLeftQueueWebhookEvent",
                    "CallHangupWebhookEvent",
                )

            # The queued call answers as an ended call does, not 404.
            status = await client.calls.retrieve_status(ccid)
            assert status.data is not None
            assert status.data.is_alive is False and status.data.end_time is not None

            # The queue survived, empty of the call the crash cut off.
            queue = await client.queues.retrieve("support")
            assert queue.data is not None
            assert (queue.data.current_size, queue.data.max_size) == (0, 7)

            # Every call has an ended CDR, reason failed; none is left open.
            async with database(data_dir) as store:
                cdrs = {cdr.call_id: cdr for cdr in await store.list_cdrs()}
                assert await store.open_cdr_ids() == []
                assert await store.list_live_calls() == []
                assert await store.list_queue_entries("support") == []
            for call_id, caller in ((out.id, "alice"), (queued.id, "carol")):
                assert cdrs[call_id].end_reason == "failed", cdrs[call_id]
                assert cdrs[call_id].caller == caller
                assert cdrs[call_id].answered_at is not None
            assert "recovered from a crash" in second.log()
            await client.close()
            await asyncio.to_thread(second.check_clean)
    finally:
        for phone in phones:
            await phone.close()
        await sink.close()
