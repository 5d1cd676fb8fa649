"""Find-me/follow-me (issue 16) against the real server: a user's forwarding rules decide how
long their devices ring and where an unanswered call goes.

A module-scoped ``callbridge serve`` with SIP (for the SIPp carrier of the outside-number
steps); each test makes its own users. Callers and callees are aiortc ``Phone``s; where a call
is answered, the caller hears the callee's tone (analysed). Steps are 1-2 s so the suite
stays short.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from api_helpers import speech_heard
from callbridge.cli import main
from callbridge.client import BufferSink, Phone, ToneSource
from callbridge.errors import RemoteError
from callbridge.forwarding import parse_forwarding
from callbridge.testing import tone_level_db
from callbridge.testing.server import Server, create_user, running
from sip_peers import missing_tools
from trunk_helpers import TONE as TRUNK_TONE
from trunk_helpers import add_route, add_trunk, sipp_carrier, telnyx_app

sipp_only = pytest.mark.skipif(bool(missing_tools()), reason="needs sipp")

TONE = 1200.0
_n = itertools.count(1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(tmp_path_factory.mktemp("followme"), sip_port=True, ring_timeout=6.0) as srv:
        yield srv


async def _users(server: Server, count: int) -> list[str]:
    names = []
    async with server.store() as store:
        for _ in range(count):
            n = next(_n)
            user = await create_user(store, f"fm{n}", str(7000 + n), ttl=timedelta(hours=1))
            names.append(user.name)
    return names


async def _phone(server: Server, name: str, phones: list[Phone]) -> Phone:
    phone = Phone(server.ws_url, await server.token(name))
    await phone.login()
    phones.append(phone)
    return phone


async def _rules(server: Server, name: str, raw: dict[str, Any]) -> None:
    async with server.store() as store:
        await store.set_forwarding(name, parse_forwarding(raw))


def _answer_with_tone(phone: Phone, answered: list[Any]) -> None:
    async def answer(call: Any) -> None:
        answered.append(call)
        await call.answer(source=ToneSource(TONE), sink=BufferSink())

    phone.on("incoming", answer)


async def _steps_of(server: Server, callee: str, limit: float = 10.0) -> Any:
    async with asyncio.timeout(limit):
        while True:
            async with server.store() as store:
                cdrs = await store.list_cdrs(200)
            for cdr in cdrs:
                if cdr.destination == callee and cdr.ended_at is not None:
                    return cdr
            await asyncio.sleep(0.1)


async def test_a_second_step_rings_another_user_who_answers_and_is_heard(
    server: Server, phones: list[Phone]
) -> None:
    """alice: her devices for 1 s, then bob for 5 s. alice's phone rings and is ignored; bob's
    rings after the first step, answers with a tone, and the caller hears it; the caller got
    ``call.ringing`` once per step."""
    alice, bob, carol = await _users(server, 3)
    first, second = {"targets": ["devices"], "seconds": 1}, {"targets": [f"user:{bob}"]}
    await _rules(server, alice, {"steps": [first, {**second, "seconds": 5}]})
    alice_phone = await _phone(server, alice, phones)
    rung_alice: list[Any] = []
    alice_phone.on("incoming", rung_alice.append)
    answered: list[Any] = []
    _answer_with_tone(await _phone(server, bob, phones), answered)
    caller = await _phone(server, carol, phones)
    sink = BufferSink()
    call = await caller.call(alice, source=ToneSource(440.0), sink=sink)
    ringing: list[Any] = []
    call.on("ringing", lambda: ringing.append(1))
    await call.wait_for("answered", timeout=10)
    await asyncio.sleep(1.0)  # the measurement: bob's tone
    heard = sink.samples(0.8)
    await call.hangup()
    assert len(rung_alice) == 1 and rung_alice[0].end_reason == "no-answer"
    assert len(answered) == 1
    assert len(ringing) >= 1  # the second step's call.ringing (the first may precede on())
    assert tone_level_db(heard, 48000, TONE) > -35.0, "the caller did not hear bob"


async def test_busy_goes_where_the_rules_say_and_dnd_goes_straight_to_the_next_step(
    server: Server, phones: list[Phone]
) -> None:
    """dave says busy: his ``on_busy`` rings erin, who answers (heard). frank is on DND: his
    phone never rings, the call goes straight to his next step (erin again); the CDR lists
    both steps; a conference invitation to frank is refused (DND) without ringing him."""
    dave, erin, frank, caller_name = await _users(server, 4)
    await _rules(server, dave, {"ring_seconds": 5, "on_busy": f"user:{erin}"})
    steps = [{"targets": ["devices"], "seconds": 5}, {"targets": [f"user:{erin}"], "seconds": 5}]
    await _rules(server, frank, {"dnd": True, "steps": steps})
    dave_phone = await _phone(server, dave, phones)

    async def busy(call: Any) -> None:
        await call.reject("busy")

    dave_phone.on("incoming", busy)
    frank_rung: list[Any] = []
    (await _phone(server, frank, phones)).on("incoming", frank_rung.append)
    answered: list[Any] = []
    _answer_with_tone(await _phone(server, erin, phones), answered)
    caller = await _phone(server, caller_name, phones)
    for callee in (dave, frank):
        sink = BufferSink()
        call = await caller.call(callee, source=ToneSource(440.0), sink=sink)
        await call.wait_for("answered", timeout=10)
        await asyncio.sleep(0.8)  # the measurement: erin's tone
        heard = sink.samples(0.6)
        await call.hangup()
        assert tone_level_db(heard, 48000, TONE) > -35.0, f"{callee}: erin was not heard"
    assert len(answered) == 2 and frank_rung == []
    cdr = await _steps_of(server, frank)
    assert cdr.answered_user == erin, cdr
    assert cdr.forwarding is not None, cdr
    assert [(s["step"], s["outcome"], s["answered_by"]) for s in cdr.forwarding] == [
        (1, "dnd", None), (2, "answered", erin)]  # fmt: skip
    assert cdr.forwarding[1]["targets"] == [f"user:{erin}"], cdr.forwarding
    # A conference invitation follows the rules too: nothing of frank's rings on DND.
    await caller.start_conference(source=ToneSource(440.0), sink=BufferSink())
    with pytest.raises(RemoteError, match="do-not-disturb"):
        await caller.add_participant(frank)
    assert frank_rung == []


async def test_every_device_offline_ends_failed_and_no_answer_ends_no_answer(
    server: Server, phones: list[Phone]
) -> None:
    """gina has no device and no other step: the call fails at once (as without rules). henry's
    one step is his own phone for 1 s, then ``end``: the caller's call ends ``no-answer``
    after about a second, not the server's 6 s."""
    gina, henry, caller_name = await _users(server, 3)
    await _rules(server, gina, {"ring_seconds": 2, "on_no_answer": "end:busy"})
    await _rules(server, henry, {"ring_seconds": 1, "on_no_answer": "end"})
    (await _phone(server, henry, phones)).on("incoming", lambda call: None)
    caller = await _phone(server, caller_name, phones)
    with pytest.raises(RemoteError, match=r"destination_not_found: .* has no device to ring"):
        await caller.call(gina, source=ToneSource(440.0), sink=BufferSink())
    started = asyncio.get_running_loop().time()
    call = await caller.call(henry, source=ToneSource(440.0), sink=BufferSink())
    await call.wait_for("ended", timeout=5)
    took = asyncio.get_running_loop().time() - started
    assert call.end_reason == "no-answer", call.end_reason
    assert took < 4.0, took


async def test_a_user_changes_their_own_forwarding_from_the_sdk_and_another_user_cannot(
    server: Server, phones: list[Phone]
) -> None:
    """ivy sets her rules and DND from the Python SDK (``forwarding.set``/``.dnd``) and reads
    them back; jack's session changes only jack's (no message names a user), a bad rule is a
    specific error, and REST with another account's key finds no such credential."""
    ivy, jack = await _users(server, 2)
    ivy_phone = await _phone(server, ivy, phones)
    jack_phone = await _phone(server, jack, phones)
    rules = await ivy_phone.set_forwarding(
        ring_seconds=15,
        steps=[{"targets": ["devices"], "seconds": 15},
               {"targets": [{"type": "number", "value": "+15550100", "screening": True}]}],
        on_busy="next",
    )  # fmt: skip
    assert rules.ring_seconds == 15 and len(rules.steps) == 2
    assert rules.steps[1].targets[0].screening is True
    assert (await ivy_phone.set_dnd(True)).dnd is True
    assert (await ivy_phone.get_forwarding()) == rules.__class__(**{**_fields(rules), "dnd": True})
    await jack_phone.set_dnd(True)
    await jack_phone.set_forwarding(steps=[])
    async with server.store() as store:
        assert (await store.get_forwarding(ivy)).steps == rules.steps  # untouched by jack
        assert (await store.get_forwarding(jack)).dnd is True
    with pytest.raises(RemoteError, match=r"invalid_message: forwarding\.set: invalid on_busy"):
        await ivy_phone.set_forwarding(on_busy="somewhere")
    with pytest.raises(RemoteError, match=r"step 1: .*takes the call at once"):
        await ivy_phone.set_forwarding(steps=[{"targets": ["devices", "queue:sales"]}])
    # REST: the account's key reads and changes them; Telnyx's call_forwarding shorthand.
    key = await server.api_key()
    async with server.store() as store:
        ivy_id = (await store.get_user(ivy)).id  # type: ignore[union-attr]
        other = await store.create_account("other-fm")
        other_key = await store.create_api_key("x", account_id=other.id)
    url = f"{server.url}/v2/telephony_credentials/{ivy_id}/forwarding"
    async with httpx.AsyncClient() as http:
        got = await http.get(url, headers={"Authorization": f"Bearer {key}"})
        assert got.status_code == 200 and got.json()["data"]["dnd"] is True, got.text
        forwarded = await http.patch(url, headers={"Authorization": f"Bearer {key}"}, json={
            "call_forwarding": {"call_forwarding_enabled": True, "forwards_to": "+15550199",
                                "forwarding_type": "on-failure"}})  # fmt: skip
        data = forwarded.json()["data"]
        assert data["steps"][1]["targets"] == [
            {"type": "number", "value": "+15550199", "screening": False}
        ], data
        bad = await http.patch(url, headers={"Authorization": f"Bearer {key}"},
                               json={"steps": [{"targets": ["user:"]}]})  # fmt: skip
        assert bad.status_code == 422 and "step 1 target 1" in bad.text, bad.text
        assert bad.json()["errors"][0]["source"]["pointer"] == "/steps/0/targets/0", bad.text
        foreign = await http.get(url, headers={"Authorization": f"Bearer {other_key}"})
        assert foreign.status_code == 404, foreign.text


def _fields(rules: Any) -> dict[str, Any]:
    return {name: getattr(rules, name) for name in rules.__dataclass_fields__}


@sipp_only
async def test_an_outside_number_step_with_screening_accepted_by_dtmf_and_refused_by_timeout(
    server: Server, tmp_path: Path, phones: list[Phone]
) -> None:
    """kate's one step is her mobile through a SIPp carrier, screened. carrier_screen_accept:
    answers, presses 1 (INFO) after 1 s: the caller is connected and hears its own tone
    echoed by the carrier. carrier_echo: answers and never presses 1: after the screening
    time it gets a BYE and the caller's call ends ``no-answer``. The CDR lists the step."""
    kate, caller_name = await _users(server, 2)
    caller = await _phone(server, caller_name, phones)
    for scenario, prefix, accepted in (
        ("carrier_screen_accept.xml", "+1555610", True),
        ("carrier_echo.xml", "+1555620", False),
    ):
        carrier = sipp_carrier(tmp_path / scenario, scenario)
        trunk = await add_trunk(server, carrier.port)
        await add_route(server, prefix, trunk)
        number = f"{prefix}0001"
        step = {"targets": [{"type": "number", "value": number, "screening": True}]}
        await _rules(server, kate, {"ring_seconds": 5, "steps": [step]})
        sink = BufferSink()
        async with carrier:
            call = await caller.call(kate, source=ToneSource(TRUNK_TONE), sink=sink)
            if accepted:
                await call.wait_for("answered", timeout=10)
                await asyncio.sleep(1.5)  # the measurement: our tone echoed by the carrier
                heard = sink.samples(1.0)
                await call.hangup()
            else:
                await call.wait_for("ended", timeout=15)
            result = await carrier.wait(15)
        assert result.ok and result.successful == 1, result.explain()
        if accepted:
            assert tone_level_db(heard, 48000, TRUNK_TONE) > -35.0, "no audio from the mobile"
        else:
            assert call.end_reason == "no-answer", call.end_reason
            assert "BYE" in result.messages


def test_the_cli_sets_shows_and_refuses_forwarding_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``callbridge forwarding set|dnd|show``: a mobile as a screened last step, DND, JSON
    output; a bad action is one line naming the field, exit 2."""
    base = ["--data-dir", str(tmp_path)]
    assert main(["users", "add", "lena", "--extension", "381", *base, "--init"]) == 0
    steps = ["--step", "devices@15", "--step", "number:+14155550100!@25"]
    assert main(["forwarding", "set", "lena", *steps, "--on-busy", "next", *base]) == 0
    assert main(["forwarding", "dnd", "lena", "on", *base]) == 0
    capsys.readouterr()
    assert main(["forwarding", "show", "lena", "--json", *base]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["dnd"] is True and shown["steps"][1] == {
        "targets": [{"type": "number", "value": "+14155550100", "screening": True}],
        "seconds": 25,
    }, shown
    assert main(["forwarding", "set", "lena", "--on-no-answer", "voicemail", *base]) == 2
    assert "invalid on_no_answer 'voicemail'" in capsys.readouterr().err


async def test_an_application_dial_follows_the_rules_and_reports_the_new_step_as_a_webhook(
    server: Server, phones: list[Phone]
) -> None:
    """mia is on DND with a second step to noah. A REST dial to mia (the telnyx SDK) never
    rings her phone: noah rings, answers and hears what the application speaks; the
    application gets ``call.forwarded`` (step 2, ``user:noah``, reason ``dnd``) between
    ``call.initiated`` and ``call.answered``."""
    mia, noah = await _users(server, 2)
    steps = [{"targets": ["devices"], "seconds": 5}, {"targets": [f"user:{noah}"], "seconds": 5}]
    await _rules(server, mia, {"dnd": True, "steps": steps})
    mia_rung: list[Any] = []
    (await _phone(server, mia, phones)).on("incoming", mia_rung.append)
    noah_sink = BufferSink()

    async def answer(call: Any) -> None:
        await call.answer(source=ToneSource(TONE), sink=noah_sink)

    (await _phone(server, noah, phones)).on("incoming", answer)
    async with telnyx_app(server) as (client, sink, app_id):
        async with server.store() as store:  # once the account has trunks, a user's own
            shown = (await store.get_user(noah)).extension  # type: ignore[union-attr]
        dialled = await client.calls.dial(connection_id=app_id, to=mia, from_=shown)
        assert dialled.data is not None
        ccid = dialled.data.call_control_id
        forwarded = await sink.wait("call.forwarded", call_control_id=ccid)
        await sink.wait("call.answered", call_control_id=ccid)
        await client.calls.actions.speak(ccid, payload="Your order has shipped.", voice="female")
        heard = await speech_heard(noah_sink)
        await client.calls.actions.hangup(ccid)
        await sink.wait("call.hangup", call_control_id=ccid)
    payload = forwarded.payload
    assert (payload["user"], payload["step"], payload["reason"]) == (mia, 2, "dnd"), payload
    assert payload["targets"] == [f"user:{noah}"] and payload["ring_seconds"] == 5, payload
    assert sink.types(ccid)[:3] == ["call.initiated", "call.forwarded", "call.answered"]
    assert mia_rung == [] and heard, "noah did not hear the application"


@sipp_only
async def test_a_dial_plan_rule_to_a_trunk_reaches_the_carrier_and_the_caller_hears_it(
    server: Server, tmp_path: Path, phones: list[Phone]
) -> None:
    """``77*`` strip 2, prepend +1555640, to a trunk: a ``/ws`` caller dialling 770001 goes
    out as +15556400001 to a SIPp carrier that echoes; the caller hears its own tone."""
    (caller_name,) = await _users(server, 1)
    caller = await _phone(server, caller_name, phones)
    carrier = sipp_carrier(tmp_path / "echo", "carrier_echo.xml")
    trunk = await add_trunk(server, carrier.port)
    await add_route(server, "+1555640", trunk)
    async with server.store() as store:
        await store.add_dial_rule("default", "77*", "trunk", strip=2, prepend="+1555640")
    sink = BufferSink()
    async with carrier:
        call = await caller.call("770001", source=ToneSource(TRUNK_TONE), sink=sink)
        await call.wait_for("answered", timeout=10)
        await asyncio.sleep(1.5)  # the measurement: our tone echoed by the carrier
        heard = sink.samples(1.0)
        await call.hangup()
        result = await carrier.wait(15)
    assert result.ok and result.successful == 1, result.explain()
    assert "+15556400001" in result.messages, "the number was not rewritten"
    assert tone_level_db(heard, 48000, TRUNK_TONE) > -35.0, "no audio through the trunk"


async def test_a_forwarded_outside_call_counts_against_the_forwarding_users_limits(
    server: Server, phones: list[Phone]
) -> None:
    """With the account's ``user_max_calls`` at 0, olga's step to an outside number is refused
    by the toll-fraud policy as olga's own call (``user:olga``; an application would pass):
    nothing else to ring, so the caller's call fails."""
    olga, caller_name = await _users(server, 2)
    trunk = await add_trunk(server, 9)  # never reached: the policy refuses first
    await add_route(server, "+1555660", trunk)
    await _rules(server, olga, {"steps": [{"targets": ["number:+15556600001"]}]})
    caller = await _phone(server, caller_name, phones)
    async with server.store() as store:
        await store.set_dial_policy("default", user_max_calls=0)
    try:
        with pytest.raises(RemoteError, match="destination_not_found"):
            await caller.call(olga, source=ToneSource(440.0), sink=BufferSink())
    finally:
        async with server.store() as store:
            await store.set_dial_policy("default", user_max_calls=2)
    refused = [line for line in server.log().splitlines() if "toll-fraud refused" in line]
    assert any(f"placer=user:{olga}" in line and "too_many_calls" in line for line in refused)
