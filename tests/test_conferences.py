"""Seed 002 conferences end to end: a host invites, participants join or decline, and each
hears everyone else and not itself; the host's media operations change exactly who hears what.

Every party sends its own tone (parties.py), so what a party hears tells whose audio reached it.
"""

from __future__ import annotations

import asyncio
import wave
from typing import Any

import numpy as np
import pytest

from api_helpers import PROMPT, audio_site_fixture  # noqa: F401  (the audio_site fixture)
from callbridge.client import BufferSink, Conference, SilenceSource, ToneSource
from callbridge.client.errors import CallStateError
from callbridge.errors import RemoteError
from callbridge.media.players import HOLD_MUSIC_NOTES
from callbridge.testing import rms_dbfs, tone_level_db
from callbridge.testing.server import Server
from conftest import MakeParty
from parties import ABSENT, ALICE, BOB, CAROL, HEARD, Party, hears, level

DAVE = 1900.0
MUSIC = HOLD_MUSIC_NOTES[0]


class Invitations:
    """The conference invitations that reach one party."""

    def __init__(self, party: Party) -> None:
        self.party = party
        self.queue: asyncio.Queue[Conference] = asyncio.Queue()
        party.phone.on("conference:invitation-received", self.queue.put_nowait)

    async def next(self) -> Conference:
        return await asyncio.wait_for(self.queue.get(), 5)

    async def join(self, **kw: Any) -> Conference:
        await self.next()
        source = kw.pop("source", None) or ToneSource(self.party.tone)
        return await self.party.phone.join_conference(source=source, sink=self.party.sink, **kw)


class Recorder:
    """Every conference event one phone saw, in order."""

    def __init__(self, party: Party) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.changed = asyncio.Event()
        stream = party.phone.events()

        async def follow() -> None:
            async for event in stream:
                if event.name.startswith("conference:"):
                    self.events.append((event.name, event.data))
                    self.changed.set()

        self.task = asyncio.get_running_loop().create_task(follow())

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    async def wait(self, name: str, within: float = 5.0, count: int = 1) -> dict[str, Any]:
        """The ``count``-th event ``name`` (waiting for it if need be)."""
        async with asyncio.timeout(within):
            while True:
                found = [data for seen, data in self.events if seen == name]
                if len(found) >= count:
                    return found[count - 1]
                self.changed.clear()
                await self.changed.wait()


async def host(party: Party, **kw: Any) -> Conference:
    source = kw.pop("source", None) or ToneSource(party.tone)
    return await party.phone.start_conference(source=source, sink=party.sink, **kw)


async def invite_and_join(conf: Conference, guest: Party, **kw: Any) -> Conference:
    invitations = Invitations(guest)
    await conf.add_participant(guest.user.extension)
    return await invitations.join(**kw)


async def room(party: MakeParty, *tones: float) -> tuple[list[Party], Conference, list[Conference]]:
    """A host (first tone) and participants who joined (the other tones)."""
    parties = [await party(t) for t in tones]
    seen = Recorder(parties[0])
    conf = await host(parties[0])
    joined = [await invite_and_join(conf, p) for p in parties[1:]]
    for c in joined:
        assert c.state == "connected"
    # The host hears of the last acceptance a moment after the participant is in.
    await seen.wait("conference:invitation-accepted", count=len(joined))
    return parties, conf, joined


async def test_three_parties_each_hear_the_others_and_not_themselves(party: MakeParty) -> None:
    alice, bob, carol = await party(ALICE), await party(BOB), await party(CAROL)
    seen = Recorder(alice)
    conf = await host(alice)
    assert conf.role == "host" and conf.state == "connected" and conf.id
    await invite_and_join(conf, bob)
    await invite_and_join(conf, carol)
    await seen.wait("conference:invitation-accepted", count=2)
    assert set(alice.phone.get_participants()) == {bob.user.extension, carol.user.extension}
    assert seen.names[:2] == ["conference:connecting", "conference:connected"]
    for invitee in (bob.user.extension, carol.user.extension):
        about = [n for n, data in seen.events if data.get("invitee") == invitee]
        assert about == [
            "conference:invitation-sending",
            "conference:invitation-sent",
            "conference:invitation-accepted",
        ], invitee
    await hears(alice, BOB, CAROL, not_=(ALICE,))
    await hears(bob, ALICE, CAROL, not_=(BOB,))
    await hears(carol, ALICE, BOB, not_=(CAROL,))
    await alice.phone.end_conference()


async def test_four_parties_on_opus_and_pcmu_hear_each_other(party: MakeParty) -> None:
    alice, bob, carol, dave = [await party(t) for t in (ALICE, BOB, CAROL, DAVE)]
    conf = await host(alice, codecs=["PCMU"])
    await invite_and_join(conf, bob)
    await invite_and_join(conf, carol, codecs=["PCMA"])
    await invite_and_join(conf, dave)
    assert conf.call is not None and conf.call.media is not None
    await asyncio.wait_for(conf.call.media.wait_connected(), 5)
    assert conf.call.media.port.audio is not None
    assert conf.call.media.port.audio.codec.name == "PCMU"
    for p, others in (
        (alice, (BOB, CAROL, DAVE)),
        (bob, (ALICE, CAROL, DAVE)),
        (carol, (ALICE, BOB, DAVE)),
        (dave, (ALICE, BOB, CAROL)),
    ):
        await hears(p, *others, not_=(p.tone,))
    await conf.end()


async def test_participant_joins_participant_side_events_and_leaves(party: MakeParty) -> None:
    (alice, bob, carol), conf, (at_bob, _) = await room(party, ALICE, BOB, CAROL)
    seen_by_host = Recorder(alice)
    assert at_bob.role == "participant"
    assert alice.phone.session is not None
    assert at_bob.from_ == alice.phone.session.user["number"]  # the host's caller id
    await bob.phone.end_conference()  # a participant only leaves
    left = await seen_by_host.wait("conference:participant-left")
    assert left["participant"] == bob.user.extension
    assert set(conf.participants) == {carol.user.extension}
    assert at_bob.state == "ended" and at_bob.end_reason == "left"
    await hears(alice, CAROL, not_=(BOB,))
    await hears(carol, ALICE, not_=(BOB,))
    await conf.end()


async def test_the_host_ending_disconnects_everyone(party: MakeParty) -> None:
    (alice, bob, carol), conf, (at_bob, _at_carol) = await room(party, ALICE, BOB, CAROL)
    ended = [asyncio.get_running_loop().create_future() for _ in range(2)]
    bob.phone.on("conference:ended", lambda c: ended[0].set_result(c.end_reason))
    carol.phone.on("conference:ended", lambda c: ended[1].set_result(c.end_reason))
    names: list[str] = []
    alice.phone.on("conference:disconnecting", lambda c: names.append("disconnecting"))
    alice.phone.on("conference:ended", lambda c: names.append("ended"))
    await conf.end()
    assert await asyncio.wait_for(asyncio.gather(*ended), 5) == ["ended-by-host"] * 2
    for leg in (at_bob.call, conf.call):
        assert leg is not None
        await leg.wait_for("ended", timeout=5)
    assert names == ["disconnecting", "ended"]
    assert alice.phone.conference is None and bob.phone.conferences == []


async def test_an_invitation_rejected_and_one_that_rings_out(party: MakeParty) -> None:
    alice, bob, carol = await party(ALICE), await party(BOB), await party(CAROL)
    seen = Recorder(alice)
    conf = await host(alice)
    invitations = Invitations(bob)
    await conf.add_participant(bob.user.extension)
    await invitations.next()
    await bob.phone.reject_conference()
    rejected = await seen.wait("conference:invitation-rejected")
    assert rejected["invitee"] == bob.user.extension and rejected["reason"] == "rejected"
    assert conf.invitations == {}
    canceled = asyncio.get_running_loop().create_future()
    carol.phone.on("conference:canceled", lambda c: canceled.set_result(c.end_reason))
    await conf.add_participant(carol.user.extension)
    assert carol.user.extension in conf.invitations
    # Nobody answers: the server's ring timeout (3 s in tests) withdraws the invitation.
    assert await asyncio.wait_for(canceled, 8) == "no-answer"
    await conf.end()


async def test_the_host_removes_a_participant(party: MakeParty) -> None:
    (alice, bob, carol), conf, (at_bob, _) = await room(party, ALICE, BOB, CAROL)
    removed = asyncio.get_running_loop().create_future()
    bob.phone.on("conference:ended", lambda c: removed.set_result(c.end_reason))
    await alice.phone.remove_participant(bob.user.extension)
    assert await asyncio.wait_for(removed, 5) == "removed"
    assert set(conf.participants) == {carol.user.extension}
    assert at_bob.call is not None and at_bob.call.end_reason == "removed"
    await hears(carol, ALICE, not_=(BOB,))
    await conf.end()


async def test_a_participant_whose_connection_drops_leaves_cleanly(
    party: MakeParty, server: Server
) -> None:
    (alice, bob, carol), conf, _ = await room(party, ALICE, BOB, CAROL)
    seen = Recorder(alice)
    await bob.phone.close()  # gone without a word; the server keeps it for the grace
    left = await seen.wait("conference:participant-left", within=15)
    assert left["participant"] == bob.user.extension
    await hears(carol, ALICE, not_=(BOB,))
    await conf.end()


async def test_own_hold_and_mute_take_a_participant_out(party: MakeParty) -> None:
    (_alice, bob, carol), conf, (at_bob, _) = await room(party, ALICE, BOB, CAROL)
    held = asyncio.get_running_loop().create_future()
    bob.phone.on("conference:held", lambda c: held.set_result(c.state))
    await at_bob.hold()
    assert await asyncio.wait_for(held, 5) == "held"
    await hears(carol, ALICE, not_=(BOB,))
    assert await level(bob.sink, ALICE) < ABSENT  # a self-held member hears nothing
    await at_bob.resume()
    await hears(carol, ALICE, BOB)
    await at_bob.mute()
    await hears(carol, ALICE, not_=(BOB,))
    await hears(bob, ALICE, CAROL)
    await at_bob.unmute()
    await hears(carol, ALICE, BOB)
    await conf.end()


async def test_host_mutes_holds_and_deafens_a_participant(party: MakeParty) -> None:
    (alice, bob, carol), conf, _ = await room(party, ALICE, BOB, CAROL)
    b = bob.user.extension
    await conf.update_participant(b, muted=True)
    assert conf.participants[b]["muted"] is True
    await hears(carol, ALICE, not_=(BOB,))
    await hears(alice, CAROL, not_=(BOB,))
    await conf.update_participant(b, muted=False, held=True)
    await hears(carol, ALICE, not_=(BOB,))
    assert await level(bob.sink, MUSIC, 1.0) > HEARD  # hears hold music (a whole 1 s loop)
    assert await level(bob.sink, ALICE) < ABSENT
    await conf.update_participant(b, held=False, deaf=True)
    await hears(carol, ALICE, BOB)
    assert await level(bob.sink, ALICE) < ABSENT and await level(bob.sink, CAROL) < ABSENT
    await conf.update_participant(b, deaf=False)
    await hears(bob, ALICE, CAROL)
    await conf.end()


async def test_supervisor_roles_monitor_whisper_and_barge(party: MakeParty) -> None:
    (alice, bob, carol, dave), conf, _ = await room(party, ALICE, BOB, CAROL, DAVE)
    d, b = dave.user.extension, bob.user.extension
    await conf.update_participant(d, supervisor_role="monitor")
    await hears(dave, ALICE, BOB, CAROL)
    for p in (alice, bob, carol):
        await hears(p, not_=(DAVE,))
    await conf.update_participant(d, supervisor_role="whisper", whisper_to=[b])
    await hears(bob, DAVE, ALICE)
    await hears(carol, ALICE, not_=(DAVE,))
    await hears(alice, BOB, not_=(DAVE,))
    await conf.update_participant(d, supervisor_role="barge")
    for p in (alice, bob, carol):
        await hears(p, DAVE)
    await conf.end()


async def test_the_floor_follows_the_active_talker(party: MakeParty) -> None:
    alice, bob, carol = await party(ALICE), await party(BOB), await party(CAROL)
    conf = await host(alice, source=SilenceSource())
    floors: asyncio.Queue[str | None] = asyncio.Queue()
    alice.phone.on("conference:floor-changed", lambda c: floors.put_nowait(c.floor))
    await invite_and_join(conf, bob, source=SilenceSource())
    await invite_and_join(conf, carol)  # only carol talks
    async with asyncio.timeout(5):
        while (floor := await floors.get()) != carol.user.extension:
            pass
    assert floor == carol.user.extension and conf.floor == carol.user.extension
    await conf.end()


# media operations ---------------------------------------------------------------------------
async def test_the_host_plays_a_url_to_everyone_or_to_one(
    party: MakeParty, audio_site: str
) -> None:
    (alice, bob, carol), conf, _ = await room(party, ALICE, BOB, CAROL)
    seen = Recorder(alice)
    await conf.play(f"{audio_site}/prompt.wav", loops=0)
    started = await seen.wait("conference:playback-started")
    await hears(bob, PROMPT, ALICE)
    await hears(carol, PROMPT)
    await conf.stop()
    ended = await seen.wait("conference:playback-ended")
    assert ended["playback_id"] == started["playback_id"] and ended["status"] == "stopped"
    await hears(bob, not_=(PROMPT,))
    await conf.play(f"{audio_site}/prompt.wav", loops=0, participants=[carol.user.extension])
    await hears(carol, PROMPT)
    await hears(bob, not_=(PROMPT,))
    await conf.stop()
    await conf.end()


async def test_bad_audio_gets_a_clear_error(party: MakeParty, audio_site: str) -> None:
    (_alice, bob), conf, _ = await room(party, ALICE, BOB)
    for url in (f"{audio_site}/missing.wav", f"{audio_site}/not-audio.wav"):
        with pytest.raises(RemoteError) as err:
            await conf.play(url)
        assert err.value.code == "invalid_audio", err.value
    with pytest.raises(RemoteError) as err:
        await conf.speak("hello", voice="robot")
    assert err.value.code == "invalid_audio" and "robot" in err.value.message
    await hears(bob, ALICE)  # the conference carries on
    await conf.end()


async def test_speech_is_heard_by_the_participants(party: MakeParty) -> None:
    alice, bob = await party(ALICE), await party(BOB)
    conf = await host(alice, source=SilenceSource())
    bob_sink = BufferSink()
    invitations = Invitations(bob)
    await conf.add_participant(bob.user.extension)
    await invitations.next()
    await bob.phone.join_conference(source=SilenceSource(), sink=bob_sink)
    seen = Recorder(alice)
    for voice in ("female", "male"):
        await conf.speak("Welcome to the conference. Your call is important to us.", voice=voice)
        await seen.wait("conference:speak-started")
        bob_sink.clear()
        await asyncio.sleep(1.5)  # the measurement: 1.2 s of speech (and 0.3 s spare)
        pcm = bob_sink.samples(1.2)
        assert rms_dbfs(pcm) > -40, f"no speech heard ({voice})"
        spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
        freqs = np.fft.rfftfreq(len(pcm), 1 / 48000)
        speech = spectrum[(freqs > 100) & (freqs < 4000)].sum()
        assert speech / spectrum.sum() > 0.6  # energy in the speech band
        # a voice, not a tone: no single frequency carries most of the energy
        assert spectrum.max() / spectrum[(freqs > 100) & (freqs < 4000)].sum() < 0.2
        await conf.stop()
        seen.events.clear()
    await conf.end()


async def test_a_recording_holds_the_mix_without_the_paused_stretch(party: MakeParty) -> None:
    (alice, _bob, _carol), conf, _ = await room(party, ALICE, BOB, CAROL)
    saved = asyncio.get_running_loop().create_future()
    alice.phone.on("conference:recording-saved", lambda c: saved.set_result(c.recordings[-1]))
    # The sleeps are what is recorded: 1.5 s, a paused 1 s, then 1 s more.
    rid = await conf.record("start")
    await asyncio.sleep(1.5)
    await conf.record("pause")
    await asyncio.sleep(1.0)
    await conf.record("resume")
    await asyncio.sleep(1.0)
    assert await conf.record("stop") == rid
    info = await asyncio.wait_for(saved, 5)
    assert info["recording_id"] == rid
    assert 2.0 <= info["duration_secs"] <= 3.0  # 1.5 s + 1 s, the paused second left out
    with wave.open(info["path"], "rb") as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    assert abs(len(pcm) / rate - info["duration_secs"]) < 0.1
    body = pcm[len(pcm) // 4 : -len(pcm) // 4]
    for tone in (ALICE, BOB, CAROL):
        assert tone_level_db(body, rate, tone) > HEARD, f"{tone} Hz missing from the recording"
    await conf.end()


# errors -------------------------------------------------------------------------------------
async def test_conference_requests_that_cannot_be_done_get_clear_errors(party: MakeParty) -> None:
    (alice, bob), conf, (at_bob,) = await room(party, ALICE, BOB)
    with pytest.raises(CallStateError):
        await at_bob.add_participant("anyone")  # SDK: only a host invites
    with pytest.raises(RemoteError) as err:
        await bob.phone.request(
            {"type": "conference.invite", "conference_id": conf.id, "to": alice.user.extension}
        )
    assert err.value.code == "not_conference_host"
    with pytest.raises(RemoteError) as err:
        await conf.add_participant("no-such-user-xyz")
    assert err.value.code == "destination_not_found"
    with pytest.raises(RemoteError) as err:
        await conf.add_participant(bob.user.extension)
    assert err.value.code == "invalid_state" and "already" in err.value.message
    with pytest.raises(RemoteError) as err:
        await conf.update_participant(bob.user.extension, supervisor_role="whisper")
    assert err.value.code == "invalid_message" and "whisper_to" in err.value.message
    with pytest.raises(RemoteError) as err:
        await conf.update_participant("nobody-here", muted=True)
    assert err.value.code == "call_not_found"
    with pytest.raises(RemoteError) as err:
        await alice.phone.request({"type": "conference.end", "conference_id": "nope"})
    assert err.value.code == "conference_not_found"
    with pytest.raises(RemoteError) as err:
        await alice.phone.request(
            {"type": "conference.play", "conference_id": conf.id, "audio_url": "file:///etc/passwd"}
        )
    assert err.value.code == "invalid_message" and "audio_url" in err.value.message
    with pytest.raises(RemoteError) as err:
        await conf.record("stop")
    assert err.value.code == "invalid_state"
    assert conf.call is not None
    with pytest.raises(RemoteError) as err:
        await conf.call.transfer(bob.user.extension)
    assert err.value.code == "invalid_state" and "conference" in err.value.message
    await hears(bob, ALICE)  # still fine after all that
    await conf.end()
