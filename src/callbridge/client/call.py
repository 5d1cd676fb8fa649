"""One call as this device sees it: state, events, and the in-call commands of seed 001.

A :class:`Call` is made by the phone's call list (``phone.call(...)`` or an ``incoming``
event), never directly. Its state follows the server's messages; its commands send a request
and return when the server has answered it (an ``error`` raises
:class:`~callbridge.errors.RemoteError`).

The call's own state, media and commands are :class:`~callbridge.client.callbase.CallBase`'s.
This module adds its events (:class:`Event`, ``on``, ``wait_for``) and the commands that involve
the phone's other calls, which it asks of its :class:`CallHost` (the phone's call list): what
``answer(action=...)`` does to the other calls, which call is in the foreground, the
consultation of an attended transfer. So it imports nothing above it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, overload

from callbridge.client.audio import AudioSink, AudioSource
from callbridge.client.bridged import Bridged
from callbridge.client.callbase import (
    ESTABLISHED,
    AnswerAction,
    CallBase,
    CallDirection,
    CallServices,
    CallState,
    LegOwner,
)
from callbridge.client.errors import CallEndedError, CallStateError, InvalidArgumentError
from callbridge.client.eventnames import CallEventName, EventName
from callbridge.client.media import CallMedia
from callbridge.client.video import VideoSink, VideoSource
from callbridge.errors import RemoteError
from callbridge.vocabulary import HeldBy, MediaType

__all__ = [
    "AnswerAction",
    "Call",
    "CallDirection",
    "CallHost",
    "CallState",
    "ConferenceView",
    "Event",
    "LegOwner",
    "MediaType",
]

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


class ConferenceView(Protocol):
    """What an :class:`Event` shows of its conference (a :class:`~callbridge.client.Conference`)."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def media_type(self) -> str: ...
    @property
    def participants(self) -> dict[str, dict[str, Any]]: ...
    @property
    def invitations(self) -> dict[str, dict[str, Any]]: ...
    @property
    def end_reason(self) -> str | None: ...


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
    conference: ConferenceView | None = None  # conference:* events: the conference


class CallHost(CallServices, Protocol):
    """What a :class:`Call` needs of the phone (its call list implements it)."""

    def publish(self, event: Event) -> None:
        """Hand ``event`` to ``phone.events()`` streams."""

    def index_of(self, call: Call) -> int | None:
        """``call``'s place among the phone's live calls (oldest first), if live."""
        ...

    def call_ended(self, call: Call) -> None:
        """``call`` ended: it leaves the phone's calls (called before ``ended`` is emitted)."""

    def brought_forward(self, call: Call) -> None:
        """The user is on ``call`` now (answered or resumed): it is the foreground call."""

    async def answering(
        self, call: Call, action: AnswerAction | None, answer: Callable[[], Awaitable[None]]
    ) -> None:
        """Run ``answer`` after doing ``action`` to the other calls (seed 002
        ``answer(action)``), undoing automatic holds if the answer fails."""

    async def consult(
        self, call: Call, destination: str, source: AudioSource | None, sink: AudioSink | None
    ) -> Call:
        """Place the consultation call of ``call``'s attended transfer."""
        ...

    def take_consultation(self, call: Call) -> Call | None:
        """``call``'s consultation call if it is answered, which is then no longer one (its
        end is the transfer's); ``None`` (and nothing changes) if there is none answered."""
        ...


class Call(CallBase[Event, CallHost]):
    """A call of this device (seed 001's ``call`` object).

    Attributes: :attr:`id` (the server's ``call_id`` of this leg), :attr:`direction`
    (``"outgoing"``/``"incoming"``), :attr:`from_`, :attr:`from_name`, :attr:`to`,
    :attr:`state` (a :class:`CallState`: ``trying``, ``ringing``, ``active``, ``held`` or
    ``ended``), :attr:`end_reason`, :attr:`held_by`, :attr:`is_muted`, and :attr:`media` (the
    :class:`~callbridge.client.media.CallMedia`: seed 001's ``peerConnection`` is
    ``call.media.pc``; ``None`` for an incoming call until it is answered).

    Events (``call.on(name, handler)``, see :mod:`callbridge.client.events`): ``trying``,
    ``ringing``, ``answered``, ``held(by)``, ``resumed(by)``, ``muted``, ``unmuted``,
    ``dtmf(digit)``, ``recording(on)`` (the call is recorded, or no longer is; also
    :attr:`is_recorded`), ``transferred(peer)`` (an attended transfer connected us to ``peer``),
    ``bridged(Bridged)`` (an application connected us to another call: who, from which queue,
    after what wait; also :attr:`bridged`),
    ``moved(session_id)`` (another device took the call over; ``ended("moved")`` follows),
    ``move-failed(reason)``, ``ended(reason)``.
    """

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
        self, name: Literal["recording"], handler: Callable[[bool], object]
    ) -> Callable[[bool], object]: ...
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
    @overload
    def on(
        self, name: Literal["bridged"], handler: Callable[[Bridged], object]
    ) -> Callable[[Bridged], object]: ...
    def on(self, name: CallEventName, handler: Callable[..., object]) -> Callable[..., object]:
        """Call ``handler`` on every ``name`` event (arguments: see the class docstring).

        A handler may be a plain function or a coroutine function (run in a task the phone
        owns). Returns the handler, for :meth:`off`.
        """
        return self._emitter.add(name, handler)

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
        done = self._history.settled(name, self._modification is not None)
        if done is not None:
            return done
        if not self.is_live:
            raise CallEndedError(self.id, self.end_reason, name)
        try:
            return await self._history.next(name, timeout)
        except TimeoutError:
            raise TimeoutError(
                f"call {self.id}: no {name!r} within {timeout} s (state {self.state})"
            ) from None

    def make_event(self, name: EventName, data: dict[str, Any]) -> Event:
        """An :class:`Event` about this call with the seed-002 fields as they are now (the
        phone and conferences make their events about a call with it)."""
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
            index=self._host.index_of(self),
            from_=self.from_,
            to=self.to,
            media_type=self.media_type,
            codec=tuple(codec),
        )

    def _event(self, name: CallEventName, data: dict[str, Any], *args: object) -> None:
        event = self.make_event(name, data)
        self._history.record(name, event)
        self._emitter.emit(name, *args)
        self._host.publish(event)

    def _end(self, reason: str, data: dict[str, Any]) -> None:
        """The call is over (server said so, or the session ended): tell everyone, free media."""
        if not self.is_live:
            return
        self.end_reason = reason
        self.transition(CallState.ENDED, cause=reason)
        if not self._setup.done():
            error = self.last_error or RemoteError(
                reason, f"the call ended ({reason}) before the server answered the offer"
            )
            self._setup.set_exception(error)
            self._setup.exception()  # retrieved: phone.call() may already have given up
        self._host.call_ended(self)
        self._event("ended", data, reason)
        if self.leg_owner is not None:
            self.leg_owner.leg_ended(reason)
        self._history.fail_waiters(lambda name: CallEndedError(self.id, reason, name))
        if self.media is not None:
            self._media_ops.close()

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
        self._event("answering", {"call_id": self.id})
        video = (media_type or self._media_type) == "video"
        videos = (video_source, video_sink) if video else None
        await self._host.answering(self, action, lambda: self._answer(source, sink, codecs, videos))

    async def resume(self) -> None:
        """Take the call off hold (``resumed``); it becomes the phone's
        :attr:`~callbridge.client.Phone.foreground_call`."""
        await self._request("call.resume")
        self._held_explicitly = False
        self._host.brought_forward(self)

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
        if self.state not in ESTABLISHED:
            raise CallStateError(f"call {self.id} is {self.state}: answer it before transferring")
        return await self._host.consult(self, destination, source, sink)

    async def complete_transfer(self) -> None:
        """Connect this call's far party to the consultation's far party (seed 001
        ``completeTransfer``); both of our calls end with ``transferred``.

        :raises CallStateError: no answered consultation (see :meth:`attended_transfer`).
        """
        consult = self._host.take_consultation(self)
        if consult is None:
            raise CallStateError(f"call {self.id} has no answered consultation call to join")
        self._event("transferring", {"call_id": self.id, "target_call_id": consult.id})
        await self._request("call.complete_transfer", target_call_id=consult.id)

    # audio <-> video (seed 002) ------------------------------------------------------------

    def _modifiable(self, what: str) -> CallMedia:
        if self.state is not CallState.ACTIVE or self.media is None:
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
        self._history.modification_started()
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
        self._history.modification_started()
        sdp = await media.offer_video(send=False, receive=False)
        await self._request("call.modify", media_type="audio", sdp=sdp)

    def _take_modification(self, what: str) -> tuple[CallMedia, dict[str, Any]]:
        pending, media = self._modification, self.media
        if pending is None or media is None:
            raise CallStateError(f"call {self.id}: no media modification to {what}")
        self._modification = None
        self._history.modification_started()
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
