"""Alembic environment for callbridge's schema.

``callbridge.store.migrate`` runs it with an open connection in ``config.attributes``; that
is how every server and CLI start-up migrates. To write a new revision, give the ``alembic``
command an ini file with ``script_location`` set to this directory and ``sqlalchemy.url`` set
to a scratch database migrated to head, then run
``alembic -c dev.ini revision --autogenerate -m "what changed"`` and review the result.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection, pool
from sqlalchemy.ext.asyncio import async_engine_from_config

from callbridge.store.schema import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        # The caller's transaction covers the whole upgrade (SQLite DDL is transactional
        # once the driver no longer commits behind our back, see store.engine).
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_new_engine() -> None:
    engine = async_engine_from_config(
        config.get_section(config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_configure)
    finally:
        await engine.dispose()


def _run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _run_offline()
elif (shared := config.attributes.get("connection")) is not None:
    _configure(shared)
else:
    asyncio.run(_run_with_new_engine())
