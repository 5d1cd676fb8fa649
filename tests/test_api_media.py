"""Uploaded media with the official telnyx SDK: upload from a URL, list, retrieve, download,
play by ``media_name`` to a call (heard by the softphone), update, delete; files that are not
audio and names that do not exist are refused with the field named."""

from __future__ import annotations

import pytest
import telnyx

from api_helpers import (  # noqa: F401  (the fixtures)
    PROMPT,
    Api,
    api_fixture,
    audio_site_fixture,
)
from conftest import MakeParty
from parties import BOB, HEARD, level

pytestmark = pytest.mark.timeout(60)


async def test_uploaded_media_is_listed_downloaded_played_by_name_and_deleted(
    api: Api, party: MakeParty, audio_site: str
) -> None:
    media = api.client.media
    up = await media.upload(media_url=f"{audio_site}/prompt.wav", media_name="greeting")
    assert up.data is not None and up.data.media_name == "greeting"
    assert up.data.content_type is not None and up.data.content_type.startswith("audio/")
    assert up.data.expires_at is not None
    listed = await media.list()
    assert "greeting" in [m.media_name for m in listed.data or []]
    got = await media.retrieve("greeting")
    assert got.data is not None and got.data.created_at is not None
    raw = await media.download("greeting")
    assert (await raw.read())[:4] == b"RIFF"

    bob = await party(BOB)
    dialled = await api.client.calls.dial(
        connection_id=api.app_id, to=bob.user.extension, from_="+15550004444"
    )
    assert dialled.data is not None
    ccid = dialled.data.call_control_id
    call = await bob.answer()
    await api.sink.wait("call.answered", call_control_id=ccid)
    await api.client.calls.actions.start_playback(ccid, media_name="greeting", loop=3)
    started = await api.sink.wait("call.playback.started", call_control_id=ccid)
    assert started.payload["media_name"] == "greeting"
    assert await level(bob.sink, PROMPT) > HEARD
    with pytest.raises(telnyx.UnprocessableEntityError) as err:
        await api.client.calls.actions.start_playback(ccid, media_name="no-such-media")
    assert err.value.body["errors"][0]["source"] == {"pointer": "/media_name"}  # type: ignore[index]
    await call.hangup()

    updated = await media.update("greeting", ttl_secs=60)
    assert updated.data is not None and updated.data.expires_at != up.data.expires_at
    with pytest.raises(telnyx.UnprocessableEntityError) as err:
        await media.upload(media_url=f"{audio_site}/prompt.wav", media_name="greeting")
    assert "exists already" in str(err.value.body)
    await media.delete("greeting")
    with pytest.raises(telnyx.NotFoundError):
        await media.retrieve("greeting")


async def test_uploads_that_are_not_audio_or_not_reachable_are_refused(
    api: Api, audio_site: str
) -> None:
    media = api.client.media
    for url, text in (
        (f"{audio_site}/not-audio.wav", "not audio"),
        (f"{audio_site}/missing.wav", "could not fetch"),  # no status: see test_outbound
        ("file:///etc/passwd", "http"),
    ):
        with pytest.raises(telnyx.UnprocessableEntityError) as err:
            await media.upload(media_url=url, media_name="bad")
        error = err.value.body["errors"][0]  # type: ignore[index]
        assert text in error["detail"] and error["source"] == {"pointer": "/media_url"}, error
    with pytest.raises(telnyx.UnprocessableEntityError) as err:
        await media.upload(media_url=f"{audio_site}/prompt.wav", media_name="../escape")
    assert err.value.body["errors"][0]["source"] == {"pointer": "/media_name"}  # type: ignore[index]
