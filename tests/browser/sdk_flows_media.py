# ruff: noqa: E501 - JavaScript run in the page reads best unwrapped
"""Media flows of the callbridge-web SDK in Chromium (run by ``sdk_scenario.py`` in the
``calls`` launch): seed 002 upgrade / downgrade with accept / reject, seed 002 ``move`` to
another device of the same user, ``preCallTest()`` and the ``LevelMeter``.

Video is Chromium's fake camera (``--use-fake-device-for-media-stream``); that it arrives is
read from the receiving page's ``getStats`` (``framesDecoded`` of its inbound video).
"""

from __future__ import annotations

import asyncio
from typing import Any

from browser.sdk_harness import TONES, Flow, Kit, until

# Frames of video this page decoded on call `l` over 1.2 s, and its media type.
FRAMES = """async l => {
  const call = kit.calls[l];
  const decoded = async () => { let n = 0; (await call.peerConnection.getStats()).forEach(s => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') n += s.framesDecoded ?? 0; }); return n; };
  const before = await decoded(); await kit.sleep(1200);
  return {mediaType: call.mediaType, frames: (await decoded()) - before,
          videoTracks: call.remoteStream.getVideoTracks().filter(t => t.readyState === 'live').length};
}"""

HEAR = "() => kit.listen(kit.calls.c.remoteStream, 1000, [440, 660])"


async def video_upgrade_downgrade(kit: Kit) -> dict[str, Any]:
    """alice (browser) calls carol (browser). alice upgrades, carol accepts: video both ways.
    alice downgrades, carol answers with rejectModification (a downgrade cannot be refused):
    audio again. alice upgrades again, carol rejects: alice's video reaches carol, none
    comes back. Audio flows both ways at each step."""
    alice = await kit.page("alice")
    carol = await kit.page("carol")
    await kit.js(
        carol,
        "() => kit.phones.carol.on('incoming', async call => { kit.keep('c', call, 'carol'); await call.answer(); })",
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
    out: dict[str, Any] = {}
    # The far party's request waits in pendingModification; `answer` runs the page's choice.
    answer = """async ([how, type]) => { const c = kit.calls.c;
        const asked = await kit.until(() => c.pendingModification, 10000, 'media-modification');
        const seen = kit.log.filter(e => e[1] === 'media-modification').map(e => e[2]).at(-1);
        await c[how](); return {asked: asked.new_media_type, event: seen}; }"""
    settled = "t => kit.until(() => kit.calls.c.mediaType === t && !kit.calls.c.pendingModification, 10000, 'media type ' + t).then(() => true)"

    await kit.js(alice, "() => kit.calls.c.upgrade()")
    out["accept"] = await kit.js(carol, answer, ["acceptModification", "video"])
    await asyncio.gather(kit.js(alice, settled, "video"), kit.js(carol, settled, "video"))
    out["alice_video"], out["carol_video"] = await asyncio.gather(
        kit.js(alice, FRAMES, "c"), kit.js(carol, FRAMES, "c")
    )
    out["alice_hears_video"], out["carol_hears_video"] = await asyncio.gather(
        kit.js(alice, HEAR), kit.js(carol, HEAR)
    )

    # Here the caller asks every time; the callee asking is sdk_flows_video.py's.
    await kit.js(alice, "() => kit.calls.c.downgrade()")
    out["downgrade"] = await kit.js(carol, answer, ["rejectModification", "audio"])
    await asyncio.gather(kit.js(alice, settled, "audio"), kit.js(carol, settled, "audio"))
    await asyncio.sleep(0.3)  # frames in flight when video stopped
    out["alice_audio"], out["carol_audio"] = await asyncio.gather(
        kit.js(alice, FRAMES, "c"), kit.js(carol, FRAMES, "c")
    )
    out["alice_hears_audio"], out["carol_hears_audio"] = await asyncio.gather(
        kit.js(alice, HEAR), kit.js(carol, HEAR)
    )

    await kit.js(alice, "() => kit.calls.c.upgrade()")
    out["reject"] = await kit.js(carol, answer, ["rejectModification", "video"])
    await asyncio.gather(kit.js(alice, settled, "video"), kit.js(carol, settled, "video"))
    await asyncio.sleep(0.3)
    out["alice_rejected"], out["carol_rejected"] = await asyncio.gather(
        kit.js(alice, FRAMES, "c"), kit.js(carol, FRAMES, "c")
    )
    out["alice_hears_rejected"], out["carol_hears_rejected"] = await asyncio.gather(
        kit.js(alice, HEAR), kit.js(carol, HEAR)
    )
    await kit.js(alice, "() => kit.calls.c.hangup()")
    return out


async def move_to_other_device(kit: Kit) -> dict[str, Any]:
    """alice (browser, tone 440 Hz) calls bob (Python); alice's second device (another phone
    of the same user, tone 1500 Hz) takes the call over with `move`: bob stays connected and
    now hears the second device; the first call ends with `moved`."""
    bob = await kit.party("bob")
    page = await kit.page("alice")
    await kit.js(
        page,
        """async c => { const second = kit.phone('alice2', {url: c.url, token: c.token, hz: c.hz});
            second.on('incoming', async call => { kit.keep('moved', call, 'alice2');
              kit.movedFrom = call.movedFrom; await call.answer(); });
            await second.connect(); return true; }""",
        {"url": kit.server.ws_url, "token": kit.users["alice"].token, "hz": TONES["dave"]},
    )
    first = await kit.js(
        page,
        "async dest => { const call = await kit.phones.alice.call(dest); kit.keep('c', call, 'alice');"
        " await call.waitFor('answered', 10000); await call.media.waitConnected(); return call.id; }",
        kit.ext("bob"),
    )
    call = await bob.wait_call()
    await asyncio.sleep(0.4)
    out: dict[str, Any] = {"first": first, "before": await bob.hears()}
    out["move"] = await kit.js(
        page,
        """async () => { const c = kit.calls.c; const ended = c.waitFor('ended', 15000);
            const moved = c.waitFor('moved', 15000); await c.move();
            const toSession = await moved; const reason = await ended;
            await kit.until(() => kit.calls.moved && kit.calls.moved.state === 'active', 10000, 'second device active');
            await kit.calls.moved.media.waitConnected();
            return {toSession: Boolean(toSession), reason, movedFrom: kit.movedFrom, firstId: c.id,
                    secondState: kit.calls.moved.state, secondFrom: kit.calls.moved.from,
                    firstActive: kit.phones.alice.activeCalls.length}; }""",
    )
    await asyncio.sleep(0.5)
    out["after"] = await bob.hears()
    out["bob_live"] = call.is_live
    out["second_hears"] = await kit.js(
        page, "() => kit.listen(kit.calls.moved.remoteStream, 1000, [440, 1000, 1500])"
    )
    await kit.js(page, "() => kit.calls.moved.hangup()")
    await until(lambda: bool(bob.ended), 5, "bob's call to end")
    out["bob_ended"] = list(bob.ended)
    return out


async def pre_call_test_and_meter(kit: Kit) -> dict[str, Any]:
    """`phone.preCallTest()` on a live microphone (alice's 440 Hz) and on a silent one; a
    `LevelMeter` on each."""
    page = await kit.page("alice")
    return dict(
        await kit.js(
            page,
            """async () => {
            const phone = kit.phones.alice;
            const live = await phone.preCallTest({durationMs: 1500});
            const silent = kit.ctx.createMediaStreamDestination().stream;  // a microphone that hears nothing
            const quiet = await phone.preCallTest({durationMs: 1000, localStream: silent});
            const levels = async (stream) => { const seen = [];
              const m = new kit.sdk.LevelMeter(stream, {onLevel: (l, db) => seen.push(db)});
              await kit.sleep(600); m.stop();
              return {updates: seen.length, maxDb: Math.max(...seen), last: m.db}; };
            return {live, quiet, meterTone: await levels(kit.tone(440)), meterSilent: await levels(silent),
                    conferencesLeft: phone.conferences.length, calls: phone.activeCalls.length};
        }""",
            within=30,
        )
    ) | await forwarding_and_dnd(kit, page)


async def forwarding_and_dnd(kit: Kit, page: Any) -> dict[str, Any]:
    """Issue 16: the page reads, sets and reads back alice's own forwarding, turns DND on, and
    puts everything back (no rules: the other flows' calls to alice ring as always)."""
    return {
        "forwarding": await kit.js(
            page,
            """async () => { const phone = kit.phones.alice;
            const before = await phone.getForwarding();
            const set = await phone.setForwarding({ringSeconds: 20, onBusy: 'next',
              steps: [{targets: ['devices'], seconds: 15}, {targets: ['user:bob'], seconds: 10}]});
            const read = await phone.getForwarding();
            const dnd = await phone.setDnd(true);
            let refused = null;
            try { await phone.setForwarding({onBusy: 'somewhere'}); } catch (e) { refused = String(e.message || e); }
            const reset = await phone.setForwarding({ringSeconds: null, dnd: false, steps: []});
            return {before, set, read, dnd, refused, reset}; }""",
            within=10,
        )
    }


FLOWS: dict[str, Flow] = {
    "video_upgrade_downgrade": video_upgrade_downgrade,
    "move_to_other_device": move_to_other_device,
    "pre_call_test_and_meter": pre_call_test_and_meter,
}
