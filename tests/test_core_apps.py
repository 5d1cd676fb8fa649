"""Application calls in the core, on the in-memory FakeMediaServer: the real CallController and
AppCalls driven through the REST facade (CallControl), each scenario asserting the whole wire
sequence a device heard and the whole sequence of webhooks the application would get (the
application events rendered by the webhook adapter), and that nothing leaked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from callbridge.core.app_events import AppEvent
from callbridge.core.app_media import AppPlayback, AppRecording
from callbridge.core.app_model import AppCall
from callbridge.core.appcalls import AppCalls
from callbridge.core.control import CallControl
from callbridge.core.gather import Gather
from callbridge.core.queues import QueueEntry
from callbridge.errors import ErrorCode, ProtocolError
from callbridge.media.interface import AudioSpec
from callbridge.statemachine import check_table
from callbridge.webhooks.telnyx import Webhook, telnyx_webhooks
from core_world import ANSWER, ANY, Phone, User, World, open_world, ringing

LINE = "7000"  # routed to the application
URL = "http://callbridge.test"


@dataclass
class Application:
    id: str = "app-1"
    application_name: str = "IVR"
    active: bool = True
    webhook_event_url: str = "http://app.test/hook"
    webhook_event_failover_url: str | None = None


@dataclass
class AppStore:
    """The store as application calls need it: one route, one application, the users of the
    controller's directory, recordings kept."""

    world: World
    application: Application = field(default_factory=Application)
    recordings: list[dict[str, Any]] = field(default_factory=list)

    async def find_route(self, destination: str, account_id: str = "default") -> str | None:
        return self.application.id if destination == LINE else None

    async def get_application(self, application_id: str) -> Any:
        return self.application if application_id == self.application.id else None

    async def find_user(self, destination: str, account_id: str = "default") -> Any:
        return await self.world.directory.find_user(destination, account_id)

    async def add_recording(self, **fields: Any) -> None:
        self.recordings.append(fields)


@dataclass
class Apps:
    world: World
    apps: AppCalls
    control: CallControl
    store: AppStore

    def webhooks(self) -> list[Webhook]:
        """Every webhook the application would have been sent so far, in order."""
        out: list[Webhook] = []
        for event in self.world.bus:
            if isinstance(event, AppEvent) and event.application is not None:
                out.extend(telnyx_webhooks(event, URL))
        return out

    def types(self, key: str | None = None) -> list[str]:
        """The webhooks' types (about the call or conference ``key``, if given)."""
        return [t for t, p in self.webhooks() if key is None or key in _keys(p)]

    def payloads(self, event_type: str) -> list[dict[str, Any]]:
        return [p for t, p in self.webhooks() if t == event_type]

    async def parked(self, caller: Phone) -> AppCall:
        """``caller`` dials the application's line; the parked call."""
        leg_id = await self.world.call(caller, LINE)
        return self.control.call(leg_id)

    async def answered(self, caller: Phone) -> AppCall:
        call = await self.parked(caller)
        await self.control.answer(call)
        return call

    def assert_nothing_left(self) -> None:
        self.world.assert_nothing_left()
        assert self.apps.calls == {} and self.apps.by_leg == {}


def _keys(payload: dict[str, Any]) -> set[str]:
    return {str(payload.get("call_control_id")), str(payload.get("conference_id"))}


@pytest.fixture
async def apps(tmp_path: Path) -> AsyncIterator[Apps]:
    async with open_world() as world:
        store = AppStore(world)
        calls = AppCalls(world.controller, store, recordings_dir=tmp_path)
        yield Apps(world, calls, CallControl(calls), store)
        await calls.shutdown()
    await calls.close()


def test_every_machine_of_application_calls_has_a_complete_transition_table() -> None:
    for machine in (AppCall, QueueEntry, Gather, AppPlayback, AppRecording):
        states = type(next(iter(machine.TRANSITIONS)))
        check_table(states, machine.TRANSITIONS)


# incoming ---------------------------------------------------------------------------------------
async def test_a_caller_is_parked_answered_and_hung_up_by_the_application(apps: Apps) -> None:
    alice = apps.world.phone("alice")
    call = await apps.parked(alice)
    assert call.state.value == "parked"
    await apps.control.answer(call)
    await apps.control.hangup(call)
    leg = call.id
    assert alice.wire == [
        {"type": "call.trying", "req_id": "c1", "call_id": leg, "media_type": "audio"},
        {"type": "sdp.answer", "call_id": leg, "sdp": ANY},
        *ringing(leg),
        {"type": "call.ringing", "call_id": leg, "ringback": True},
        {"type": "call.answered", "call_id": leg, "media_type": "audio"},
        {"type": "call.ended", "call_id": leg, "reason": "hangup"},
    ]
    assert apps.types() == ["call.initiated", "call.answered", "call.hangup"]
    initiated, hangup = apps.payloads("call.initiated")[0], apps.payloads("call.hangup")[0]
    assert initiated == {
        "call_control_id": leg,
        "call_leg_id": leg,
        "call_session_id": leg,
        "connection_id": "app-1",
        "client_state": None,
        "from": "200",
        "to": LINE,
        "direction": "incoming",
        "start_time": ANY,
        "state": "parked",
        "caller_id_name": "Alice",
    }
    assert (hangup["hangup_cause"], hangup["hangup_source"]) == ("normal_clearing", "callee")
    # (A handler of LegEnded ends the application call: its change is published from
    # inside that event's delivery, so a listener of everything sees it first.)
    assert apps.world.facts("application call") == [
        f"LegInitiated:{leg}",
        "application call:answered",
        "application call:ended",
        f"LegEnded:{leg}:hangup",
    ]
    apps.assert_nothing_left()


async def test_a_parked_call_the_application_rejects_busy_ends_busy(apps: Apps) -> None:
    alice = apps.world.phone("alice")
    call = await apps.parked(alice)
    await apps.control.reject(call, busy=True)
    assert alice.wire[-1] == {"type": "call.ended", "call_id": call.id, "reason": "busy"}
    assert apps.types() == ["call.initiated", "call.hangup"]
    hangup = apps.payloads("call.hangup")[0]
    assert (hangup["hangup_cause"], hangup["hangup_source"]) == ("user_busy", "callee")
    with pytest.raises(ProtocolError, match="has already ended"):
        await apps.control.answer(call)
    apps.assert_nothing_left()


# outgoing ---------------------------------------------------------------------------------------
async def test_the_application_dials_a_user_whose_devices_decline_one_busy(apps: Apps) -> None:
    bob1, bob2 = apps.world.phone("bob", "1"), apps.world.phone("bob", "2")
    call = await apps.control.dial(apps.store.application, "bob", "+15550001111")
    first = bob1.last("call.incoming")["call_id"]
    second = bob2.last("call.incoming")["call_id"]
    await apps.world.controller.reject(bob1, first, "busy", "r1")
    await apps.world.controller.hangup(bob2, second, "h2")
    for phone, leg, req, reason in ((bob1, first, "r1", "busy"), (bob2, second, "h2", "rejected")):
        assert phone.wire == [
            {
                "type": "call.incoming",
                "call_id": leg,
                "from": "+15550001111",
                "from_name": "",
                "to": "bob",
                "sdp": ANY,
                "media_type": "audio",
            },
            *ringing(leg),
            {"type": "call.ended", "req_id": req, "call_id": leg, "reason": reason},
        ]
    assert apps.types(call.id) == ["call.initiated", "call.hangup"]
    hangup = apps.payloads("call.hangup")[0]
    assert (hangup["hangup_cause"], hangup["hangup_source"]) == ("user_busy", "callee")
    apps.assert_nothing_left()


async def test_dialling_a_user_with_no_device_ends_at_once_as_unavailable(apps: Apps) -> None:
    apps.world.directory.users["carol"] = User("carol", "Carol", "299")  # logged in nowhere
    call = await apps.control.dial(apps.store.application, "carol", "100")
    assert call.ended
    assert apps.types() == ["call.initiated", "call.hangup"]
    assert apps.payloads("call.initiated")[0]["state"] == "bridging"
    hangup = apps.payloads("call.hangup")[0]
    assert hangup["hangup_cause"] == "unspecified" and hangup["sip_hangup_cause"] == "480"
    apps.assert_nothing_left()


async def test_the_application_hangs_up_while_the_answer_is_in_the_media_plane(
    apps: Apps,
) -> None:
    bob = apps.world.phone("bob")
    call = await apps.control.dial(apps.store.application, "bob", "100")
    leg = bob.last("call.incoming")["call_id"]
    gate = apps.world.media.hold("accept_answer", leg)
    answering = asyncio.create_task(apps.world.controller.answer(bob, leg, ANSWER, "a1"))
    await gate.reached()  # bob's answer claimed the call; the media plane has it ...
    await apps.control.hangup(call)  # ... as the application hangs up
    gate.release()
    await answering
    assert bob.wire[-1] == {"type": "call.ended", "call_id": leg, "reason": "hangup"}
    assert [m["type"] for m in bob.wire].count("call.ended") == 1
    assert "error" not in [m["type"] for m in bob.wire]
    assert apps.types(call.id) == ["call.initiated", "call.hangup"]
    assert apps.payloads("call.hangup")[0]["hangup_source"] == "caller"
    apps.assert_nothing_left()


# bridging, queues, gather, DTMF -----------------------------------------------------------------
async def test_an_agent_takes_the_longest_waiting_caller_from_a_queue(apps: Apps) -> None:
    alice, carol, agent = (apps.world.phone(n) for n in ("alice", "carol", "agent"))
    first, second = await apps.answered(alice), await apps.answered(carol)
    await apps.control.enqueue(first, "support")
    await apps.control.enqueue(second, "support")
    dialled = await apps.control.dial(apps.store.application, "agent", "100")
    await apps.world.controller.answer(agent, agent.last("call.incoming")["call_id"], ANSWER, "a")
    alice.clear()
    agent.clear()
    taken = await apps.control.bridge_queue(dialled, "support", park_after_unbridge=False)
    assert taken is first
    assert dialled.leg is not None and apps.world.media.partner(first.id) == dialled.leg.id
    assert alice.wire == [
        {
            "type": "call.bridged",
            "call_id": first.id,
            "peer": "202",
            "peer_name": "Agent",
            "queue": "support",
            "wait_time_secs": 0,
        }
    ]
    assert agent.wire == [{**alice.wire[0], "call_id": ANY, "peer": "200", "peer_name": "Alice"}]
    assert apps.types(first.id)[-3:] == ["call.enqueued", "call.dequeued", "call.bridged"]
    dequeued = apps.payloads("call.dequeued")[0]
    assert (dequeued["reason"], dequeued["queue_position"]) == ("bridged", 1)
    queue = apps.control.queue("support")
    assert queue is not None and [e.call for e in queue.entries] == [second]
    await apps.control.hangup(first)  # its bridge partner is hung up too (no park_after_unbridge)
    await apps.world.media.settle()
    assert dialled.ended and agent.wire[-1]["type"] == "call.ended"
    await apps.control.hangup(second)
    assert apps.types(second.id)[-2:] == ["call.dequeued", "call.hangup"]
    apps.assert_nothing_left()


async def test_digits_are_reported_and_gathered_until_the_terminating_one(apps: Apps) -> None:
    alice = apps.world.phone("alice")
    call = await apps.answered(alice)
    apps.control.gather(
        call,
        minimum=1,
        maximum=4,
        terminating="#",
        valid="0123456789",
        timeout=10,
        initial_timeout=5,
        inter_digit_timeout=5,
        gather_id="pin",
    )
    gather = call.gather
    for digit in "12#":
        apps.world.media.emit_dtmf(call.id, digit)
    assert apps.types(call.id)[2:] == [
        "call.dtmf.received",
        "call.dtmf.received",
        "call.dtmf.received",
        "call.gather.ended",
    ]
    gathered = apps.payloads("call.gather.ended")[0]
    assert (gathered["digits"], gathered["status"], gathered["gather_id"]) == ("12", "valid", "pin")
    assert call.gather is None and not apps.apps.scheduler.armed((gather, "total"))
    await apps.control.hangup(call)
    apps.assert_nothing_left()


async def test_dtmf_to_a_device_goes_through_the_media_plane_and_the_device_hears_of_it(
    apps: Apps,
) -> None:
    alice = apps.world.phone("alice")
    call = await apps.answered(alice)
    alice.clear()
    await apps.control.send_dtmf(call, "1w#", 300)
    await apps.world.media.settle()
    assert [(d.endpoint_id, d.digits, d.duration_ms) for d in apps.world.media.dtmf_sent] == [
        (call.id, "1w#", 300)
    ]
    assert alice.wire == [
        {"type": "call.dtmf", "call_id": call.id, "digit": "1"},
        {"type": "call.dtmf", "call_id": call.id, "digit": "#"},
    ]
    with pytest.raises(ProtocolError) as bad:
        await apps.control.send_dtmf(call, "1x", 300)
    assert bad.value.code is ErrorCode.INVALID_DIGITS
    await apps.control.hangup(call)
    apps.assert_nothing_left()


async def test_a_playback_still_playing_when_the_call_ends_is_reported_call_hangup(
    apps: Apps,
) -> None:
    alice = apps.world.phone("alice")
    call = await apps.answered(alice)
    url = "http://a.test/x.wav"
    [pid] = await apps.control.play(call, AudioSpec("url", url), kind="playback", media_url=url)
    await apps.control.hangup(call)
    await apps.world.media.settle()
    assert apps.types(call.id) == [
        "call.initiated",
        "call.answered",
        "call.playback.started",
        "call.playback.ended",
        "call.hangup",
    ]
    ended = apps.payloads("call.playback.ended")[0]
    assert (ended["status"], ended["media_url"], ended["overlay"]) == (
        "call_hangup",
        "http://a.test/x.wav",
        False,
    )
    assert pid not in apps.apps.playing.playbacks
    apps.assert_nothing_left()


# conferences ------------------------------------------------------------------------------------
async def test_two_plays_started_at_once_are_reported_for_their_own_participants(
    apps: Apps,
) -> None:
    a, b, c = [await apps.answered(apps.world.phone(n)) for n in ("alice", "bob", "carol")]
    record = await apps.control.create_conference(a, "room")
    for call in (b, c):
        await apps.control.join(record.id, call)
    media = apps.world.media
    slow = media.hold("mixer_play")  # bob's play loads slowly ...
    to_bob = asyncio.create_task(
        apps.control.play_to_conference(record.id, AudioSpec("url", "http://a.test/b.wav"), [b])
    )
    await slow.reached()
    to_carol = await apps.control.play_to_conference(  # ... carol's starts first
        record.id, AudioSpec("url", "http://a.test/c.wav"), [c]
    )
    slow.release()
    to_bob_id = await to_bob
    media.end_playback(to_carol)
    media.end_playback(to_bob_id, "stopped")
    plays = [
        (t, p["call_control_id"], p.get("status")) for t, p in apps.webhooks() if ".playback." in t
    ]
    assert plays == [
        ("conference.participant.playback.started", c.id, None),
        ("conference.participant.playback.started", b.id, None),
        ("conference.participant.playback.ended", c.id, "completed"),
        ("conference.participant.playback.ended", b.id, "stopped"),
    ]
    await apps.control.end_conference(record.id)
    ended = apps.payloads("conference.ended")[0]
    assert "reason" not in ended  # ended via the API: the SDK's model has no such reason
    assert apps.control.conference_record(record.id) is record
    assert record.end_reason == "ended_via_api"
    apps.assert_nothing_left()
