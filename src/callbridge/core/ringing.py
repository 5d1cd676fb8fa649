"""Who owns a ringing leg: the one contract for everything that rings a device.

A device leg rings because someone rang it: a call to the user (ring-all), a conference
invitation, a move of the user's call to another of their devices, an application's dial.
Whoever rang it sets ``leg.ring_owner`` to an object implementing :class:`RingOwner`, and
the controller hands it the device's answer or refusal, and a vanished device, without
knowing which kind it is. :class:`RingGroup` (in :mod:`callbridge.core.ringgroup`) is the
shared implementation: ring several devices at once, first answer wins, the rest stop; one
``answer``/``decline``/``timeout``/``cancel`` path.

What the rung device is told is an :class:`Alert`: ``call.incoming`` for a call
(:class:`~callbridge.core.calls.Caller`), ``conference.invitation`` for an invitation. The
controller's ``ring_device`` makes the leg, asks the media plane for an offer and alerts the
device with it, whatever the alert is.

Every kind of ringing reaches every ringable device of the user
(``CallController.ringable_devices``: ``/ws`` sessions and registered SIP contacts). A SIP
phone knows only INVITE, so whoever rings it with something other than a call (a conference
invitation) alerts it with a call instead (:func:`rings_as_call`): the phone sees an ordinary
incoming call from the host, as Asterisk's ConfBridge and FreeSWITCH's ``conference bgdial``
dial a phone into a conference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from callbridge.vocabulary import EndReason

if TYPE_CHECKING:
    from callbridge.core.calls import Leg
    from callbridge.core.devices import Device
    from callbridge.core.events import DeviceEvent

__all__ = ["Alert", "RingOwner", "rings_as_call"]


def rings_as_call(device: Device) -> bool:
    """Whether ``device`` can only be rung with a call (``call.incoming``): a SIP phone, whose
    INVITE carries nothing but a call (``plain_rtp``, the SIP device's mark the controller
    also reads for its media)."""
    return bool(getattr(device, "plain_rtp", False))


class Alert(Protocol):
    """What ringing a device tells it."""

    @property
    def video(self) -> bool:
        """The server's offer carries video."""

    def event(self, call_id: str, offer: str) -> DeviceEvent:
        """The event that makes the device ring for leg ``call_id``, with the server's
        ``offer``."""


class RingOwner(Protocol):
    """What a ringing leg's device did, handed to whoever rang it."""

    async def answer(self, leg: Leg, sdp: str, req_id: str | None) -> None:
        """The device answered ``leg`` with ``sdp``."""

    async def decline(self, leg: Leg, reason: EndReason, req_id: str | None) -> None:
        """The device refused ``leg``: ``REJECTED`` or ``BUSY`` (``call.reject``; a
        ``call.hangup`` while ringing is ``REJECTED`` too, whoever rang), or the device went
        away (``DISCONNECTED``, ``HANGUP`` on logout or expiry)."""
