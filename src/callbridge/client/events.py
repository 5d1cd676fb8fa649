"""Events of the SDK: their names, their payload, and how handlers run.

Names are ``Literal`` types, so ``call.on("anwsered", ...)`` fails type-checking. The wire
uses seed 001's dotted names (``call.answered``); Python uses the bare snake_case word.

========================  =================  ==============================================
event                     handler arguments  when
========================  =================  ==============================================
phone ``incoming``        ``(call)``         ``call.incoming``: a call rings this device
phone ``error``           ``(RemoteError)``  an ``error`` that answers no request of ours
phone ``disconnected``    ``(reason)``       the session is over (logout, socket closed)
phone ``call-switched``   ``(call)``         ``Phone.switch_call()`` made ``call`` the
                                             foreground call (seed 002
                                             ``session:call-switched``; ``data`` has the
                                             peers ``from`` and ``to``)
call ``trying``           ``()``             ``call.trying``
call ``ringing``          ``()``             ``call.ringing`` (also while a transfer rings)
call ``answered``         ``()``             ``call.answered``: audio flows both ways
call ``held``             ``(by)``           ``call.held``; ``by`` is ``"local"``/``"remote"``
call ``resumed``          ``(by)``           ``call.resumed``
call ``muted``            ``()``             ``call.muted`` (server-side mute is on)
call ``unmuted``          ``()``             ``call.unmuted``
call ``dtmf``             ``(digit)``        ``call.dtmf``: the far party sent a digit
call ``state-changed``    ``(old, new)``     ``call.state-changed``: an upgrade/downgrade
                                             is done; ``old``/``new`` are media types
                                             (``"audio"``/``"video"``); ``data`` has
                                             ``accepted``, ``video_send``, ``video_receive``
call ``ended``            ``(reason)``       ``call.ended``, or the session ended locally
========================  =================  ==============================================

Audio <-> video (seed 002): call ``media-modification(new_media_type)`` is
``call.media-modification``: the far party asks to upgrade (``"video"``) or downgrade
(``"audio"``); answer with ``accept_modification()`` or ``reject_modification()``. Call
``modification-in-progress()`` is ``call.modification-in-progress``: our upgrade/downgrade, or
our answer to one, is under way.

Every event is also an :class:`Event` (``name``, ``call``, ``data`` = the wire message), which
``phone.events()`` yields and ``call.wait_for()`` returns.

How handlers run: handlers are called in registration order, on the event loop, when the
message is handled. A plain function runs right there (keep it short). A coroutine function's
coroutine runs in a task owned by the :class:`~callbridge.client.Phone`; the phone awaits those
tasks when it closes (and cancels them if they take longer than a moment). An exception in a
handler is logged and does not stop other handlers or the connection.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

if TYPE_CHECKING:
    from callbridge.client.call import Call
    from callbridge.client.conference import Conference

__all__ = [
    "CallEventName",
    "ConferenceEventName",
    "EndReason",
    "Event",
    "EventEmitter",
    "EventName",
    "GroupEventName",
    "HeldBy",
    "PhoneEventName",
]

log = logging.getLogger(__name__)

PhoneEventName = Literal[
    "incoming",
    "error",
    "warning",  # a request changed nothing (e.g. muting a muted call); argument: the message
    "notification",  # news about a call from the server (e.g. the far party's link dropped)
    "dialing",  # call() started; argument: the destination (seed 002 event:dialing)
    "disconnected",
    "call-switched",
    "connectivity-off",  # the socket dropped; the phone is resuming the session, calls go on
    "connectivity-on",  # the session was resumed
    "gateway-unreachable",  # the session could not be resumed in time; the phone closes
    "session-expired",  # the token expired; the phone closes
    "address-updated",  # associate_e911_id() took effect (argument: the E911 id)
]
ConferenceEventName = Literal[
    # seed 002 (the handler gets the Conference)
    "conference:canceled",  # an invitation to us was withdrawn (or rang out) before we joined
    "conference:connected",  # we are in the conference (host: started; participant: joined)
    "conference:connecting",  # start_conference() / join_conference() is under way
    "conference:disconnecting",  # end_conference() started
    "conference:ended",  # the conference ended for us (ended by the host, left, removed)
    "conference:held",  # we hold our own membership
    "conference:resumed",
    "conference:invitation-received",  # an invitation rings this device
    "conference:invitation-sending",  # host: add_participant() started
    "conference:invitation-sent",  # host: the invitee's devices ring
    "conference:invitation-accepted",  # host: the invitee joined
    "conference:invitation-rejected",  # host: declined, rang out or failed (data: reason)
    "conference:joining",  # join_conference() started
    "conference:participant-removed",  # host: remove_participant() done
    # callbridge additions
    "conference:participant-left",  # host: a participant left by itself
    "conference:participant-updated",  # host: a participant's mute / hold / role changed
    "conference:floor-changed",  # the active talker changed (Conference.floor)
    "conference:playback-started",
    "conference:playback-ended",
    "conference:speak-started",
    "conference:speak-ended",
    "conference:recording-saved",  # Conference.recordings has the new file
]
GroupEventName = Literal[
    # seed 000 TelephonyCallGroup events
    "callschanged",
    "statechange",
    "connected",
    "holding",
    "held",
    "resuming",
    "error",
]
CallEventName = Literal[
    "trying",
    "ringing",
    "answered",
    "held",
    "resumed",
    "muted",
    "unmuted",
    "dtmf",
    "transferred",
    "moved",
    "move-failed",
    "modification-in-progress",
    "media-modification",
    "state-changed",
    "answering",  # answer() started (seed 002 event:answering)
    "disconnecting",  # hangup() started (seed 002 call:disconnecting)
    "transferring",  # transfer() / complete_transfer() started (seed 002 call:transferring)
    "ringback-provided",  # the server plays ringback to us (seed 002 call:ringback-provided)
    "media-established",  # the call's media connected (seed 002 media:established)
    "dtmf-tone-sending",  # send_dtmf() started; argument: the digits (seed 002 dtmf:tone-sending)
    "dtmf-tone-sent",  # send_dtmf() finished; argument: the digits (seed 002 dtmf:tone-sent)
    "ended",
]
EventName = PhoneEventName | CallEventName | ConferenceEventName | GroupEventName
HeldBy = Literal["local", "remote"]
EndReason = Literal[
    "hangup",
    "busy",
    "rejected",
    "no-answer",
    "failed",
    "canceled",
    "answered-elsewhere",
    "transferred",
    "disconnected",
    "moved",
    "removed",
]
"""The reasons of docs/protocol.md ("Call end reasons"); a newer server may send others."""

Handler = Callable[..., object]
N = TypeVar("N", bound=str)


@dataclass(frozen=True, slots=True)
class Event:
    """One event: its ``name``, the call it concerns (``None`` for some phone events), and
    ``data``, the wire message it came from (e.g. ``data["reason"]`` of ``ended``).

    The seed-002 event fields are set for call events, as they were when the event happened:
    ``index`` (the call's place among the phone's live calls, oldest first; ``None`` once it
    ended), ``from_``, ``to``, ``media_type``, ``codec`` (negotiated codec names, e.g.
    ``("opus",)`` or ``("opus", "VP8")``; empty until the call's media has connected) and, for
    every event, ``timestamp`` (UTC). ``conference:*`` events carry their ``conference`` (and
    its leg as ``call``).
    """

    name: EventName
    call: Call | None
    data: dict[str, Any] = field(default_factory=dict)
    index: int | None = None
    from_: str = ""
    to: str = ""
    media_type: str | None = None
    codec: tuple[str, ...] = ()
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))
    conference: Conference | None = None  # conference:* events: the conference


class TaskOwner:
    """Runs handler coroutines in tasks it keeps, so they can be awaited and cancelled."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())

    async def shutdown(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for the tasks, then cancel the rest and await them."""
        current = asyncio.current_task()
        while tasks := {t for t in self._tasks if t is not current and not t.done()}:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending)
            grace = 0.0  # tasks spawned meanwhile by the ones above get no more time


class EventEmitter(Generic[N]):
    """Handlers by event name; ``N`` is the ``Literal`` of the allowed names."""

    def __init__(self, tasks: TaskOwner) -> None:
        self._handlers: dict[str, list[Handler]] = {}
        self._tasks = tasks

    def _add(self, name: N, handler: Handler) -> Handler:
        self._handlers.setdefault(name, []).append(handler)
        return handler

    def off(self, name: N, handler: Handler) -> None:
        """Remove a handler added with ``on`` (no error if it is not there)."""
        handlers = self._handlers.get(name, [])
        if handler in handlers:
            handlers.remove(handler)

    def _emit(self, name: N, *args: object) -> None:
        for handler in list(self._handlers.get(name, ())):
            try:
                result = handler(*args)
            except Exception:
                log.exception("%s handler %r failed", name, handler)
                continue
            if inspect.isawaitable(result):
                self._tasks.spawn(_await(result), name=f"{name} handler")


async def _await(awaitable: Awaitable[object]) -> None:
    await awaitable
