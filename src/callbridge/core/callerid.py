"""Caller ID: what a caller may present, and display names made safe to show (issue 10).

**Who may present what.** A ``/ws`` user's ``call.create`` may present (``caller_id``):

- nothing: the server presents the user's number, else extension (as always);
- the user's own extension or number (any spelling of it);
- a number the user's account owns (the ``numbers`` table).

An application dialling out (REST ``POST /v2/calls`` and ``transfer``: ``from``) may present a
number its account owns, the number or extension of one of its account's users, or a
destination a route of its account sends to an application (its own line).

Anything else is refused with ``caller_id_not_allowed``, naming what is allowed: a number that
another user or another account claims, a short code such as ``911``, anything that is neither
an extension of the caller nor an E.164 number written with its ``+`` (a name, text with bidi
controls). Numbers are presented in E.164 form ("+1 415 555 0100" is shown "+14155550100").

*An account that owns no numbers yet*: the server cannot tell which outside numbers are its, so
an E.164 number that nobody on the server claims (no user's, no account's) is allowed, as before
accounts existed. Once the account owns a number, or has a SIP trunk (issue 12: its calls may
reach the public network, where only a number it owns may be shown), only the rules above apply.

A directory that cannot say who claims a number (the in-memory one of the core's tests) has no
caller-ID policy: what the caller asks for is presented.

**Display names** (a user's name as shown, an application's ``from_display_name``) are
sanitised wherever one enters a call and again where the ``/ws`` adapter sends one: no control
or format characters (Unicode Cc and Cf, so no bidi embeddings, overrides or isolates, U+202A to
U+202E and U+2066 to U+2069, which could make "\u202eecilA" read as "Alice"), no lone
surrogates, white space runs folded to one space, trimmed, at most
:data:`MAX_DISPLAY_NAME` characters.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Protocol, runtime_checkable

from callbridge.core.devices import Device
from callbridge.core.tenancy import account_of
from callbridge.errors import ErrorCode, ProtocolError

__all__ = [
    "MAX_DISPLAY_NAME",
    "CallerIdNotAllowed",
    "CallerIds",
    "ClaimsDirectory",
    "clean_display_name",
]

MAX_DISPLAY_NAME = 128  # characters; the store's limit for a user's display name
_DROPPED = frozenset({"Cc", "Cf", "Cs"})  # control, format (bidi, zero-width), lone surrogates
_BREAKS = frozenset({"Zl", "Zp"})  # line and paragraph separators: become spaces
# E.164 (ITU-T E.164 §6): '+', a country code that does not start with 0, 8 to 15 digits in
# all; spaces, dashes, dots and parentheses may separate them.
_E164 = re.compile(r"\+[1-9][0-9]{7,14}", re.ASCII)
_SEPARATORS = re.compile(r"[ \-.()]")
_EXTENSION = re.compile(r"[0-9]{2,8}", re.ASCII)
_SHOWN = 40  # characters of a refused caller ID quoted back in the error
_LISTED = 5  # owned numbers a refusal names


def clean_display_name(name: str | None, limit: int = MAX_DISPLAY_NAME) -> str:
    """``name`` safe to show: no control, format or bidi characters, white space folded,
    trimmed, at most ``limit`` characters ("" when nothing is left)."""
    if not name:
        return ""
    kept: list[str] = []
    for ch in name:
        category = unicodedata.category(ch)
        if ch in "\t\n\r\v\f\x1c\x1d\x1e\x1f\x85" or category in _BREAKS:
            kept.append(" ")  # separates words: keep them apart
        elif category not in _DROPPED:
            kept.append(ch)
    return " ".join("".join(kept).split())[:limit].strip()


class CallerIdNotAllowed(ProtocolError):
    """A caller asked to present a caller ID it may not. ``field`` names the request's field
    (``caller_id`` on ``/ws``, ``from`` in REST), for the adapter's error."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(ErrorCode.CALLER_ID_NOT_ALLOWED, message)
        self.field = field


@runtime_checkable
class ClaimsDirectory(Protocol):
    """What the policy asks the store (:mod:`callbridge.store.tenancy`)."""

    async def number_claims(self, account_id: str, number: str) -> Any:
        """Who claims ``number``: ``owner_account``, ``user_account``, ``routed``,
        ``account_owns_numbers`` (``store.tenancy.NumberClaims``)."""

    async def owned_numbers(self, account_id: str, limit: int = 5) -> tuple[list[str], int]:
        """The first ``limit`` numbers the account owns, and how many it owns."""


def _e164(text: str) -> str | None:
    """The E.164 number ``text`` writes with its '+' (separators allowed), else None."""
    compact = _SEPARATORS.sub("", text)
    return compact if _E164.fullmatch(compact) else None


def _quoted(requested: str) -> str:
    # repr() escapes control and bidi characters: the error shows what was sent, safely.
    text = requested if len(requested) <= _SHOWN else requested[:_SHOWN] + "…"
    return repr(text)


def _allowed(claims: Any, account: str, *, application: bool) -> bool:
    """Whether ``account`` may present the number ``claims`` is about (its own extension or
    number aside: those are checked first)."""
    if claims.owner_account is not None:
        return bool(claims.owner_account == account)  # owned: by this account or another
    if claims.user_account is not None:
        # A user's number: only the account's applications may present it (a user may present
        # only their own, checked before).
        return application and claims.user_account == account
    if application and claims.routed:
        return True
    # Nobody claims it: allowed only while the account owns no numbers and has no trunk (see
    # the docstring).
    return not claims.account_owns_numbers and not getattr(claims, "account_has_trunks", False)


class CallerIds:
    """The caller-ID policy over a directory (the store); see the module docstring."""

    def __init__(self, directory: object) -> None:
        self._directory: Any = directory
        self._claims = directory if isinstance(directory, ClaimsDirectory) else None

    async def for_device(self, device: Device, requested: str | None) -> str:
        """The caller ID a device's call presents: its own when it asks for none (or a blank
        one), what it asks for when allowed.

        :raises CallerIdNotAllowed: anything else.
        """
        if requested is None or not requested.strip():
            return device.caller_id  # none asked for (blank counts as none, as it always did)
        if self._claims is None:
            return requested
        user = getattr(device, "user", None)  # a /ws session carries its store user
        extension = getattr(user, "extension", None)
        number = getattr(user, "number", None)
        text = requested.strip()
        if text and text in (extension, number, device.caller_id):
            return text
        e164 = _e164(text)
        if e164 is not None and e164 == number:
            return e164
        account = account_of(device)
        if e164 is not None:
            claims = await self._claims.number_claims(account, e164)
            if claims is not None and _allowed(claims, account, application=False):
                return e164
        own = " or ".join(
            f"your {what} {value}"
            for what, value in (("extension", extension), ("number", number))
            if value
        )
        raise CallerIdNotAllowed(
            "caller_id",
            f"caller_id {_quoted(requested)} is not allowed: present "
            f"{own or 'your own caller ID'}, or {await self._owned(account, 'your account')}; "
            f"or leave caller_id out to present {device.caller_id}",
        )

    async def for_application(self, account: str, requested: str) -> str:
        """The caller ID a call of an application of ``account`` presents (REST ``from``),
        when allowed.

        :raises CallerIdNotAllowed: otherwise.
        """
        if self._claims is None:
            return requested
        text = requested.strip()
        if _EXTENSION.fullmatch(text):
            user = await self._directory.find_user(text, account)
            if user is not None and user.extension == text:
                return text
            if await self._directory.find_route(text, account) is not None:
                return text
        e164 = _e164(text)
        if e164 is not None:
            claims = await self._claims.number_claims(account, e164)
            if claims is not None and _allowed(claims, account, application=True):
                return e164
        owned = await self._owned(account, "the application's account")
        raise CallerIdNotAllowed(
            "from",
            f"from {_quoted(requested)} is not allowed: use {owned}, the extension or number "
            "of one of its users, or a destination routed to one of its applications",
        )

    async def _owned(self, account: str, whose: str) -> str:
        """How a refusal names the numbers the account may present besides its own."""
        assert self._claims is not None
        numbers, total = await self._claims.owned_numbers(account, _LISTED)
        if not numbers:
            if await _has_trunks(self._directory, account):
                return (
                    f"a number {whose} owns (it owns none, and its calls may go out through a "
                    "SIP trunk: add one with 'callbridge numbers add +E164')"
                )
            return "an E.164 number ('+' and 8 to 15 digits) that no user or account here uses"
        listed = ", ".join(numbers) + (
            f" and {total - len(numbers)} more" if total > len(numbers) else ""
        )
        return f"a number {whose} owns ({listed})"


async def _has_trunks(directory: Any, account: str) -> bool:
    """Whether the account has a SIP trunk (a directory without trunks has none)."""
    list_trunks = getattr(directory, "list_trunks", None)
    return list_trunks is not None and bool(await list_trunks(account))
