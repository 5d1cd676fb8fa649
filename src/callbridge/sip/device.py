"""A SIP party as a core device (docs/architecture.md, "Devices, and how to add a kind").

Two kinds of SIP device, one class:

- the phone that sent an authenticated INVITE (the caller of one call: ``binding`` is None);
- a registered contact of a user (a :class:`~callbridge.store.sip.Binding`), rung with the
  user's other devices when the user is called.

The device knows who it is and whether it may ring; every fact the core tells it
(:meth:`SipDevice.deliver`) goes to the call adapter (:mod:`callbridge.sip.calls`), which
turns it into SIP requests and responses. ``plain_rtp`` tells the core to give its legs
plain RTP media (``answer_rtp``/``offer_rtp``) instead of WebRTC.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Protocol

from callbridge.core.events import DeviceEvent

if TYPE_CHECKING:
    from callbridge.store.records import User
    from callbridge.store.sip import Binding

__all__ = ["EventSink", "SipDevice"]


class EventSink(Protocol):
    """Where a SIP device's events go (the call adapter)."""

    def deliver(self, device: SipDevice, event: DeviceEvent) -> None: ...


class SipDevice:
    """One SIP phone: a caller's phone, or a registered contact being rung."""

    plain_rtp = True  # its legs' media are RTP/AVP endpoints (core.routing, controller)

    def __init__(
        self,
        sink: EventSink,
        *,
        user: User | None = None,
        binding: Binding | None = None,
    ) -> None:
        assert user is not None or binding is not None
        self._sink = sink
        self.user = user
        self.binding = binding
        if user is not None:
            self.user_name = user.name
            self.account_id = user.account_id
            self.caller_id = user.number or user.extension
            self.display_name = user.display_name or user.name
        else:
            assert binding is not None
            self.user_name = binding.user_name
            self.account_id = binding.account_id
            self.caller_id = binding.user_name
            self.display_name = binding.user_name
        suffix = f"binding-{binding.id}" if binding is not None else "caller"
        self.id = f"sip:{self.user_name}:{suffix}:{uuid.uuid4().hex[:8]}"

    @property
    def reachable(self) -> bool:
        """A contact rings while its registration lives; a caller's phone is never rung."""
        return self.binding is not None and self.binding.expires_in() > 0

    def deliver(self, event: DeviceEvent) -> None:
        self._sink.deliver(self, event)

    def __repr__(self) -> str:
        return f"<SipDevice {self.id}>"
