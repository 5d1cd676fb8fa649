"""The tables, as SQLAlchemy ORM models. Changing them needs a migration in ``migrations/``.

Types are chosen to mean the same on SQLite and PostgreSQL: bounded ``String`` where a value
has a rule (names, extensions, hashes), unbounded ``String`` (VARCHAR / TEXT) elsewhere,
``UTCDateTime`` for every instant, and 64-bit ids for the tables that grow without bound (CDRs,
the webhook outbox). Ids that the REST API shows (applications, recordings) are strings, as
Telnyx's are.

The webhook outbox has no foreign key to its application: a message enqueued for an app that
is deleted later is still delivered (signed without the app's secret, which went with it).
Routes do reference their application, and go with it.

Some tables are declared beside their repository on this ``Base``: trunks and routes in
``store/trunks.py``, a user's forwarding rules (``followme_rules``, ``followme_steps``,
migration 0009) in ``store/followme.py``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from callbridge.store.records import as_utc

__all__ = [
    "DEFAULT_ACCOUNT_ID",
    "AccountRow",
    "ApiKeyRow",
    "ApplicationRow",
    "Base",
    "CdrRow",
    "LiveCallRow",
    "MediaRow",
    "NumberRow",
    "QueueEntryRow",
    "QueueRow",
    "RecordingRow",
    "RouteRow",
    "SigningKeyRow",
    "SipBindingRow",
    "SipCredentialRow",
    "SipSecretRow",
    "TokenRow",
    "UTCDateTime",
    "UserRow",
    "WebhookOutboxRow",
]

# Named constraints, so that later migrations can drop or alter them by name on every
# backend (SQLite needs batch mode for that, and batch mode needs the names).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """An instant, stored as UTC and always read back timezone-aware.

    PostgreSQL stores ``timestamptz``; SQLite keeps no zone, so naive UTC is written there
    (its text form then sorts chronologically). Naive datetimes are refused on the way in:
    guessing their zone is how off-by-hours bugs are born.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()}: pass a timezone-aware one")
        value = as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# The account every row belongs to unless said otherwise: a single-account install uses only
# this one, and looks exactly as before accounts existed (migration 0003).
DEFAULT_ACCOUNT_ID = "default"


def _account_id() -> Mapped[str]:
    """The owning account of a row (issue 10: every resource belongs to an account)."""
    return mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"),
        index=True,
        server_default=DEFAULT_ACCOUNT_ID,
    )


class AccountRow(Base):
    """A tenant. Keys of one account never see another's resources."""

    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    # Recording a 1:1 call tells both parties (`call.recording` on /ws) unless this is off.
    recording_notice: Mapped[bool] = mapped_column(Boolean, server_default=true())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class UserRow(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("account_id", "extension"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[str] = _account_id()
    name: Mapped[str] = mapped_column(String(64), unique=True)  # login names are global
    extension: Mapped[str] = mapped_column(String(8))  # unique within the account
    number: Mapped[str | None] = mapped_column(String(16), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Migration 0005: Telnyx credential fields (a listing tag; an expiry after which the user
    # cannot sign in, empty for never) and the last change.
    tag: Mapped[str | None] = mapped_column(String(255))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class TokenRow(Base):
    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked: Mapped[bool] = mapped_column(Boolean, server_default=false())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # 0005
    issued_by: Mapped[str | None] = mapped_column(String(64))  # 0005: "cli" | "api_key:<id>"


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[str] = _account_id()
    name: Mapped[str | None] = mapped_column(String(128))
    prefix: Mapped[str] = mapped_column(String(8))  # shown in listings; not a secret
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked: Mapped[bool] = mapped_column(Boolean, server_default=false())
    scope: Mapped[str] = mapped_column(String(16), server_default="write")  # "write" | "read"
    admin: Mapped[bool] = mapped_column(Boolean, server_default=false())  # manages accounts
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # 0005
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # 0005


class CdrRow(Base):
    """A call detail record: written ``open`` when a call starts, ``ended`` at its end. Rows
    still open at start-up were left by a crash of their node and are closed then."""

    __tablename__ = "cdrs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[str] = mapped_column(
        String(64), index=True, server_default=DEFAULT_ACCOUNT_ID
    )  # no foreign key: a record outlives its account
    call_id: Mapped[str] = mapped_column(String(64), unique=True)
    caller: Mapped[str] = mapped_column(String)
    callee: Mapped[str] = mapped_column(String)
    destination: Mapped[str] = mapped_column(String)
    direction: Mapped[str | None] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    end_reason: Mapped[str | None] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), server_default="ended")  # open | ended
    node_id: Mapped[str | None] = mapped_column(String(64), index=True)
    # Details (migration 0006; callbridge.cdr_details collects them while the call lives).
    answered_device: Mapped[str | None] = mapped_column(String(128))
    answered_user: Mapped[str | None] = mapped_column(String(255), index=True)
    queue_name: Mapped[str | None] = mapped_column(String(255))
    queue_wait_secs: Mapped[int | None] = mapped_column(Integer)
    conference_id: Mapped[str | None] = mapped_column(String(64))
    transferred_to: Mapped[str | None] = mapped_column(String(64))
    hangup_source: Mapped[str | None] = mapped_column(String(16))
    quality_json: Mapped[str | None] = mapped_column(Text)  # per-leg RTCP figures
    sip_cause: Mapped[int | None] = mapped_column(Integer)  # 0008: a trunk leg's SIP status
    forwarding_json: Mapped[str | None] = mapped_column(Text)  # 0009: follow-me steps tried


class ApplicationRow(Base):
    __tablename__ = "call_control_applications"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = _account_id()
    application_name: Mapped[str] = mapped_column(String(255))
    webhook_event_url: Mapped[str] = mapped_column(String(2048))
    webhook_event_failover_url: Mapped[str | None] = mapped_column(String(2048))
    webhook_api_version: Mapped[str] = mapped_column(String(8))
    webhook_timeout_secs: Mapped[int | None] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean)
    signing_secret: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RouteRow(Base):
    __tablename__ = "routes"

    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"),
        primary_key=True,
        server_default=DEFAULT_ACCOUNT_ID,
    )
    destination: Mapped[str] = mapped_column(String(16), primary_key=True)  # ext. or E.164
    application_id: Mapped[str] = mapped_column(
        ForeignKey("call_control_applications.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class NumberRow(Base):
    """An E.164 number an account owns: its users and applications may show it as caller ID,
    and calls to it reach the account."""

    __tablename__ = "numbers"

    number: Mapped[str] = mapped_column(String(16), primary_key=True)
    account_id: Mapped[str] = _account_id()
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Where inbound calls to it go (issue 12, callbridge.trunks.NumberRoute): None, or
    # user/application/conference/queue and its name or id; allow_outbound: such a call may
    # be sent on through a trunk.
    target_kind: Mapped[str | None] = mapped_column(String(16))
    target_id: Mapped[str | None] = mapped_column(String(255))
    allow_outbound: Mapped[bool] = mapped_column(Boolean, server_default=false())


class MediaRow(Base):
    __tablename__ = "media"
    __table_args__ = (UniqueConstraint("account_id", "media_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[str] = _account_id()
    media_name: Mapped[str] = mapped_column(String(255))  # unique within the account
    content_type: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(String)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)


class RecordingRow(Base):
    __tablename__ = "recordings"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = _account_id()
    call_control_id: Mapped[str | None] = mapped_column(String(128), index=True)
    call_leg_id: Mapped[str | None] = mapped_column(String(128))
    call_session_id: Mapped[str | None] = mapped_column(String(128))
    conference_id: Mapped[str | None] = mapped_column(String(64), index=True)
    path: Mapped[str] = mapped_column(String)
    format: Mapped[str] = mapped_column(String(8))
    channels: Mapped[str] = mapped_column(String(8))
    duration_millis: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    recording_started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    recording_ended_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class LiveCallRow(Base):
    """A call in progress on a node, with what its end webhooks need (``data_json``). Deleted
    when the call ends; rows left at start-up belong to calls a crash cut off."""

    __tablename__ = "live_calls"

    call_control_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    account_id: Mapped[str] = mapped_column(
        String(64), index=True, server_default=DEFAULT_ACCOUNT_ID
    )
    application_id: Mapped[str | None] = mapped_column(String(64))
    node_id: Mapped[str | None] = mapped_column(String(64), index=True)
    data_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class QueueRow(Base):
    """A call queue (``/v2/queues``); its waiting callers are :class:`QueueEntryRow`s."""

    __tablename__ = "queues"
    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[str] = _account_id()
    name: Mapped[str] = mapped_column(String(255))
    max_size: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class QueueEntryRow(Base):
    """A caller waiting in a queue; the waiting order is ``id`` order."""

    __tablename__ = "queue_entries"
    __table_args__ = (Index("ix_queue_entries_queue_id_id", "queue_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    queue_id: Mapped[int] = mapped_column(ForeignKey("queues.id", ondelete="CASCADE"))
    call_control_id: Mapped[str] = mapped_column(String(128), unique=True)
    node_id: Mapped[str | None] = mapped_column(String(64))
    enqueued_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WebhookOutboxRow(Base):
    """One webhook message. A worker holds a message while it sends it: ``lease_owner`` and
    ``lease_expires_at`` say who and until when (so that several servers can share a database,
    and a crashed one's messages are taken over once its lease runs out)."""

    __tablename__ = "webhook_outbox"
    __table_args__ = (
        # The head of each ordering key: min(id) among its pending messages.
        Index("ix_webhook_outbox_status_ordering_key_id", "status", "ordering_key", "id"),
        Index("ix_webhook_outbox_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(64), unique=True)
    event_type: Mapped[str] = mapped_column(String(128))
    ordering_key: Mapped[str] = mapped_column(String(128))
    url: Mapped[str] = mapped_column(String(2048))
    failover_url: Mapped[str | None] = mapped_column(String(2048))
    data_json: Mapped[str] = mapped_column(Text)
    application_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SigningKeyRow(Base):
    __tablename__ = "signing_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    purpose: Mapped[str] = mapped_column(String(32), unique=True)  # "webhooks"
    private_key: Mapped[str] = mapped_column(String(64))  # base64 of the raw 32 bytes
    public_key: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


# SIP (issue 11) ---------------------------------------------------------------------------
class SipCredentialRow(Base):
    """A user's SIP digest credentials: HA1 = H(name:realm:password) for MD5 and SHA-256
    (RFC 7616 §3.4.2), never the password. An HA1 only works in its ``realm`` (the SIP
    domain): changing the domain needs the passwords set again."""

    __tablename__ = "sip_credentials"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    realm: Mapped[str] = mapped_column(String(255))
    ha1_md5: Mapped[str] = mapped_column(String(32))  # hex
    ha1_sha256: Mapped[str] = mapped_column(String(64))  # hex
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SipBindingRow(Base):
    """A registered contact of a user (RFC 3261 §10.3), with where it came from: the source
    address and transport, and the connection (stream transports, WebSocket) it may only be
    reached through. ``binding_key`` identifies the binding among the user's: the SHA-256 of
    the contact URI's normal form, or of the instance id and reg-id (RFC 5626) when given."""

    __tablename__ = "sip_bindings"
    __table_args__ = (UniqueConstraint("user_id", "binding_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    binding_key: Mapped[str] = mapped_column(String(64))
    contact: Mapped[str] = mapped_column(String(2048))  # the Contact's URI as sent
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    call_id: Mapped[str] = mapped_column(String(255))
    cseq: Mapped[int] = mapped_column(BigInteger)
    q: Mapped[float | None] = mapped_column(Float)
    source_host: Mapped[str] = mapped_column(String(64))
    source_port: Mapped[int] = mapped_column(Integer)
    transport: Mapped[str] = mapped_column(String(8))  # udp | tcp | tls | ws | wss
    connection_id: Mapped[str | None] = mapped_column(String(128))
    instance_id: Mapped[str | None] = mapped_column(String(255))  # +sip.instance
    reg_id: Mapped[int | None] = mapped_column(Integer)
    user_agent: Mapped[str | None] = mapped_column(String(255))
    node_id: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SipSecretRow(Base):
    """Server secrets of the SIP side (``purpose`` "nonce": the HMAC key of digest nonces,
    shared by every node of a database so that any node accepts another's nonce)."""

    __tablename__ = "sip_secrets"

    purpose: Mapped[str] = mapped_column(String(32), primary_key=True)
    secret: Mapped[str] = mapped_column(String(128))  # hex
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
