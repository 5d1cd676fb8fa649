"""Calls with SIP phones, once the dialog is up: the in-dialog half of :mod:`callbridge.sip.calls`.

Requests from the phone inside its call's dialog::

    re-INVITE ─► ``renegotiate_rtp``; its hold (``sendonly``, ``inactive``, ``c=0.0.0.0``)
                 reaches the core as MediaDirectionChanged: the far party hears hold music and
                 gets ``call.held {by: "remote"}``; 488 when the offer is unusable
    INFO      ─► a DTMF digit for the far party (``application/dtmf-relay`` or
                 ``application/dtmf``; 415 for other bodies)
    REFER     ─► blind transfer (RFC 3515): 202, NOTIFYs of ``message/sipfrag`` progress, then
                 our BYE (after the final NOTIFY); with ``Replaces`` in the Refer-To it is an
                 attended transfer (RFC 5589 §7, RFC 3891): the phone's two calls are joined
                 (their far parties talk), then both of its dialogs get BYE
    BYE       ─► (dialog layer) the core leg is hung up
    others    ─► 501

From the core to the phone: the far party's hold or resume is our re-INVITE (``reoffer_rtp``:
``a=sendonly``, ``sendrecv`` on resume, RFC 3264 §8.4), its DTMF goes as RFC 4733 events or
in-band tones (``send_dtmf``).

:class:`SipLeg` (the SIP side of one core leg) lives here so that both halves share it without
importing each other in a circle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from callbridge.errors import ErrorCode, MediaError, ProtocolError
from callbridge.media.interface import DtmfReceived
from callbridge.sip.device import SipDevice
from callbridge.sip.dialog import NO_ACK
from callbridge.sip.message import Request, Response
from callbridge.sip.replaces import DialogIndex, Refusal, parse_replaces, same_user
from callbridge.sip.syntax import SipParseError

if TYPE_CHECKING:
    from callbridge.core.controller import CallController
    from callbridge.sip.dialog import Dialog
    from callbridge.sip.headers import Replaces
    from callbridge.sip.stack import Incoming, SipStack
    from callbridge.sip.transport import Flow

__all__ = ["CallDialogs", "SipLeg", "dtmf_of_info"]

log = logging.getLogger(__name__)


@dataclass(eq=False)
class SipLeg:
    """The SIP side of one core leg (``call_id``)."""

    device: SipDevice
    call_id: str
    incoming: Incoming | None = None  # UAS: the INVITE we answer
    invite: Request | None = None  # UAC: our INVITE
    flow: Flow | None = None
    dialog: Dialog | None = None
    answer_sdp: str = ""
    failure: tuple[int, str] | None = None  # a CommandFailed's final response (UAS)
    provisional: asyncio.Event = field(default_factory=asyncio.Event)  # UAC: a 1xx came
    cancel_reason: str | None = None  # UAC: CANCEL wanted (sent after the first 1xx)
    ended: bool = False
    early_sent: bool = False
    reinvite_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # ours, one at a time
    referring: asyncio.Event | None = None  # a REFER's NOTIFYs are due before our BYE


class CallDialogs:
    """The in-dialog part of the call adapter: serves a leg's dialog once it is up, and sends
    the phone the far party's hold and DTMF. ``on_bye`` is the adapter's: the phone sent BYE
    (the dialog layer answered it), so the core leg ends."""

    def __init__(
        self, stack: SipStack, controller: CallController, on_bye: Callable[[SipLeg], None]
    ) -> None:
        self.stack = stack
        self.controller = controller
        self.on_bye = on_bye
        self.index = DialogIndex()  # the confirmed dialogs, for Replaces (sip.replaces)

    def serve(self, leg: SipLeg, dialog: Dialog) -> None:
        """Take the dialog's requests and its end for ``leg``."""

        async def on_request(incoming: Incoming) -> None:
            await self._in_dialog(leg, dialog, incoming)

        def on_terminated(why: str) -> None:
            self.index.ended(key)
            # The phone hung up, or never ACKed our 2xx (the dialog sent BYE): the call ends.
            if not leg.ended and why in ("BYE received", NO_ACK):
                self.on_bye(leg)

        key = dialog.key
        self.index.add(key, leg)
        dialog.on_request = on_request
        dialog.on_terminated = on_terminated

    async def _in_dialog(self, leg: SipLeg, dialog: Dialog, incoming: Incoming) -> None:
        request = incoming.request
        if request.method == "INVITE":
            try:
                sdp = await self.controller.media.renegotiate_rtp(
                    leg.call_id, request.body.decode(errors="replace")
                )
            except MediaError as exc:
                incoming.respond(488, f"Not Acceptable Here ({exc})"[:120])
                return
            response = incoming.response(200, "OK")
            sdp_body(response, sdp)
            response.headers.set("Contact", self.stack.contact(incoming.flow.transport))
            dialog.send_2xx(incoming, response)
        elif request.method == "INFO":
            digit = dtmf_of_info(request.content_type or "", request.body.decode(errors="replace"))
            if digit is None:
                incoming.respond(415, "Unsupported Media Type (INFO: dtmf-relay or dtmf only)")
                return
            incoming.respond(200, "OK")
            self.controller.leg_media.on_media_event(DtmfReceived(leg.call_id, digit))
        elif request.method == "REFER":
            await self._refer(leg, dialog, incoming)
        else:
            incoming.respond(501, f"Not Implemented ({request.method} in a call)")

    async def _refer(self, leg: SipLeg, dialog: Dialog, incoming: Incoming) -> None:
        """Blind transfer by the phone (RFC 3515): 202, then NOTIFYs of ``message/sipfrag``
        progress (§2.4.4, §2.4.5): ``100 Trying``, then ``200 OK`` once the core took the
        transfer (its far party now rings the target; this leg ends ``transferred`` and the
        BYE follows the final NOTIFY), or the refusal (``404``, ``503``; the call stays).
        With ``Replaces`` in the Refer-To: :meth:`_attended`."""
        try:
            refer_to = incoming.request.refer_to
        except SipParseError as exc:
            incoming.respond(400, f"Bad Request (Refer-To: {exc})"[:120])
            return
        if refer_to is None:
            incoming.respond(400, "Bad Request (a REFER needs a Refer-To, RFC 3515 §2.4.1)")
            return
        uri = refer_to.uri
        if any(name.lower() == "replaces" for name, _ in uri.headers):
            values = [v for name, v in uri.headers if name.lower() == "replaces"]
            await self._attended(leg, dialog, incoming, values)
            return
        destination = uri.user or ""
        if not destination:
            incoming.respond(404, "Not Found (the Refer-To URI names no user)")
            return
        leg.referring = asyncio.Event()
        incoming.respond(202, "Accepted")
        try:
            await self._notify(dialog, "100 Trying", "active;expires=60")
            try:
                await self.controller.transfers.blind(leg.device, leg.call_id, destination, None)
                outcome = "200 OK"
            except ProtocolError as exc:
                code = getattr(exc, "code", None)
                outcome = (
                    "404 Not Found"
                    if code is ErrorCode.DESTINATION_NOT_FOUND
                    else ("503 Service Unavailable")
                )
            await self._notify(dialog, outcome, "terminated;reason=noresource")
        finally:
            leg.referring.set()

    async def _attended(
        self, leg: SipLeg, dialog: Dialog, incoming: Incoming, values: list[str]
    ) -> None:
        """Attended transfer (RFC 5589 §7): the phone, in calls with X (this dialog) and Y,
        REFERs this dialog to ``<sip:Y?Replaces=...>`` naming its dialog with Y. Callbridge is
        that dialog's other end (a B2BUA), so it is both the REFER's recipient and the target of
        the INVITE-with-Replaces the REFER asks for: it joins X and Y (``Transfers.connect``;
        both of the phone's legs end ``transferred``) and reports the outcome as the INVITE's
        would be: NOTIFY ``200 OK``, or the RFC 3891 §3 refusal (481 no such dialog, 603 ended,
        486 early-only, 403 another user's call), then BYE on both dialogs. Only a malformed
        Replaces is refused at once (400); a 481 to the REFER itself would end this dialog at
        the phone (RFC 3261 §12.2.1.2)."""
        parsed = parse_replaces(values, "the Refer-To")
        if isinstance(parsed, Refusal):
            incoming.respond(parsed.status, parsed.phrase)
            return
        if (parsed.call_id, parsed.to_tag, parsed.from_tag) == dialog.key:
            incoming.respond(400, "Bad Request (Replaces names this REFER's own dialog)")
            return
        leg.referring = referring = asyncio.Event()
        incoming.respond(202, "Accepted")
        try:
            await self._notify(dialog, "100 Trying", "active;expires=60")
            outcome = await self._join(leg, parsed)
            await self._notify(dialog, outcome, "terminated;reason=noresource")
        finally:
            referring.set()

    async def _join(self, leg: SipLeg, replaces: Replaces) -> str:
        """Connect the far parties of ``leg`` and the leg whose dialog ``replaces`` names; the
        sipfrag status line of the outcome."""
        other = self.index.match(replaces)
        if isinstance(other, Refusal):
            return other.sipfrag
        if other is leg:  # the same dialog under another Call-ID spelling: nothing to join
            return "400 Bad Request"
        if not same_user(leg.device, other.device):
            return "403 Forbidden"
        calls = self.controller
        other.referring = leg.referring  # its BYE, too, waits for the final NOTIFY
        try:
            a = calls.bridged(leg.device, leg.call_id, "transfer")
            b = calls.bridged(other.device, other.call_id, "transfer")
            await calls.transfers.connect(a, b, None)
        except ProtocolError as exc:
            other.referring = None
            log.info("SIP: attended transfer of %s refused: %s", leg.call_id, exc.message)
            if getattr(exc, "code", None) is ErrorCode.CALL_NOT_FOUND:
                return "603 Decline"
            return "503 Service Unavailable"
        return "200 OK"

    async def _notify(self, dialog: Dialog, status: str, state: str) -> None:
        """One NOTIFY of the implicit ``refer`` subscription (RFC 3515 §2.4.4)."""
        headers = [
            ("Event", "refer"),
            ("Subscription-State", state),
            ("Content-Type", "message/sipfrag;version=2.0"),
        ]
        with contextlib.suppress(OSError, TimeoutError):
            await dialog.request("NOTIFY", headers, f"SIP/2.0 {status}\r\n".encode())

    async def bye_after_refer(self, leg: SipLeg, dialog: Dialog) -> Response | None:
        """BYE, after the final NOTIFY of a REFER in progress (the dialog carries it)."""
        if leg.referring is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(leg.referring.wait(), 40)
        if dialog.state.value == "terminated":
            return None
        return await dialog.bye()

    async def reoffer(self, leg: SipLeg, held: bool) -> None:
        """The far party held (or resumed) the call: tell the phone by a re-INVITE whose offer
        is ``a=sendonly`` (``sendrecv`` to resume), RFC 3264 §8.4, with the same codecs and
        payload types (``reoffer_rtp``). One re-INVITE at a time per leg (§14.1); the dialog
        layer sends it again after a 491."""
        async with leg.reinvite_lock:
            dialog = leg.dialog
            if dialog is None or leg.ended or dialog.state.value == "terminated":
                return
            media = self.controller.media
            try:
                offer = await media.reoffer_rtp(leg.call_id, "sendonly" if held else "sendrecv")
                response = await dialog.request(
                    "INVITE", [("Content-Type", "application/sdp")], offer.encode()
                )
                if 200 <= response.status < 300:
                    await media.accept_answer(leg.call_id, response.body.decode(errors="replace"))
                else:
                    log.info("SIP: %s refused the hold re-INVITE: %s", leg.call_id, response.status)
            except (MediaError, OSError, TimeoutError) as exc:
                log.info("SIP: hold re-INVITE of %s failed: %s", leg.call_id, exc)

    async def send_dtmf(self, leg: SipLeg, digit: str) -> None:
        """The far party's digit: RFC 4733 events when the phone's leg negotiated
        telephone-event, else in-band tones (the media plane chooses)."""
        with contextlib.suppress(MediaError):
            await self.controller.media.send_dtmf(leg.call_id, digit)


_DTMF = re.compile(r"^\s*Signal\s*=\s*([0-9A-D*#])\s*$", re.IGNORECASE | re.MULTILINE)


def dtmf_of_info(content_type: str, body: str) -> str | None:
    """The digit of an INFO: ``application/dtmf-relay`` (``Signal=5``) or ``application/dtmf``
    (the bare digit)."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/dtmf-relay":
        match = _DTMF.search(body)
        return match.group(1).upper() if match else None
    if kind == "application/dtmf":
        text = body.strip().upper()
        return text if len(text) == 1 and text in "0123456789ABCD*#" else None
    return None


def sdp_body(response: Response, sdp: str) -> None:
    """Put ``sdp`` in ``response`` as its body."""
    response.body = sdp.encode()
    response.headers.set("Content-Type", "application/sdp")


async def quiet(work: object) -> None:
    """Await a BYE whose answer changes nothing (the call is over for us either way)."""
    with contextlib.suppress(Exception):
        await work  # type: ignore[misc]
