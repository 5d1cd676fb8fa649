"""Application calls: the model (no I/O).

An *application* (a call-control application in the store, seed 003) drives calls over REST.
It has no media of its own: what it drives is a device leg whose media endpoint is at the
server, the *media leg* of an :class:`AppCall`. Three ways a call becomes one:

- **incoming**: a device dials a destination that a route sends to an application; its own
  leg is *parked* for the application (it hears ringback) until the application answers,
  rejects or transfers it. Its ``call_control_id`` is the device's ``call_id``.
- **outgoing**: ``POST /v2/calls`` rings every device of a user (a
  :class:`~callbridge.core.ringgroup.RingGroup`); the first to answer becomes the media leg.
  The call has its own ``call_control_id``, fixed before anyone answers.
- **adopted**: any other live device leg, acted on by its ``call_id``. It belongs to no
  application: its events go nowhere.

An application is also a kind of device (:class:`ApplicationDevice`): it owns the conferences
it creates. See its docstring for what it does with the events the core tells it.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from callbridge.core.calls import Leg, new_id
from callbridge.core.events import DeviceEvent
from callbridge.errors import ErrorCode, ProtocolError
from callbridge.media.interface import RecordingFormat
from callbridge.statemachine import StateMachine
from callbridge.vocabulary import EndReason

if TYPE_CHECKING:
    from callbridge.core.app_media import AppRecording
    from callbridge.core.gather import Gather
    from callbridge.core.queues import QueueEntry
    from callbridge.core.ringgroup import RingGroup

__all__ = [
    "DTMF_DIGITS",
    "RECENTLY_ENDED",
    "AppCall",
    "AppCallState",
    "AppDirectory",
    "ApplicationDevice",
    "CallHasEnded",
    "Direction",
    "UnknownCall",
    "now",
]

log = logging.getLogger(__name__)

DTMF_DIGITS = frozenset("0123456789ABCD*#wW")  # w: 0.5 s pause, W: 1 s (Telnyx's)
RECENTLY_ENDED = 1000  # ended calls and conferences kept for precise errors and retrieval
_COMMANDS_KEPT = 100  # command_ids remembered per call (duplicate protection)
# What a call's end webhooks say about it that can change while it lives (callbridge.journal
# keeps it in the database, so that the webhooks go out after a crash too).
_RECORDED = frozenset({"client_state", "webhook_url", "queue_entry", "state"})

Direction = Literal["incoming", "outgoing"]  # as the application sees the call


def now() -> datetime:
    return datetime.now(UTC)


class UnknownCall(ProtocolError):
    """No call (live or recently ended) has this id."""

    def __init__(self, call_control_id: str) -> None:
        super().__init__(ErrorCode.CALL_NOT_FOUND, f"no call {call_control_id}")
        self.call_control_id = call_control_id


class CallHasEnded(ProtocolError):
    """The call existed and has ended: no command can act on it."""

    def __init__(self, call_control_id: str, reason: str) -> None:
        super().__init__(
            ErrorCode.INVALID_STATE, f"call {call_control_id} has already ended ({reason})"
        )
        self.call_control_id = call_control_id
        self.reason = reason


class AppDirectory(Protocol):
    """What application calls need from the store."""

    async def find_route(self, destination: str, account_id: str) -> str | None: ...

    async def get_application(self, application_id: str) -> Any: ...

    async def find_user(self, destination: str, account_id: str) -> Any: ...

    async def add_recording(
        self,
        *,
        path: str,
        format: RecordingFormat,
        channels: Literal["single", "dual"],
        duration_millis: int,
        recording_started_at: datetime,
        recording_ended_at: datetime,
        call_control_id: str | None = None,
        call_leg_id: str | None = None,
        call_session_id: str | None = None,
        conference_id: str | None = None,
        recording_id: str | None = None,
    ) -> Any: ...


class AppCallState(StrEnum):
    """State of an application call.

    ::

        incoming:  parked ──answer / bridge──► answered ──► ended
        outgoing:  dialing ──a device answers──► answered ──► ended
        adopted:   ringing ──the leg is answered──► answered ──► ended
                   (a leg adopted once answered starts answered)
        every state but ended ──► ended (hangup, reject, no answer, the leg ended)

    ``answered`` starts when the answer is *claimed* (before any await), so that a racing
    command sees the call taken; commands that need media also check the leg's own state.
    """

    PARKED = "parked"  # incoming, waiting for the application to answer
    DIALING = "dialing"  # outgoing, the user's devices ring
    RINGING = "ringing"  # adopted: a device leg that is still being set up
    ANSWERED = "answered"  # media flows; commands act on it
    ENDED = "ended"  # terminal; kept a while for precise errors and status queries


@dataclass(eq=False)
class AppCall(StateMachine[AppCallState]):
    """One call an application drives (or may drive): see the module docstring."""

    TRANSITIONS: ClassVar[dict[AppCallState, frozenset[AppCallState]]] = {
        AppCallState.PARKED: frozenset({AppCallState.ANSWERED, AppCallState.ENDED}),
        AppCallState.DIALING: frozenset({AppCallState.ANSWERED, AppCallState.ENDED}),
        AppCallState.RINGING: frozenset({AppCallState.ANSWERED, AppCallState.ENDED}),
        AppCallState.ANSWERED: frozenset({AppCallState.ENDED}),
        AppCallState.ENDED: frozenset(),
    }

    id: str  # call_control_id (= call_leg_id)
    direction: Direction
    session_id: str
    from_: str
    to: str
    state: AppCallState
    application: Any = None  # the store's Application, or None (adopted)
    webhook_url: str | None = None  # overrides the application's webhook_event_url
    client_state: str | None = None  # base64, as given; goes with every later event
    leg: Leg | None = None  # the media leg (None while an outgoing call rings)
    ring: RingGroup | None = None  # outgoing: the devices that ring
    from_display_name: str = ""
    end_reason: EndReason | None = None
    by_app: bool = False  # the application hung it up (or rejected it)
    started_at: datetime = field(default_factory=now)
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    commands: OrderedDict[str, None] = field(default_factory=OrderedDict)  # command_ids seen
    gather: Gather | None = None
    recording: AppRecording | None = None
    queue_entry: QueueEntry | None = None
    bridge_peer: str | None = None  # the leg id an application bridged this call to
    park_after_unbridge: bool = False  # stay up (parked) when that bridge ends
    transfer_of: AppCall | None = None  # this call was dialled to transfer that one
    transfer_to: AppCall | None = None  # this call is being transferred to that one
    # Told of each change of what the call's end webhooks need (AppCalls.register sets it).
    on_change: Callable[[AppCall], None] | None = field(default=None, repr=False, compare=False)

    def __setattr__(self, name: str, value: object) -> None:
        # An attribute hook rather than setters: ``client_state`` and the rest are set in
        # several modules (the REST facade, conferences), and a crash must find the newest.
        object.__setattr__(self, name, value)
        if name in _RECORDED:
            hook = self.__dict__.get("on_change")
            if hook is not None:
                hook(self)

    @property
    def kind(self) -> str:
        return "application call"

    @property
    def ended(self) -> bool:
        return self.state is AppCallState.ENDED

    @property
    def parked(self) -> bool:
        """Incoming and not answered yet (the application may answer, reject, transfer)."""
        return self.state is AppCallState.PARKED

    @property
    def reason(self) -> str:
        """Why it ended, for errors (``hangup`` until it has)."""
        return self.end_reason.value if self.end_reason is not None else "hangup"

    @property
    def connection_id(self) -> str | None:
        return self.application.id if self.application is not None else None

    def seen(self, command_id: str | None) -> bool:
        """True if ``command_id`` was used on this call before (the command is then skipped)."""
        return command_id is not None and command_id in self.commands

    def remember(self, command_id: str | None) -> None:
        if command_id is None:
            return
        self.commands[command_id] = None
        while len(self.commands) > _COMMANDS_KEPT:
            self.commands.popitem(last=False)


class ApplicationDevice:
    """An application as a device: the owner of the conferences it creates.

    The core tells a conference's owner what happens in it (``device.deliver``): a ``/ws``
    host gets those facts as messages. An application has no signalling connection; it
    learns the same facts as webhooks, from the application events that
    :class:`~callbridge.core.appcalls.AppCalls` publishes on the bus (the webhook adapter,
    :mod:`callbridge.webhooks.telnyx`, turns those into deliveries). So :meth:`deliver` drops
    what it is told (logged at DEBUG), and the device never rings (``reachable`` is False).
    """

    def __init__(self, application: Any) -> None:
        self.application = application
        self.id = "app:" + new_id()
        self.caller_id = ""
        self.user_name = f"application:{application.id}" if application else "application"
        self.display_name = str(application.application_name) if application else "application"

    @property
    def reachable(self) -> bool:
        return False

    def deliver(self, event: DeviceEvent) -> None:
        log.debug("application device %s: dropping %s", self.id, type(event).__name__)
