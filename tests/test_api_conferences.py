"""Conferences over REST with the official telnyx SDK: created from a call, joined by others,
and every seed-003 operation (mute, hold with hold audio, play, speak, stop, record, supervisor
roles, participants, leave, end) checked by what the softphones hear and by the typed webhooks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest
import telnyx

from api_helpers import (  # noqa: F401  (the fixtures)
    HOLD,
    PROMPT,
    Api,
    api_fixture,
    audio_site_fixture,
    speech_heard,
)
from conftest import MakeParty
from parties import ALICE, BOB, CAROL, Party, hears

pytestmark = pytest.mark.timeout(120)


async def answered_callers(api: Api, party: MakeParty, *tones: float) -> list[tuple[Party, str]]:
    """Softphones that each called the application's line and were answered."""
    line = await api.line()
    out = []
    for tone in tones:
        p = await party(tone)
        call = await p.call(line)
        initiated = await api.sink.wait("call.initiated", call_control_id=call.id)
        ccid = initiated.payload["call_control_id"]
        await api.client.calls.actions.answer(ccid)
        await call.wait_for("answered", timeout=5)
        out.append((p, ccid))
    return out


async def test_a_conference_of_three_callers_and_every_operation_on_it(
    api: Api, party: MakeParty, audio_site: str
) -> None:
    (alice, a), (bob, b), (carol, c) = await answered_callers(api, party, ALICE, BOB, CAROL)
    conferences = api.client.conferences
    made = await conferences.create(call_control_id=a, name="standup")
    assert made.data is not None and made.data.status == "in_progress"
    conf = made.data.id
    await conferences.actions.join(conf, call_control_id=b)
    await conferences.actions.join(conf, call_control_id=c)
    await hears(alice, BOB, CAROL, not_=(ALICE,))
    await hears(bob, ALICE, CAROL, not_=(BOB,))

    created = api.unwrap(await api.sink.wait("conference.created", conference_id=conf))
    assert type(created).__name__ == "ConferenceCreatedWebhookEvent"
    joined = await api.sink.wait("conference.participant.joined", count=3, conference_id=conf)
    assert type(api.unwrap(joined)).__name__ == "ConferenceParticipantJoinedWebhookEvent"
    assert {
        d.payload["call_control_id"]
        for d in api.sink.of(conference_id=conf)
        if d.event_type == "conference.participant.joined"
    } == {a, b, c}

    # mute: nobody hears bob; unmute
    await conferences.actions.mute(conf, call_control_ids=[b])
    await hears(alice, CAROL, not_=(BOB,))
    muted = await conferences.list_participants(conf, filter={"muted": True})
    assert [p.call_control_id for p in muted.data] == [b]
    await conferences.actions.unmute(conf)
    await hears(alice, BOB)

    # hold with hold audio: carol hears the hold file and is not heard
    await conferences.actions.hold(conf, call_control_ids=[c], audio_url=f"{audio_site}/hold.wav")
    await hears(carol, HOLD, not_=(ALICE, BOB))
    await hears(alice, BOB, not_=(CAROL,))
    held = await conferences.list_participants(conf, filter={"on_hold": True})
    assert [p.call_control_id for p in held.data] == [c]
    await conferences.actions.unhold(conf, call_control_ids=[c])
    await hears(carol, ALICE, BOB, not_=(HOLD,))

    # whisper: alice coaches bob; carol does not hear her
    await conferences.actions.update(
        conf, call_control_id=a, supervisor_role="whisper", whisper_call_control_ids=[b]
    )
    await hears(bob, ALICE)
    await hears(carol, BOB, not_=(ALICE,))
    await conferences.actions.update(conf, call_control_id=a, supervisor_role="monitor")
    await hears(bob, CAROL, not_=(ALICE,))
    await conferences.actions.update(conf, call_control_id=a, supervisor_role="none")
    await hears(carol, ALICE)

    # play to one participant, then to all; stop
    await conferences.actions.play(
        conf, audio_url=f"{audio_site}/prompt.wav", loop="infinity", call_control_ids=[b]
    )
    await hears(bob, PROMPT)
    await hears(alice, not_=(PROMPT,))
    started = api.unwrap(
        await api.sink.wait("conference.participant.playback.started", conference_id=conf)
    )
    assert type(started).__name__ == "ConferenceParticipantPlaybackStartedWebhookEvent"
    assert started.data.payload.call_control_id == b
    await conferences.actions.stop(conf)
    await api.sink.wait("conference.participant.playback.ended", conference_id=conf)
    await conferences.actions.play(conf, audio_url=f"{audio_site}/prompt.wav")
    await hears(alice, PROMPT)
    await api.sink.wait("conference.playback.started", conference_id=conf)
    await api.sink.wait("conference.playback.ended", conference_id=conf)
    await conferences.actions.speak(conf, payload="The meeting ends in five minutes.", voice="male")
    assert await speech_heard(carol.sink, 0.8)
    spoken = api.unwrap(await api.sink.wait("conference.speak.started", conference_id=conf))
    assert type(spoken).__name__ == "ConferenceSpeakStartedWebhookEvent"
    await api.sink.wait("conference.speak.ended", within=15, conference_id=conf)
    await conferences.actions.speak(
        conf, payload="Carol, you are next.", voice="female", call_control_ids=[c]
    )
    one = await api.sink.wait("conference.participant.speak.started", conference_id=conf)
    assert one.payload["call_control_id"] == c
    await api.sink.wait("conference.participant.speak.ended", within=15, conference_id=conf)
    floor = await api.sink.wait("conference.floor.changed", conference_id=conf)
    assert floor.payload["call_control_id"] in (a, b, c)

    # record with a pause (the sleeps are what is recorded)
    await conferences.actions.record_start(conf, format="wav")
    await asyncio.sleep(1.0)
    await conferences.actions.record_pause(conf)
    await conferences.actions.record_resume(conf)
    await asyncio.sleep(0.5)
    await conferences.actions.record_stop(conf)
    saved = api.unwrap(await api.sink.wait("conference.recording.saved", conference_id=conf))
    assert type(saved).__name__ == "ConferenceRecordingSavedWebhookEvent"
    recordings = await api.client.recordings.list(filter={"conference_id": conf})
    assert [r.conference_id for r in recordings.data] == [conf]
    assert recordings.data[0].duration_millis and recordings.data[0].duration_millis > 1000

    # participants and conferences lists, paged
    page = await conferences.list_participants(conf, page_size=2)
    assert page.meta is not None and page.meta.total_pages == 2
    everyone = [p.call_control_id async for p in conferences.list_participants(conf, page_size=2)]
    assert sorted(everyone) == sorted([a, b, c])
    listed = await conferences.list(filter={"name": "standup"})
    assert [x.id for x in listed.data] == [conf]

    # leave: bob stays up, parked (hears nothing), the others go on
    await conferences.actions.leave(conf, call_control_id=b)
    await hears(alice, CAROL, not_=(BOB,))
    left = api.unwrap(await api.sink.wait("conference.participant.left", conference_id=conf))
    assert type(left).__name__ == "ConferenceParticipantLeftWebhookEvent"
    status = await api.client.calls.retrieve_status(b)
    assert status.data is not None and status.data.is_alive

    await conferences.actions.end_conference(conf)
    ended = api.unwrap(await api.sink.wait("conference.ended", conference_id=conf))
    assert type(ended).__name__ == "ConferenceEndedWebhookEvent"
    for ccid in (a, c):
        await api.sink.wait("call.hangup", call_control_id=ccid)
    done = await conferences.retrieve(conf)
    assert done.data is not None and done.data.status == "completed"
    assert done.data.end_reason == "ended_via_api"
    await api.client.calls.actions.hangup(b)


async def test_conference_requests_that_cannot_be_done_get_clear_errors(
    api: Api, party: MakeParty
) -> None:
    (_alice, a), (_bob, b) = await answered_callers(api, party, ALICE, BOB)
    conferences = api.client.conferences
    made = await conferences.create(call_control_id=a, name="errors")
    assert made.data is not None
    conf = made.data.id

    async def refused(action: Awaitable[object], pointer: str | None, text: str) -> None:
        with pytest.raises(telnyx.UnprocessableEntityError) as err:
            await action
        error = err.value.body["errors"][0]  # type: ignore[index]
        assert text in error["detail"], error
        if pointer is not None:
            assert error["source"] == {"pointer": pointer}, error

    await refused(
        conferences.actions.mute(conf, call_control_ids=[b]),
        "/call_control_ids/0",
        "is not a participant",
    )
    await refused(
        conferences.actions.update(conf, call_control_id=a, supervisor_role="whisper"),
        "/whisper_call_control_ids",
        "whisper_call_control_ids",
    )
    await refused(
        conferences.create(call_control_id=a, name="again"), "/call_control_id", "in conference"
    )
    await refused(
        conferences.actions.join(conf, call_control_id="nobody"), "/call_control_id", "no call"
    )
    await refused(conferences.actions.record_stop(conf), None, "not being recorded")
    await refused(
        conferences.actions.play(conf, audio_url="ftp://example/x.wav"), "/audio_url", "http"
    )
    with pytest.raises(telnyx.NotFoundError):
        await conferences.actions.join("no-such-conference", call_control_id=b)
    await conferences.actions.end_conference(conf)
    await refused(conferences.actions.join(conf, call_control_id=b), None, "has ended")
    await api.client.calls.actions.hangup(b)
