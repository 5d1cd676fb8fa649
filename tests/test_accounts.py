"""Accounts (tenants) over REST and the CLI: two accounts that cannot see each other.

Account A is the default account (the ``api`` fixture's key, the softphone users of the
``party`` fixture): exactly what a single-account install has. Account B is made for the test,
with its own write key, a read-only key and its own application. B's keys try every REST
resource of A (applications, routes, media, recordings, a live call and every call command, a
conference and its commands, a queue and its calls): each answers 404 with the same body as a
resource that does not exist, and no list shows them; nothing of A's call reaches B's webhook
sink. Read-only keys read and are refused every write (403); admin keys manage accounts at
``/v2/accounts``, which other keys are told does not exist.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import telnyx
from telnyx import AsyncTelnyx

import pg
from api_helpers import (  # noqa: F401  (the fixtures)
    Api,
    WebhookSink,
    api_fixture,
    audio_site_fixture,
)
from callbridge.client import Phone
from callbridge.errors import RemoteError
from callbridge.store import ApplicationNotFound, MediaNotFound, RecordingNotFound, Store
from callbridge.store.accounts import (
    DEFAULT_ACCOUNT_ID,
    Account,
    AccountExists,
    AccountNotFound,
    NumberNotFound,
    NumberTaken,
)
from callbridge.testing.server import Server, ServerUser
from conftest import MakeParty
from parties import ALICE, Party, until_async

pytestmark = pytest.mark.timeout(90)

MISSING = "9999999999999999999"  # an id nobody has

database = pg.database  # the store-level scenario runs on SQLite and on PostgreSQL


@dataclass
class Tenant:
    """An account with a write key (SDK client and raw HTTP), a read-only key, and its app."""

    account: Account
    client: AsyncTelnyx
    http: httpx.AsyncClient
    read_only: httpx.AsyncClient
    sink: WebhookSink
    app_id: str


def _http(server: Server, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"{server.url}/v2", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )


@pytest.fixture(name="b")
async def tenant_b(server: Server, store: Store) -> AsyncIterator[Tenant]:
    account = await store.create_account(f"tenant-b-{datetime.now(UTC).timestamp()}")
    key = await store.create_api_key("b", account_id=account.id)
    read_key = await store.create_api_key("b-read", account_id=account.id, scope="read")
    client = AsyncTelnyx(api_key=key, base_url=f"{server.url}/v2", max_retries=0)
    sink = WebhookSink()
    url = await sink.start()
    app = await client.call_control_applications.create(
        application_name="b's app", webhook_event_url=url
    )
    assert app.data is not None and app.data.id is not None
    tenant = Tenant(account, client, _http(server, key), _http(server, read_key), sink, app.data.id)
    yield tenant
    await sink.close()
    await client.close()
    await tenant.http.aclose()
    await tenant.read_only.aclose()


async def assert_hidden(
    http: httpx.AsyncClient,
    method: str,
    path: str,
    real: str,
    body: dict[str, Any] | None = None,
    status: int = 404,
) -> None:
    """``method path`` (naming another account's ``real`` id) is answered exactly as the same
    request naming an id nobody has."""
    theirs = await http.request(method, path, json=body)
    nobodys_path = path.replace(real, MISSING)
    nobodys_body = None
    if body is not None:
        nobodys_body = {k: MISSING if v == real else v for k, v in body.items()}
    nobodys = await http.request(method, nobodys_path, json=nobodys_body)
    assert theirs.status_code == nobodys.status_code == status, (path, theirs.text)
    assert theirs.text == nobodys.text.replace(MISSING, real), (path, theirs.text, nobodys.text)


def _wav(path: Path) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 800)
    return path


# the store ------------------------------------------------------------------------------------
async def test_the_store_keeps_each_accounts_rows_to_itself(database: pg.Database) -> None:
    async with await Store.open(database.url) as db:
        acme = await db.create_account("Acme")
        with pytest.raises(AccountExists):
            await db.create_account(" Acme ")
        assert [a.id for a in await db.list_accounts()] == [DEFAULT_ACCOUNT_ID, acme.id]
        # Extensions are per account; names and numbers are global.
        bob = await db.add_user("bob", "1001", number="+14155550101", account_id=acme.id)
        await db.add_user("carol", "1001")
        with pytest.raises(AccountNotFound):
            await db.add_user("dan", "1002", account_id="nope")
        assert [u.name for u in await db.list_users(acme.id)] == [
            "bob"
        ] and bob.account_id == acme.id
        # Keys say who they are.
        key = await db.create_api_key("k", account_id=acme.id, scope="read", admin=True)
        who = await db.check_api_key(key)
        assert who is not None and (who.account_id, who.read_only, who.admin) == (
            acme.id,
            True,
            True,
        )
        with pytest.raises(ValueError, match="'write' or 'read'"):
            await db.create_api_key(scope="admin")  # type: ignore[arg-type]
        # Numbers: owned by one account at most.
        owned = await db.add_number("+1 (415) 555-0199", acme.id)
        assert owned.number == "+14155550199" and await db.number_owner("14155550199") == acme.id
        with pytest.raises(NumberTaken):
            await db.add_number("+14155550199")
        with pytest.raises(NumberNotFound):
            await db.remove_number("+14155550199", DEFAULT_ACCOUNT_ID)
        # Applications, routes, media, recordings: another account's is not found.
        app = await db.create_application(
            application_name="a", webhook_event_url="http://h.test/x", account_id=acme.id
        )
        assert await db.get_application(app.id, DEFAULT_ACCOUNT_ID) is None
        assert await db.get_application(app.id, acme.id) == app
        assert await db.application_account(app.id) == acme.id
        assert (await db.list_applications(account_id=DEFAULT_ACCOUNT_ID))[1] == 0
        with pytest.raises(ApplicationNotFound):
            await db.update_application(app.id, account_id=DEFAULT_ACCOUNT_ID, active=False)
        with pytest.raises(ApplicationNotFound):
            await db.set_route("5000", app.id, DEFAULT_ACCOUNT_ID)
        await db.set_route("5000", app.id)  # the application's account
        assert await db.find_route("5000", acme.id) == app.id
        assert await db.find_route("5000") is None
        assert await db.list_routes(account_id=DEFAULT_ACCOUNT_ID) == []
        for account, size in ((acme.id, 1), (DEFAULT_ACCOUNT_ID, 2)):
            await db.add_media("hi.wav", content_type="audio/wav", path=f"/x/{account}",
                               size=size, account_id=account)  # fmt: skip
        assert (await db.get_media("hi.wav", acme.id) or pytest.fail()).size == 1
        assert (await db.get_media("hi.wav") or pytest.fail()).size == 2
        await db.delete_media("hi.wav")
        with pytest.raises(MediaNotFound):
            await db.delete_media("hi.wav")
        now = datetime.now(UTC)
        rec = await db.add_recording(
            path="/x/r.wav", format="wav", channels="single", duration_millis=1,
            recording_started_at=now, recording_ended_at=now, account_id=acme.id,
        )  # fmt: skip
        assert await db.get_recording(rec.id, DEFAULT_ACCOUNT_ID) is None
        assert (await db.list_recordings(account_id=DEFAULT_ACCOUNT_ID))[1] == 0
        with pytest.raises(RecordingNotFound):
            await db.delete_recording(rec.id, DEFAULT_ACCOUNT_ID)
        # Deleting the account takes what it owns, and hands back its files.
        notice = await db.set_recording_notice(acme.id, False)
        assert notice.recording_notice is False
        deleted = await db.delete_account(acme.id)
        assert sorted(deleted.files) == [f"/x/{acme.id}", "/x/r.wav"]
        assert await db.check_api_key(key) is None and await db.get_user("bob") is None
        assert await db.number_owner("+14155550199") is None
        assert [u.name for u in await db.list_users()] == ["carol"]
        with pytest.raises(ValueError, match="cannot be deleted"):
            await db.delete_account(DEFAULT_ACCOUNT_ID)


# stored resources ---------------------------------------------------------------------------
async def test_another_accounts_applications_routes_media_and_recordings_are_not_found(
    api: Api, b: Tenant, store: Store, tmp_path: Path, audio_site: str
) -> None:
    a_app = api.app_id
    line = await api.line()
    await api.client.post(
        "/media", body={"media_url": f"{audio_site}/prompt.wav", "media_name": "a-prompt.wav"},
        cast_to=object,
    )  # fmt: skip
    now = datetime.now(UTC)
    a_rec = await store.add_recording(
        path=str(_wav(tmp_path / "a.wav")), format="wav", channels="single",
        duration_millis=100, recording_started_at=now - timedelta(seconds=1),
        recording_ended_at=now, call_control_id="a-call", account_id=DEFAULT_ACCOUNT_ID,
    )  # fmt: skip
    b_rec = await store.add_recording(
        path=str(_wav(tmp_path / "b.wav")), format="wav", channels="single",
        duration_millis=100, recording_started_at=now - timedelta(seconds=1),
        recording_ended_at=now, call_control_id="b-call", account_id=b.account.id,
    )  # fmt: skip

    # The SDK sees B's own things only, and A's as missing.
    apps = [x.id async for x in b.client.call_control_applications.list()]
    assert apps == [b.app_id]
    with pytest.raises(telnyx.NotFoundError):
        await b.client.call_control_applications.retrieve(a_app)
    with pytest.raises(telnyx.NotFoundError):
        await b.client.call_control_applications.delete(a_app)
    assert (await api.client.call_control_applications.retrieve(a_app)).data is not None

    http = b.http
    for method in ("GET", "DELETE"):
        await assert_hidden(http, method, f"/call_control_applications/{a_app}", a_app)
    await assert_hidden(
        http, "PATCH", f"/call_control_applications/{a_app}", a_app, {"active": False}
    )
    # A route may not send B's calls to A's application (422, as for an unknown one) ...
    await assert_hidden(
        http, "POST", "/routes", a_app, {"destination": "6001", "application_id": a_app}, 422
    )
    # ... nor dial from it.
    dial = {"connection_id": a_app, "to": "1000", "from": "+15550001111"}
    await assert_hidden(http, "POST", "/calls", a_app, dial, 422)
    routes = (await http.get("/routes")).json()["data"]
    assert line not in [r["destination"] for r in routes]
    await assert_hidden(http, "DELETE", f"/routes/{line}", line)
    a_routes: Any = await api.client.get("/routes", cast_to=object)
    assert line in [r["destination"] for r in a_routes["data"]]

    # Media: names are per account. B does not see A's file, and may have its own of that name.
    for method, suffix in (("GET", ""), ("GET", "/download"), ("DELETE", "")):
        await assert_hidden(http, method, f"/media/a-prompt.wav{suffix}", "a-prompt.wav")
    await assert_hidden(http, "PUT", "/media/a-prompt.wav", "a-prompt.wav", {"ttl_secs": 60})
    assert (await http.get("/media")).json()["data"] == []
    mine = await http.post(
        "/media", json={"media_url": f"{audio_site}/hold.wav", "media_name": "a-prompt.wav"}
    )
    assert mine.status_code == 200, mine.text
    theirs = await api.client.get("/media/a-prompt.wav/download", cast_to=httpx.Response)
    ours = await http.get("/media/a-prompt.wav/download")
    assert ours.content != theirs.content  # two files, one per account
    assert (await http.delete("/media/a-prompt.wav")).status_code == 204
    assert (await api.client.get("/media/a-prompt.wav", cast_to=object)) is not None

    # Recordings.
    for method, suffix in (("GET", ""), ("GET", "/download"), ("DELETE", "")):
        await assert_hidden(http, method, f"/recordings/{a_rec.id}{suffix}", a_rec.id)
    listed = (await http.get("/recordings")).json()["data"]
    assert [r["id"] for r in listed] == [b_rec.id]
    a_listed: Any = await api.client.get("/recordings", cast_to=object)
    a_ids = [r["id"] for r in a_listed["data"]]
    assert b_rec.id not in a_ids and a_rec.id in a_ids
    async with httpx.AsyncClient(
        base_url=http.base_url, headers=dict(api.client.auth_headers)
    ) as a_http:  # and the other way round
        await assert_hidden(a_http, "GET", f"/recordings/{b_rec.id}", b_rec.id)
    await api.client.delete("/media/a-prompt.wav", cast_to=object)


# live calls, conferences, queues ------------------------------------------------------------
_CALL_COMMANDS: list[tuple[str, dict[str, Any]]] = [
    ("answer", {}),
    ("hangup", {}),
    ("reject", {"cause": "CALL_REJECTED"}),
    ("speak", {"payload": "hello", "voice": "female"}),
    ("playback_start", {"audio_url": "http://127.0.0.1:9/x.wav"}),
    ("playback_stop", {}),
    ("send_dtmf", {"digits": "1"}),
    ("gather", {}),
    ("gather_stop", {}),
    ("record_start", {"format": "wav", "channels": "single"}),
    ("record_stop", {}),
    ("record_pause", {}),
    ("record_resume", {}),
    ("bridge", {"queue": "accounts-support"}),
    ("transfer", {"to": "1000"}),
    ("enqueue", {"queue_name": "accounts-support"}),
    ("leave_queue", {}),
    ("client_state_update", {"client_state": "eA=="}),
]


async def test_another_accounts_call_its_commands_conference_and_queue_are_not_found(
    api: Api, b: Tenant, party: MakeParty
) -> None:
    line = await api.line()
    alice = await party(ALICE)
    call = await alice.call(line)
    initiated = await api.sink.wait("call.initiated", call_control_id=call.id)
    ccid = initiated.payload["call_control_id"]
    http = b.http

    # Parked: B can neither see nor command it (every command, before A answers).
    with pytest.raises(telnyx.NotFoundError):
        await b.client.calls.retrieve_status(ccid)
    await assert_hidden(http, "GET", f"/calls/{ccid}", ccid)
    for action, body in _CALL_COMMANDS:
        await assert_hidden(http, "POST", f"/calls/{ccid}/actions/{action}", ccid, body)
    # Naming A's call in a body is "no such call" too (422).
    await assert_hidden(
        http, "POST", "/conferences", ccid, {"call_control_id": ccid, "name": "x"}, 422
    )

    await api.client.calls.actions.answer(ccid)
    await call.wait_for("answered", timeout=5)

    # A queue of A's: B does not see it, and may have its own of the same name.
    await api.client.calls.actions.enqueue(ccid, queue_name="accounts-support")
    await api.sink.wait("call.enqueued", call_control_id=ccid)
    for path in (
        "/queues/accounts-support",
        "/queues/accounts-support/calls",
        f"/queues/accounts-support/calls/{ccid}",
    ):
        await assert_hidden(http, "GET", path, "accounts-support")
    await assert_hidden(
        http, "DELETE", f"/queues/accounts-support/calls/{ccid}", "accounts-support"
    )
    await assert_hidden(
        http, "POST", "/queues/accounts-support", "accounts-support", {"max_size": 5}
    )
    assert "accounts-support" not in [q["name"] for q in (await http.get("/queues")).json()["data"]]
    own = await http.post("/queues", json={"queue_name": "accounts-support"})
    assert own.status_code == 200, own.text
    assert (await http.get("/queues/accounts-support")).json()["data"]["current_size"] == 0
    assert (await http.get("/queues/accounts-support/calls")).json()["data"] == []
    assert (await http.delete("/queues/accounts-support")).status_code == 204
    a_queue = await api.client.queues.retrieve("accounts-support")
    assert a_queue.data is not None and a_queue.data.current_size == 1
    await api.client.calls.actions.leave_queue(ccid)

    # A conference of A's.
    conf = await api.client.conferences.create(call_control_id=ccid, name="a-room")
    assert conf.data is not None
    cid = conf.data.id
    with pytest.raises(telnyx.NotFoundError):
        await b.client.conferences.retrieve(cid)
    assert [c.id async for c in b.client.conferences.list()] == []
    await assert_hidden(http, "GET", f"/conferences/{cid}/participants", cid)
    await assert_hidden(http, "GET", f"/conferences/{cid}/participants/{ccid}", cid)
    for action, body in [
        ("join", {"call_control_id": ccid}),
        ("leave", {"call_control_id": ccid}),
        ("hold", {}),
        ("unhold", {"call_control_ids": [ccid]}),
        ("mute", {}),
        ("unmute", {}),
        ("play", {"audio_url": "http://127.0.0.1:9/x.wav"}),
        ("speak", {"payload": "hello", "voice": "female"}),
        ("stop", {}),
        ("record_start", {"format": "wav"}),
        ("record_stop", {}),
        ("update", {"call_control_id": ccid, "supervisor_role": "monitor"}),
        ("end", {}),
    ]:
        await assert_hidden(http, "POST", f"/conferences/{cid}/actions/{action}", cid, body)
    still = await api.client.conferences.retrieve(cid)
    assert still.data is not None and still.data.status == "in_progress"

    await api.client.calls.actions.hangup(ccid)
    await api.sink.wait("call.hangup", call_control_id=ccid)
    # Ended, it is still not B's: 404, not "has already ended".
    await assert_hidden(http, "POST", f"/calls/{ccid}/actions/hangup", ccid, {})
    assert b.sink.deliveries == []  # nothing of A's call went to B's application


async def test_deleting_an_account_ends_its_calls_conference_queue_waits_and_sessions(
    server: Server, store: Store, b: Tenant
) -> None:
    """Before, a deleted account's calls, conferences and queue waits went on (and its
    users stayed signed in) until they ended by themselves."""
    admin = _http(server, await store.create_api_key("admin-delete", admin=True))
    stamp = int(datetime.now(UTC).timestamp() * 1000) % 10**6
    name, ext = f"bee-{stamp}", f"7{stamp:06d}"
    await store.add_user(name, ext, account_id=b.account.id)
    token, _ = await store.create_token(name, timedelta(hours=1))
    phone = Phone(server.ws_url, token)
    await phone.login()
    bee = Party(phone, ALICE, ServerUser(name, ext, None, None, token))  # type: ignore[arg-type]
    expired = asyncio.Event()
    phone.on("session-expired", expired.set)
    try:
        ccids, legs = [], []
        for _ in range(2):  # B's application calls its user twice
            dialled = await b.client.calls.dial(connection_id=b.app_id, to=ext, from_=ext)
            assert dialled.data is not None and dialled.data.call_control_id is not None
            ccids.append(dialled.data.call_control_id)
            legs.append(await bee.answer())
            await b.sink.wait("call.answered", call_control_id=ccids[-1])
        room = await b.client.conferences.create(call_control_id=ccids[0], name="b-room")
        assert room.data is not None
        await b.client.calls.actions.enqueue(ccids[1], queue_name="b-support")
        await b.sink.wait("call.enqueued", call_control_id=ccids[1])

        gone = await admin.delete(f"/accounts/{b.account.id}")
        assert gone.status_code == 200, gone.text

        # Everything ended as a hangup would: events, webhooks, CDRs.
        await b.sink.wait("conference.ended", conference_id=room.data.id)
        dequeued = await b.sink.wait("call.dequeued", call_control_id=ccids[1])
        assert dequeued.payload["queue"] == "b-support"
        for ccid in ccids:
            hangup = await b.sink.wait("call.hangup", call_control_id=ccid)
            assert hangup.payload["hangup_cause"] == "normal_clearing"
        for leg in legs:
            await leg.wait_for("ended", timeout=5)
        await asyncio.wait_for(expired.wait(), 5)

        async def recorded() -> list[str] | None:  # the account's CDRs are kept, completed
            cdrs = await store.list_cdrs(200, account_id=b.account.id)
            return [c.end_reason for c in cdrs] if len(cdrs) == 2 else None

        assert await until_async(recorded) == ["hangup", "hangup"]
        # Its key is refused at once; its queue and user are gone.
        assert (await b.http.get("/call_control_applications")).status_code == 401
        with pytest.raises(RemoteError):
            await Phone(server.ws_url, token).login()
    finally:
        await phone.close()
        await admin.aclose()


# scopes and admin keys -------------------------------------------------------------------------
async def test_a_read_only_key_reads_and_every_write_is_refused_with_403(
    b: Tenant, audio_site: str
) -> None:
    ro = b.read_only
    assert (await ro.get("/call_control_applications")).status_code == 200
    assert (await ro.get(f"/call_control_applications/{b.app_id}")).status_code == 200
    assert (await ro.get("/queues")).status_code == 200
    for method, path, body in [
        ("POST", "/call_control_applications", {"application_name": "x", "webhook_event_url": "http://127.0.0.1:9/x"}),
        ("PATCH", f"/call_control_applications/{b.app_id}", {"active": False}),
        ("DELETE", f"/call_control_applications/{b.app_id}", None),
        ("POST", "/calls", {"connection_id": b.app_id, "to": "1000", "from": "+15550001111"}),
        ("POST", f"/calls/{MISSING}/actions/hangup", {}),
        ("POST", "/queues", {"queue_name": "q"}),
        ("POST", "/media", {"media_url": f"{audio_site}/prompt.wav"}),
        ("DELETE", f"/recordings/{MISSING}", None),
        ("POST", "/routes", {"destination": "6002", "application_id": b.app_id}),
    ]:  # fmt: skip
        answer = await ro.request(method, path, json=body)
        assert answer.status_code == 403, (path, answer.text)
        error = answer.json()["errors"][0]
        assert error["code"] == "10010" and error["detail"].startswith("this API key is read-only")
        assert f"{method} /v2" in error["detail"] and "--read-only" in error["detail"]
    assert (await b.http.get(f"/call_control_applications/{b.app_id}")).status_code == 200


async def test_an_admin_key_manages_accounts_and_other_keys_are_told_there_is_no_such_api(
    server: Server, store: Store, b: Tenant
) -> None:
    admin = _http(server, await store.create_api_key("admin", admin=True))
    plain = _http(server, await store.create_api_key("plain"))
    try:
        # Not an admin key (even B's read-only one): the same 404 as a path nobody serves.
        for client in (plain, b.http, b.read_only):
            for method, path in (
                ("GET", "/accounts"),
                ("POST", "/accounts"),
                ("GET", f"/accounts/{b.account.id}"),
                ("DELETE", f"/accounts/{b.account.id}"),
            ):
                answer = await client.request(method, path, json={"name": "x"})
                nothing = await client.request(method, path.replace("accounts", "nothing"))
                assert answer.status_code == nothing.status_code == 404
                assert answer.text == nothing.text.replace("nothing", "accounts")

        made = await admin.post("/accounts", json={"name": f"c-{datetime.now(UTC).timestamp()}"})
        assert made.status_code == 200, made.text
        account = made.json()["data"]
        assert account["record_type"] == "account" and account["recording_notice"] is True
        cid = account["id"]
        # One page big enough for every account other test modules of the run made.
        every = await admin.get("/accounts", params={"page[size]": 250})
        listed = [a["id"] for a in every.json()["data"]]
        assert listed[0] == DEFAULT_ACCOUNT_ID and cid in listed and b.account.id in listed
        twice = await admin.post("/accounts", json={"name": account["name"]})
        assert twice.status_code == 422 and "already exists" in twice.text
        patched = await admin.patch(f"/accounts/{cid}", json={"recording_notice": False})
        assert patched.json()["data"]["recording_notice"] is False
        assert (await store.get_account(cid)) is not None

        number = await admin.post(f"/accounts/{cid}/numbers", json={"number": "+1 (415) 555-0199"})
        assert number.status_code == 200 and number.json()["data"]["number"] == "+14155550199"
        taken = await admin.post(
            f"/accounts/{b.account.id}/numbers", json={"number": "+14155550199"}
        )
        assert taken.status_code == 422 and f"owned by account {cid}" in taken.text
        numbers = (await admin.get(f"/accounts/{cid}/numbers")).json()["data"]
        assert [n["number"] for n in numbers] == ["+14155550199"]

        key = await admin.post(f"/accounts/{cid}/api_keys", json={"name": "c", "scope": "read"})
        assert key.status_code == 200, key.text
        c_key = key.json()["data"]["api_key"]
        async with _http(server, c_key) as c:
            assert (await c.get("/call_control_applications")).json()["data"] == []
            assert (await c.post("/queues", json={"queue_name": "q"})).status_code == 403

            removed = await admin.delete(f"/accounts/{cid}/numbers/+14155550199")
            assert removed.status_code == 200
            gone = await admin.delete(f"/accounts/{cid}")
            assert gone.status_code == 200 and gone.json()["data"]["id"] == cid
            assert (await c.get("/queues")).status_code == 401  # its keys went with it
        assert (await admin.get(f"/accounts/{cid}")).status_code == 404
        default = await admin.delete(f"/accounts/{DEFAULT_ACCOUNT_ID}")
        assert default.status_code == 422 and "cannot be deleted" in default.text
    finally:
        await admin.aclose()
        await plain.aclose()


# the CLI ---------------------------------------------------------------------------------------
def _cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "callbridge", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_the_cli_adds_accounts_numbers_users_and_scoped_keys(tmp_path: Path) -> None:
    data = tmp_path / "data"
    added = _cli("accounts", "add", "Acme", data_dir=data)
    assert added.returncode == 0, added.stderr
    acme = added.stdout.strip().splitlines()[-1]
    assert acme.isdigit()
    assert (
        _cli(
            "users", "add", "bob", "--extension", "1001", "--account", acme, data_dir=data
        ).returncode
        == 0
    )
    assert _cli("users", "add", "carol", "--extension", "1001", data_dir=data).returncode == 0
    owned = _cli("numbers", "add", "+1 415 555 0123", "--account", acme, data_dir=data)
    assert owned.returncode == 0 and "+14155550123" in owned.stdout
    taken = _cli("numbers", "add", "+14155550123", data_dir=data)
    assert taken.returncode == 2 and f"owned by account {acme}" in taken.stderr
    assert "Traceback" not in taken.stderr and taken.stdout == ""
    unknown = _cli("users", "add", "dan", "--extension", "1002", "--account", "nope", data_dir=data)
    assert unknown.returncode == 2 and "no account with id 'nope'" in unknown.stderr
    key = _cli("apikey", "create", "--account", acme, "--read-only", "--admin", data_dir=data)
    assert key.returncode == 0 and "read-only admin API key" in key.stdout
    secret = key.stdout.strip().splitlines()[-1]
    listing = _cli("accounts", "list", data_dir=data)
    assert acme in listing.stdout and "Acme" in listing.stdout
    assert "+14155550123" in _cli("numbers", "list", data_dir=data).stdout

    async with await Store.open(f"sqlite+aiosqlite:///{data / 'callbridge.db'}") as store:
        principal = await store.check_api_key(secret)
        assert principal is not None and principal.account_id == acme
        assert principal.read_only and principal.admin
        assert [u.name for u in await store.list_users(acme)] == ["bob"]
        assert [u.name for u in await store.list_users(DEFAULT_ACCOUNT_ID)] == ["carol"]

    removed = _cli("accounts", "remove", acme, data_dir=data)
    assert removed.returncode == 0, removed.stderr
    assert "bob" not in _cli("users", "list", data_dir=data).stdout
    refused = _cli("accounts", "remove", DEFAULT_ACCOUNT_ID, data_dir=data)
    assert refused.returncode == 2 and "cannot be deleted" in refused.stderr
