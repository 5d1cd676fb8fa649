"""The operator dashboard (``/dashboard``, callbridge.dashboard): its JSON snapshot and live
feed with a real call between two Python SDK phones on the suite's server, who may read it,
and the page in real Chromium (tests/browser/dashboard_scenario.py, in a loopback-only
namespace) showing a call that the scenario places and dropping it when the call ends, and
the server stopping promptly with the page's feed still open."""

from __future__ import annotations

import asyncio
import json
import shlex
import subprocess
import sys
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api_helpers import Api, api_fixture  # noqa: F401  (the fixture)
from callbridge.store import Store
from callbridge.store.sip import BindingUpdate, Origin
from callbridge.testing.server import Server
from conftest import TEST_MEDIA_WORKERS, MakeParty
from parties import ALICE, BOB, CAROL, Party, connect, until_async
from test_browser import _preflight

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "tests" / "browser" / "dashboard_scenario.py"
SHOTS = ROOT / "docs" / "img"


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def call_of(state: dict[str, Any], call_id: str) -> dict[str, Any] | None:
    return next((c for c in state["calls"] if c["id"] == call_id), None)


async def snapshots(http: httpx.AsyncClient) -> AsyncGenerator[dict[str, Any]]:
    """The ``snapshot`` events of ``/dashboard/events`` (the client carries the cookie)."""
    async with http.stream("GET", "/dashboard/events") as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        event = ""
        async for line in stream.aiter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event == "snapshot":
                yield json.loads(line.removeprefix("data: "))


async def test_snapshot_and_feed_show_a_live_call_and_drop_it(
    server: Server, store: Store, party: MakeParty
) -> None:
    admin = await store.create_api_key("dashboard-admin", admin=True, scope="read")
    alice, bob = await party(ALICE), await party(BOB)
    # alice's desk phone registered too (as a REGISTER leaves it: sip/registrar.py).
    record = await store.get_user(alice.user.name)
    assert record is not None
    await store.register_bindings(
        record.id,
        call_id="dashboard-reg",
        cseq=1,
        origin=Origin("127.0.0.1", 5099, "UDP", user_agent="Desk phone"),
        updates=[BindingUpdate("b1", f"<sip:{alice.user.name}@127.0.0.1:5099>", 300)],
    )
    out, inc = await connect(alice, bob)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        answer = await http.get("/dashboard/state", headers=bearer(admin))
        assert answer.status_code == 200, answer.text
        state = answer.json()
        call = call_of(state, out.id)
        assert call is not None, state["calls"]
        assert call["state"] == "answered"
        assert (call["from_user"], call["to_user"]) == (alice.user.name, bob.user.name)
        assert call["to"] == bob.user.extension
        assert {leg["user"] for leg in call["legs"]} == {alice.user.name, bob.user.name}
        assert {leg["state"] for leg in call["legs"]} == {"active"}
        users = {d["user"] for d in state["devices"] if d["kind"] == "ws"}
        assert {alice.user.name, bob.user.name} <= users
        sip = [d for d in state["devices"] if d["kind"] == "sip" and d["user"] == alice.user.name]
        assert [(d["detail"], d["display_name"]) for d in sip] == [
            ("UDP 127.0.0.1:5099", "Desk phone")
        ], sip
        assert 0 < sip[0]["expires_in"] <= 300
        assert state["account"] is None  # an admin key: every account
        assert state["webhooks"]["pending"] >= 0 and "lag_secs" in state["webhooks"]
        # The media plane: this server's workers (CALLBRIDGE_TEST_MEDIA_WORKERS of them), up,
        # holding at least the call's two legs between them.
        media = state["media"]
        assert [w["up"] for w in media["workers"]] == [True] * TEST_MEDIA_WORKERS, media
        assert sum(w["objects"] for w in media["workers"]) >= 2, media
        if TEST_MEDIA_WORKERS > 1:
            assert [w["name"] for w in media["workers"]] == [
                f"worker {i}" for i in range(TEST_MEDIA_WORKERS)
            ]
            assert all(isinstance(w["pid"], int) for w in media["workers"]), media
            assert set(media["relays"]) == {"bridges", "mixer_members"}, media

        # The live feed: signed in by cookie (EventSource sends no headers), the call is in
        # the first snapshot, and a snapshot without it follows the hangup.
        signed = await http.post("/dashboard/session", headers=bearer(admin))
        assert signed.status_code == 200, signed.text
        assert "httponly" in signed.headers["set-cookie"].lower()
        feed = snapshots(http)
        first = await anext(feed)
        assert call_of(first, out.id) is not None
        await out.hangup()
        await inc.wait_for("ended", timeout=5)
        async with asyncio.timeout(5):
            async for later in feed:
                if call_of(later, out.id) is None:
                    break
        await feed.aclose()
        # ... and the ended call is among the recent CDRs.
        after = (await http.get("/dashboard/state", headers=bearer(admin))).json()
        assert any(c["call_id"] == out.id for c in after["cdrs"]), after["cdrs"]


async def test_who_may_read_the_dashboard(server: Server, store: Store, party: MakeParty) -> None:
    other = await store.create_account("dashboard-other")
    other_key = await store.create_api_key("other", account_id=other.id, scope="read")
    alice, bob = await party(ALICE), await party(BOB)
    out, inc = await connect(alice, bob)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        anonymous = await http.get("/dashboard/state")
        wrong = await http.get("/dashboard/state", headers=bearer("KEYnope"))
        malformed = await http.get("/dashboard/state", headers={"authorization": "Basic x"})
        no_cookie = await http.get("/dashboard/events")
        http.cookies.set("callbridge_dashboard", "gone")
        stale = await http.get("/dashboard/events")
        http.cookies.clear()
        sign_in = await http.post("/dashboard/session")
        theirs = await http.get("/dashboard/state", headers=bearer(other_key))
    assert anonymous.status_code == 401
    assert "POST /dashboard/session" in anonymous.json()["errors"][0]["detail"]
    assert wrong.status_code == 401
    assert "unknown or revoked" in wrong.json()["errors"][0]["detail"]
    assert malformed.status_code == 401
    assert "Bearer" in malformed.json()["errors"][0]["detail"]
    assert no_cookie.status_code == 401
    assert stale.status_code == 401
    assert "sign in again" in stale.json()["errors"][0]["detail"]
    assert sign_in.status_code == 401
    # Another account's key: its own (empty) account, none of the default account's calls,
    # devices or CDRs, and not the shared webhook outbox.
    assert theirs.status_code == 200, theirs.text
    state = theirs.json()
    assert state["account"] == other.id
    assert state["calls"] == [] and state["devices"] == [] and state["cdrs"] == []
    assert state["webhooks"] is None and state["media"] is None  # the server's own
    await out.hangup()
    await inc.wait_for("ended", timeout=5)


async def test_a_revoked_key_signs_the_dashboard_out(server: Server, store: Store) -> None:
    admin = await store.create_api_key("dashboard-revoker", admin=True)
    key = await store.create_api_key("dashboard-revoked", scope="read")
    principal = await store.check_api_key(key)
    assert principal is not None
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        assert (await http.post("/dashboard/session", headers=bearer(key))).status_code == 200
        assert (await http.get("/dashboard/state")).status_code == 200  # by the cookie
        revoked = await http.delete(f"/v2/api_keys/{principal.key_id}", headers=bearer(admin))
        assert revoked.status_code == 200, revoked.text
        refused = await http.get("/dashboard/state")
    assert refused.status_code == 401
    assert "unknown or revoked" in refused.json()["errors"][0]["detail"]


async def answered_by_app(api: Api, p: Party, line: str) -> str:
    call = await p.call(line)
    initiated = await api.sink.wait("call.initiated", call_control_id=call.id)
    ccid: str = initiated.payload["call_control_id"]
    await api.client.calls.actions.answer(ccid)
    await call.wait_for("answered", timeout=5)
    return ccid


async def test_conferences_with_their_talker_and_queues_with_their_callers(
    api: Api, party: MakeParty
) -> None:
    line = await api.line()
    alice, bob, carol = await party(ALICE), await party(BOB), await party(CAROL)
    a, b, c = [await answered_by_app(api, p, line) for p in (alice, bob, carol)]
    made = await api.client.conferences.create(call_control_id=a, name="dash-standup")
    assert made.data is not None
    await api.client.conferences.actions.join(made.data.id, call_control_id=b)
    await api.client.calls.actions.enqueue(c, queue_name="dash-support")
    await api.sink.wait("call.enqueued", call_control_id=c)
    key = str(api.client.api_key)  # the application's account (default), not an admin key
    async with httpx.AsyncClient(base_url=api.http, timeout=10) as http:

        async def talking() -> dict[str, Any] | None:
            state = (await http.get("/dashboard/state", headers=bearer(key))).json()
            conf = next(x for x in state["conferences"] if x["name"] == "dash-standup")
            return state if any(m["talking"] for m in conf["members"]) else None

        # Both send a steady tone: the mixer's floor goes to one of them within moments.
        state = await until_async(talking, within=5)
    assert state["account"] == "default" and state["webhooks"] is None
    conf = next(x for x in state["conferences"] if x["name"] == "dash-standup")
    assert {m["call_id"] for m in conf["members"]} == {a, b}
    assert conf["talking"] in {m["key"] for m in conf["members"]}
    assert sum(m["talking"] for m in conf["members"]) == 1
    queue = next(q for q in state["queues"] if q["name"] == "dash-support")
    assert [(w["call_control_id"], w["position"]) for w in queue["waiting"]] == [(c, 1)]
    assert queue["waiting"][0]["from"] == carol.user.number
    calls = {x["id"]: x for x in state["calls"]}
    assert calls[c]["queue"] == "dash-support" and calls[c]["application"] == "test app"
    assert calls[a]["conference"] == "dash-standup", calls[a]
    for ccid in (a, b, c):
        await api.client.calls.actions.hangup(ccid)
    await api.sink.wait("call.hangup", call_control_id=c)


def run_scenario(inner: float) -> dict[str, Any]:
    """Run dashboard_scenario.py in a loopback-only namespace; its ``RESULT``, parsed."""
    _preflight()
    command = [sys.executable, str(SCENARIO), "--timeout", str(inner), "--shots", str(SHOTS)]
    inner_cmd = "ip link set lo up && exec " + shlex.join(command)
    cmd = ["unshare", "--net", "--pid", "--fork", "--kill-child", "--", "sh", "-c", inner_cmd]
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=inner + 15, check=False
        )
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        pytest.fail(f"dashboard_scenario was killed after {inner + 15} s\n{err}", pytrace=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        pytest.fail(
            f"dashboard_scenario printed no RESULT (exit {proc.returncode})\n"
            f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}",
            pytrace=False,
        )
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    return result


@pytest.mark.timeout(75)
def test_the_page_shows_a_live_call_and_drops_it_when_it_ends() -> None:
    r = run_scenario(50)
    shown = json.dumps(r, indent=1, default=str)[-8000:]
    assert r["error"] is None, f"the scenario failed:\n{r['error']}\n{shown}"
    assert r["interfaces"] == ["lo"], "not in a loopback-only namespace"
    s = r["steps"]
    assert s["refused"]["error"] and "unknown or revoked" in s["refused"]["error"], s["refused"]
    assert s["signed_in"]["status"].startswith("Live"), s["signed_in"]
    live = s["call_live"]
    [row] = [r for r in live["calls"] if "alice" in r[0]]
    assert "bob" in row[1] and row[2] == "answered", row
    # carol's and dave's legs in the conference are calls too (each has its CDR).
    in_room = sorted(r[0] for r in live["calls"] if r[5] == "conf Standup")
    assert len(in_room) == 2 and "carol" in in_room[0] and "dave" in in_room[1], live
    assert {"alice", "bob", "carol", "dave"} <= set(live["devices"]), live
    # The media workers' panel (an admin key): one row per worker, each up.
    assert live["media"] and all(row[1] == "up" for row in live["media"]), live["media"]
    [room] = live["conferences"]
    assert room["title"].startswith("Standup"), room
    assert any("Dave Brown" in m for m in room["members"]), room
    assert len(room["talking"]) == 1, room  # the mixer's floor: one talker
    ended = s["call_ended"]
    assert not [r for r in ended["calls"] if "alice" in r[0]], ended
    assert ended["cdrs"] and "alice" in ended["cdrs"][0][1], ended
    assert s["conference_ended"]["conferences"] == [], s["conference_ended"]
    assert not r["console_errors_while_up"], r["console_errors_while_up"]
    # Stopped with the feed open: the drain ended the stream (uvicorn would otherwise wait 5 s
    # for it, then cancel it with a traceback in the log).
    assert r["stop_returncode"] == 0 and r["stop_secs"] < 4, r["stop_secs"]
    assert r["server_traceback"] is False, r["server_log_tail"]
