"""The Replaces header (RFC 3891): naming one of callbridge's SIP dialogs to take over.

callbridge is a B2BUA, so a dialog a phone names in Replaces is always one of callbridge's own
dialogs with a phone. Two requests carry one:

- **REFER with** ``Refer-To: <sip:Y?Replaces=...>`` on the phone's dialog 1 (attended
  transfer, RFC 5589 §7): the phone names its dialog 2 with callbridge (the consultation call
  to Y); ``sip.call_dialog`` connects the far parties of both calls (``Transfers.connect``).
- **INVITE with** ``Replaces`` (RFC 3891 §3): a phone of the same user takes over a live call
  of that user's (a pickup of a call from another desk, or the transferee's INVITE of a
  phone-to-phone attended transfer): ``Transfers.replace`` moves the far party's bridge to the
  new leg and the replaced phone gets BYE (the core ends its leg ``moved``). What a mature PBX
  does too (Asterisk's chan_pjsip supports both).

Matching (RFC 3891 §3): the Call-ID, and "the to-tag parameter is compared to the local tag,
and the from-tag parameter is compared to the remote tag", the tags of a request arriving in
the named dialog. Callbridge's dialogs are keyed by (Call-ID, local tag, remote tag), so the
named dialog is ``(call_id, to_tag, from_tag)``. The refusals are the RFC's: 400 for more than
one Replaces or a malformed one, 481 for no such dialog (also an early one: callbridge replaces
only confirmed dialogs; §3 allows replacing only early dialogs the UA itself initiated, and
callbridge's ringing legs are ring-group members a pickup would need its own policy for), 603
for a dialog that has ended, 486 for ``early-only`` naming a confirmed dialog; 403 for a dialog
of another user (§6: the replacement must be authorized; both phones must be the same user's).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from callbridge.errors import MediaError, ProtocolError
from callbridge.sip.device import SipDevice
from callbridge.sip.headers import Replaces
from callbridge.sip.syntax import SipParseError

if TYPE_CHECKING:
    from callbridge.sip.call_dialog import SipLeg
    from callbridge.sip.calls import SipCalls
    from callbridge.sip.stack import Incoming
    from callbridge.store.records import User

__all__ = ["DialogIndex", "Refusal", "invite_with_replaces", "parse_replaces", "same_user"]

DialogKey = tuple[str, str, str]  # (Call-ID, local tag, remote tag)
_ENDED_KEPT = 1024  # how many ended dialogs still get 603 rather than 481


@dataclass(frozen=True, slots=True)
class Refusal:
    """A Replaces that cannot be carried out: the response (or the sipfrag of a REFER)."""

    status: int
    phrase: str

    @property
    def sipfrag(self) -> str:
        return f"{self.status} {self.phrase}"


def parse_replaces(values: list[str], where: str) -> Replaces | Refusal:
    """The one Replaces value of a request (RFC 3891 §3: more than one is a 400)."""
    if len(values) != 1:
        return Refusal(400, f"Bad Request ({len(values)} Replaces values in {where}; one only)")
    try:
        return Replaces.parse(values[0])
    except SipParseError as exc:
        return Refusal(400, f"Bad Request (Replaces in {where}: {exc.reason})"[:120])


def same_user(a: SipDevice, b: object) -> bool:
    """Both devices are the same user's (the phones of one account's user)."""
    return isinstance(b, SipDevice) and a.user_name == b.user_name and a.account_id == b.account_id


class DialogIndex:
    """The SIP legs of the confirmed call dialogs, by dialog id, for Replaces to find."""

    def __init__(self) -> None:
        self.live: dict[DialogKey, SipLeg] = {}
        self._ended: OrderedDict[DialogKey, None] = OrderedDict()

    def add(self, key: DialogKey, leg: SipLeg) -> None:
        self.live[key] = leg

    def ended(self, key: DialogKey) -> None:
        if self.live.pop(key, None) is not None:
            self._ended[key] = None
            while len(self._ended) > _ENDED_KEPT:
                self._ended.popitem(last=False)

    def match(self, replaces: Replaces) -> SipLeg | Refusal:
        """The leg whose dialog ``replaces`` names (RFC 3891 §3), or the refusal."""
        key = (replaces.call_id, replaces.to_tag, replaces.from_tag)
        leg = self.live.get(key)
        dialog = leg.dialog if leg is not None else None
        if leg is None or dialog is None or leg.ended or dialog.state.value == "terminated":
            if key in self._ended or leg is not None:
                return Refusal(603, "Decline (the dialog named by Replaces has ended)")
            return Refusal(
                481,
                "Call/Transaction Does Not Exist (Replaces names no confirmed dialog: Call-ID, "
                "to-tag = our tag, from-tag = yours)",
            )
        if replaces.early_only:
            return Refusal(486, "Busy Here (Replaces is early-only; the dialog is confirmed)")
        return leg


async def invite_with_replaces(calls: SipCalls, incoming: Incoming, user: User) -> None:
    """An authenticated INVITE with Replaces (RFC 3891 §3): the new phone takes over the named
    leg's side of its call, or gets the RFC's refusal. The 200 with the answer SDP is sent by
    the adapter when the core's ``CallAnswered`` reaches the new device."""
    request = incoming.request
    if not request.body.strip():
        incoming.respond(488, "Not Acceptable Here (an INVITE with Replaces needs an SDP offer)")
        return
    parsed = parse_replaces(request.headers.values("Replaces"), "the INVITE")
    found = calls.in_dialog.index.match(parsed) if isinstance(parsed, Replaces) else parsed
    if isinstance(found, Refusal):
        incoming.respond(found.status, found.phrase)
        return
    device = SipDevice(calls, user=user)
    if not same_user(device, found.device):
        incoming.respond(403, "Forbidden (Replaces names a call of another user)")
        return
    old = calls.controller.legs.get(found.call_id)
    if old is None:
        incoming.respond(603, "Decline (the dialog named by Replaces has ended)")
        return
    # The adapter ties the new device's first core events to this INVITE, as for a caller.
    calls.callers[id(device)] = incoming
    try:
        await calls.controller.transfers.replace(old, device, request.body.decode(errors="replace"))
    except MediaError as exc:
        incoming.respond(488, f"Not Acceptable Here ({exc})"[:120])
    except ProtocolError as exc:
        incoming.respond(603, f"Decline ({exc.message})"[:120])
    finally:
        calls.callers.pop(id(device), None)
