"""One call as this device sees it: state, events, and the in-call commands of seed 001.

A :class:`Call` is made by the :class:`~callbridge.client.Phone` (``phone.call(...)`` or an
``incoming`` event), never directly. Its state follows the server's messages; its commands
send a request and return when the server has answered it (an ``error`` raises
:class:`~callbridge.errors.RemoteError`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, overload

from callbridge.client.audio import AudioSink, AudioSource
from callbridge.client.errors import CallEndedError, CallStateError
from callbridge.client.events import CallEventName, Event, EventEmitter, EventName, HeldBy
from callbridge.client.media import CallMedia
from callbridge.client.settings import InvalidArgumentError
from callbridge.client.video import VideoSink, VideoSource
from callbridge.errors import CallbridgeError, ErrorCode, RemoteError

if TYPE_CHECKING:
    from callbridge.client.conference import Conference
    from callbridge.client.phone import Phone

__all__ = ["AnswerAction", "Call", "CallDirection", "CallState", "MediaType"]

log = logging.getLogger(__name__)

CallDirection = Literal["outgoing", "incoming"]
MediaType = Literal["audio", "video"]


class CallState(StrEnum):
    """The states of a call, as this device sees it (compare with plain strings too)::

    outgoing: TRYING ──call.ringing──▶ RINGING ──call.answered──▶ ACTIVE ◀─call.resumed─┐
                 └──────────call.answered─────────────────────────▲  │                  │
    incoming:                 RINGING ──answer()──call.answered───┘  └──call.held──▶ HELD
    transfer: ACTIVE/HELD ──call.ringing──▶ RINGING (the far party is connected to a new
              target; call.answered brings it back to ACTIVE)
    every state except ENDED ──call.ended / session over──▶ ENDED
    """

    TRYING = "trying"  # call.create sent and accepted; the server is routing it
    RINGING = "ringing"  # a device of the callee rings (incoming: this device rings)
    ACTIVE = "active"  # answered: audio flows both ways
    HELD = "held"  # one of the parties put the call on hold
    ENDED = "ended"  # over; end_reason says why


_TRANSITIONS: dict[CallState, frozenset[CallState]] = {
    CallState.TRYING: frozenset({CallState.RINGING, CallState.ACTIVE, CallState.ENDED}),
    CallState.RINGING: frozenset({CallState.ACTIVE, CallState.ENDED}),
    CallState.ACTIVE: frozenset({CallState.HELD, CallState.RINGING, CallState.ENDED}),
    CallState.HELD: frozenset({CallState.ACTIVE, CallState.RINGING, CallState.ENDED}),
    CallState.ENDED: frozenset(),
}

# wait_for(): events that stay true once they happened, and pairs where the later one wins.
_ONCE = frozenset({"trying", "ringing", "answered", "transferred", "moved", "move-failed", "ended"})
_OPPOSITE = {"held": "resumed", "resumed": "held", "muted": "unmuted", "unmuted": "muted"}

_NoArgEvent = Literal[
    "trying",
    "ringing",
    "answered",
    "muted",
    "unmuted",
    "modification-in-progress",
    "answering",
    "disconnecting",
    "transferring",
    "ringback-provided",
    "media-established",
]
# wait_for(): settled while they concern the latest modification (see _settled)
_MODIFICATION = frozenset({"modification-in-progress", "state-changed"})

AnswerAction = Literal["hold", "end"]
"""What :meth:`Call.answer` does first with the phone's current call(s) (seed 002)."""
_ESTABLISHED = frozenset({CallState.ACTIVE, CallState.HELD})


class Call:
    """A call of this device (seed 001's ``call`` object).

    Attributes: :attr:`id` (the server's ``call_id`` of this leg), :attr:`direction`
    (``"outgoing"``/``"incoming"``), :attr:`from_`, :attr:`from_name`, :attr:`to`,
    :attr:`state`, :attr:`end_reason`, :attr:`held_by`, :attr:`is_muted`, and :attr:`media`
    (the :class:`~callbridge.client.media.CallMedia`: seed 001's ``peerConnection`` is
    ``call.media.pc``; ``None`` for an incoming call until it is answered).

    Events (``call.on(name, handler)``, see :mod:`callbridge.client.events`): ``trying``,
    ``ringing``, ``answered``, ``held(by)``, ``resumed(by)``, ``muted``, ``unmuted``,
    ``dtmf(digit)``, ``transferred(peer)`` (an attended transfer connected us to ``peer``),
    ``moved(session_id)`` (another device took the call over; ``ended("moved")`` follows),
    ``move-failed(reason)``, ``ended(reason)``.
    """

    _seq = itertools.count()

    def __init__(
        self,
        phone: Phone,
        call_id: str,
        direction: CallDirection,
        *,
        from_: str = "",
        from_name: str = "",
        to: str = "",
        media: CallMedia | None = None,
        offer_sdp: str | None = None,
    ) -> None:
        self._phone = phone
        self.id = call_id
        self.direction: CallDirection = direction
        self.from_ = from_
        self.from_name = from_name
        self.to = to
        self.media = media
        self.end_reason: str | None = None
        self.last_error: RemoteError | None = None
        """The latest ``error`` the server sent about this call."""
        self._state = CallState.TRYING if direction == "outgoing" else CallState.RINGING
        self._holders: list[HeldBy] = []  # who holds the call, oldest first
        self._server_muted = False
        self._consult: Call | None = None  # attended_transfer()'s consultation call
        # hold() by the user, as opposed to the automatic holds of add_call(), switch_call()
        # and answer(action="hold"): only automatic holds are undone automatically.
        self._held_explicitly = False
        self._return_to: Call | None = None  # add_call(): resume this call when we end
        self._offer_sdp = offer_sdp
        self._early_candidates: list[dict[str, Any]] = []  # incoming, before answer()
        video = (media is not None and media.video_enabled) or _offers_video(offer_sdp)
        self._media_type: MediaType = "video" if video else "audio"
        self._modification: dict[str, Any] | None = None  # call.media-modification to answer
        self._mod_seq = -1  # when the latest modification started (for wait_for)
        self._emitter: EventEmitter[CallEventName] = EventEmitter(phone._tasks)
        self._last: dict[str, tuple[int, Event]] = {}
        self._waiters: list[tuple[str, asyncio.Future[Event]]] = []
        self._media_task: asyncio.Task[Any] | None = None
        self._conference: Conference | None = None  # set on a conference's own leg
        loop = asyncio.get_running_loop()
        # Outgoing: phone.call() returns once the server's answer to our offer is applied and
        # routing has an outcome (ringing or answered); call.ended before that fails it.
        self._setup: asyncio.Future[None] = loop.create_future()
        self._answer_applied = direction == "incoming"
        self._routed = direction == "incoming"
        self._setup_step()

    def __repr__(self) -> str:
        return f"<Call {self.id} {self.direction} {self.from_!r}->{self.to!r} {self.state}>"

    # ------------------------------------------------------------------------------------------
    # state

    @property
    def state(self) -> CallState:
        """``trying``, ``ringing``, ``active``, ``held`` or ``ended`` (a :class:`CallState`)."""
        return self._state

    @property
    def held_by(self) -> HeldBy | None:
        """``"local"`` if we hold the call, ``"remote"`` if the far party does, else ``None``."""
        return self._holders[-1] if self._holders else None

    @property
    def held_explicitly(self) -> bool:
        """True while we hold the call because the user called :meth:`hold` (seed 002: such a
        call stays on hold through :meth:`Phone.switch_call` and after :meth:`Phone.add_call`'s
        second call ends). Automatic holds (``add_call``, ``switch_call``,
        ``answer(action="hold")``) leave it ``False``."""
        return self._held_explicitly and "local" in self._holders

    @property
    def is_established(self) -> bool:
        """True while the call is answered: ``active`` or ``held``."""
        return self._state in _ESTABLISHED

    @property
    def peer(self) -> str:
        """The far party: :attr:`to` of an outgoing call, :attr:`from_` of an incoming one."""
        return self.to if self.direction == "outgoing" else self.from_

    @property
    def is_muted(self) -> bool:
        """True while our audio does not reach the far party: muted here or at the server."""
        return self._server_muted or (self.media is not None and self.media.muted)

    @property
    def media_type(self) -> MediaType:
        """``"audio"`` or ``"video"`` (video flows, either way or both; seed 002
        ``getMediaType``). Follows ``call.answered`` and ``call.state-changed``."""
        return self._media_type

    @property
    def pending_modification(self) -> str | None:
        """The media type the far party asks for (``media-modification``) until we answer."""
        return str(self._modification.get("new_media_type")) if self._modification else None

    @property
    def is_live(self) -> bool:
        """True until the call has ended."""
        return self._state is not CallState.ENDED

    def _over(self) -> bool:
        # A method, not the property: the state can change across an await, and mypy would
        # otherwise keep a narrowed `is_live` from before it.
        return self._state is CallState.ENDED

    def _set_state(self, new: CallState) -> None:
        old = self._state
        if new is old:
            return
        if new not in _TRANSITIONS[old]:
            raise CallStateError(f"call {self.id}: no transition from {old} to {new}")
        log.debug("call %s: %s -> %s", self.id, old, new)
        self._state = new

    def _move(self, new: CallState, cause: str) -> None:
        """Follow the server; an impossible move is logged and the state kept."""
        try:
            self._set_state(new)
        except CallStateError as exc:
            log.warning("%s (after %s); state kept", exc, cause)

    # ------------------------------------------------------------------------------------------
    # events

    @overload
    def on(self, name: _NoArgEvent, handler: Callable[[], object]) -> Callable[[], object]: ...
    @overload
    def on(
        self, name: Literal["held", "resumed"], handler: Callable[[HeldBy], object]
    ) -> Callable[[HeldBy], object]: ...
    @overload
    def on(
        self,
        name: Literal[
            "dtmf",
            "ended",
            "transferred",
            "moved",
            "move-failed",
            "media-modification",
            "dtmf-tone-sending",
            "dtmf-tone-sent",
        ],
        handler: Callable[[str], object],
    ) -> Callable[[str], object]: ...
    @overload
    def on(
        self, name: Literal["state-changed"], handler: Callable[[str, str], object]
    ) -> Callable[[str, str], object]: ...
    def on(self, name: CallEventName, handler: Callable[..., object]) -> Callable[..., object]:
        """Call ``handler`` on every ``name`` event (arguments: see the class docstring).

        A handler may be a plain function or a coroutine function (run in a task the phone
        owns). Returns the handler, for :meth:`off`.
        """
        return self._emitter._add(name, handler)

    def off(self, name: CallEventName, handler: Callable[..., object]) -> None:
        """Remove a handler added with :meth:`on`."""
        self._emitter.off(name, handler)

    # A timeout argument like asyncio.wait_for's: the seed's API, and it names what timed out.
    async def wait_for(
        self,
        name: CallEventName,
        timeout: float | None = 10.0,  # noqa: ASYNC109
    ) -> Event:
        """Wait for the event ``name`` and return it (``event.data`` is the wire message).

        Returns at once when the call is already there: ``trying``, ``ringing``, ``answered``,
        ``transferred`` (the latest), ``moved``, ``move-failed`` (since the latest
        :meth:`move`) and ``ended`` once they happened; ``held``/``resumed`` and
        ``muted``/``unmuted`` when they are the latest of their pair. Otherwise (and always
        for ``dtmf``) waits for the next one.

        :raises CallEndedError: the call ended first (unless waiting for ``ended``).
        :raises TimeoutError: nothing within ``timeout`` seconds.
        """
        done = self._settled(name)
        if done is not None:
            return done
        if not self.is_live:
            raise CallEndedError(self.id, self.end_reason, name)
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        waiter = (name, future)
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise TimeoutError(
                f"call {self.id}: no {name!r} within {timeout} s (state {self.state})"
            ) from None
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _settled(self, name: str) -> Event | None:
        seen = self._last.get(name)
        if seen is None:
            return None
        if name == "media-modification":
            return seen[1] if self._modification is not None else None
        if name in _MODIFICATION:
            return seen[1] if seen[0] > self._mod_seq else None
        if name in _ONCE:
            return seen[1]
        opposite = _OPPOSITE.get(name)
        if opposite is not None:
            later = self._last.get(opposite)
            if later is None or later[0] < seen[0]:
                return seen[1]
        return None

    def _make_event(self, name: EventName, data: dict[str, Any]) -> Event:
        """An event about this call with the seed-002 fields as they are now."""
        live = self._phone.active_calls
        codec: list[str] = []
        audio = self.media.port.audio if self.media is not None else None
        if audio is not None:
            codec.append(audio.codec.name)
        if self.media_type == "video":
            codec.append("VP8")
        return Event(
            name,
            self,
            data,
            index=live.index(self) if self in live else None,
            from_=self.from_,
            to=self.to,
            media_type=self.media_type,
            codec=tuple(codec),
        )

    def _event(self, name: CallEventName, data: dict[str, Any], *args: object) -> None:
        event = self._make_event(name, data)
        self._last[name] = (next(self._seq), event)
        for waiter in [w for w in self._waiters if w[0] == name]:
            self._waiters.remove(waiter)
            if not waiter[1].done():
                waiter[1].set_result(event)
        self._emitter._emit(name, *args)
        self._phone._publish(event)

    # ------------------------------------------------------------------------------------------
    # messages from the server (called by the Phone, in arrival order)

    def _handle(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "sdp.answer":
            self._media_op(self._apply_answer, str(msg.get("sdp", "")))
        elif kind in ("ice.candidate", "ice.done"):
            self._on_candidate(msg)
        elif kind == "call.trying":
            self._follow_media_type(msg.get("media_type"))
            self._event("trying", msg)
        elif kind == "call.ringing":
            self._move(CallState.RINGING, "call.ringing")
            self._routed = True
            self._setup_step()
            self._event("ringing", msg)
            if msg.get("ringback"):
                self._event("ringback-provided", msg)
        elif kind == "call.answered":
            self._holders.clear()
            self._held_explicitly = False
            self._move(CallState.ACTIVE, "call.answered")
            self._follow_media_type(msg.get("media_type"))
            self._routed = True
            self._setup_step()
            self._event("answered", msg)
        elif kind == "call.held":
            by: HeldBy = "remote" if msg.get("by") == "remote" else "local"
            self._holders = [h for h in self._holders if h != by] + [by]
            self._move(CallState.HELD, "call.held")
            self._event("held", msg, by)
            if self._conference is not None:
                self._conference._leg_held(True)
        elif kind == "call.resumed":
            by = "remote" if msg.get("by") == "remote" else "local"
            self._holders = [h for h in self._holders if h != by]
            if by == "local":
                self._held_explicitly = False
            if not self._holders:
                self._move(CallState.ACTIVE, "call.resumed")
            self._event("resumed", msg, by)
            if self._conference is not None:
                self._conference._leg_held(False)
        elif kind == "call.muted":
            self._server_muted = True
            self._event("muted", msg)
        elif kind == "call.unmuted":
            self._server_muted = False
            self._event("unmuted", msg)
        elif kind == "call.dtmf":
            self._event("dtmf", msg, str(msg.get("digit", "")))
        elif kind == "call.moved":
            self._event("moved", msg, str(msg.get("to_session", "")))
        elif kind == "call.move-failed":
            self._event("move-failed", msg, str(msg.get("reason", "")))
        elif kind == "call.transferred":
            self._event("transferred", msg, str(msg.get("peer", "")))
        elif kind == "call.modification-in-progress":
            self._event("modification-in-progress", msg)
        elif kind == "call.media-modification":
            self._modification = msg
            self._mod_seq = next(self._seq)
            self._event("media-modification", msg, str(msg.get("new_media_type", "")))
        elif kind == "call.state-changed":
            # After the sdp.answer before it is applied (media operations run in order).
            self._media_op(self._state_changed, msg)
        elif kind == "call.ended":
            self._end(str(msg.get("reason", "hangup")), msg)
        elif kind == "error":
            self.last_error = _remote_error(msg)
        else:
            log.debug("call %s: ignoring %s", self.id, kind)

    def _follow_media_type(self, value: object) -> None:
        if value in ("audio", "video"):
            self._media_type = "video" if value == "video" else "audio"

    async def _state_changed(self, _: CallMedia, msg: dict[str, Any]) -> None:
        if self._over():
            return
        self._follow_media_type(msg.get("new_state"))
        old, new = str(msg.get("old_state", "")), str(msg.get("new_state", ""))
        self._event("state-changed", msg, old, new)

    def _on_candidate(self, msg: dict[str, Any]) -> None:
        if self.media is None:
            self._early_candidates.append(msg)  # incoming call, not answered yet
        else:
            self._media_op(self._apply_candidate, msg)

    def _end(self, reason: str, data: dict[str, Any]) -> None:
        """The call is over (server said so, or the session ended): tell everyone, free media."""
        if not self.is_live:
            return
        self.end_reason = reason
        self._set_state(CallState.ENDED)
        if not self._setup.done():
            error = self.last_error or RemoteError(
                reason, f"the call ended ({reason}) before the server answered the offer"
            )
            self._setup.set_exception(error)
            self._setup.exception()  # retrieved: phone.call() may already have given up
        self._phone._forget(self)
        self._event("ended", data, reason)
        if self._conference is not None:
            self._conference._leg_ended(reason)
        for name, future in self._waiters:
            if not future.done():
                future.set_exception(CallEndedError(self.id, reason, name))
        self._waiters.clear()
        if self.media is not None:
            self._media_op(_close_media, None)

    # ------------------------------------------------------------------------------------------
    # media operations: one at a time, in message order, off the message reader

    def _media_op(self, op: Callable[[CallMedia, Any], Any], arg: Any) -> None:
        previous = self._media_task

        async def run() -> None:
            if previous is not None:
                await asyncio.wait([previous])
            media = self.media
            if media is None or (media.closed and op is not _close_media):
                return
            try:
                await op(media, arg)
            except CallbridgeError as exc:
                log.warning("call %s: %s", self.id, exc)

        self._media_task = self._phone._tasks.spawn(run(), name=f"call {self.id} media")

    async def _apply_answer(self, media: CallMedia, sdp: str) -> None:
        try:
            await media.accept_answer(sdp)
        except CallbridgeError as exc:
            if not self._setup.done():
                self._setup.set_exception(exc)
            raise
        self._answer_applied = True
        self._setup_step()
        self._watch_media(media)

    def _watch_media(self, media: CallMedia) -> None:
        """Emit ``media-established`` once the call's media connects (seed 002), and restart
        the media if its connection fails later (ICE consent lost: the path is gone)."""

        async def established() -> None:
            try:
                await media.wait_connected()
            except CallbridgeError:
                return  # the call ended or its media failed first
            if self.is_live:
                self._event("media-established", {"call_id": self.id})

        def on_state() -> None:
            if media.pc.connectionState == "failed" and self.is_live and self.media is media:
                log.info("call %s: media failed; restarting it", self.id)
                self._phone._tasks.spawn(self.restart_media(), name=f"call {self.id} restart")

        media.pc.on("connectionstatechange", on_state)
        self._phone._tasks.spawn(established(), name=f"call {self.id} media")

    def _setup_step(self) -> None:
        if self._answer_applied and self._routed and not self._setup.done():
            self._setup.set_result(None)

    @staticmethod
    async def _apply_candidate(media: CallMedia, msg: dict[str, Any]) -> None:
        if msg.get("type") == "ice.done":
            await media.end_of_candidates()
            return
        index = msg.get("sdp_m_line_index")
        await media.add_remote_candidate(
            str(msg.get("candidate", "")),
            msg.get("sdp_mid"),
            index if isinstance(index, int) else None,
        )

    async def _wait_setup(self) -> None:
        async with asyncio.timeout(self._phone.request_timeout):
            await asyncio.shield(self._setup)

    # ------------------------------------------------------------------------------------------
    # commands

    async def _request(self, kind: str, **fields: Any) -> dict[str, Any]:
        return await self._phone.request({"type": kind, "call_id": self.id, **fields})

    async def answer(
        self,
        source: AudioSource | None = None,
        sink: AudioSink | None = None,
        *,
        codecs: Sequence[str] | None = None,
        action: AnswerAction | None = None,
        media_type: MediaType | None = None,
        video_source: VideoSource | None = None,
        video_sink: VideoSink | None = None,
    ) -> None:
        """Answer this incoming call, sending ``source`` and playing into ``sink``.

        ``media_type`` (seed 002): ``"video"`` answers a video call with video (sending
        ``video_source``, default a grey test pattern, showing into ``video_sink``);
        ``"audio"`` answers it as an audio call (no video either way). Default: the call's
        :attr:`media_type`.

        ``codecs`` restricts and orders the codecs of our answer (e.g. ``["opus"]``).
        Returns once the server accepted the answer (the ``answered`` event follows). If the
        call has already ended (e.g. answered on another device) this does nothing; if it ends
        during the answer, the server's ``error`` raises. The answered call becomes the
        phone's :attr:`~callbridge.client.Phone.foreground_call`.

        ``action`` (seed 002) is what happens first to the phone's *current* calls: the other
        answered calls that we do not hold already. ``"hold"`` holds them (an automatic hold:
        if answering fails they are resumed); ``"end"`` hangs them up; ``None`` (default,
        seed 001 call waiting) leaves them as they are.

        :raises InvalidArgumentError: ``action`` is not ``"hold"``, ``"end"`` or ``None``.
        :raises CallStateError: for an outgoing call, or one answered already.
        :raises RemoteError: the server refused (``invalid_state`` when another device won).
        :raises MediaError: the server's offer could not be used.
        """
        if action not in (None, "hold", "end"):
            raise InvalidArgumentError(f"answer(action={action!r}): use 'hold', 'end' or None")
        if self.direction != "incoming":
            raise CallStateError(f"call {self.id} is outgoing: only incoming calls are answered")
        if not self.is_live:
            return
        if self.media is not None:
            raise CallStateError(f"call {self.id} is answered already")
        assert self._offer_sdp is not None
        self._event("answering", {"call_id": self.id})
        current = [
            c
            for c in self._phone.active_calls
            if c is not self and c.is_established and "local" not in c._holders
        ]
        held: list[Call] = []
        try:
            for other in current:
                if action == "hold" and await other._hold_auto():
                    held.append(other)
                elif action == "end":
                    other._return_to = None  # the user moves on to this call
                    await other.hangup()
            video = (media_type or self._media_type) == "video"
            await self._answer(source, sink, codecs, (video_source, video_sink) if video else None)
        except BaseException:
            await _resume_all(held, "failed answer")
            raise
        if self._over():  # the caller gave up meanwhile: back to the calls we held
            await _resume_all(held, "unanswered call")
        else:
            self._phone._set_foreground(self)

    async def _answer(
        self,
        source: AudioSource | None,
        sink: AudioSink | None,
        codecs: Sequence[str] | None,
        video: tuple[VideoSource | None, VideoSink | None] | None = None,
    ) -> None:
        if self._over() or self.media is not None:
            return
        assert self._offer_sdp is not None
        media = self.media = self._phone._new_media(source, sink, codecs)
        if video is not None:
            media.enable_video(*video)
        early, self._early_candidates = self._early_candidates, []
        for msg in early:
            self._media_op(self._apply_candidate, msg)
        try:
            sdp = await media.answer_offer(self._offer_sdp)
            if self._over():
                await media.close()
                return
            await self._request("call.answer", sdp=sdp)
            self._watch_media(media)
        except BaseException:
            if self.media is media and self.is_live:
                self.media = None  # not answered: answer() may be tried again
            await media.close()
            raise

    async def reject(self, reason: Literal["busy"] | None = None) -> None:
        """Decline this incoming call; ``"busy"`` sends a busy signal to the caller.

        This device stops ringing and the call ends here with reason ``rejected`` (or
        ``busy``). Does nothing if the call has already ended.
        """
        if self.direction != "incoming":
            raise CallStateError(f"call {self.id} is outgoing: use hangup()")
        if not self.is_live:
            return
        fields = {"reason": reason} if reason else {}
        await self._request("call.reject", **fields)
        self._end(reason or "rejected", {"type": "call.ended", "call_id": self.id, "local": True})

    async def hangup(self) -> None:
        """End the call (cancels it while it rings). Does nothing if it has already ended."""
        if not self.is_live:
            return
        self._event("disconnecting", {"call_id": self.id})
        try:
            await self._request("call.hangup")
        except RemoteError as exc:
            if exc.code != ErrorCode.CALL_NOT_FOUND:
                raise
        self._end("hangup", {"type": "call.ended", "call_id": self.id, "local": True})

    async def hold(self) -> None:
        """Put the call on hold: the far party hears hold music (``held`` with ``by="local"``).

        The hold is *explicit* (:attr:`held_explicitly`): the SDK does not resume the call by
        itself (see :meth:`Phone.add_call`, :meth:`Phone.switch_call`). On a call the SDK
        held automatically this only marks the hold explicit.
        """
        if "local" not in self._holders:
            await self._request("call.hold")
        self._held_explicitly = "local" in self._holders

    async def resume(self) -> None:
        """Take the call off hold (``resumed``); it becomes the phone's
        :attr:`~callbridge.client.Phone.foreground_call`."""
        await self._request("call.resume")
        self._held_explicitly = False
        self._phone._set_foreground(self)

    async def _hold_auto(self) -> bool:
        """Hold an active call automatically (not explicitly); True if we hold it now."""
        if self._state is CallState.ACTIVE and not self._holders:
            await self._request("call.hold")
        return "local" in self._holders

    async def _resume_auto(self) -> None:
        """Undo an automatic hold; an explicit hold (or none of ours) is left alone."""
        if self.is_live and "local" in self._holders and not self._held_explicitly:
            await self._request("call.resume")

    async def mute(self) -> None:
        """Stop our audio: silence is sent from here and the server stops forwarding it."""
        media = self.media
        before = media.muted if media else False
        if media is not None:
            media.muted = True
        try:
            await self._request("call.mute")
        except BaseException:
            if media is not None:
                media.muted = before
            raise

    async def unmute(self) -> None:
        """Undo :meth:`mute`, here and at the server."""
        await self._request("call.unmute")
        if self.media is not None:
            self.media.muted = False

    async def transfer(self, destination: str) -> None:
        """Blind-transfer the far party to ``destination`` (extension, number or user name).

        Returns once the server accepted it; this call then ends with ``transferred``.
        """
        self._event("transferring", {"call_id": self.id, "destination": destination})
        await self._request("call.transfer", destination=destination)

    async def attended_transfer(
        self,
        destination: str,
        *,
        source: AudioSource | None = None,
        sink: AudioSink | None = None,
    ) -> Call:
        """Consult ``destination`` before transferring to it (seed 001 ``attendedTransfer``).

        Puts this call on hold (unless it already is) and places a consultation call, which
        is returned. Then :meth:`complete_transfer` connects this call's far party to the
        consultation's; hanging up the consultation instead, or its failing (busy,
        no-answer, rejected, …), resumes this call by itself when this call was held here.

        :raises RemoteError: the consultation could not be placed (this call is resumed).
        """
        if self.state not in (CallState.ACTIVE, CallState.HELD):
            raise CallStateError(f"call {self.id} is {self.state}: answer it before transferring")
        held_here = "local" in self._holders
        if not held_here:
            await self._request("call.hold")
        try:
            consult = await self._phone.call(destination, source=source, sink=sink)
        except BaseException:
            if not held_here:
                await self.resume()
            raise
        self._consult = consult

        async def consultation_over(reason: str) -> None:
            if self._consult is consult:
                self._consult = None
                if not held_here and self.is_live and "local" in self._holders:
                    await self.resume()

        consult.on("ended", consultation_over)
        return consult

    async def complete_transfer(self) -> None:
        """Connect this call's far party to the consultation's far party (seed 001
        ``completeTransfer``); both of our calls end with ``transferred``.

        :raises CallStateError: no answered consultation (see :meth:`attended_transfer`).
        """
        consult = self._consult
        if consult is None or consult.state not in (CallState.ACTIVE, CallState.HELD):
            raise CallStateError(f"call {self.id} has no answered consultation call to join")
        self._consult = None  # its end is the transfer, not a failed consultation
        self._event("transferring", {"call_id": self.id, "target_call_id": consult.id})
        await self._request("call.complete_transfer", target_call_id=consult.id)

    async def restart_media(self) -> None:
        """Re-establish this call's media on a new peer connection (the same audio source and
        sink), e.g. after the network changed. aiortc has no ICE restart, so this renegotiates
        from scratch (``call.restart_media``); the far party stays connected. The phone does
        it by itself when the media fails."""
        old = self.media
        if old is None:
            raise CallStateError(f"call {self.id} has no media yet: answer it first")
        codecs = [old.audio.codec.name] if old.audio is not None else None
        media = self._phone._new_media(old.source, old.sink, codecs)
        if old.video_enabled:
            media.enable_video(old.video_source, old.video_sink)
        try:
            offer = await media.create_offer()
            reply = await self._request("call.restart_media", sdp=offer)
            await media.accept_answer(str(reply.get("sdp", "")))
        except BaseException:
            await media.close(release_io=False)
            raise
        self.media = media
        await old.close(release_io=False)
        self._watch_media(media)

    async def move(self) -> None:
        """Ring this user's other logged-in devices; the one that answers takes the call over
        (seed 002 ``move``). The far party stays connected; this call then gets ``moved`` and
        ends with ``moved``. If no device answers: ``move-failed(reason)``, the call goes on.

        :raises RemoteError: ``invalid_state`` (no other device, call on hold, …).
        """
        self._last.pop("move-failed", None)  # wait_for("move-failed") is about this move
        await self._request("call.move")

    # audio <-> video (seed 002) ------------------------------------------------------------

    def _modifiable(self, what: str) -> CallMedia:
        if self._state is not CallState.ACTIVE or self.media is None:
            raise CallStateError(f"call {self.id} is {self.state}: {what} needs an active call")
        if self._modification is not None:
            raise CallStateError(f"call {self.id}: answer the far party's media modification first")
        return self.media

    async def upgrade(
        self, video_source: VideoSource | None = None, video_sink: VideoSink | None = None
    ) -> None:
        """Ask to turn this audio call into a video call (seed 002 ``upgrade``).

        Sends ``video_source`` (default: a grey test pattern) and shows the far party's video
        in ``video_sink``. Returns once the server took the request
        (``modification-in-progress``); the far party then accepts or rejects it and
        ``state-changed(old, new)`` follows: ``"audio"`` -> ``"video"`` either way, since a
        rejection (seed 002) still shows our video to the far party: ``data["accepted"]``
        and ``data["video_receive"]`` tell whether its video comes back.

        :raises CallStateError: the call is not active, is video already, or a modification
            of the far party waits for our answer.
        :raises RemoteError: the server refused (``invalid_state``: e.g. a modification is
            under way). aiortc has no SDP rollback: after a refusal this call's media cannot be
            renegotiated again.
        """
        media = self._modifiable("upgrade()")
        if self._media_type == "video":
            raise CallStateError(f"call {self.id} is a video call already")
        media.enable_video(video_source, video_sink)
        self._mod_seq = next(self._seq)
        sdp = await media.offer_video(send=True, receive=True)
        await self._request("call.modify", media_type="video", sdp=sdp)

    async def downgrade(self) -> None:
        """Turn this video call into an audio call (seed 002 ``downgrade``): video stops both
        ways. The far party is told (``media-modification``) but cannot keep video; then
        ``state-changed("video", "audio")``.

        :raises CallStateError: the call is not active or not a video call.
        """
        media = self._modifiable("downgrade()")
        if self._media_type != "video":
            raise CallStateError(f"call {self.id} is an audio call already")
        self._mod_seq = next(self._seq)
        sdp = await media.offer_video(send=False, receive=False)
        await self._request("call.modify", media_type="audio", sdp=sdp)

    def _take_modification(self, what: str) -> tuple[CallMedia, dict[str, Any]]:
        pending, media = self._modification, self.media
        if pending is None or media is None:
            raise CallStateError(f"call {self.id}: no media modification to {what}")
        self._modification = None
        self._mod_seq = next(self._seq)
        return media, pending

    async def accept_modification(
        self, video_source: VideoSource | None = None, video_sink: VideoSink | None = None
    ) -> None:
        """Accept the far party's upgrade or downgrade (seed 002 ``acceptModification``).

        For an upgrade we send ``video_source`` (default: a grey test pattern) and show the
        far party's video in ``video_sink``. ``state-changed`` follows.
        """
        media, pending = self._take_modification("accept")
        video = pending.get("new_media_type") == "video"
        if video:
            media.enable_video(video_source, video_sink)
        sdp = await media.answer_reoffer(str(pending.get("sdp", "")), send=video, receive=video)
        await self._request("call.modify.accept", sdp=sdp)

    async def reject_modification(self, video_sink: VideoSink | None = None) -> None:
        """Reject the far party's upgrade or downgrade (seed 002 ``rejectModification``).

        Rejecting an upgrade: the far party's video still comes to us (shown in
        ``video_sink``) but we keep sending only audio, as seed 002 says. A downgrade cannot
        be refused (the far party stops video anyway): rejecting it ends video like accepting.
        ``state-changed`` follows, with ``data["accepted"]`` False.
        """
        media, pending = self._take_modification("reject")
        upgrade = pending.get("new_media_type") == "video"
        if upgrade and video_sink is not None:
            media.video_sink = video_sink
        sdp = await media.answer_reoffer(str(pending.get("sdp", "")), send=False, receive=upgrade)
        await self._request("call.modify.reject", sdp=sdp)

    async def send_dtmf(self, digits: str, duration_ms: int = 100, gap_ms: int = 70) -> None:
        """Send DTMF ``digits`` in band (RFC 4733); see :meth:`CallMedia.send_dtmf`.

        :raises CallStateError: the call has no media (an incoming call not yet answered).
        :raises ProtocolError: ``invalid_digits`` or ``dtmf_not_negotiated``.
        """
        if self.media is None:
            raise CallStateError(f"call {self.id} has no media yet: answer it first")
        self._event("dtmf-tone-sending", {"call_id": self.id, "digits": digits}, digits)
        await self.media.send_dtmf(digits, duration_ms, gap_ms)
        self._event("dtmf-tone-sent", {"call_id": self.id, "digits": digits}, digits)


async def _resume_all(calls: Sequence[Call], why: str) -> None:
    for call in calls:
        try:
            await call._resume_auto()
        except Exception as exc:
            log.warning("call %s: resume after %s: %s", call.id, why, exc)


async def _close_media(media: CallMedia, _: object) -> None:
    await media.close()


def _offers_video(sdp: str | None) -> bool:
    """True when ``sdp`` has a video m-line that is not rejected (port 0) or inactive."""
    if not sdp:
        return False
    sections = sdp.split("\nm=")[1:]
    return any(
        m.startswith("video ") and not m.startswith("video 0 ") and "a=inactive" not in m
        for m in sections
    )


def _remote_error(msg: dict[str, Any]) -> RemoteError:
    return RemoteError(
        str(msg.get("code", "unknown")),
        str(msg.get("message", "")),
        str(msg.get("cause", "")),
        str(msg.get("resolution", "")),
        str(msg.get("object", "")),
        str(msg.get("method", "")),
    )
