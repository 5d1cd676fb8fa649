"""DTMF an application sends (REST ``send_dtmf``) goes through the media plane: a device that
negotiated telephone-event gets RFC 4733 events on its RTP stream (RFC 4733 section 2.5), one
per digit, and a ``call.dtmf`` message per digit; the ``w`` pause sends nothing. Against the
real server, with the official telnyx SDK and a real aiortc softphone."""

from __future__ import annotations

import pytest

from api_helpers import Api, api_fixture  # noqa: F401  (the fixtures)
from callbridge.client import SilenceSource
from conftest import MakeParty
from parties import BOB, until

pytestmark = pytest.mark.timeout(60)


async def test_digits_the_app_sends_arrive_as_rfc4733_events_and_call_dtmf_messages(
    api: Api, party: MakeParty
) -> None:
    bob = await party(BOB)
    dialled = await api.client.calls.dial(
        connection_id=api.app_id, to=bob.user.extension, from_="+15550001111"
    )
    assert dialled.data is not None and dialled.data.call_control_id is not None
    ccid = dialled.data.call_control_id
    incoming = await bob.ringing()
    await incoming.answer(source=SilenceSource(), sink=bob.sink)
    await api.sink.wait("call.answered", call_control_id=ccid)
    assert incoming.media is not None
    events: list[str] = []  # what arrived on the RTP stream (the client's RFC 4733 detector)
    messages: list[str] = []  # call.dtmf
    incoming.media.on_dtmf = events.append
    incoming.on("dtmf", messages.append)

    await api.client.calls.actions.send_dtmf(ccid, digits="1w#", duration_millis=200)
    await until(lambda: len(events) == 2, within=5)
    assert events == ["1", "#"]
    assert messages == ["1", "#"]

    await api.client.calls.actions.hangup(ccid)
    await incoming.wait_for("ended", timeout=5)
    await api.sink.wait("call.hangup", call_control_id=ccid)
    assert api.sink.types(ccid) == ["call.initiated", "call.answered", "call.hangup"]
