"""A fresh database for each test, on SQLite and on a real PostgreSQL: the ``database`` fixture.

A test module takes the fixture with ``database = pg.database`` and then names ``database`` (or
a fixture built on it) as an argument; each test runs twice, ``[sqlite]`` and ``[postgresql]``.

PostgreSQL comes from ``CALLBRIDGE_TEST_POSTGRES_URL``: a ``postgresql+asyncpg://`` URL of a
database whose role may create roles (a superuser, as in the throwaway cluster). Each test gets a
login role of its own and a schema named after it, which PostgreSQL's default ``search_path``
(``"$user", public``) puts first: the store creates its tables there, so tests never see each
other's rows, and everything goes (``DROP SCHEMA … CASCADE``, ``DROP ROLE``) after the test.
A schema and a role cost milliseconds; a database per test cost 0.1 to 0.4 s here (CREATE
DATABASE checkpoints), which is most of the suite's PostgreSQL time. ``./scripts/test`` starts a
throwaway cluster from Debian's packages and sets the variable (see ``setup_postgres`` in
``scripts/_setup.sh``).

Without the variable the PostgreSQL cases fail, saying how to get one: a missing database must
not look like a pass. A developer who knowingly runs without PostgreSQL sets the variable to
``skip``; the cases are then reported as skipped, with the reason, in pytest's summary.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from sqlalchemy import Connection, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

POSTGRES_URL_ENV = "CALLBRIDGE_TEST_POSTGRES_URL"
BACKENDS = ("sqlite", "postgresql")

_T = TypeVar("_T")

_HOW = (
    f"the PostgreSQL store tests need {POSTGRES_URL_ENV}: a postgresql+asyncpg://user:password@"
    "127.0.0.1:PORT/DB URL whose role may CREATE ROLE. ./scripts/test sets one up (it "
    "installs and starts PostgreSQL from Debian's packages as root); in a shell, "
    "`. scripts/_setup.sh && setup_postgres` starts a throwaway cluster (postgresql must be "
    f"installed) and exports it. Set {POSTGRES_URL_ENV}=skip to skip these tests knowingly."
)


@dataclass(frozen=True)
class Database:
    """One test's empty database: its URL, and SQL run beside the store (as another process)."""

    backend: str  # "sqlite" | "postgresql"
    url: str
    path: Path | None  # the SQLite file

    async def sql(self, statement: str, **params: Any) -> list[tuple[Any, ...]]:
        """Run one statement on a connection of its own; the rows it returns, if any."""

        def run(conn: Connection) -> list[tuple[Any, ...]]:
            result = conn.execute(text(statement), params)
            return [tuple(row) for row in result] if result.returns_rows else []

        return await self.run_sync(run)

    async def run_sync(self, fn: Callable[[Connection], _T]) -> _T:
        """``fn`` with a plain (synchronous) connection, in a transaction that is committed."""
        engine = create_async_engine(self.url, poolclass=NullPool)
        try:
            async with engine.begin() as conn:
                return await conn.run_sync(fn)
        finally:
            await engine.dispose()


@pytest.fixture(params=BACKENDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        path = tmp_path / "data" / "callbridge.db"
        yield Database("sqlite", f"sqlite+aiosqlite:///{path}", path)
        return
    async with postgres_database() as url:
        yield Database("postgresql", url, None)


def postgres_server_url() -> URL:
    """The configured PostgreSQL server's URL; fails (or skips, if asked) without one."""
    configured = os.environ.get(POSTGRES_URL_ENV, "").strip()
    if configured == "skip":
        pytest.skip(f"{POSTGRES_URL_ENV}=skip: PostgreSQL not tested in this run")
    if not configured:
        pytest.fail(_HOW, pytrace=False)
    url = make_url(configured)
    if url.get_backend_name() != "postgresql" or url.get_driver_name() != "asyncpg":
        pytest.fail(f"{POSTGRES_URL_ENV} is not a postgresql+asyncpg:// URL. {_HOW}", pytrace=False)
    return url


class postgres_database:
    """``async with postgres_database() as url``: a new, empty place for a store's tables.

    ``url`` logs in as a new role whose own schema is first on its search path; role and
    schema are dropped on the way out.
    """

    def __init__(self) -> None:
        self._server = postgres_server_url()
        self._role = f"callbridge_test_{secrets.token_hex(6)}"
        self._password = secrets.token_hex(16)

    async def __aenter__(self) -> str:
        conn = await self._connect()
        try:
            await conn.execute(
                f"CREATE ROLE {self._role} LOGIN PASSWORD '{self._password}';"
                f"CREATE SCHEMA {self._role} AUTHORIZATION {self._role}"
            )
        finally:
            await conn.close()
        url = self._server.set(username=self._role, password=self._password)
        return url.render_as_string(hide_password=False)

    async def __aexit__(self, *exc: object) -> None:
        conn = await self._connect()
        try:
            # A store that a failed test left open must not keep its role alive.
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                self._role,
            )
            await conn.execute(
                f"DROP SCHEMA IF EXISTS {self._role} CASCADE; DROP ROLE IF EXISTS {self._role}"
            )
        finally:
            await conn.close()

    async def _connect(self) -> asyncpg.Connection:
        dsn = self._server.set(drivername="postgresql").render_as_string(hide_password=False)
        try:
            return await asyncpg.connect(dsn, timeout=10)
        except (OSError, asyncpg.PostgresError) as exc:
            pytest.fail(
                f"cannot reach PostgreSQL at {self._server!r} ({exc}). {_HOW}", pytrace=False
            )
