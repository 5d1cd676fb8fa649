"""Persistence: users, tokens, API keys, CDRs, call-control applications and routes, media,
recordings, the webhook outbox and the webhook signing key; accounts (tenants), the numbers
they own and who an API key is are in ``callbridge.store.accounts`` (imported from there: this
package's surface is kept as it was).

SQLAlchemy 2 (asyncio) with Alembic migrations shipped in this package
(``migrations/``); ``Store.open`` migrates to the newest schema every time.

Databases: SQLite by default (``sqlite+aiosqlite:///path/callbridge.db``, WAL mode, shared
safely by the server and CLI processes), PostgreSQL by URL
(``postgresql+asyncpg://user:password@host/db``, needs the ``postgres`` extra). The schema
uses only portable types (bounded strings, booleans, ``timestamptz``-style datetimes) and
portable SQL (the one upsert is spelled per dialect), and every datetime in the API is
timezone-aware UTC on both. ``tests/test_store.py`` runs every scenario on both databases.
"""

from callbridge.store.applications import APPLICATION_SORTS, ApplicationChanges
from callbridge.store.errors import (
    ApplicationNotFound,
    CdrExists,
    MediaExists,
    MediaNotFound,
    NotFound,
    RecordingExists,
    RecordingNotFound,
    RouteNotFound,
    SchemaError,
    StoreError,
    TokenExpired,
    TokenInvalid,
    UserExists,
    UserNotFound,
)
from callbridge.store.media import MediaChanges
from callbridge.store.records import (
    Application,
    Cdr,
    Media,
    OutboxMessage,
    Recording,
    Route,
    SigningKey,
    User,
)
from callbridge.store.repository import MAX_PAGE_SIZE
from callbridge.store.store import Store

__all__ = [
    "APPLICATION_SORTS",
    "MAX_PAGE_SIZE",
    "Application",
    "ApplicationChanges",
    "ApplicationNotFound",
    "Cdr",
    "CdrExists",
    "Media",
    "MediaChanges",
    "MediaExists",
    "MediaNotFound",
    "NotFound",
    "OutboxMessage",
    "Recording",
    "RecordingExists",
    "RecordingNotFound",
    "Route",
    "RouteNotFound",
    "SchemaError",
    "SigningKey",
    "Store",
    "StoreError",
    "TokenExpired",
    "TokenInvalid",
    "User",
    "UserExists",
    "UserNotFound",
]
