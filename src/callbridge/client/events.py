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
call ``recording``        ``(on)``           ``call.recording``: the server records the call
                                             (``True``) or stopped (``False``); also
                                             ``Call.is_recorded``
call ``state-changed``    ``(old, new)``     ``call.state-changed``: an upgrade/downgrade
                                             is done; ``old``/``new`` are media types
                                             (``"audio"``/``"video"``); ``data`` has
                                             ``accepted``, ``video_send``, ``video_receive``
call ``bridged``          ``(Bridged)``      ``call.bridged``: an application connected
                                             the call to another (an agent learns who it
                                             got, the queue, the wait; ``Call.bridged``)
call ``ended``            ``(reason)``       ``call.ended``, or the session ended locally
========================  =================  ==============================================

Audio <-> video (seed 002): call ``media-modification(new_media_type)`` is
``call.media-modification``: the far party asks to upgrade (``"video"``) or downgrade
(``"audio"``); answer with ``accept_modification()`` or ``reject_modification()``. Call
``modification-in-progress()`` is ``call.modification-in-progress``: our upgrade/downgrade, or
our answer to one, is under way.

Every event is also an :class:`Event` (``name``, ``call``, ``data`` = the wire message), which
``phone.events()`` yields and ``call.wait_for()`` returns.

The names are defined in :mod:`~callbridge.client.eventnames`, :class:`Event` in
:mod:`~callbridge.client.call` (next to the call it refers to) and the emitter in
:mod:`~callbridge.client.emitter`; this module gathers them.

How handlers run: handlers are called in registration order, on the event loop, when the
message is handled. A plain function runs right there (keep it short). A coroutine function's
coroutine runs in a task owned by the :class:`~callbridge.client.Phone`; the phone awaits those
tasks when it closes (and cancels them if they take longer than a moment). An exception in a
handler is logged and does not stop other handlers or the connection.
"""

from __future__ import annotations

from callbridge.client.bridged import Bridged
from callbridge.client.call import Event
from callbridge.client.emitter import EventEmitter, TaskOwner
from callbridge.client.eventnames import (
    CallEventName,
    ConferenceEventName,
    EndReason,
    EventName,
    GroupEventName,
    HeldBy,
    PhoneEventName,
)

__all__ = [
    "Bridged",
    "CallEventName",
    "ConferenceEventName",
    "EndReason",
    "Event",
    "EventEmitter",
    "EventName",
    "GroupEventName",
    "HeldBy",
    "PhoneEventName",
    "TaskOwner",
]
