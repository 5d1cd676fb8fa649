"""Two REST conference bugs of issue 9, against the real server with the official telnyx SDK.

- Two plays started at once to different participants: each
  ``conference.participant.playback.started`` must name the participant its own play targets,
  whichever play's audio loads first (they used to be matched in request order).
- A ``loop`` that is not a number on a conference play is refused with the 422 a call play
  gives for the same field (it used to be an uncaught ValueError: a 500).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import telnyx

from api_helpers import (  # noqa: F401  (the fixtures)
    Api,
    api_fixture,
    audio_site_fixture,
    tone_wav,
)
from parties import ALICE, BOB, CAROL, Party

pytestmark = pytest.mark.timeout(120)


class HeldAudio:
    """An HTTP site with one WAV whose answer waits until the test releases it: a play of
    that URL loads (and starts) only when the test says so."""

    def __init__(self, wav: bytes) -> None:
        self.requested = asyncio.Event()  # the media plane asked for the file
        self._release = threading.Event()
        loop = asyncio.get_running_loop()
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                loop.call_soon_threadsafe(site.requested.set)
                site._release.wait(30)
                self.send_response(200)
                self.send_header("content-type", "audio/wav")
                self.send_header("content-length", str(len(wav)))
                self.end_headers()
                self.wfile.write(wav)

            def log_message(self, *a: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/held.wav"

    def release(self) -> None:
        self._release.set()

    def close(self) -> None:
        self._release.set()
        self._httpd.shutdown()


@pytest.fixture(name="held_audio")
async def held_audio_fixture(tmp_path: Path) -> AsyncIterator[HeldAudio]:
    tone_wav(tmp_path / "held.wav", 500.0, seconds=1.0)
    site = HeldAudio((tmp_path / "held.wav").read_bytes())
    yield site
    site.close()


async def conference_of(api: Api, party: Any, *tones: float) -> tuple[str, list[str]]:
    """A conference of softphones that called the application's line and were answered:
    its id and the participants' call_control_ids (the first created it)."""
    line = await api.line()
    ids: list[str] = []
    for tone in tones:
        p: Party = await party(tone)
        call = await p.call(line)
        initiated = await api.sink.wait("call.initiated", call_control_id=call.id)
        ids.append(initiated.payload["call_control_id"])
        await api.client.calls.actions.answer(ids[-1])
        await call.wait_for("answered", timeout=5)
    made = await api.client.conferences.create(call_control_id=ids[0], name="plays")
    assert made.data is not None
    for ccid in ids[1:]:
        await api.client.conferences.actions.join(made.data.id, call_control_id=ccid)
    return made.data.id, ids


async def test_two_plays_started_at_once_are_each_reported_for_their_own_participant(
    api: Api, party: Any, audio_site: str, held_audio: HeldAudio
) -> None:
    conf, (_a, b, c) = await conference_of(api, party, ALICE, BOB, CAROL)
    actions = api.client.conferences.actions
    # bob's play is asked first, but its audio arrives only after carol's play has started.
    to_bob = asyncio.create_task(actions.play(conf, audio_url=held_audio.url, call_control_ids=[b]))
    await held_audio.requested.wait()
    await actions.play(conf, audio_url=f"{audio_site}/prompt.wav", call_control_ids=[c])
    first = await api.sink.wait("conference.participant.playback.started", conference_id=conf)
    held_audio.release()
    await to_bob
    second = await api.sink.wait(
        "conference.participant.playback.started", count=2, conference_id=conf
    )
    assert [first.payload["call_control_id"], second.payload["call_control_id"]] == [c, b]
    await actions.stop(conf)
    for ccid in (b, c):
        await api.sink.wait(
            "conference.participant.playback.ended", conference_id=conf, call_control_id=ccid
        )
    plays = [
        (d.event_type.rsplit(".", 1)[1], d.payload["call_control_id"])
        for d in api.sink.of(conference_id=conf)
        if ".playback." in d.event_type
    ]
    assert sorted(plays) == sorted([("started", c), ("started", b), ("ended", c), ("ended", b)])
    assert not [
        d
        for d in api.sink.of(conference_id=conf)
        if d.event_type.startswith("conference.playback.")
    ], "a targeted play was reported as a play to the whole room"
    await actions.end_conference(conf)


async def test_a_loop_that_is_not_a_number_is_refused_alike_on_a_conference_and_a_call(
    api: Api, party: Any, audio_site: str
) -> None:
    conf, (a, _b) = await conference_of(api, party, ALICE, BOB)
    prompt = f"{audio_site}/prompt.wav"
    errors = []
    for play in (
        api.client.calls.actions.start_playback(a, audio_url=prompt, loop="twice"),
        api.client.conferences.actions.play(conf, audio_url=prompt, loop="twice"),
    ):
        with pytest.raises(telnyx.UnprocessableEntityError) as refused:
            await play
        errors.append(refused.value.body)
    assert errors[0] == errors[1]
    assert errors[1] == {
        "errors": [
            {
                "code": "10015",
                "title": "Invalid value",
                "detail": "loop must be a number of times or 'infinity'",
                "source": {"pointer": "/loop"},
            }
        ]
    }
    await api.client.conferences.actions.end_conference(conf)
