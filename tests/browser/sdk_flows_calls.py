# ruff: noqa: E501 - JavaScript run in the page reads best unwrapped
"""Seed 001 flows of the callbridge-web SDK in Chromium (run by ``sdk_scenario.py``).

Each flow returns what it observed; ``tests/test_web_sdk.py`` asserts on it. Flows raise
(with what went wrong) when a step cannot go on.
"""

from __future__ import annotations

import asyncio
from typing import Any

from browser.sdk_harness import Flow, Kit, until

LISTEN = "l => kit.listen(kit.calls[l].remoteStream, 1200, [440, 660, 820, 1000, 1500])"


async def browser_calls_python(kit: Kit) -> dict[str, Any]:
    """alice (browser) calls bob (Python): audio both ways, insertDTMF on
    call.peerConnection, hold / resume, server-authoritative mute, hangup."""
    bob = await kit.party("bob")
    page = await kit.page("alice")
    out: dict[str, Any] = {}
    out["placed"] = await kit.js(
        page,
        """async dest => {
            const phone = kit.phones.alice;
            const call = await phone.call(dest, {callerId: '+14155550201'});
            kit.keep('c', call, 'alice');
            const ringingOrAnswered = new Promise(r => { call.on('answered', () => r('answered')); });
            const state = await Promise.race([ringingOrAnswered, kit.sleep(10000).then(() => 'timeout')]);
            return {id: call.id, state, active: phone.activeCalls.map(c => c.toJSON()),
                    same: phone.getCall(call.id) === call, direction: call.direction};
        }""",
        kit.ext("bob"),
    )
    call = await bob.wait_call()
    out["bob_call"] = {"from": call.from_, "to": call.to}
    await asyncio.sleep(0.5)
    out["browser_hears"], out["bob_hears"] = await asyncio.gather(
        kit.js(page, LISTEN, "c"), bob.hears()
    )
    # Seed 001, DTMF: the RTCDTMFSender of the audio sender of call.peerConnection.
    out["dtmf"] = await kit.js(
        page,
        """async () => {
            const call = kit.calls.c;
            const sender = call.peerConnection.getSenders().find((s) => s.track && s.track.kind === 'audio');
            const tones = [];
            const done = new Promise(r => { sender.dtmf.ontonechange = e => { tones.push(e.tone); if (e.tone === '') r(); }; });
            sender.dtmf.insertDTMF('1234#');
            await done;
            return {tones, canInsert: sender.dtmf.canInsertDTMF};
        }""",
    )
    await until(lambda: len(bob.dtmf) >= 5, 5, "5 digits at bob")
    await asyncio.sleep(0.5)  # a duplicate would arrive by now
    out["bob_dtmf"] = list(bob.dtmf)
    # Hold and resume: bob is told (by remote), the call's state follows.
    out["hold"] = await kit.js(
        page,
        """async () => {
            const call = kit.calls.c;
            await call.hold();
            await kit.until(() => call.state === 'held', 5000, 'held state');
            const heldBy = call.heldBy;
            await call.resume();
            await kit.until(() => call.state === 'active', 5000, 'active state');
            return {heldBy, state: call.state};
        }""",
    )
    out["bob_held"] = list(bob.held)
    # Server-authoritative mute: the page keeps sending its tone, the server drops it.
    out["mute"] = await kit.js(
        page,
        "async () => { await kit.calls.c.mute({keepSending: true}); "
        "return {isMuted: kit.calls.c.isMuted, trackEnabled: kit.calls.c.localStream.getAudioTracks()[0].enabled}; }",
    )
    await asyncio.sleep(0.4)
    out["bob_hears_muted"] = await bob.hears()
    out["unmute"] = await kit.js(
        page, "async () => { await kit.calls.c.unmute(); return kit.calls.c.isMuted; }"
    )
    await asyncio.sleep(0.4)
    out["bob_hears_unmuted"] = await bob.hears()
    out["hangup"] = await kit.js(
        page,
        """async () => { const call = kit.calls.c; await call.hangup();
            return {state: call.state, reason: call.endReason, pc: call.peerConnection.signalingState,
                    active: kit.phones.alice.activeCalls.length}; }""",
    )
    await asyncio.wait_for(call.wait_for("ended", timeout=5), 6)
    out["bob_ended"] = call.end_reason
    return out


async def python_calls_browser(kit: Kit) -> dict[str, Any]:
    """bob (Python) calls alice (browser) three times: reject('busy'), reject(), answer."""
    bob = await kit.party("bob")
    page = await kit.page("alice")
    await kit.js(
        page,
        """() => { kit.incoming = [];
            kit.phones.alice.on('incoming', call => { kit.incoming.push(call);
              call.info = {id: call.id, from: call.from, fromName: call.fromName, to: call.to,
                           state: call.state, direction: call.direction}; }); }""",
    )
    out: dict[str, Any] = {"calls": []}
    for action in ("reject('busy')", "reject()", "answer()"):
        call = await bob.phone.call(kit.users["alice"].number or "", source=None, sink=bob.sink)
        n = len(out["calls"]) + 1
        info = await kit.js(
            page,
            f"""async () => {{ await kit.until(() => kit.incoming.length >= {n}, 8000, 'incoming');
                const call = kit.incoming[{n - 1}]; kit.keep('in{n}', call);
                await call.{action};
                return call.info; }}""",
        )
        if action == "answer()":
            await call.wait_for("answered", timeout=5)
            out["answered_state"] = await kit.js(page, f"() => kit.calls.in{n}.state")
            await call.hangup()
            out["browser_end"] = await kit.js(
                page,
                f"async () => {{ const c = kit.calls.in{n}; await kit.until(() => c.state === 'ended', 5000, 'ended'); return c.endReason; }}",
            )
        else:
            await call.wait_for("ended", timeout=5)
        out["calls"].append({"info": info, "caller_end": call.end_reason})
    return out


async def browser_calls_browser(kit: Kit) -> dict[str, Any]:
    """alice and carol, both browsers: audio both ways, hold seen by the far page."""
    alice = await kit.page("alice")
    carol = await kit.page("carol")
    await kit.js(
        carol,
        "() => kit.phones.carol.on('incoming', async call => { kit.keep('c', call); await call.answer(); })",
    )
    await kit.js(
        alice,
        "async dest => { const call = await kit.phones.alice.call(dest); kit.keep('c', call, 'alice');"
        " await call.waitFor('answered', 10000); await call.media.waitConnected(); return call.id; }",
        kit.ext("carol"),
    )
    await kit.js(
        carol,
        "() => kit.until(() => kit.calls.c && kit.calls.c.state === 'active', 5000, 'answer')",
    )
    await asyncio.sleep(0.5)
    out: dict[str, Any] = {}
    out["alice_hears"], out["carol_hears"] = await asyncio.gather(
        kit.js(alice, LISTEN, "c"), kit.js(carol, LISTEN, "c")
    )
    await kit.js(alice, "() => kit.calls.c.hold()")
    out["carol_held"] = await kit.js(
        carol,
        "async () => { const c = kit.calls.c; await kit.until(() => c.state === 'held', 5000, 'held'); return c.heldBy; }",
    )
    await kit.js(alice, "() => kit.calls.c.resume()")
    out["carol_resumed"] = await kit.js(
        carol,
        "() => kit.until(() => kit.calls.c.state === 'active', 5000, 'resumed').then(() => true)",
    )
    await kit.js(carol, "() => kit.calls.c.hangup()")
    out["alice_end"] = await kit.js(
        alice,
        "async () => { await kit.calls.c.waitFor('ended', 5000); return kit.calls.c.endReason; }",
    )
    return out


FLOWS: dict[str, Flow] = {
    "browser_calls_python": browser_calls_python,
    "python_calls_browser": python_calls_browser,
    "browser_calls_browser": browser_calls_browser,
}
