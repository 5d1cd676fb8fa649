"""A database that refuses writes loses nothing (issue 10, defect 6).

Before: during a 12 s SQLite write lock, CDRs and the ``call.initiated`` webhook were dropped
("could not enqueue") and REST writes answered a plain-text 500. Now what calls write waits in
memory, in order, and is written once the lock lifts; REST answers 503 with ``Retry-After``
and the API's JSON error body.

The lock is real: another connection to the server's SQLite file holds ``BEGIN IMMEDIATE``
(as a backup tool or a stuck CLI command would), longer than the server's busy timeout.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import telnyx
from telnyx import AsyncTelnyx

from api_helpers import WebhookSink
from callbridge.client import Phone, ToneSource
from callbridge.errors import RemoteError
from callbridge.store import Cdr, Store
from callbridge.store.engine import SQLITE_BUSY_TIMEOUT_MS
from callbridge.testing.server import Server, serve
from parties import ALICE, BOB, CAROL, HEARD, Party, connect, level, until_async

pytestmark = pytest.mark.timeout(90)


@contextmanager
def write_lock(data_dir: Path) -> Iterator[sqlite3.Connection]:
    """Hold the database's write lock from another connection until the block ends."""
    db = sqlite3.connect(data_dir / "callbridge.db", isolation_level=None, timeout=5)
    try:
        db.execute("BEGIN IMMEDIATE")
        yield db
    finally:
        db.rollback()
        db.close()


async def party(server: Server, name: str, tone: float) -> Party:
    phone = Phone(server.ws_url, server.users[name].token)
    await phone.login()
    return Party(phone, tone, server.users[name])  # type: ignore[arg-type]


async def test_a_write_lock_during_calls_loses_no_cdr_and_no_webhook_once_it_lifts(
    tmp_path: Path,
) -> None:
    sink = WebhookSink()
    url = await sink.start()
    async with serve(
        tmp_path, users=["alice", "bob", "carol"], ring_timeout=20, session_grace=1
    ) as server:
        key = await server.api_key("lock")
        rest = httpx.AsyncClient(
            base_url=f"{server.url}/v2", headers={"authorization": f"Bearer {key}"}, timeout=30
        )
        made = await rest.post(
            "/call_control_applications",
            json={"application_name": "lock test", "webhook_event_url": url},
        )
        app_id = made.json()["data"]["id"]
        await rest.post("/routes", json={"destination": "7001", "application_id": app_id})
        a, b, c = (
            await party(server, "alice", ALICE),
            await party(server, "bob", BOB),
            await party(server, "carol", CAROL),
        )
        try:
            with write_lock(tmp_path):
                # A REST write waits for the lock as long as the busy timeout, then gets 503.
                refused = asyncio.create_task(
                    rest.post(
                        "/call_control_applications",
                        json={"application_name": "during the lock", "webhook_event_url": url},
                    )
                )
                # Calls go on: a 1:1 call, and a caller of the application who hangs up.
                out = await a.call(server.users["bob"].extension)
                await b.answer()
                await out.wait_for("answered", timeout=5)
                assert await level(b.sink, ALICE) > HEARD
                await out.hangup()
                to_app = await c.call("7001")
                await to_app.wait_for("ringing", timeout=5)
                await to_app.hangup()

                answer = await asyncio.wait_for(refused, SQLITE_BUSY_TIMEOUT_MS / 1000 + 10)
                assert answer.status_code == 503
                assert answer.headers["content-type"] == "application/json"
                assert int(answer.headers["retry-after"]) > 0
                (error,) = answer.json()["errors"]
                assert error["code"] == "10011" and "database" in error["detail"]
                assert sink.deliveries == []  # nothing could be written, so nothing went out
                # The records wait in memory (the spools say so) while the lock is held.
                await until_async(lambda: _logged(server, "call records: the database refuses"), 15)
                await until_async(lambda: _logged(server, "webhooks: the database refuses"), 15)

            # The lock is gone: what waited is written, in order, and delivered.
            initiated = await sink.wait("call.initiated", within=20, call_control_id=to_app.id)
            hangup = await sink.wait("call.hangup", within=10, call_control_id=to_app.id)
            assert sink.deliveries.index(initiated) < sink.deliveries.index(hangup)
            async with server.store() as store:
                cdrs = await until_async(lambda: _both(store, out.id, to_app.id), within=10)
                assert await store.open_cdr_ids() == []
            assert cdrs[out.id].end_reason == "hangup" and cdrs[out.id].answered_at is not None
            assert cdrs[to_app.id].caller == "carol"
            again = await rest.post(
                "/call_control_applications",
                json={"application_name": "after the lock", "webhook_event_url": url},
            )
            assert again.status_code == 200
            assert "takes writes again" in server.log()
        finally:
            for p in (a, b, c):
                await p.phone.close()
            await rest.aclose()
            await sink.close()


async def _logged(server: Server, text: str) -> bool | None:
    return text in server.log() or None


async def _health(server: Server) -> dict[str, object]:
    async with httpx.AsyncClient() as http:
        health: dict[str, object] = (await http.get(f"{server.url}/healthz")).json()
        return health


async def _no_backlog(server: Server) -> bool:
    return "backlog" not in await _health(server)


async def _both(store: Store, *call_ids: str) -> dict[str, Cdr] | None:
    cdrs = {cdr.call_id: cdr for cdr in await store.list_cdrs()}
    return cdrs if all(i in cdrs for i in call_ids) else None


async def test_a_recording_whose_file_cannot_be_finished_is_reported_as_an_error(
    tmp_path: Path,
) -> None:
    """Before, a recording that failed looked like success (``call.recording.saved``)."""
    sink = WebhookSink()
    url = await sink.start()
    async with serve(tmp_path, users=["bob"], session_grace=1) as server:
        key = await server.api_key("recording")
        rest = httpx.AsyncClient(
            base_url=f"{server.url}/v2", headers={"authorization": f"Bearer {key}"}, timeout=10
        )
        bob = await party(server, "bob", BOB)
        try:
            made = await rest.post(
                "/call_control_applications",
                json={"application_name": "recorder", "webhook_event_url": url},
            )
            dialled = await rest.post(
                "/calls",
                json={
                    "connection_id": made.json()["data"]["id"],
                    "to": server.users["bob"].extension,
                    "from": "+15550001111",
                },
            )
            ccid = dialled.json()["data"]["call_control_id"]
            await bob.answer()
            await sink.wait("call.answered", call_control_id=ccid)
            started = await rest.post(
                f"/calls/{ccid}/actions/record_start", json={"format": "mp3", "channels": "single"}
            )
            assert started.status_code == 200, started.text
            # The recordings directory goes away under the recording (as a disk that fails
            # or a volume unmounted would): the MP3 cannot be made from what was written.
            (tmp_path / "recordings").rename(tmp_path / "recordings.gone")
            stopped = await rest.post(f"/calls/{ccid}/actions/record_stop", json={})
            assert stopped.status_code == 200, stopped.text

            error = await sink.wait("call.recording.error", call_control_id=ccid)
            assert error.payload["reason"] == "Internal server error"
            assert "could not finish the recording" in error.payload["detail"]
            assert error.payload["connection_id"] == made.json()["data"]["id"]
            assert "call.recording.saved" not in sink.types(ccid)
            listed = await rest.get("/recordings")
            assert listed.json()["data"] == []
            await rest.post(f"/calls/{ccid}/actions/hangup", json={})
            await sink.wait("call.hangup", call_control_id=ccid)
        finally:
            await bob.phone.close()
            await rest.aclose()
            await sink.close()


async def test_a_conference_recording_that_fails_is_reported_to_its_host_and_its_application(
    tmp_path: Path,
) -> None:
    """Before, a conference recording whose file failed still ended with
    ``conference.recording-saved`` on ``/ws`` and ``conference.recording.saved`` to the
    application."""
    sink = WebhookSink()
    url = await sink.start()
    async with serve(tmp_path, users=["alice", "bob"], session_grace=1) as server:
        key = await server.api_key("conference recording")
        client = AsyncTelnyx(api_key=key, base_url=f"{server.url}/v2", max_retries=0)
        alice, bob = await party(server, "alice", ALICE), await party(server, "bob", BOB)
        errors: asyncio.Queue[RemoteError] = asyncio.Queue()
        alice.phone.on("error", errors.put_nowait)
        saved: list[object] = []
        alice.phone.on("conference:recording-saved", saved.append)
        try:
            # A /ws host records its conference; an application records a REST conference.
            hosted = await alice.phone.start_conference(source=ToneSource(ALICE))
            hosted_recording = await hosted.record("start", "mp3")
            app = await client.call_control_applications.create(
                application_name="conference recorder", webhook_event_url=url
            )
            assert app.data is not None and app.data.id is not None
            dialled = await client.calls.dial(
                connection_id=app.data.id, to=server.users["bob"].extension, from_="+15550001111"
            )
            assert dialled.data is not None and dialled.data.call_control_id is not None
            ccid = dialled.data.call_control_id
            await bob.answer()
            await sink.wait("call.answered", call_control_id=ccid)
            made = await client.conferences.create(call_control_id=ccid, name="recorded")
            assert made.data is not None
            conf_id = made.data.id
            await client.conferences.actions.record_start(conf_id, format="mp3")

            # The recordings directory goes away under both (a failing disk, a volume
            # unmounted): neither MP3 can be made from what was written.
            (tmp_path / "recordings").rename(tmp_path / "recordings.gone")
            await hosted.record("stop")
            await client.conferences.actions.record_stop(conf_id)

            error = await asyncio.wait_for(errors.get(), 10)
            assert error.code == "recording_failed" and error.method == "conference.record"
            assert hosted_recording in error.message
            assert "could not finish the recording" in error.message
            failed = await sink.wait("conference.recording.error", conference_id=conf_id)
            assert failed.payload["reason"] == "Internal server error"
            assert "could not finish the recording" in failed.payload["detail"]
            assert failed.payload["connection_id"] == app.data.id
            assert failed.payload["call_control_id"] == ccid and failed.payload["recording_id"]
            # Signed as any delivery; the SDK has no class for it: read event_type.
            public = await client.get("/public_key", cast_to=object)
            key_b64 = public["data"]["public_key"]  # type: ignore[index]
            event = client.webhooks.unwrap(failed.body, headers=failed.headers, key=key_b64)
            assert event.data.event_type == "conference.recording.error"  # type: ignore[union-attr]
            # Nothing was saved, and nothing says so.
            assert saved == [] and hosted.recordings == []
            assert "conference.recording.saved" not in [d.event_type for d in sink.deliveries]
            assert (await client.recordings.list()).data == []
            await hosted.end()
        finally:
            for p in (alice, bob):
                await p.phone.close()
            await client.close()
            await sink.close()


async def test_new_calls_are_refused_with_a_retry_time_while_a_spool_is_full(
    tmp_path: Path,
) -> None:
    """The spools report ``full`` (``--spool-limit`` records wait for a database that refuses
    writes); new calls would only add to what waits, so they are refused until it empties:
    ``database_backlog`` on ``/ws``, 503 with ``Retry-After`` and a JSON body on REST."""
    async with serve(
        tmp_path,
        users=["alice", "bob", "carol"],
        session_grace=1,
        args=["--spool-limit", "2"],
    ) as server:
        key = await server.api_key("backlog")
        client = AsyncTelnyx(api_key=key, base_url=f"{server.url}/v2", max_retries=0)
        app = await client.call_control_applications.create(
            application_name="backlog", webhook_event_url="http://127.0.0.1:9/hook"
        )
        assert app.data is not None and app.data.id is not None
        a, b, c = (
            await party(server, "alice", ALICE),
            await party(server, "bob", BOB),
            await party(server, "carol", CAROL),
        )
        try:
            with write_lock(tmp_path):
                # A call that is up when the lock comes goes on; its records fill the spool.
                out, _ = await connect(a, b)
                await out.hangup()
                await until_async(lambda: _logged(server, "call records: the spool is full"), 10)

                with pytest.raises(RemoteError) as refused:
                    await c.call(server.users["alice"].extension)
                assert refused.value.code == "database_backlog"
                assert refused.value.retry_after == 10
                assert "--spool-limit" in refused.value.message

                with pytest.raises(telnyx.APIStatusError) as rest_refused:
                    await client.calls.dial(
                        connection_id=app.data.id,
                        to=server.users["bob"].extension,
                        from_="+15550001111",
                    )
                answer = rest_refused.value.response
                assert answer.status_code == 503
                assert answer.headers["content-type"] == "application/json"
                assert answer.headers["retry-after"] == "10"
                (error,) = answer.json()["errors"]
                assert error["code"] == "10011" and "--spool-limit" in error["detail"]
                # Reads and the calls' own commands go on meanwhile.
                assert (await client.call_control_applications.list()).data

                health = await _health(server)
                assert health["status"] == "ok" and health["backlog"] == "call records"

            # Once the database takes the records again, calls are welcome again.
            await until_async(lambda: _no_backlog(server), 15)
            out, _ = await connect(c, a)
            await out.hangup()
        finally:
            for p in (a, b, c):
                await p.phone.close()
            await client.close()
