# ruff: noqa: E501 - JavaScript run in the page reads best unwrapped
"""Video and device flows of the callbridge-web SDK in Chromium (the ``video`` launch of
``sdk_scenario.py``): seed 002 upgrade / downgrade asked by the *far* party of a page that
placed the call (the server's re-offer must keep the page's RTP numbering, RFC 8285 §6),
browser <-> browser and browser <-> Python SDK; a video call answered as audio; camera and
microphone switched mid-call (``phone.setDevices``); the recording notice.

That video arrives is read as a page shows it: a ``<video>`` element's presented frames
(``requestVideoFrameCallback``) and ``videoWidth`` (``kit.videoFrames``). The pages' second
microphone and cameras are Chromium's fake devices; the fake microphone plays
``FAKE_MIC_HZ`` (``--use-file-for-fake-audio-capture``, see ``sdk_scenario.py``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from browser.sdk_harness import (
    RECORD_START,
    RECORD_STOP,
    TONES,
    Flow,
    Kit,
    PyParty,
    call_action,
    until,
)
from callbridge.client import SAMPLE_RATE, Call, FrameSink, TestPatternSource, ToneSource
from callbridge.testing import tone_level_db

FAKE_MIC_HZ = 1200.0  # the tone of the wav file Chromium's fake microphones play
BLUE = (30, 30, 220)

# The far party's request waits in pendingModification; run the page's answer to it.
ANSWER = """async ([how]) => { const c = kit.calls.c;
    const asked = await kit.until(() => c.pendingModification, 10000, 'media-modification');
    await c[how](); return asked.new_media_type; }"""
SETTLED = "t => kit.until(() => kit.calls.c.mediaType === t && !kit.calls.c.pendingModification, 10000, 'media type ' + t).then(() => true)"
HEAR = "() => kit.listen(kit.calls.c.remoteStream, 1000, [440, 660, 1000])"
PLACE = """async dest => { const call = await kit.phones[Object.keys(kit.phones)[0]].call(dest);
    kit.keep('c', call, 'caller'); await call.waitFor('answered', 10000);
    await call.media.waitConnected(); return call.id; }"""


def hears(analysis: dict[str, Any], hz: int) -> bool:
    return bool(abs(analysis["peakHz"] - hz) < 15 and analysis["db"][str(hz)] > -35)


async def settled(kit: Kit, pages: list[Any], media_type: str) -> None:
    await asyncio.gather(*(kit.js(p, SETTLED, media_type) for p in pages))


async def python_settled(call: Call, media_type: str) -> None:
    await until(lambda: call.media_type == media_type, 10, f"bob's call {media_type}")


async def callee_asks_video(kit: Kit) -> dict[str, Any]:
    """alice (page) calls carol (page); carol upgrades, alice accepts; carol downgrades,
    alice accepts. The server's re-offers go to the page that placed the call."""
    alice, carol = await kit.page("alice"), await kit.page("carol")
    await kit.js(
        carol,
        "() => kit.phones.carol.on('incoming', async call => { kit.keep('c', call, 'carol'); await call.answer(); })",
    )
    out: dict[str, Any] = {"id": await kit.js(alice, PLACE, kit.ext("carol"))}
    await kit.js(
        carol,
        "() => kit.until(() => kit.calls.c && kit.calls.c.state === 'active', 5000, 'answer')",
    )

    await kit.js(carol, "() => kit.calls.c.upgrade()")
    out["asked_up"] = await kit.js(alice, ANSWER, ["acceptModification"])
    await settled(kit, [alice, carol], "video")
    out["alice_video"], out["carol_video"] = await asyncio.gather(
        kit.js(alice, "() => kit.videoFrames('c')"), kit.js(carol, "() => kit.videoFrames('c')")
    )
    out["alice_hears_video"], out["carol_hears_video"] = await asyncio.gather(
        kit.js(alice, HEAR), kit.js(carol, HEAR)
    )

    await kit.js(carol, "() => kit.calls.c.downgrade()")
    out["asked_down"] = await kit.js(alice, ANSWER, ["acceptModification"])
    await settled(kit, [alice, carol], "audio")
    await asyncio.sleep(0.3)  # frames in flight when video stopped
    out["alice_audio"], out["carol_audio"] = await asyncio.gather(
        kit.js(alice, "() => kit.videoFrames('c', 800)"),
        kit.js(carol, "() => kit.videoFrames('c', 800)"),
    )
    out["alice_hears_audio"], out["carol_hears_audio"] = await asyncio.gather(
        kit.js(alice, HEAR), kit.js(carol, HEAR)
    )
    out["errors"] = await kit.js(alice, "() => kit.log.filter(e => e[1] === 'error')")
    await kit.js(alice, "() => kit.calls.c.hangup()")
    return out


async def python_asks_video(kit: Kit) -> dict[str, Any]:
    """alice (page) calls bob (Python). bob upgrades, alice accepts; alice switches camera;
    bob downgrades, alice accepts; alice upgrades, bob accepts; alice downgrades, bob accepts."""
    bob = await kit.party("bob")
    page = await kit.page("alice")
    out: dict[str, Any] = {"id": await kit.js(page, PLACE, kit.ext("bob"))}
    call = await bob.wait_call()
    sink = FrameSink()

    async def bob_frames(seconds: float = 1.0) -> int:
        before = sink.frames
        await asyncio.sleep(seconds)
        return sink.frames - before

    await call.upgrade(video_source=TestPatternSource(BLUE), video_sink=sink)
    out["bob_up"] = await kit.js(page, ANSWER, ["acceptModification"])
    await settled(kit, [page], "video")
    await python_settled(call, "video")
    out["page_video"], out["bob_video"] = await asyncio.gather(
        kit.js(page, "() => kit.videoFrames('c')"), bob_frames()
    )
    out["bob_size"] = sink.size
    out["page_hears_video"], out["bob_hears_video"] = await asyncio.gather(
        kit.js(page, HEAR), bob.hears()
    )
    # Another camera mid-call (replaceTrack): bob keeps getting frames. The last fake camera:
    # Chromium's second one gives Y16 (depth) frames, which its encoder never encodes.
    out["camera"] = await kit.js(
        page,
        """async () => { const phone = kit.phones.alice; const {cameras} = await phone.listDevices();
            const before = kit.calls.c.media.localVideoStream.getVideoTracks()[0].getSettings().deviceId;
            const other = cameras.at(-1);
            await phone.setDevices({videoInput: other.deviceId});
            const after = kit.calls.c.media.localVideoStream.getVideoTracks()[0].getSettings().deviceId;
            const sender = kit.calls.c.peerConnection.getSenders().find(s => s.track && s.track.kind === 'video');
            return {cameras: cameras.length, switched: before !== after && before === cameras[0].deviceId, chosen: after === other.deviceId,
                    sending: sender ? sender.track.getSettings().deviceId === after : false,
                    devices: phone.devices.videoInput === other.deviceId, state: kit.calls.c.state}; }""",
    )
    await asyncio.sleep(0.3)
    out["bob_video_new_camera"] = await bob_frames()

    await call.downgrade()
    out["bob_down"] = await kit.js(page, ANSWER, ["acceptModification"])
    await settled(kit, [page], "audio")
    await python_settled(call, "audio")
    await asyncio.sleep(0.5)  # frames in flight when video stopped
    out["page_audio"], out["bob_audio"] = await asyncio.gather(
        kit.js(page, "() => kit.videoFrames('c', 800)"), bob_frames(0.8)
    )

    await kit.js(page, "() => kit.calls.c.upgrade()")
    asked = await call.wait_for("media-modification", timeout=10)
    out["page_up"] = asked.data["new_media_type"]
    await call.accept_modification(video_source=TestPatternSource(BLUE), video_sink=sink)
    await settled(kit, [page], "video")
    await python_settled(call, "video")
    out["page_video_2"], out["bob_video_2"] = await asyncio.gather(
        kit.js(page, "() => kit.videoFrames('c')"), bob_frames()
    )
    await kit.js(page, "() => kit.calls.c.downgrade()")
    asked = await call.wait_for("media-modification", timeout=10)
    out["page_down"] = asked.data["new_media_type"]
    await call.accept_modification()
    await settled(kit, [page], "audio")
    await python_settled(call, "audio")
    out["page_hears_audio"], out["bob_hears_audio"] = await asyncio.gather(
        kit.js(page, HEAR), bob.hears()
    )
    out["errors"] = await kit.js(page, "() => kit.log.filter(e => e[1] === 'error')")
    await kit.js(page, "() => kit.calls.c.hangup()")
    return out


async def answer_video_as_audio(kit: Kit) -> dict[str, Any]:
    """bob (Python) places a video call to alice (page); seed 002 `answer` with audio: an
    audio call both sides, no video either way, audio both ways."""
    bob = await kit.party("bob", auto_answer=False)
    page = await kit.page("alice")
    await kit.js(
        page,
        """() => kit.phones.alice.on('incoming', async call => { kit.keep('c', call, 'alice');
            kit.offered = call.mediaType; await call.answer({mediaType: 'audio'}); })""",
    )
    sink = FrameSink()
    call = await bob.phone.call(
        kit.ext("alice"), source=ToneSource(TONES["bob"]), sink=bob.sink, media_type="video",
        video_source=TestPatternSource(BLUE), video_sink=sink,
    )  # fmt: skip
    await call.wait_for("answered", timeout=10)
    assert call.media is not None
    await asyncio.wait_for(call.media.wait_connected(), 10)
    out: dict[str, Any] = {"offered": await kit.js(page, "() => kit.offered")}
    await kit.js(page, "() => kit.calls.c.media.waitConnected()")
    await asyncio.sleep(0.5)
    before = sink.frames
    out["page"], out["bob_hears"] = await asyncio.gather(
        kit.js(page, "() => kit.videoFrames('c')"), bob.hears()
    )
    out["bob_frames"] = sink.frames - before
    out["bob_media_type"] = call.media_type
    out["page_hears"] = await kit.js(page, HEAR)
    out["page_sends_video"] = await kit.js(
        page,
        "() => kit.calls.c.peerConnection.getSenders().some(s => s.track && s.track.kind === 'video')",
    )
    await call.hangup()
    await kit.js(page, "() => kit.calls.c.waitFor('ended', 5000)")
    return out


async def switch_microphone(kit: Kit) -> dict[str, Any]:
    """alice (page, microphone: a 440 Hz sine) calls bob (Python); mid-call she switches to
    Chromium's fake microphone (``FAKE_MIC_HZ``), then to another one: bob hears each."""
    bob = await kit.party("bob")
    page = await kit.page("alice")
    await kit.js(page, PLACE, kit.ext("bob"))
    await bob.wait_call()
    await asyncio.sleep(0.4)

    async def bob_levels() -> dict[str, float]:
        heard = await bob.hears()
        fake = tone_level_db(bob.sink.samples(1.0), SAMPLE_RATE, FAKE_MIC_HZ)
        return {"alice": heard["alice"], "fake": round(fake, 1)}

    out: dict[str, Any] = {"before": await bob_levels()}
    switch = """async n => { const phone = kit.phones.alice;
        const mics = (await phone.listDevices()).microphones.filter(d => d.deviceId !== 'default');
        const mic = mics[n % mics.length];
        await phone.setDevices({audioInput: mic.deviceId});
        const track = kit.calls.c.localStream.getAudioTracks()[0];
        const sender = kit.calls.c.peerConnection.getSenders().find(s => s.track && s.track.kind === 'audio');
        return {mics: mics.length, chosen: phone.devices.audioInput === mic.deviceId,
                sending: sender.track === track, live: track.readyState, state: kit.calls.c.state}; }"""
    out["first"] = await kit.js(page, switch, 0)
    await asyncio.sleep(0.3)
    out["after_first"] = await bob_levels()
    out["second"] = await kit.js(page, switch, 1)
    await asyncio.sleep(0.3)
    out["after_second"] = await bob_levels()
    out["page_hears"] = await kit.js(page, HEAR)
    await kit.js(page, "() => kit.calls.c.hangup()")
    return out


async def recording_notice(kit: Kit) -> dict[str, Any]:
    """alice (page) calls bob (Python); an application records the call (REST record_start,
    then record_stop): the page's call raises `recording(true/false)`, `isRecorded` follows."""
    bob: PyParty = await kit.party("bob")
    page = await kit.page("alice")
    call_id = await kit.js(page, PLACE, kit.ext("bob"))
    call = await bob.wait_call()
    out: dict[str, Any] = {}
    for action, on in ((RECORD_START, "true"), (RECORD_STOP, "false")):
        name = action[0]
        out[f"{name}_status"] = await call_action(kit.server, call_id, action)
        out[name] = await kit.js(
            page,
            f"""async () => {{ const c = kit.calls.c;
                await kit.until(() => c.isRecorded === {on}, 5000, 'isRecorded {on}');
                return {{isRecorded: c.isRecorded,
                        events: kit.log.filter(e => e[1] === 'recording').map(e => e[2])}}; }}""",
        )
        recorded = on == "true"
        await until(lambda: call.is_recorded == recorded, 5, "bob's notice")  # noqa: B023
    await kit.js(page, "() => kit.calls.c.hangup()")
    return out


async def softphone_devices(kit: Kit) -> dict[str, Any]:
    """The softphone page (/phone): its Devices panel lists the cameras next to the
    microphones and speakers; choosing one shows no error."""
    page = await kit.browser.new_page()
    kit.pages["phone"] = page
    try:
        await page.goto(f"{kit.server.url}/phone")
        await page.fill("#token", kit.users["alice"].token)
        await page.click("#signin-button")
        await page.wait_for_selector("#settings-toggle:not([hidden])")
        await page.click("#settings-toggle")
        await page.wait_for_function("document.querySelectorAll('#camera option').length > 1")
        options = await page.eval_on_selector_all("#camera option", "os => os.map(o => o.value)")
        await page.select_option("#camera", options[-1])
        mics = await page.eval_on_selector_all("#mic option", "os => os.length")
        label = await page.text_content("label[for=camera]")
        await asyncio.sleep(0.3)  # an error would show by now
        alerts = await page.eval_on_selector_all(
            "#alerts .alert:not(.info) p", "ps => ps.map(p => p.textContent)"
        )
        return {"cameras": len(options) - 1, "mics": mics - 1, "label": label, "alerts": alerts}
    finally:
        del kit.pages["phone"]
        await page.close()


FLOWS: dict[str, Flow] = {
    "callee_asks_video": callee_asks_video,
    "python_asks_video": python_asks_video,
    "answer_video_as_audio": answer_video_as_audio,
    "switch_microphone": switch_microphone,
    "recording_notice": recording_notice,
    "softphone_devices": softphone_devices,
}
