"""What the store hands out (frozen dataclasses), plus the rules for their fields.

Users and call detail records; call-control applications, the routes that send a destination
to one, uploaded media, recordings, webhook outbox messages and the webhook signing key.
Every datetime is timezone-aware UTC. Secrets (a signing secret, the private key) are left out
of ``repr`` so that logging a record does not leak them.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

__all__ = [
    "RECORDING_CHANNELS",
    "RECORDING_FORMATS",
    "WEBHOOK_STATUSES",
    "Application",
    "Cdr",
    "Media",
    "OutboxMessage",
    "Recording",
    "RecordingChannels",
    "RecordingFormat",
    "Route",
    "SigningKey",
    "User",
    "WebhookStatus",
    "as_utc",
    "normalize_number",
    "validate_application_name",
    "validate_content_type",
    "validate_destination",
    "validate_extension",
    "validate_media_name",
    "validate_name",
    "validate_number",
    "validate_signing_secret",
    "validate_webhook_timeout",
    "validate_webhook_url",
]

RecordingFormat = Literal["wav", "mp3"]
RecordingChannels = Literal["single", "dual"]
WebhookStatus = Literal["pending", "delivered", "failed"]
RECORDING_FORMATS: tuple[RecordingFormat, ...] = ("wav", "mp3")
RECORDING_CHANNELS: tuple[RecordingChannels, ...] = ("single", "dual")
WEBHOOK_STATUSES: tuple[WebhookStatus, ...] = ("pending", "delivered", "failed")

# re.ASCII: `\d` and friends would otherwise accept any Unicode digit ("١٢٣").
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}", re.ASCII)
_EXTENSION = re.compile(r"[0-9]{2,8}", re.ASCII)
# E.164 (ITU-T E.164 §6): at most 15 digits, country codes never start with 0. Numbers
# shorter than 8 digits are short codes or extensions, not routable numbers.
_E164 = re.compile(r"\+[1-9][0-9]{7,14}", re.ASCII)
_NUMBER_SEPARATORS = re.compile(r"[\s\-.()]")
# Media names appear in URL paths (/v2/media/{media_name}): URL-safe characters only, and no
# leading dot (no "." or ".." and nothing that looks like a hidden file).
_MEDIA_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}", re.ASCII)
# RFC 9110 §8.3.1 media type "type/subtype" (parameters such as "; charset=" are allowed).
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_CONTENT_TYPE = re.compile(rf"{_TOKEN}/{_TOKEN}(\s*;\s*{_TOKEN}=\S+)*", re.ASCII)
_SECRET_PREFIX = "whsec_"  # the Standard Webhooks secret format: "whsec_" + base64(key)
_MIN_SECRET_BYTES = 16
_MAX_SECRET_BYTES = 64
_MAX_URL = 2048
_MAX_APPLICATION_NAME = 255


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    extension: str
    number: str | None  # E.164, "+" and digits only
    display_name: str | None
    account_id: str = "default"  # the tenant (store.schema.DEFAULT_ACCOUNT_ID)


@dataclass(frozen=True, slots=True)
class Cdr:
    """A call detail record: one finished call. Datetimes are timezone-aware UTC.

    The store also keeps a record while its call is in progress (``open``) and closes it at
    the end (``callbridge.store.calls``); an open record is not a ``Cdr``."""

    call_id: str
    caller: str
    callee: str
    destination: str
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime
    end_reason: str
    direction: str | None = None
    account_id: str = "default"  # the tenant (store.schema.DEFAULT_ACCOUNT_ID)
    # Details (callbridge.cdr_details; None when unknown or not applicable).
    answered_device: str | None = None  # the device that answered (session / SIP contact)
    answered_user: str | None = None  # its user: the agent who got a queued call
    queue_name: str | None = None  # the queue the call waited in before it was bridged
    queue_wait_secs: int | None = None  # how long it waited there
    conference_id: str | None = None  # the last conference it joined
    transferred_to: str | None = None  # ended ``transferred``: the call id it goes on as
    hangup_source: str | None = None  # caller | callee | application | unknown
    quality: dict[str, Any] | None = None  # per-leg RTCP figures (callbridge.cdr_details)
    sip_cause: int | None = None  # the SIP status that ended its trunk leg (issue 12)
    # The follow-me steps tried (issue 16, core.followme.StepRecord): targets, seconds,
    # outcome, who answered; None when the callee had no forwarding rules.
    forwarding: list[dict[str, Any]] | None = None

    @property
    def duration_seconds(self) -> float:
        """Talk time: from the answer to the end; 0 for a call nobody answered."""
        if self.answered_at is None:
            return 0.0
        return max(0.0, (self.ended_at - self.answered_at).total_seconds())


@dataclass(frozen=True, slots=True)
class Application:
    """A call-control application: where a call's webhooks go and how they are signed.

    ``signing_secret`` (Standard Webhooks ``whsec_…``), when set, adds a ``v1`` HMAC to every
    delivery's ``webhook-signature`` next to the server's ed25519 ``v1a`` signature.
    ``webhook_timeout_secs`` is how long a delivery waits for the app's answer (``None``: the
    outbox's default).
    """

    id: str  # decimal string, time-ordered ("1293384261075731499"), as Telnyx's ids look
    application_name: str
    webhook_event_url: str
    webhook_event_failover_url: str | None
    webhook_api_version: str  # "2": the only envelope callbridge sends
    webhook_timeout_secs: int | None
    active: bool
    signing_secret: str | None = field(repr=False)
    created_at: datetime
    updated_at: datetime
    account_id: str = "default"  # the tenant that owns it (store.schema.DEFAULT_ACCOUNT_ID)


@dataclass(frozen=True, slots=True)
class Route:
    """The dial plan: calls to ``destination`` (an extension or an E.164 number) go to an app."""

    destination: str
    application_id: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Media:
    """An uploaded audio file that calls can play by ``media_name``.

    The store keeps only metadata; ``path`` is where the server put the file. After
    ``expires_at`` the media is gone for every lookup (``Store.delete_expired_media`` hands
    the expired records over so that the server deletes their files).
    """

    media_name: str
    content_type: str
    path: str
    size: int  # bytes
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    account_id: str = "default"


@dataclass(frozen=True, slots=True)
class Recording:
    """A finished recording of a call or a conference; ``path`` is the file on disk."""

    id: str
    call_control_id: str | None
    call_leg_id: str | None
    call_session_id: str | None
    conference_id: str | None
    path: str
    format: RecordingFormat
    channels: RecordingChannels
    duration_millis: int
    status: Literal["completed"]
    recording_started_at: datetime
    recording_ended_at: datetime
    created_at: datetime
    account_id: str = "default"


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A webhook waiting in (or gone through) the durable outbox.

    ``data_json`` is the exact JSON text of the event (the envelope's ``data`` object) fixed
    when the message was enqueued; every attempt sends it byte for byte, wrapped with that
    attempt's ``meta`` (see ``callbridge.webhooks``). ``attempts`` counts the HTTP attempts
    begun so far; ``ordering_key`` "" means the message waits for no other.
    """

    id: int
    message_id: str  # the Standard Webhooks webhook-id, "msg_…"; the same on every attempt
    event_type: str
    ordering_key: str
    url: str
    failover_url: str | None
    data_json: str
    application_id: str | None
    status: WebhookStatus
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


@dataclass(frozen=True, slots=True)
class SigningKey:
    """The server's ed25519 key pair for webhook signatures, as base64 of the raw 32 bytes."""

    private_key: str = field(repr=False)
    public_key: str
    created_at: datetime


def as_utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime; a naive value is taken to be UTC already.

    SQLite keeps no time zone, so everything read back from it is naive UTC.
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def validate_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"invalid user name {name!r}: use 1 to 64 letters, digits, '.', '_' or '-'"
        )
    return name


def validate_extension(extension: str) -> str:
    if not _EXTENSION.fullmatch(extension):
        raise ValueError(f"invalid extension {extension!r}: use 2 to 8 digits")
    return extension


def validate_number(number: str) -> str:
    """The E.164 form of ``number``; spaces, dashes, dots and parentheses are dropped."""
    compact = _NUMBER_SEPARATORS.sub("", number)
    if not _E164.fullmatch(compact):
        raise ValueError(
            f"invalid number {number!r}: use E.164, '+' and 8 to 15 digits, e.g. +14155550100"
        )
    return compact


def normalize_number(dialled: str) -> str | None:
    """The E.164 form a dialled string could mean, or ``None`` if it cannot be a number.

    Accepts the number with or without its leading '+' and with spaces, dashes, dots or
    parentheses anywhere ("+1 (415) 555-0100", "14155550100").
    """
    compact = _NUMBER_SEPARATORS.sub("", dialled)
    if not compact.startswith("+"):
        compact = "+" + compact
    return compact if _E164.fullmatch(compact) else None


def validate_destination(destination: str) -> str:
    """A route's destination in its canonical form: an extension, or a number in E.164."""
    compact = destination.strip()
    if _EXTENSION.fullmatch(compact):
        return compact
    number = normalize_number(compact) if compact.startswith("+") else None
    if number is None:
        raise ValueError(
            f"invalid destination {destination!r}: use an extension (2 to 8 digits) or an "
            "E.164 number ('+' and 8 to 15 digits)"
        )
    return number


def validate_application_name(name: str) -> str:
    if not name.strip() or len(name) > _MAX_APPLICATION_NAME or not name.isprintable():
        raise ValueError(
            f"invalid application name {name!r}: use 1 to {_MAX_APPLICATION_NAME} printable "
            "characters"
        )
    return name


def validate_webhook_url(url: str, what: str = "webhook URL") -> str:
    """An absolute http(s) URL with a host, at most 2048 characters."""
    if not (len(url) <= _MAX_URL and not any(c.isspace() for c in url) and _has_http_host(url)):
        raise ValueError(
            f"invalid {what} {url!r}: use an absolute http:// or https:// URL with a host "
            f"(at most {_MAX_URL} characters)"
        )
    return url


def _has_http_host(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def validate_webhook_timeout(seconds: int | None) -> int | None:
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 1 <= seconds <= 30:
        raise ValueError(f"invalid webhook_timeout_secs {seconds!r}: use 1 to 30 seconds")
    return seconds


def validate_signing_secret(secret: str | None) -> str | None:
    """A Standard Webhooks secret: ``"whsec_"`` and the base64 of 16 to 64 random bytes."""
    if secret is None:
        return None
    try:
        if not secret.startswith(_SECRET_PREFIX):
            raise ValueError("no whsec_ prefix")
        key = base64.b64decode(secret[len(_SECRET_PREFIX) :], validate=True)
    except (ValueError, binascii.Error):
        key = b""
    if not _MIN_SECRET_BYTES <= len(key) <= _MAX_SECRET_BYTES:
        raise ValueError(
            "invalid signing secret: use 'whsec_' followed by the base64 of "
            f"{_MIN_SECRET_BYTES} to {_MAX_SECRET_BYTES} random bytes"
        )
    return secret


def validate_media_name(name: str) -> str:
    if not _MEDIA_NAME.fullmatch(name):
        raise ValueError(
            f"invalid media name {name!r}: use 1 to 255 letters, digits, '.', '_' or '-', "
            "not starting with '.'"
        )
    return name


def validate_content_type(content_type: str) -> str:
    if len(content_type) > 255 or not _CONTENT_TYPE.fullmatch(content_type):
        raise ValueError(f"invalid content type {content_type!r}: use type/subtype, e.g. audio/wav")
    return content_type
