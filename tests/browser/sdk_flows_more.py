# ruff: noqa: E501 - JavaScript run in the page reads best unwrapped
"""More flows of the callbridge-web SDK in Chromium: transfers, call waiting and swap,
reconnect, seed 002 conferences and seed 000's call group (see sdk_flows_calls.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from browser.sdk_harness import Flow, Kit, until

CALL = """async ([label, dest]) => { const call = await kit.phones.alice.call(dest); kit.keep(label, call, 'alice');
    await call.waitFor('answered', 10000); await call.media.waitConnected(); return call.id; }"""


async def blind_transfer(kit: Kit) -> dict[str, Any]:
    """alice (browser) calls bob, transfers him to carol (both Python): bob hears carol."""
    bob, carol = await kit.party("bob"), await kit.party("carol")
    page = await kit.page("alice")
    await kit.js(page, CALL, ["c", kit.ext("bob")])
    await bob.wait_call()
    out: dict[str, Any] = {}
    out["alice_end"] = await kit.js(
        page,
        "async dest => { const c = kit.calls.c; await c.transfer(dest); await c.waitFor('ended', 10000); return c.endReason; }",
        kit.ext("carol"),
    )
    await carol.wait_call()
    await until(lambda: bob.calls[0].state == "active", 10, "bob connected to carol")
    await asyncio.sleep(0.5)
    out["bob_hears"] = await bob.hears()
    return out


async def attended_transfer(kit: Kit) -> dict[str, Any]:
    """Seed 001's attended transfer: consult carol while bob waits held, then connect them."""
    bob, carol = await kit.party("bob"), await kit.party("carol")
    page = await kit.page("alice")
    await kit.js(page, CALL, ["c", kit.ext("bob")])
    await bob.wait_call()
    out: dict[str, Any] = {}
    out["consult"] = await kit.js(
        page,
        """async dest => { const call = kit.calls.c;
            const consult = await call.attendedTransfer(dest); kit.keep('consult', consult, 'alice');
            await consult.waitFor('answered', 10000);
            const held = call.state;
            await call.completeTransfer();
            await call.waitFor('ended', 10000); await consult.waitFor('ended', 10000);
            return {held, ends: [call.endReason, consult.endReason]}; }""",
        kit.ext("carol"),
    )
    out["bob_held"] = list(bob.held)
    await asyncio.sleep(0.8)
    out["bob_hears"], out["carol_hears"] = await asyncio.gather(bob.hears(), carol.hears())
    return out


async def waiting_and_swap(kit: Kit) -> dict[str, Any]:
    """Call waiting: bob calls alice, then carol does; alice holds bob, answers carol, swaps."""
    bob = await kit.party("bob", auto_answer=False)
    carol = await kit.party("carol", auto_answer=False)
    page = await kit.page("alice")
    await kit.js(
        page,
        "() => { kit.waiting = []; kit.phones.alice.on('incoming', call => kit.waiting.push({id: call.id, active: kit.phones.alice.activeCalls.length, from: call.from})); }",
    )
    from callbridge.client import ToneSource

    b = await bob.phone.call(kit.ext("alice"), source=ToneSource(1000.0), sink=bob.sink)
    await kit.js(
        page,
        "async () => { await kit.until(() => kit.phones.alice.activeCalls.length === 1, 8000, 'call 1');"
        " const c = kit.phones.alice.activeCalls[0]; kit.keep('b', c); await c.answer(); }",
    )
    await b.wait_for("answered", timeout=10)
    c = await carol.phone.call(kit.ext("alice"), source=ToneSource(660.0), sink=carol.sink)
    out: dict[str, Any] = {}
    out["swap1"] = await kit.js(
        page,
        """async () => { await kit.until(() => kit.waiting.length === 2, 8000, 'call 2');
            const waiting = kit.phones.alice.getCall(kit.waiting[1].id); kit.keep('c', waiting);
            await kit.calls.b.hold(); await waiting.answer();
            await waiting.media.waitConnected();
            return {waiting: kit.waiting, states: [kit.calls.b.state, waiting.state]}; }""",
    )
    await c.wait_for("answered", timeout=10)
    await asyncio.sleep(0.6)
    out["bob_hears_1"], out["carol_hears_1"] = await asyncio.gather(bob.hears(), carol.hears())
    out["swap2"] = await kit.js(
        page,
        "async () => { await kit.calls.c.hold(); await kit.calls.b.resume();"
        " return [kit.calls.b.state, kit.calls.c.state]; }",
    )
    await asyncio.sleep(0.6)
    out["bob_hears_2"], out["carol_hears_2"] = await asyncio.gather(bob.hears(), carol.hears())
    await b.hangup()
    await c.hangup()
    return out


async def reconnect(kit: Kit) -> dict[str, Any]:
    """The socket drops mid-call: connectivity-off, session.resume, connectivity-on; the call
    and its audio go on; a media restart keeps the audio."""
    bob = await kit.party("bob")
    page = await kit.page("alice")
    await kit.js(page, CALL, ["c", kit.ext("bob")])
    call = await bob.wait_call()
    out: dict[str, Any] = {}
    out["drop"] = await kit.js(
        page,
        """async () => { const p = kit.phones.alice; const off = p.waitFor('connectivity-off', 5000);
            const on = p.waitFor('connectivity-on', 15000); p.dropConnection();
            await off; await on; return {state: p.state, call: kit.calls.c.state}; }""",
    )
    await call.hold()
    out["held_after_resume"] = await kit.js(
        page,
        "async () => { await kit.until(() => kit.calls.c.state === 'held', 5000, 'held'); return kit.calls.c.heldBy; }",
    )
    await call.resume()
    out["restart"] = await kit.js(
        page,
        "async () => { await kit.until(() => kit.calls.c.state === 'active', 5000, 'resumed'); await kit.calls.c.restartMedia();"
        " await kit.calls.c.media.waitConnected(); return kit.calls.c.peerConnection.connectionState; }",
    )
    await asyncio.sleep(0.8)
    out["bob_hears"], out["alice_hears"] = await asyncio.gather(
        bob.hears(), kit.js(page, "() => kit.listen(kit.calls.c.remoteStream, 1200, [440, 1000])")
    )
    await kit.js(page, "() => kit.calls.c.hangup()")
    return out


async def conference(kit: Kit) -> dict[str, Any]:
    """Seed 002: alice hosts, invites carol (browser) who joins; both hear each other in the
    mix; getParticipants, removeParticipant, endConference."""
    alice = await kit.page("alice")
    carol = await kit.page("carol")
    await kit.js(
        carol,
        "() => kit.phones.carol.on('conference:invitation-received', async d => { kit.invite = {from: d.from, name: d.name, id: d.id}; await kit.phones.carol.joinConference(); kit.keep('conf', kit.phones.carol.conference.call); })",
    )
    out: dict[str, Any] = {}
    out["start"] = await kit.js(
        alice,
        """async dest => { const p = kit.phones.alice; const conf = await p.startConference({conferenceName: 'standup'});
            kit.keep('conf', conf.call); await p.addParticipant(dest);
            await p.waitFor('conference:invitation-accepted', 10000);
            await conf.call.media.waitConnected();
            return {name: conf.name, state: conf.state, participants: Object.keys(p.getParticipants())}; }""",
        kit.ext("carol"),
    )
    out["invite"] = await kit.js(
        carol,
        "async () => { await kit.until(() => kit.calls.conf, 8000, 'joined'); await kit.calls.conf.media.waitConnected(); return kit.invite; }",
    )
    await asyncio.sleep(0.6)
    listen = "() => kit.listen(kit.calls.conf.remoteStream, 1200, [440, 660, 1000])"
    out["alice_hears"], out["carol_hears"] = await asyncio.gather(
        kit.js(alice, listen), kit.js(carol, listen)
    )
    out["remove"] = await kit.js(
        alice,
        "async dest => { await kit.phones.alice.removeParticipant(dest); return Object.keys(kit.phones.alice.getParticipants()); }",
        kit.ext("carol"),
    )
    out["carol_end"] = await kit.js(
        carol,
        "async () => { await kit.calls.conf.waitFor('ended', 8000); return kit.calls.conf.endReason; }",
    )
    out["end"] = await kit.js(
        alice,
        "async () => { const p = kit.phones.alice; const c = p.conference; await p.endConference(); await c.call.waitFor('ended', 8000); return c.state; }",
    )
    return out


async def call_group(kit: Kit) -> dict[str, Any]:
    """Seed 000's conferenceGroup example, line by line (alice's browser; bob, dave and erin
    are Python phones that answer)."""
    bob, dave, erin = await kit.party("bob"), await kit.party("dave"), await kit.party("erin")
    page = await kit.page("alice")
    out: dict[str, Any] = await kit.js(
        page,
        """async ([number1, number2, number3]) => {
            const tel = kit.phones.alice;  // navigator.mozTelephony
            const ids = (calls) => calls.map(c => c.id);
            const seen = [];
            // Make two calls; assume they are both answered
            let call1, call2;
            await tel.dial(number1).then(call => call1 = call);
            await tel.dial(number2).then(call => call2 = call);
            await call1.waitFor('answered', 10000); await call2.waitFor('answered', 10000);
            // Add both calls to the conference call
            const conference = tel.conferenceGroup;
            conference.oncallschanged = () => seen.push('callschanged');
            conference.onstatechange = () => seen.push(`statechange:${conference.state}`);
            conference.onconnected = () => seen.push('connected');
            conference.onholding = () => seen.push('holding');
            conference.onheld = () => seen.push('held');
            conference.onresuming = () => seen.push('resuming');
            await conference.add(call1, call2);
            const step1 = {conference: ids(conference.calls), tel: ids(tel.calls), state: conference.state};
            // Make another call; this will appear in tel.calls, not conference.calls
            let call3;
            await tel.dial(number3).then(call => call3 = call);
            await call3.waitFor('answered', 10000);
            const step2 = {conference: ids(conference.calls), tel: ids(tel.calls)};
            // Add call3 to the conference; it will now appear in conference.calls too
            await conference.add(call3);
            const step3 = {conference: ids(conference.calls), tel: ids(tel.calls)};
            await conference.hold(); const heldState = conference.state;
            await conference.resume(); const resumedState = conference.state;
            // Remove call2 from the conference
            await conference.remove(call2);
            const step4 = {conference: ids(conference.calls), tel: ids(tel.calls)};
            // Hang up the entire conference call
            await conference.hangUp();
            const step5 = {conference: ids(conference.calls), tel: ids(tel.calls), state: conference.state};
            kit.keep('call2', call2);
            return {ids: ids([call1, call2, call3]), step1, step2, step3, step4, step5, heldState, resumedState, seen};
        }""",
        [kit.ext("bob"), kit.ext("dave"), kit.ext("erin")],
        within=40,
    )
    out["ends"] = {"bob": bob.ended, "dave": dave.ended, "erin": erin.ended}
    await kit.js(page, "() => kit.calls.call2.hangup()")
    return out


FLOWS: dict[str, Flow] = {
    "blind_transfer": blind_transfer,
    "attended_transfer": attended_transfer,
    "waiting_and_swap": waiting_and_swap,
    "reconnect": reconnect,
    "conference": conference,
    "call_group": call_group,
}
