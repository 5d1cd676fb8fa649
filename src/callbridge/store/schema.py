"""The tables, as SQLAlchemy ORM models. Changing them needs a migration in ``migrations/``.

Types are chosen to mean the same on SQLite and PostgreSQL: bounded ``String`` where a value
has a rule (names, extensions, hashes), unbounded ``String`` (VARCHAR / TEXT) elsewhere,
``UTCDateTime`` for every instant, and 64-bit ids for the tables that grow without bound (CDRs,
the webhook outbox). Ids that the REST API shows (applications, recordings) are strings, as
Telnyx's are.

The webhook outbox has no foreign key to its application: a message enqueued for an app that
is deleted later is still delivered (signed without the app's secret, which went with it).
Routes do reference their application, and go with it.
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
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from callbridge.store.records import as_utc

__all__ = [
    "ApiKeyRow",
    "ApplicationRow",
    "Base",
    "CdrRow",
    "MediaRow",
    "RecordingRow",
    "RouteRow",
    "SigningKeyRow",
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


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    extension: Mapped[str] = mapped_column(String(8), unique=True)
    number: Mapped[str | None] = mapped_column(String(16), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class TokenRow(Base):
    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked: Mapped[bool] = mapped_column(Boolean, server_default=false())


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str | None] = mapped_column(String(128))
    prefix: Mapped[str] = mapped_column(String(8))  # shown in listings; not a secret
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked: Mapped[bool] = mapped_column(Boolean, server_default=false())


class CdrRow(Base):
    __tablename__ = "cdrs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    call_id: Mapped[str] = mapped_column(String(64), unique=True)
    caller: Mapped[str] = mapped_column(String)
    callee: Mapped[str] = mapped_column(String)
    destination: Mapped[str] = mapped_column(String)
    direction: Mapped[str | None] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime())
    duration_seconds: Mapped[float] = mapped_column(Float)
    end_reason: Mapped[str] = mapped_column(String(32))


class ApplicationRow(Base):
    __tablename__ = "call_control_applications"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
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

    destination: Mapped[str] = mapped_column(String(16), primary_key=True)  # ext. or E.164
    application_id: Mapped[str] = mapped_column(
        ForeignKey("call_control_applications.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class MediaRow(Base):
    __tablename__ = "media"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    media_name: Mapped[str] = mapped_column(String(255), unique=True)
    content_type: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(String)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)


class RecordingRow(Base):
    __tablename__ = "recordings"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
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
