"""Accounts (tenants) as the core sees them: whose account a device or an application is, and
who hears that a call is recorded.

Every lookup a device or an application makes goes through its account: ``/ws`` users reach
only users of their own account (``Directory.find_user(destination, account_id)``), unless a
route of that account sends the destination to one of its applications
(``find_route(destination, account_id)``). A user of another account is "not found", with the
same error as a destination nobody has, so that an account cannot learn what another has.
Calls never cross accounts: an application dials the users of its own account only.

**Recording notice.** Recording a 1:1 call tells both of its parties (:class:`CallRecording`,
``call.recording`` on ``/ws``) when it starts and when it stops, unless the account turned the
notice off (``accounts.recording_notice``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

from callbridge.core.call_events import CallRecording
from callbridge.core.calls import Leg
from callbridge.core.devices import Device

__all__ = [
    "DEFAULT_ACCOUNT_ID",
    "NoticeDirectory",
    "account_of",
    "application_account",
    "call_account",
    "tell_recording",
    "wants_recording_notice",
]

log = logging.getLogger(__name__)

# The account of a single-account install (store.schema.DEFAULT_ACCOUNT_ID; the core does not
# import the store, tests/test_tenancy.py checks that the two agree).
DEFAULT_ACCOUNT_ID = "default"


def _account_id(holder: object) -> str | None:
    account = getattr(holder, "account_id", None)
    return account if isinstance(account, str) else None


def account_of(device: Device) -> str:
    """The account ``device`` acts for: its own ``account_id`` when it has one, else that of
    the store record it carries (a ``/ws`` session's ``user``, an application device's
    ``application``); the default account for a device that knows of no account (an
    in-memory test device)."""
    for holder in (device, getattr(device, "user", None), getattr(device, "application", None)):
        account = _account_id(holder)
        if account is not None:
            return account
    return DEFAULT_ACCOUNT_ID


def application_account(application: Any) -> str:
    """The account of a call-control application, from its record (the store's records carry
    it; the default account for an in-memory test application that does not)."""
    return _account_id(application) or DEFAULT_ACCOUNT_ID


@runtime_checkable
class NoticeDirectory(Protocol):
    """The store's answer to "does this account tell the parties of a recorded call?"."""

    async def recording_notice(self, account_id: str) -> bool: ...


async def wants_recording_notice(directory: object, account_id: str) -> bool:
    """Whether recording a call of ``account_id`` is announced to its parties: on unless the
    account turned it off (a directory that knows of no accounts keeps it on)."""
    if isinstance(directory, NoticeDirectory):
        return await directory.recording_notice(account_id)
    return True


def tell_recording(legs: Iterable[Leg | None], recording: bool) -> tuple[Leg, ...]:
    """Tell each live leg's device that its call is (``recording``) or is no longer recorded;
    the legs told."""
    told: list[Leg] = []
    for leg in legs:
        if leg is None or not leg.live or any(leg is t for t in told):
            continue
        leg.device.deliver(CallRecording(call_id=leg.id, recording=recording))
        told.append(leg)
    return tuple(told)


def call_account(application: Any, device: Device) -> str:
    """The account a call acts in: its application's when an application drives it, else its
    device's."""
    if application is None:
        return account_of(device)
    return application_account(application)
