"""The phone's call list without a server: what an attended transfer does when its
consultation fails, whatever the timing of the failure.

An in-memory requester answers ``call.hold`` / ``call.resume`` the way the server does (the
reply goes to the call list, which hands it to the call), and a call list whose ``dial`` is
scripted plays the consultation's fate. The whole request sequence is asserted.
"""

# These tests assert a call's state, act (await), then assert the new state; mypy keeps the
# first assertion's narrowing across the await and calls what follows unreachable.
# mypy: no-warn-unreachable

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from callbridge.client import AudioSink, AudioSource, Call, CallMedia
from callbridge.client.calllist import CallList, Dial
from callbridge.client.emitter import EventEmitter, TaskOwner
from callbridge.client.stream import EventHub

_REPLIES = {"call.hold": "call.held", "call.resume": "call.resumed"}


class FakeServer:
    """A :class:`~callbridge.client.transport.Requester` that holds and resumes calls."""

    request_timeout = 1.0

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.calls: CallList | None = None
        self._req_ids = 0

    def new_req_id(self) -> str:
        self._req_ids += 1
        return f"fake-{self._req_ids}"

    async def request(self, message: Mapping[str, Any]) -> dict[str, Any]:
        self.sent.append(dict(message))
        call_id = str(message["call_id"])
        reply = {"type": _REPLIES[str(message["type"])], "call_id": call_id, "by": "local"}
        assert self.calls is not None
        self.calls.deliver(call_id, reply)
        return reply


class ScriptedDial(CallList):
    """``dial`` places the consultation; it is rejected busy before or after it is returned."""

    def __init__(self, server: FakeServer, tasks: TaskOwner, *, busy_at_once: bool) -> None:
        super().__init__(
            server,
            tasks,
            EventHub(),
            EventEmitter(tasks),
            _no_media,
            require_ready=lambda action: None,
            is_ready=lambda: True,
            own_number=lambda: "201",
        )
        self.busy_at_once = busy_at_once
        server.calls = self

    async def dial(self, dial: Dial) -> Call:
        consult = self.adopt(Call(self, "consult", "outgoing", to=dial.destination))
        consult.deliver({"type": "call.ringing", "call_id": consult.id})
        if self.busy_at_once:  # the reader got call.ended before dial() resumed
            self.busy(consult)
        return consult

    def busy(self, consult: Call) -> None:
        consult.deliver({"type": "call.ended", "call_id": consult.id, "reason": "busy"})


def _no_media(
    source: AudioSource | None, sink: AudioSink | None, codecs: Sequence[str] | None
) -> CallMedia:
    raise AssertionError("these calls have no media")


def _answered_call(calls: CallList) -> Call:
    call = calls.adopt(Call(calls, "original", "outgoing", to="202"))
    call.deliver({"type": "call.answered", "call_id": call.id})
    return call


async def test_a_consultation_busy_before_attended_transfer_returns_resumes_the_call() -> None:
    server, tasks = FakeServer(), TaskOwner()
    calls = ScriptedDial(server, tasks, busy_at_once=True)
    original = _answered_call(calls)
    consult = await original.attended_transfer("203")
    assert (consult.state, consult.end_reason) == ("ended", "busy")
    assert [(m["type"], m["call_id"]) for m in server.sent] == [
        ("call.hold", "original"),
        ("call.resume", "original"),
    ]
    assert original.state == "active" and original.held_by is None
    await tasks.shutdown(1.0)


async def test_a_consultation_rejected_busy_while_it_rings_resumes_the_call() -> None:
    server, tasks = FakeServer(), TaskOwner()
    calls = ScriptedDial(server, tasks, busy_at_once=False)
    original = _answered_call(calls)
    consult = await original.attended_transfer("203")
    assert original.state == "held" and consult.state == "ringing"
    calls.busy(consult)
    await original.wait_for("resumed", timeout=1.0)
    assert [(m["type"], m["call_id"]) for m in server.sent] == [
        ("call.hold", "original"),
        ("call.resume", "original"),
    ]
    assert original.state == "active"
    await tasks.shutdown(1.0)


async def test_a_call_held_before_the_consultation_stays_held_when_it_fails() -> None:
    server, tasks = FakeServer(), TaskOwner()
    calls = ScriptedDial(server, tasks, busy_at_once=True)
    original = _answered_call(calls)
    await original.hold()
    await original.attended_transfer("203")
    assert [(m["type"], m["call_id"]) for m in server.sent] == [("call.hold", "original")]
    assert original.state == "held" and original.held_explicitly
    await tasks.shutdown(1.0)
