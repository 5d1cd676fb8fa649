"""What ends at once when access is taken away: an account deleted, a user removed, a login
token revoked (issue 10).

Taking access away must not leave what it granted running: a deleted account's calls would
otherwise go on (and keep writing CDRs and webhooks for an account that is gone), a removed
user's phone would stay signed in until its token expired.

- **A user removed, or all its tokens revoked**: the user's signed-in ``/ws`` sessions on this
  server end (:func:`end_sessions`): their calls hang up as a ``session.logout`` would (each
  far party gets ``call.ended``, each application ``call.hangup``, each call its CDR) and the
  client gets ``session.expired``.
- **One token revoked**: only the sessions that signed in (or last resumed or refreshed) with
  that token end; the user's other devices stay.
- **An account deleted** (:func:`end_account`), before its rows go: its conferences end (their
  participants hang up, ``conference.ended``), its applications' calls hang up (a call waiting
  in a queue leaves it: ``call.dequeued``, then ``call.hangup``), the calls of its users'
  devices (``/ws`` and SIP) end with ``hangup``, its users' sessions end, and its queues are
  forgotten. Every end is the normal one: events, webhooks and CDRs as for a hangup.

This server only: another node sharing the database still has its own sessions and calls of
the account (they end when they end; the account's keys and tokens are refused there too once
its caches expire, within 10 s).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from callbridge.core.control import CallControl
from callbridge.core.tenancy import account_of
from callbridge.errors import CallbridgeError
from callbridge.vocabulary import EndReason

__all__ = ["AccountEnded", "end_account", "end_sessions"]

log = logging.getLogger(__name__)


async def end_sessions(
    request: Request,
    cause: str,
    *,
    user_name: str | None = None,
    account_id: str | None = None,
    token: str | None = None,
) -> int:
    """End this server's signed-in ``/ws`` sessions of a user (``user_name``, and only those
    signed in with ``token``'s digest when given) or of every user of ``account_id``; how many
    there were. Their calls hang up; the client gets ``session.expired``."""
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None:
        return 0
    sessions = runtime.sessions
    ended = 0
    for session in list(sessions.sessions.values()):
        if session.ended:
            continue
        if user_name is not None and session.user_name != user_name:
            continue
        if token is not None and session.token_digest != token:
            continue
        if account_id is not None and account_of(session) != account_id:
            continue
        await sessions.end(session, EndReason.HANGUP, EndReason.HANGUP, cause)
        session.queue({"type": "session.expired", "session_id": session.id})
        ended += 1
    return ended


@dataclass(frozen=True, slots=True)
class AccountEnded:
    """What :func:`end_account` ended."""

    conferences: int
    calls: int
    sessions: int


async def end_account(request: Request, control: CallControl, account_id: str) -> AccountEnded:
    """End everything ``account_id`` has live on this server (the module docstring), before
    its rows are deleted."""
    runtime: Any = getattr(request.app.state, "runtime", None)
    if runtime is None:
        return AccountEnded(0, 0, 0)
    apps = runtime.appcalls
    conferences = 0
    for record in control.conference_records(account_id=account_id):
        if record.ended_at is not None:
            continue
        try:
            await control.end_conference(record.id)
            conferences += 1
        except CallbridgeError:  # a call group, or it ended meanwhile
            log.debug("account %s: conference %s not ended", account_id, record.id)
    calls = 0
    for call in list(apps.calls.values()):
        if call.ended_at is not None or control.account_of(call) != account_id:
            continue
        try:
            await control.hangup(call)
            calls += 1
        except CallbridgeError:  # ended meanwhile (CallHasEnded, UnknownCall)
            continue
    controller = runtime.controller
    for leg in list(controller.legs.values()):  # its users' devices: /ws and SIP phones
        if leg.call is None or leg.call.ended or account_of(leg.device) != account_id:
            continue
        await controller.end_call(leg.call, EndReason.HANGUP, EndReason.HANGUP)
        calls += 1
    sessions = await end_sessions(request, "account deleted", account_id=account_id)
    for queue in control.queues(account_id=account_id):
        try:
            control.delete_queue(queue.name, account_id=account_id)
        except CallbridgeError:  # a call joined it meanwhile: it ends with the store's rows
            log.warning("account %s: queue %s still has calls", account_id, queue.name)
    ended = AccountEnded(conferences, calls, sessions)
    if conferences or calls or sessions:
        log.warning(
            "account %s deleted: %d conferences, %d calls and %d sessions ended",
            account_id,
            conferences,
            calls,
            sessions,
        )
    return ended
