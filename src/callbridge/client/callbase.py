"""A call's own state, and the commands that concern it alone: the base of ``Call``.

:class:`CallBase` follows the server's messages about one call (:meth:`CallBase.deliver`) and
sends its in-call requests. It needs of the phone only :class:`CallServices` (requests, tasks,
new peer connections); it keeps the call's handlers and the record of its events. What an event
holds and where it is published, and the commands that involve the phone's other calls
(answering while on a call, resuming, attended transfer), are the subclass's:
:class:`callbridge.client.call.Call`, whose host is the phone's richer
:class:`~callbridge.client.call.CallHost`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar

from callbridge.client.audio import AudioSink, AudioSource
from callbridge.client.bridged import Bridged
from callbridge.client.emitter import EventEmitter, TaskOwner
from callbridge.client.errors import CallStateError, remote_error
from callbridge.client.eventnames import CallEventName
from callbridge.client.history import EventHistory
from callbridge.client.media import CallMedia
from callbridge.client.mediaops import MediaOps
from callbridge.client.transport import Requester
from callbridge.client.video import VideoSink, VideoSource
from callbridge.errors import CallbridgeError, ErrorCode, RemoteError
from callbridge.statemachine import StateMachine
from callbridge.vocabulary import HeldBy, MediaType

__all__ = [
    "ESTABLISHED",
    "AnswerAction",
    "CallBase",
    "CallDirection",
    "CallServices",
    "CallState",
    "LegOwner",
]

log = logging.getLogger(__name__)

E = TypeVar("E")  # the type of a call's events

CallDirection = Literal["outgoing", "incoming"]

AnswerAction = Literal["hold", "end"]
"""What :meth:`Call.answer` does first with the phone's current call(s) (seed 002)."""


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


ESTABLISHED = frozenset({CallState.ACTIVE, CallState.HELD})
"""The states of an answered call."""


class LegOwner(Protocol):
    """The conference whose own leg a call is: told when the leg is held, resumed or ends."""

    def leg_held(self, held: bool) -> None: ...
    def leg_ended(self, reason: str) -> None: ...


class CallServices(Protocol):
    """What a call needs of the phone for itself alone."""

    @property
    def tasks(self) -> TaskOwner:
        """Runs the call's handler coroutines and media work; the phone awaits them."""
        ...

    @property
    def requester(self) -> Requester: ...

    def new_media(
        self, source: AudioSource | None, sink: AudioSink | None, codecs: Sequence[str] | None
    ) -> CallMedia:
        """A peer connection with the phone's ICE settings."""
        ...


H = TypeVar("H", bound=CallServices)  # what a call needs of the phone: CallServices or more


class CallBase(StateMachine[CallState], Generic[E, H]):
    """One call's state, media and own commands; ``E`` is the type of its events, ``H`` the
    type of its host (the phone's part that made it).

    Subclasses implement :meth:`_event` (record, emit and publish an event) and :meth:`_end`.
    """

    TRANSITIONS: ClassVar[Mapping[CallState, frozenset[CallState]]] = {
        CallState.TRYING: frozenset({CallState.RINGING, CallState.ACTIVE, CallState.ENDED}),
        CallState.RINGING: frozenset({CallState.ACTIVE, CallState.ENDED}),
        CallState.ACTIVE: frozenset({CallState.HELD, CallState.RINGING, CallState.ENDED}),
        CallState.HELD: frozenset({CallState.ACTIVE, CallState.RINGING, CallState.ENDED}),
        CallState.ENDED: frozenset(),
    }

    def __init__(
        self,
        host: H,
        call_id: str,
        direction: CallDirection,
        *,
        from_: str = "",
        from_name: str = "",
        to: str = "",
        media: CallMedia | None = None,
        offer_sdp: str | None = None,
    ) -> None:
        self._host = host
        self.id = call_id
        self.direction: CallDirection = direction
        self.from_ = from_
        self.from_name = from_name
        self.to = to
        self.media = media
        self.state = CallState.TRYING if direction == "outgoing" else CallState.RINGING
        self.end_reason: str | None = None
        self.last_error: RemoteError | None = None
        """The latest ``error`` the server sent about this call."""
        self.leg_owner: LegOwner | None = None
        """The conference this call is the own leg of (set by the SDK), else ``None``."""
        self._holders: list[HeldBy] = []  # who holds the call, oldest first
        self._server_muted = False
        self._recorded = False  # the server says the call is being recorded (call.recording)
        self._bridged: Bridged | None = None  # the latest call.bridged (an application's)
        # hold() by the user, as opposed to the automatic holds of add_call(), switch_call()
        # and answer(action="hold"): only automatic holds are undone automatically.
        self._held_explicitly = False
        self._offer_sdp = offer_sdp
        video = (media is not None and media.video_enabled) or _offers_video(offer_sdp)
        self._media_type: MediaType = "video" if video else "audio"
        self._modification: dict[str, Any] | None = None  # call.media-modification to answer
        self._history: EventHistory[E] = EventHistory()
        self._emitter: EventEmitter[CallEventName] = EventEmitter(host.tasks)
        self._media_ops = MediaOps(call_id, host.tasks, lambda: self.media)
        # Outgoing: phone.call() returns once the server's answer to our offer is applied and
        # routing has an outcome (ringing or answered); call.ended before that fails it.
        self._setup: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._answer_applied = direction == "incoming"
        # Media that connected before the call was answered (the server answers a caller's
        # offer at once and plays ringback): media-established waits for the answer (seed
        # 002 order: call:connected, then media:established).
        self._media_pending: CallMedia | None = None
        self._routed = direction == "incoming"
        self._setup_step()

    def __repr__(self) -> str:
        return f"<Call {self.id} {self.direction} {self.from_!r}->{self.to!r} {self.state}>"

    def _event(self, name: CallEventName, data: dict[str, Any], *args: object) -> None:
        """Record ``name`` (for wait_for), call its handlers with ``args``, publish it."""
        raise NotImplementedError

    def _end(self, reason: str, data: dict[str, Any]) -> None:
        """The call is over (``data`` is the ``call.ended`` message or a local one)."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------
    # state

    @property
    def held_by(self) -> HeldBy | None:
        """``"local"`` if we hold the call, ``"remote"`` if the far party does, else ``None``."""
        return self._holders[-1] if self._holders else None

    @property
    def held_locally(self) -> bool:
        """True while this device holds the call (whether or not the far party does too)."""
        return "local" in self._holders

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
        return self.state in ESTABLISHED

    @property
    def peer(self) -> str:
        """The far party: :attr:`to` of an outgoing call, :attr:`from_` of an incoming one."""
        return self.to if self.direction == "outgoing" else self.from_

    @property
    def bridged(self) -> Bridged | None:
        """Who an application bridged this call to, the latest time (``call.bridged``): for
        an agent, the caller it got, the queue and how long that caller waited."""
        return self._bridged

    @property
    def is_recorded(self) -> bool:
        """True while the server records the call (``call.recording``): a 1:1 call's parties
        are told when a recording starts and stops, unless their account turned that off."""
        return self._recorded

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
        return self.state is not CallState.ENDED

    def _over(self) -> bool:
        # A method, not the property: the state can change across an await, and mypy would
        # otherwise keep a narrowed `is_live` from before it.
        return self.state is CallState.ENDED

    def _follow(self, new: CallState, cause: str) -> None:
        """Follow the server; a move the table does not have is logged and the state kept
        (the server's view of a call can race ours, e.g. ``call.held`` while it rings)."""
        if self.can(new):
            self.transition(new, cause=cause)
            if cause != "call.answered" and self.is_established:  # that one says it after
                self._flush_media_established()
        else:
            log.warning(
                "call %s: no transition from %s to %s (after %s); state kept",
                self.id,
                self.state,
                new,
                cause,
            )

    # ------------------------------------------------------------------------------------------
    # messages from the server (delivered by the phone, in arrival order)

    def deliver(self, msg: dict[str, Any]) -> None:
        """Take one server message about this call (the phone calls this in arrival order)."""
        kind = msg.get("type")
        if kind == "sdp.answer":
            self._media_ops.run(self._apply_answer, str(msg.get("sdp", "")))
        elif kind in ("ice.candidate", "ice.done"):
            self._media_ops.candidate(msg)
        elif kind == "call.trying":
            self._follow_media_type(msg.get("media_type"))
            self._event("trying", msg)
        elif kind == "call.ringing":
            self._follow(CallState.RINGING, "call.ringing")
            self._routed = True
            self._setup_step()
            self._event("ringing", msg)
            if msg.get("ringback"):
                self._event("ringback-provided", msg)
        elif kind == "call.answered":
            self._holders.clear()
            self._held_explicitly = False
            self._follow(CallState.ACTIVE, "call.answered")
            self._follow_media_type(msg.get("media_type"))
            self._routed = True
            self._setup_step()
            self._event("answered", msg)
            self._flush_media_established()
        elif kind in ("call.held", "call.resumed"):
            self._on_hold(msg, held=kind == "call.held")
        elif kind in ("call.muted", "call.unmuted"):
            self._server_muted = kind == "call.muted"
            self._event("muted" if self._server_muted else "unmuted", msg)
        elif kind == "call.dtmf":
            self._event("dtmf", msg, str(msg.get("digit", "")))
        elif kind == "call.recording":
            self._recorded = msg.get("recording") is True
            self._event("recording", msg, self._recorded)
        elif kind == "call.moved":
            self._event("moved", msg, str(msg.get("to_session", "")))
        elif kind == "call.move-failed":
            self._event("move-failed", msg, str(msg.get("reason", "")))
        elif kind == "call.transferred":
            self._event("transferred", msg, str(msg.get("peer", "")))
        elif kind == "call.bridged":
            self._bridged = Bridged.from_message(msg)
            self._event("bridged", msg, self._bridged)
        elif kind == "call.modification-in-progress":
            self._event("modification-in-progress", msg)
        elif kind == "call.media-modification":
            self._modification = msg
            self._history.modification_started()
            self._event("media-modification", msg, str(msg.get("new_media_type", "")))
        elif kind == "call.state-changed":
            # After the sdp.answer before it is applied (media operations run in order).
            self._media_ops.run(self._state_changed, msg)
        elif kind == "call.ended":
            self._end(str(msg.get("reason", "hangup")), msg)
        elif kind == "error":
            self.last_error = remote_error(msg)
        else:
            log.debug("call %s: ignoring %s", self.id, kind)

    def _on_hold(self, msg: dict[str, Any], held: bool) -> None:
        by: HeldBy = "remote" if msg.get("by") == "remote" else "local"
        self._holders = [h for h in self._holders if h != by] + ([by] if held else [])
        if held:
            self._follow(CallState.HELD, "call.held")
        else:
            if by == "local":
                self._held_explicitly = False
            if not self._holders:
                self._follow(CallState.ACTIVE, "call.resumed")
        self._event("held" if held else "resumed", msg, by)
        if self.leg_owner is not None:
            self.leg_owner.leg_held(held)

    def _follow_media_type(self, value: object) -> None:
        if value in ("audio", "video"):
            self._media_type = "video" if value == "video" else "audio"

    async def _state_changed(self, _: CallMedia, msg: dict[str, Any]) -> None:
        if self._over():
            return
        self._follow_media_type(msg.get("new_state"))
        old, new = str(msg.get("old_state", "")), str(msg.get("new_state", ""))
        self._event("state-changed", msg, old, new)

    def end_locally(self, reason: str) -> None:
        """End the call here without a word to the server (the phone's session is over, or
        we hung up): ``ended(reason)`` with ``data["local"]`` True. Does nothing once ended."""
        self._end(reason, {"type": "call.ended", "call_id": self.id, "local": True})

    # ------------------------------------------------------------------------------------------
    # media

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
        tasks = self._host.tasks

        async def established() -> None:
            try:
                await media.wait_connected()
            except CallbridgeError:
                return  # the call ended or its media failed first
            if not self.is_live:
                return
            if self.is_established:
                self._event("media-established", {"call_id": self.id})
            else:
                self._media_pending = media

        def on_state() -> None:
            if media.pc.connectionState == "failed" and self.is_live and self.media is media:
                log.info("call %s: media failed; restarting it", self.id)
                tasks.spawn(self.restart_media(), name=f"call {self.id} restart")

        media.pc.on("connectionstatechange", on_state)
        tasks.spawn(established(), name=f"call {self.id} media")

    def _flush_media_established(self) -> None:
        """Say ``media-established`` for media that connected before the answer."""
        media, self._media_pending = self._media_pending, None
        if media is not None and media is self.media and self.is_live:
            self._event("media-established", {"call_id": self.id})

    def _setup_step(self) -> None:
        if self._answer_applied and self._routed and not self._setup.done():
            self._setup.set_result(None)

    async def wait_placed(self) -> None:
        """Wait until this outgoing call is placed: the server's answer to our offer is
        applied and the call is routed (``ringing`` or ``answered``); :meth:`Phone.call`
        returns then. Bounded by the phone's ``request_timeout``.

        :raises RemoteError: the call ended first (its ``error``, else its end reason).
        :raises TimeoutError: not placed in time.
        """
        async with asyncio.timeout(self._host.requester.request_timeout):
            await asyncio.shield(self._setup)

    # ------------------------------------------------------------------------------------------
    # commands

    async def _request(self, kind: str, **fields: Any) -> dict[str, Any]:
        return await self._host.requester.request({"type": kind, "call_id": self.id, **fields})

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
        media = self.media = self._host.new_media(source, sink, codecs)
        if video is not None:
            media.enable_video(*video)
        self._media_ops.flush_early()
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
        self.end_locally(reason or "rejected")

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
        self.end_locally("hangup")

    async def hold(self) -> None:
        """Put the call on hold: the far party hears hold music (``held`` with ``by="local"``).

        The hold is *explicit* (:attr:`held_explicitly`): the SDK does not resume the call by
        itself (see :meth:`Phone.add_call`, :meth:`Phone.switch_call`). On a call the SDK
        held automatically this only marks the hold explicit.
        """
        if "local" not in self._holders:
            await self._request("call.hold")
        self._held_explicitly = "local" in self._holders

    async def auto_hold(self) -> bool:
        """Hold an active call *automatically* (``add_call``, ``switch_call``,
        ``answer(action="hold")``): nothing happens to a call that either side holds already.
        True if this device holds the call now."""
        if self.state is CallState.ACTIVE and not self._holders:
            await self._request("call.hold")
        return "local" in self._holders

    async def auto_resume(self) -> None:
        """Undo an automatic hold; an explicit hold (:meth:`hold`), or none of ours, is left
        alone."""
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

    async def restart_media(self) -> None:
        """Re-establish this call's media on a new peer connection (the same audio source and
        sink), e.g. after the network changed. aiortc has no ICE restart, so this renegotiates
        from scratch (``call.restart_media``); the far party stays connected. The phone does
        it by itself when the media fails."""
        old = self.media
        if old is None:
            raise CallStateError(f"call {self.id} has no media yet: answer it first")
        codecs = [old.audio.codec.name] if old.audio is not None else None
        media = self._host.new_media(old.source, old.sink, codecs)
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
        self._history.forget("move-failed")  # wait_for("move-failed") is about this move
        await self._request("call.move")

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


def _offers_video(sdp: str | None) -> bool:
    """True when ``sdp`` has a video m-line that is not rejected (port 0) or inactive."""
    if not sdp:
        return False
    sections = sdp.split("\nm=")[1:]
    return any(
        m.startswith("video ") and not m.startswith("video 0 ") and "a=inactive" not in m
        for m in sections
    )
