"""Seed 000's call group: the phone's answered calls merged into one conversation.

:class:`CallGroup` (``phone.conference_group``) is seed 000's ``TelephonyCallGroup``: it
merges the phone's answered calls into one conversation on the server's mixer. The group's
audio arrives on its :attr:`CallGroup.media_call` (the oldest call in it) and our voice is
taken from that call only: the other calls in the group stay connected but carry no audio
(one microphone, one loudspeaker).

Its events go to the group's handlers (``group.on("callschanged", handler)``; no arguments)
and to ``phone.events()``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any, ClassVar, Literal

from callbridge.client.call import Call, Event
from callbridge.client.emitter import EventEmitter, TaskOwner
from callbridge.client.errors import CallStateError
from callbridge.client.eventnames import GroupEventName
from callbridge.client.stream import EventHub
from callbridge.client.transport import Requester
from callbridge.errors import RemoteError
from callbridge.statemachine import StateMachine

__all__ = ["GROUP_MESSAGES", "CallGroup", "GroupState"]

log = logging.getLogger(__name__)

GROUP_MESSAGES = frozenset(
    {
        "conference.merged",
        "conference.updated",
        "conference.held",
        "conference.resumed",
        "conference.ended",
    }
)
"""The ``conference.*`` messages about the call group."""


class GroupState(StrEnum):
    """The call group as this phone sees it (seed 000's ``state``; compare with strings)::

    NONE ──add()──▶ CONNECTED ──hold()──▶ HOLDING ──conference.held──▶ HELD
                      ▲  ▲  │                │ refused                 │ resume()
                      │  │  └◀───────────────┘                         ▼
                      │  └──────────────── conference.resumed ──── RESUMING ──refused──▶ HELD
                      └─ conference.resumed ◀── HELD ◀── conference.held ── CONNECTED
    any state ──the last call left / hang_up() / conference.ended──▶ NONE
    """

    NONE = ""  # no group
    CONNECTED = "connected"  # the calls talk together, and we with them
    HOLDING = "holding"  # hold() sent
    HELD = "held"  # we hear nothing and are not heard; the others go on talking
    RESUMING = "resuming"  # resume() sent


_FOLLOWED = {"connected": GroupState.CONNECTED, "held": GroupState.HELD}


class CallGroup(StateMachine[GroupState]):
    """Seed 000's call group: the phone's calls merged into one conversation.

    :attr:`calls` are the calls in the group (they leave ``phone.calls``); :attr:`state` is
    ``""`` (no group), ``"connected"``, ``"holding"``, ``"held"`` or ``"resuming"`` (a
    :class:`GroupState`). Events (``group.on(name, handler)``, handlers take no arguments):
    ``callschanged``, ``statechange``, ``connected``, ``holding``, ``held``, ``resuming``,
    ``error`` (the handler gets the :class:`~callbridge.errors.RemoteError`).
    """

    TRANSITIONS: ClassVar[Mapping[GroupState, frozenset[GroupState]]] = {
        GroupState.NONE: frozenset({GroupState.CONNECTED, GroupState.HELD}),
        GroupState.CONNECTED: frozenset({GroupState.HOLDING, GroupState.HELD, GroupState.NONE}),
        GroupState.HOLDING: frozenset({GroupState.HELD, GroupState.CONNECTED, GroupState.NONE}),
        GroupState.HELD: frozenset({GroupState.RESUMING, GroupState.CONNECTED, GroupState.NONE}),
        GroupState.RESUMING: frozenset({GroupState.CONNECTED, GroupState.HELD, GroupState.NONE}),
    }

    def __init__(
        self,
        requester: Requester,
        tasks: TaskOwner,
        hub: EventHub,
        lookup: Callable[[str], Call | None],
    ) -> None:
        self._requester = requester
        self._hub = hub
        self._lookup = lookup
        self.id: str | None = None
        self.state = GroupState.NONE
        self._calls: list[Call] = []
        self.media_call: Call | None = None
        """The call whose media carries the group's audio (our voice and the mix)."""
        self._emitter: EventEmitter[GroupEventName] = EventEmitter(tasks)

    def __repr__(self) -> str:
        return f"<CallGroup {self.id} {self.state.value!r} calls={len(self._calls)}>"

    @property
    def calls(self) -> list[Call]:
        return list(self._calls)

    def on(self, name: GroupEventName, handler: Callable[..., object]) -> Callable[..., object]:
        return self._emitter.add(name, handler)

    def off(self, name: GroupEventName, handler: Callable[..., object]) -> None:
        self._emitter.off(name, handler)

    def _emit(self, name: GroupEventName, *args: object) -> None:
        self._emitter.emit(name, *args)
        self._hub.publish(Event(name, self.media_call, {"conference_id": self.id}))

    def _set_state(self, new: GroupState, cause: str) -> None:
        if self.transition(new, cause=cause) is not None:
            self._emit("statechange")
            if new is GroupState.CONNECTED:
                self._emit("connected")
            elif new is GroupState.HELD:
                self._emit("held")

    def _follow(self, msg: dict[str, Any]) -> None:
        """The server's view of the group (``conference.merged`` / ``updated`` / ...)."""
        self.id = str(msg.get("conference_id") or self.id or "")
        ids = [str(x) for x in msg.get("call_ids") or []]
        calls = [c for c in (self._lookup(i) for i in ids) if c is not None]
        media_id = msg.get("media_call_id")
        self.media_call = self._lookup(str(media_id)) if media_id else None
        if calls != self._calls:
            self._calls = calls
            self._emit("callschanged")
        state = _FOLLOWED.get(str(msg.get("state")))
        if state is not None:
            if self.can(state):
                self._set_state(state, str(msg.get("type")))
            else:
                log.warning("call group %s: %s cannot become %s", self.id, self.state, state)

    def handle(self, msg: dict[str, Any]) -> None:
        """Take one ``conference.*`` message about the group (the phone routes them here)."""
        kind = msg.get("type")
        if kind == "conference.ended":
            self._dissolve()
        elif kind == "conference.held":
            self._follow({**msg, "state": "held"})
        elif kind == "conference.resumed":
            self._follow({**msg, "state": "connected"})
        else:
            self._follow(msg)

    def _dissolve(self) -> None:
        self.id = None
        self.media_call = None
        if self._calls:
            self._calls = []
            self._emit("callschanged")
        self._set_state(GroupState.NONE, "dissolved")

    def call_ended(self, call: Call) -> None:
        """A call of ours ended; the server's ``conference.updated`` follows, but the list
        must not hold an ended call meanwhile."""
        if call in self._calls:
            self._calls.remove(call)
            self._emit("callschanged")
            if not self._calls:
                self._dissolve()

    async def _request(self, kind: str, **fields: Any) -> dict[str, Any]:
        try:
            return await self._requester.request({"type": kind, **fields})
        except RemoteError as exc:
            self._emitter.emit("error", exc)
            self._hub.publish(Event("error", None, {"conference_id": self.id, "error": str(exc)}))
            raise

    async def add(self, *calls: Call) -> None:
        """Merge answered calls into the group (created by the first ``add`` of two calls).

        A held call is resumed by the merge. Fires ``callschanged`` (and ``statechange`` /
        ``connected`` when the group starts).
        """
        if not calls:
            raise CallStateError("add() needs at least one call")
        fields: dict[str, Any] = {"call_ids": [c.id for c in calls]}
        if self.id is not None:
            fields["conference_id"] = self.id
        self._follow(await self._request("conference.merge", **fields))

    async def remove(self, call: Call) -> None:
        """Take ``call`` out of the group: it is an ordinary call again (back in
        ``phone.calls``). A group left with one call dissolves."""
        if self.id is None or call not in self._calls:
            raise CallStateError(f"call {call.id} is not in the call group")
        reply = await self._request("conference.split", conference_id=self.id, call_id=call.id)
        self.handle(reply)

    async def hang_up(self) -> None:
        """Hang up every call in the group."""
        if self.id is None:
            raise CallStateError("there is no call group to hang up")
        calls = list(self._calls)
        await self._request("conference.end", conference_id=self.id)
        for call in calls:
            await call.wait_for("ended", timeout=self._requester.request_timeout)
        self._dissolve()

    async def hold(self) -> None:
        """Hold the whole group: we hear nothing and are not heard; the others go on
        talking to each other (as GSM multiparty does)."""
        await self._switch("hold", GroupState.CONNECTED, GroupState.HOLDING, "holding")

    async def resume(self) -> None:
        """Resume a held group."""
        await self._switch("resume", GroupState.HELD, GroupState.RESUMING, "resuming")

    async def _switch(
        self,
        verb: Literal["hold", "resume"],
        settled: GroupState,
        passing: GroupState,
        event: GroupEventName,
    ) -> None:
        """``conference.hold`` / ``resume``: from ``settled`` to ``passing`` (announced as
        ``event``) until the server's reply moves the group on; a refusal goes back."""
        if self.id is None or self.state is not settled:
            raise CallStateError(
                f"{verb}() needs a {settled.value} call group; it is {self.state.value!r}"
            )
        self._set_state(passing, f"{verb}()")
        self._emit(event)
        try:
            self.handle(await self._request(f"conference.{verb}", conference_id=self.id))
        except RemoteError:
            self._set_state(settled, f"{verb} refused")
            raise
