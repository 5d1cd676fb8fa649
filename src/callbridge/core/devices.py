"""Devices: what the core rings and reports to.

A device is one endpoint of a user or an application that can hold legs: a ``/ws`` session
(:mod:`callbridge.signalling.sessions`), an application driving calls over REST
(:mod:`callbridge.core.appcalls`), and later a SIP registration. The core never knows which:
it asks a device nothing but its identity and reachability, and tells it what happened with
:meth:`Device.deliver` (a typed :class:`~callbridge.core.events.DeviceEvent`). The device's
adapter turns the event into its wire format, or drops it. Adding a kind of device means
writing a class with these members and an adapter for the events; the call logic does not
change (docs/architecture.md, "Devices, and how to add a kind").
"""

from __future__ import annotations

from typing import Protocol

from callbridge.core.events import DeviceEvent

__all__ = ["Device"]


class Device(Protocol):
    """One endpoint that legs belong to (a softphone's session, an application, …)."""

    id: str
    user_name: str  # the user it belongs to ("application:<id>" for an application)
    caller_id: str  # the user's number, else extension
    display_name: str

    @property
    def reachable(self) -> bool:
        """False while the device cannot be rung (its connection is away, or it never rings)."""

    def deliver(self, event: DeviceEvent) -> None:
        """Tell the device one fact. Never blocks, never raises."""
