"""Persistence: users, login tokens, API keys and call detail records.

SQLAlchemy 2 (asyncio) with Alembic migrations shipped in this package
(``migrations/``); ``Store.open`` migrates to the newest schema every time.

Databases: SQLite by default (``sqlite+aiosqlite:///path/callbridge.db``, WAL mode, shared
safely by the server and CLI processes), PostgreSQL by URL
(``postgresql+asyncpg://user:password@host/db``, needs the ``postgres`` extra). The schema
uses only portable types (bounded strings, booleans, ``timestamptz``-style datetimes) and every
datetime in the API is timezone-aware UTC on both. The test suite runs on SQLite only; run it
against PostgreSQL before relying on a change to the schema or queries there.
"""

from callbridge.store.errors import (
    CdrExists,
    SchemaError,
    StoreError,
    TokenExpired,
    TokenInvalid,
    UserExists,
    UserNotFound,
)
from callbridge.store.records import Cdr, User
from callbridge.store.store import Store

__all__ = [
    "Cdr",
    "CdrExists",
    "SchemaError",
    "Store",
    "StoreError",
    "TokenExpired",
    "TokenInvalid",
    "User",
    "UserExists",
    "UserNotFound",
]
