"""The phone's calls: placing and receiving them, and seed 002's several calls at once.

:class:`CallList` keeps the live calls by id and in the order the user was on them (the
*foreground* call last), and the relations between calls: the call that ``add_call`` put on
hold (resumed when the second call ends) and the consultation of an attended transfer (its
failure resumes the transferred call). It is each call's
:class:`~callbridge.client.call.CallHost`, so a call reaches the other calls only through it.

It also routes the server's messages about calls: a ``call.trying`` that answers our
``call.create`` makes the :class:`~callbridge.client.Call`, ``call.incoming`` makes an
incoming one, and messages about a call we do not know yet (a race between its creating reply
and its first events) wait for it, a few per call.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from callbridge.client.audio import AudioSink, AudioSource
from callbridge.client.call import AnswerAction, Call, CallState, Event
from callbridge.client.emitter import EventEmitter, TaskOwner
from callbridge.client.errors import CallStateError
from callbridge.client.eventnames import ConferenceEventName, PhoneEventName
from callbridge.client.media import CallMedia
from callbridge.client.stream import EventHub
from callbridge.client.transport import Requester
from callbridge.client.video import VideoSink, VideoSource
from callbridge.errors import RemoteError
from callbridge.vocabulary import MediaType

__all__ = ["CallList", "CallSummary", "Dial", "MediaFactory"]

log = logging.getLogger(__name__)

_MAX_BUFFERED_CALLS = 64  # call_ids with messages waiting for their Call object
_MAX_BUFFERED_MESSAGES = 64  # per call_id

MediaFactory = Callable[[AudioSource | None, AudioSink | None, Sequence[str] | None], CallMedia]
"""Makes a call's peer connection with the phone's ICE settings (source, sink, codecs)."""


@dataclass(frozen=True, slots=True)
class CallSummary:
    """One entry of :meth:`Phone.get_calls` (seed 002's ``getCalls`` item)."""

    index: int
    """0-based position among the phone's live calls, oldest first."""
    breed: Literal["call", "conference"]
    """``"call"``, or ``"conference"`` for a conference's own leg."""
    type: Literal["Outgoing", "Incoming"]
    """The direction, spelled as the seed does."""
    state: str
    """The call's :class:`~callbridge.client.CallState` value: ``trying``, ``ringing``,
    ``active`` or ``held`` (the seed's ``connected`` is ``active``)."""
    peer: str
    """The far party: ``to`` of an outgoing call, ``from_`` of an incoming one."""


@dataclass(frozen=True, slots=True)
class Dial:
    """A call to place: what :meth:`Phone.call` (or :meth:`Phone.add_call`) was given."""

    destination: str
    caller_id: str | None = None  # None: the server shows our own number
    source: AudioSource | None = None
    sink: AudioSink | None = None
    codecs: Sequence[str] | None = None
    media_type: MediaType = "audio"
    video_source: VideoSource | None = None
    video_sink: VideoSink | None = None


@dataclass(slots=True)
class _Creating:
    """A call.create waiting for its call.trying."""

    media: CallMedia
    destination: str
    from_: str
    call: Call | None = None  # made at its call.trying (it may end before dial() resumes)


class CallList:
    """The calls of one phone (see the module docstring).

    :param requester: sends requests (the phone's, so they follow its session).
    :param tasks: owns handler coroutines and media work.
    :param hub: ``phone.events()``; ``emitter``: the phone's own handlers.
    :param new_media: makes peer connections with the phone's ICE settings.
    :param require_ready: raises :class:`~callbridge.client.NotConnectedError` naming the
        action unless the phone is logged in; ``is_ready``: whether it is.
    :param own_number: the caller id the server shows for us (from the session).
    """

    def __init__(
        self,
        requester: Requester,
        tasks: TaskOwner,
        hub: EventHub,
        emitter: EventEmitter[PhoneEventName | ConferenceEventName],
        new_media: MediaFactory,
        *,
        require_ready: Callable[[str], None],
        is_ready: Callable[[], bool],
        own_number: Callable[[], str],
    ) -> None:
        self._requester = requester
        self._tasks = tasks
        self._hub = hub
        self._emitter = emitter
        self._new_media = new_media
        self._require_ready = require_ready
        self._is_ready = is_ready
        self._own_number = own_number
        self._calls: dict[str, Call] = {}
        self._focus: list[Call] = []  # placed/answered live calls, the foreground one last
        self._creating: dict[str, _Creating] = {}  # by req_id of call.create
        self._early: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self._returns: dict[Call, Call] = {}  # add_call(): second call -> the first, to resume
        self._consults: dict[Call, Call] = {}  # attended_transfer(): call -> its consultation
        self._ended_listeners: list[Callable[[Call], None]] = []

    # ------------------------------------------------------------------------------------------
    # CallHost

    @property
    def tasks(self) -> TaskOwner:
        return self._tasks

    @property
    def requester(self) -> Requester:
        return self._requester

    def publish(self, event: Event) -> None:
        self._hub.publish(event)

    def new_media(
        self, source: AudioSource | None, sink: AudioSink | None, codecs: Sequence[str] | None
    ) -> CallMedia:
        return self._new_media(source, sink, codecs)

    def index_of(self, call: Call) -> int | None:
        live = self.live
        return live.index(call) if call in live else None

    def call_ended(self, call: Call) -> None:
        """The call ended: it is no longer one of the phone's calls."""
        for listener in list(self._ended_listeners):
            listener(call)
        if self._calls.get(call.id) is call:
            del self._calls[call.id]
        was_foreground = self.foreground is call
        if call in self._focus:
            self._focus.remove(call)
        self._consults.pop(call, None)
        first = self._returns.pop(call, None)
        if was_foreground and first is not None and first.is_live and self._is_ready():
            # add_call(): back to the first call, resumed unless held explicitly.
            self.brought_forward(first)
            self._tasks.spawn(_resume_quietly(first), name=f"call {first.id} resume")

    def brought_forward(self, call: Call) -> None:
        if call.is_live and self._calls.get(call.id) is call:
            if call in self._focus:
                self._focus.remove(call)
            self._focus.append(call)

    async def answering(
        self, call: Call, action: AnswerAction | None, answer: Callable[[], Awaitable[None]]
    ) -> None:
        current = [
            c for c in self.live if c is not call and c.is_established and not c.held_locally
        ]
        held: list[Call] = []
        try:
            for other in current:
                if action == "hold" and await other.auto_hold():
                    held.append(other)
                elif action == "end":
                    self._returns.pop(other, None)  # the user moves on to this call
                    await other.hangup()
            await answer()
        except BaseException:
            await _resume_all(held, "failed answer")
            raise
        if not call.is_live:  # the caller gave up meanwhile: back to the calls we held
            await _resume_all(held, "unanswered call")
        else:
            self.brought_forward(call)

    async def consult(
        self, call: Call, destination: str, source: AudioSource | None, sink: AudioSink | None
    ) -> Call:
        held_here = call.held_locally
        if not held_here:
            await self._requester.request({"type": "call.hold", "call_id": call.id})
        try:
            consult = await self.dial(Dial(destination, source=source, sink=sink))
        except BaseException:
            if not held_here:
                await call.resume()
            raise
        self._consults[call] = consult

        async def consultation_over(reason: str) -> None:
            if self._consults.get(call) is consult:
                del self._consults[call]
                if not held_here and call.is_live and call.held_locally:
                    await call.resume()

        consult.on("ended", consultation_over)
        if not consult.is_live:
            # It ended (busy, rejected, …) between being placed and dial() returning: its
            # "ended" has been emitted already, so the handler above will not run.
            await consultation_over(consult.end_reason or "")
        return consult

    def take_consultation(self, call: Call) -> Call | None:
        consult = self._consults.get(call)
        if consult is None or not consult.is_established:
            return None
        del self._consults[call]
        return consult

    # ------------------------------------------------------------------------------------------
    # the calls

    def on_ended(self, listener: Callable[[Call], None]) -> None:
        """Call ``listener(call)`` first thing when a call ends (the call group uses it)."""
        self._ended_listeners.append(listener)

    @property
    def live(self) -> list[Call]:
        """The calls that have not ended, oldest first."""
        return [c for c in self._calls.values() if c.is_live]

    def get(self, call_id: str) -> Call | None:
        """The live call with this id, or ``None``."""
        return self._calls.get(call_id)

    @property
    def foreground(self) -> Call | None:
        """The call the user is on (see :attr:`Phone.foreground_call`)."""
        return self._focus[-1] if self._focus else None

    def background(self) -> Call | None:
        """The answered call most recently in the foreground, other than the foreground."""
        foreground = self.foreground
        for call in reversed(self._focus):
            if call is not foreground and call.is_established:
                return call
        return None

    def summaries(self) -> list[CallSummary]:
        """The live calls as seed 002's ``getCalls`` describes them."""
        return [
            CallSummary(
                index=i,
                breed="conference" if call.leg_owner is not None else "call",
                type="Outgoing" if call.direction == "outgoing" else "Incoming",
                state=str(call.state),
                peer=call.peer,
            )
            for i, call in enumerate(self.live)
        ]

    def adopt(self, call: Call) -> Call:
        """Make ``call`` (one the server told us of, with this list as its host) one of the
        phone's, and replay what arrived for it before it existed."""
        self._calls[call.id] = call
        for msg in self._early.pop(call.id, []):
            call.deliver(msg)
        return call

    def placed(self, msg: dict[str, Any]) -> None:
        """A ``call.trying``: if it answers our ``call.create``, the call now exists."""
        req_id = msg.get("req_id")
        pending = self._creating.pop(req_id, None) if isinstance(req_id, str) else None
        if pending is not None:
            call = Call(
                self,
                str(msg.get("call_id")),
                "outgoing",
                from_=pending.from_,
                to=pending.destination,
                media=pending.media,
            )
            pending.call = call
            self.adopt(call)

    def incoming(self, msg: dict[str, Any]) -> Call:
        """A ``call.incoming``: the new call rings (``incoming`` event)."""
        call = self.adopt(
            Call(
                self,
                str(msg.get("call_id")),
                "incoming",
                from_=str(msg.get("from", "")),
                from_name=str(msg.get("from_name") or ""),
                to=str(msg.get("to", "")),
                offer_sdp=str(msg.get("sdp", "")),
            )
        )
        self._hub.publish(call.make_event("incoming", msg))
        self._emitter.emit("incoming", call)
        return call

    def deliver(self, call_id: str, msg: dict[str, Any]) -> None:
        """A message about call ``call_id``: to the call, or kept until it exists."""
        known = self._calls.get(call_id)
        if known is not None:
            known.deliver(msg)
            return
        if msg.get("type") == "call.ended":
            self._early.pop(call_id, None)  # nothing will come of this call
            return
        queue = self._early.setdefault(call_id, [])
        if len(queue) < _MAX_BUFFERED_MESSAGES:
            queue.append(msg)
        while len(self._early) > _MAX_BUFFERED_CALLS:
            self._early.popitem(last=False)

    def end_all(self, reason: str) -> None:
        """The session is over: every call ends here with ``reason``; calls being placed
        close their media."""
        for call in list(self._calls.values()):
            call.end_locally(reason)
        for pending in self._creating.values():
            self._tasks.spawn(pending.media.close(), name="close media")
        self._creating.clear()

    # ------------------------------------------------------------------------------------------
    # placing calls

    async def dial(self, dial: Dial) -> Call:
        """:meth:`Phone.call`: place a call and return it once placed."""
        self._require_ready("call()")
        destination, caller_id = dial.destination, dial.caller_id
        self._emitter.emit("dialing", destination)
        self._hub.publish(Event("dialing", None, {"destination": destination}))
        media = self._new_media(dial.source, dial.sink, dial.codecs)
        if dial.media_type == "video":
            media.enable_video(dial.video_source, dial.video_sink)
        req_id = self._requester.new_req_id()
        creating = _Creating(media, destination, caller_id or self._own_number())
        self._creating[req_id] = creating
        message: dict[str, Any] = {
            "type": "call.create",
            "req_id": req_id,
            "destination": destination,
            "sdp": await media.create_offer(),
            "media_type": dial.media_type,
        }
        if caller_id is not None:
            message["caller_id"] = caller_id
        try:
            reply = await self._requester.request(message)
            # Not looked up in self._calls: the call's error and call.ended may have been
            # handled before this resumes, and an ended call is no longer listed there.
            call = creating.call
            if reply.get("type") != "call.trying" or call is None:
                raise RemoteError(
                    str(reply.get("reason") or "failed"),
                    f"call.create answered with {reply.get('type')} instead of call.trying",
                )
        except BaseException:
            self._creating.pop(req_id, None)
            await media.close()
            raise
        try:
            await call.wait_placed()
        except BaseException:
            if call.is_live:
                try:
                    await call.hangup()
                except Exception as exc:
                    log.warning("call %s: hangup after failed setup: %s", call.id, exc)
            raise
        self.brought_forward(call)
        return call

    # ------------------------------------------------------------------------------------------
    # seed 002: several calls (foreground and background)

    def _two_calls(self, action: str) -> tuple[Call, Call]:
        foreground, background = self.foreground, self.background()
        if foreground is None or not foreground.is_established or background is None:
            raise CallStateError(
                f"{action} needs two answered calls, one in the foreground and one in the "
                f"background; this phone has {len(self.live)} live call(s)"
                + (f", foreground {foreground.state}" if foreground is not None else "")
            )
        return foreground, background

    async def add_call(self, dial: Dial) -> Call:
        """:meth:`Phone.add_call`."""
        first = self.foreground
        if first is None or not first.is_established:
            raise CallStateError(
                "add_call() needs an answered call in the foreground"
                + (f"; the foreground call is {first.state}" if first else "; there is none")
                + ": use call() for a first call"
            )
        await first.auto_hold()
        try:
            second = await self.dial(dial)
        except BaseException:
            self.brought_forward(first)
            await first.auto_resume()
            raise
        if second.is_live:
            self._returns[second] = first
        elif self.foreground is first:  # it ended before dial() returned
            await first.auto_resume()
        return second

    async def switch_call(self) -> None:
        """:meth:`Phone.switch_call`."""
        old, new = self._two_calls("switch_call()")
        await old.auto_hold()
        await new.auto_resume()
        self.brought_forward(new)
        data = {"type": "call-switched", "call_id": new.id, "from": old.peer, "to": new.peer}
        self._emitter.emit("call-switched", new)
        self._hub.publish(Event("call-switched", new, data))

    async def transfer(self) -> None:
        """:meth:`Phone.transfer`."""
        target, held = self._two_calls("transfer()")
        if held.state is not CallState.HELD:
            raise CallStateError(f"transfer() needs the background call {held.id} on hold")
        for call in (target, held):  # their ends are the transfer: nothing to resume
            self._returns.pop(call, None)
            self._consults.pop(call, None)
        await self._requester.request(
            {"type": "call.complete_transfer", "call_id": held.id, "target_call_id": target.id}
        )


async def _resume_quietly(call: Call) -> None:
    try:
        await call.auto_resume()
    except Exception as exc:  # e.g. it ended meanwhile
        log.warning("call %s: could not resume it: %s", call.id, exc)


async def _resume_all(calls: Sequence[Call], why: str) -> None:
    for call in calls:
        try:
            await call.auto_resume()
        except Exception as exc:
            log.warning("call %s: resume after %s: %s", call.id, why, exc)
