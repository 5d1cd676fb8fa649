"""SIP legs in the core's features (issue 11, "Conferences, call groups, queues and the REST API
work on SIP legs as on any leg"), with real peers: a registered baresip (its ``aufile`` tone as
microphone, a recording of what it hears) and /ws softphones (the aiortc Python SDK), on one
real ``callbridge serve`` with SIP for the whole module. The REST application is the official
``telnyx`` SDK (tests/api_helpers.py).

Every way the core rings a user rings its registered SIP phones too (``ringable_devices``): a
conference invitation (the phone sees an ordinary call from the host), a ``call.move`` to
another device of the user, and an application's dial (POST /v2/calls), here the agent a queue
is bridged to. What each party hears is checked by tone analysis: each sends its own tone
(tests/parties.py), baresip 1400 Hz.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest

from api_helpers import Api, api_fixture  # noqa: F401  (the fixture)
from callbridge.client import Conference
from callbridge.errors import RemoteError
from callbridge.media.players import HOLD_MUSIC_NOTES
from callbridge.store import Store
from callbridge.testing import tone_level_db
from callbridge.testing.server import Server, running
from conftest import RING_TIMEOUT, SESSION_GRACE, MakeParty, MakeUser
from parties import ABSENT, ALICE, BOB, HEARD, SILENT, Party, PartyUser, level
from sip_peers import LOOPBACK, PASSWORD, Baresip, missing_tools, read_wav
from test_conferences import Recorder, host, invite_and_join

pytestmark = [pytest.mark.skipif(bool(missing_tools()), reason="needs baresip"),
              pytest.mark.timeout(60)]  # fmt: skip

DESK = 1400.0  # baresip's tone (parties.CAROL's, no /ws party here sends it)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """This module's server, with SIP (the conftest's has none); the api/party/make_user
    fixtures use it through this name. Checked clean on the way out (Server.check_clean)."""
    with running(
        tmp_path_factory.mktemp("sipcore"),
        sip_port=True,
        ring_timeout=RING_TIMEOUT + 2,
        session_grace=SESSION_GRACE,
    ) as srv:
        yield srv


@pytest.fixture(scope="module")
async def store(server: Server) -> AsyncIterator[Store]:
    async with server.store() as st:
        yield st


async def desk_phone(
    server: Server, store: Store, user: PartyUser, folder: Path, answer: str
) -> Baresip:
    """A baresip of ``user`` (given a SIP password), registered by a real REGISTER (401, then
    200; waited for in the store, which the REGISTER's 200 follows)."""
    await store.set_sip_password(user.name, PASSWORD, LOOPBACK)
    phone = Baresip(
        folder,
        user=user.name,
        domain=f"{LOOPBACK}:{server.sip_port}",
        password=PASSWORD,
        regint=120,
        tone_hz=DESK,
        answer=answer,
    )
    await phone.start()
    try:
        async with asyncio.timeout(10):
            while not any(  # noqa: ASYNC110 (the server's store: no event to wait on)
                f":{phone.port}" in b.contact for b in await store.bindings(user.name)
            ):
                await asyncio.sleep(0.05)
    except BaseException:
        await phone.stop()
        raise
    return phone


async def music(p: Party) -> float:
    """The loudest of the hold music's first notes in one listen of what ``p`` hears next (a
    melody: one note or another sounds at any moment)."""
    p.sink.clear()
    await asyncio.sleep(1.0)  # the measurement: let 0.8 s of audio arrive (and 0.2 s spare)
    pcm = p.sink.samples(0.8)
    if len(pcm) < 48000 * 0.4:
        return -120.0  # (almost) nothing arrived: silence
    return max(tone_level_db(pcm, 48000, f) for f in HOLD_MUSIC_NOTES[:3])


def heard_by(phone: Baresip, freq: float, last: float = 1.5) -> float:
    """Level of ``freq`` in the last ``last`` seconds (but the final 0.3 s) of what the phone
    heard on its latest call (its recording is complete once it stopped)."""
    pcm, rate = read_wav(phone.recordings()[-1].dec)
    tail = pcm[-int(rate * (last + 0.3)) : -int(rate * 0.3)]
    assert len(tail) > rate * last / 2, "the phone recorded almost nothing"
    return tone_level_db(tail.astype(np.int16), rate, freq)


async def test_a_sip_phone_invited_into_a_conference_is_heard_and_removed(
    server: Server, store: Store, party: MakeParty, make_user: MakeUser, tmp_path: Path
) -> None:
    """A /ws host invites a user whose only device is a registered baresip: the phone gets an
    ordinary INVITE from the host, answers, and alice (host) and bob (participant) hear its
    1400 Hz while it hears both of them; the host removes it: BYE, and its tone is gone."""
    alice, bob = await party(ALICE), await party(BOB)
    carol = await make_user()  # her only device is her desk phone
    desk = await desk_phone(server, store, carol, tmp_path / "desk", answer="auto")
    try:
        seen = Recorder(alice)
        conf = await host(alice)
        await invite_and_join(conf, bob)
        await conf.add_participant(carol.extension)
        incoming = await desk.wait_event("CALL_ESTABLISHED", limit=10)  # auto-answered
        await seen.wait("conference:invitation-accepted", count=2)
        assert set(conf.participants) == {bob.user.extension, carol.extension}, seen.events
        assert await level(alice.sink, DESK) > HEARD, "the host does not hear the phone"
        assert await level(bob.sink, DESK) > HEARD, "the participant does not hear the phone"
        await alice.phone.remove_participant(carol.extension)
        await desk.wait_event("CALL_CLOSED", limit=5)
        assert set(conf.participants) == {bob.user.extension}
        assert await level(bob.sink, DESK) < ABSENT, "the removed phone is still heard"
        await conf.end()
    finally:
        await desk.stop()
    assert alice.user.number in str(incoming.get("peeruri")), incoming
    assert heard_by(desk, ALICE) > HEARD, "the phone does not hear the host"
    assert heard_by(desk, BOB) > HEARD, "the phone does not hear the participant"


async def test_inviting_a_user_with_no_device_and_no_phone_is_a_clear_error(
    store: Store, party: MakeParty, make_user: MakeUser
) -> None:
    """A SIP user without a live registration (and no /ws session) cannot be invited:
    ``destination_not_found``, saying what is missing."""
    alice, carol = await party(ALICE), await make_user()
    await store.set_sip_password(carol.name, PASSWORD, LOOPBACK)
    conf: Conference = await host(alice)
    with pytest.raises(RemoteError) as info:
        await conf.add_participant(carol.extension)
    assert info.value.code == "destination_not_found"
    assert "no device logged in or SIP phone registered" in info.value.message
    await conf.end()


async def test_a_queue_is_bridged_to_a_sip_agent_the_application_dialled(
    api: Api, server: Server, store: Store, party: MakeParty, make_user: MakeUser, tmp_path: Path
) -> None:
    """alice calls the application's line and waits in a queue hearing hold music; the
    application dials (POST /v2/calls) an agent whose only device is a registered baresip:
    it rings (INVITE from the ``from`` the application gave), answers (``call.answered``), and
    the queue's bridge connects them: alice hears the phone's 1400 Hz, the phone hears
    alice's 440 Hz. The application's hangup of the agent is a BYE to the phone."""
    line = await api.line()
    alice, agent = await party(ALICE), await make_user()
    desk = await desk_phone(server, store, agent, tmp_path / "agent", answer="auto")
    actions = api.client.calls.actions
    try:
        call = await alice.call(line)
        initiated = await api.sink.wait("call.initiated", call_control_id=call.id)
        waiting = initiated.payload["call_control_id"]
        await actions.answer(waiting)
        await call.wait_for("answered", timeout=5)
        await actions.enqueue(waiting, queue_name="sip-agents")
        await api.sink.wait("call.enqueued", call_control_id=waiting)
        assert await music(alice) > HEARD, "the waiting caller hears no music"
        dialled = await api.client.calls.dial(
            connection_id=api.app_id, to=agent.extension, from_="+15550009999"
        )
        assert dialled.data is not None
        agent_id = dialled.data.call_control_id
        incoming = await desk.wait_event("CALL_ESTABLISHED", limit=10)  # auto-answered
        await api.sink.wait("call.answered", call_control_id=agent_id)
        await actions.bridge(agent_id, call_control_id_to_bridge_with="", queue="sip-agents")
        dequeued = await api.sink.wait("call.dequeued", call_control_id=waiting)
        assert dequeued.payload["reason"] == "bridged"
        assert await level(alice.sink, DESK) > HEARD, "the caller does not hear the agent"
        assert await music(alice) < SILENT, "hold music goes on after the bridge"
        await actions.hangup(agent_id)
        await desk.wait_event("CALL_CLOSED", limit=5)
        await call.wait_for("ended", timeout=5)  # the bridged caller follows
    finally:
        await desk.stop()
    assert "+15550009999" in str(incoming.get("peeruri")), incoming
    assert heard_by(desk, ALICE) > HEARD, "the agent's phone does not hear the caller"


async def test_a_call_group_merges_a_sip_leg_with_a_ws_leg(
    server: Server, store: Store, party: MakeParty, make_user: MakeUser, tmp_path: Path
) -> None:
    """alice calls carol's desk phone (baresip) and bob (/ws), then merges both calls into
    her call group (seed 000 ``conferenceGroup``): bob hears the phone and the phone hears
    bob (and both hear alice); hanging up the group sends the phone BYE."""
    alice, bob, carol = await party(ALICE), await party(BOB), await make_user()
    desk = await desk_phone(server, store, carol, tmp_path / "desk", answer="auto")
    try:
        to_desk = await alice.call(carol.extension)
        await to_desk.wait_for("answered", timeout=10)
        to_bob = await alice.call(bob.user.extension)
        at_bob = await bob.answer()
        await to_bob.wait_for("answered", timeout=5)
        group = alice.phone.conference_group
        await group.add(to_desk, to_bob)
        assert await level(bob.sink, DESK) > HEARD, "bob does not hear the SIP phone"
        assert await level(bob.sink, ALICE) > HEARD
        assert await level(alice.sink, DESK) > HEARD
        await group.hang_up()
        await desk.wait_event("CALL_CLOSED", limit=5)
        await at_bob.wait_for("ended", timeout=5)
    finally:
        await desk.stop()
    assert heard_by(desk, BOB, last=1.0) > HEARD, "the SIP phone does not hear bob"
    assert heard_by(desk, ALICE, last=1.0) > HEARD


async def test_a_call_moves_to_the_users_sip_phone(
    server: Server, store: Store, party: MakeParty, tmp_path: Path
) -> None:
    """bob talks to alice on his /ws softphone and moves the call (``call.move``) to his desk
    phone (baresip): the phone rings (it rang for the call too, and was CANCELed when bob
    answered), answers and takes over; alice's call goes on with the phone's 1400 Hz."""
    alice, bob = await party(ALICE), await party(BOB)
    desk = await desk_phone(server, store, bob.user, tmp_path / "desk", answer="manual")
    try:
        to_bob = await alice.call(bob.user.extension)
        at_bob = await bob.answer()
        await to_bob.wait_for("answered", timeout=5)
        await desk.wait_event("CALL_CLOSED", limit=5)  # rang with bob's softphone, CANCELed
        mark = len(desk.events)
        await at_bob.move()
        await desk.wait_event("CALL_INCOMING", limit=5, after=mark)
        await desk.command("accept")
        await desk.wait_event("CALL_ESTABLISHED", limit=5, after=mark)
        assert (await at_bob.wait_for("ended", timeout=5)).data["reason"] == "moved"
        assert to_bob.state == "active"
        assert await level(alice.sink, DESK) > HEARD, "alice does not hear the desk phone"
        assert await level(alice.sink, BOB) < SILENT
        await to_bob.hangup()
        await desk.wait_event("CALL_CLOSED", limit=5, after=mark)
    finally:
        await desk.stop()
    assert heard_by(desk, ALICE, last=1.0) > HEARD, "the desk phone does not hear alice"


async def test_a_sip_phone_declining_an_invitation_is_a_rejected_invitation(
    server: Server, store: Store, party: MakeParty, make_user: MakeUser, tmp_path: Path
) -> None:
    """The invited phone rings (an INVITE from the host) and its user declines it: the phone's
    final response ends the invitation, and the host gets ``invitation-rejected``."""
    alice, carol = await party(ALICE), await make_user()
    desk = await desk_phone(server, store, carol, tmp_path / "desk", answer="manual")
    try:
        seen = Recorder(alice)
        conf = await host(alice)
        await conf.add_participant(carol.extension)
        await desk.wait_event("CALL_INCOMING", limit=5)
        await desk.hangup()  # baresip refuses the ringing call
        rejected = await seen.wait("conference:invitation-rejected")
        await desk.wait_event("CALL_CLOSED", limit=5)
        await conf.end()
    finally:
        await desk.stop()
    assert rejected["invitee"] == carol.extension and rejected["reason"] == "rejected", rejected
    assert conf.participants == {}
