"""The store's cached routing reads (store.readcache, issue 15 call setup): a change made in
this process applies to the next read at once; one made by another process (a second
``Store`` on the same database: the CLI, another node) applies after ``check_routing``, which
each call's routing runs first. Runs on SQLite and PostgreSQL (tests/pg.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import pg
from callbridge.forwarding import Forwarding, parse_forwarding
from callbridge.store import Store

database = pg.database


@pytest.fixture
async def stores(database: pg.Database) -> AsyncIterator[tuple[Store, Store]]:
    server = await Store.open(database.url)
    other = await Store.open(database.url)  # another process sharing the database
    yield server, other
    await other.close()
    await server.close()


async def test_changes_made_here_apply_to_the_next_read(stores: tuple[Store, Store]) -> None:
    server, _ = stores
    await server.add_user("cache-ann", "7001")
    app = await server.create_application(
        application_name="cache-app", webhook_event_url="http://127.0.0.1:9/hook"
    )
    assert await server.dial_rules("default") == []
    assert await server.find_route("7100") is None
    assert await server.routing_forwarding("cache-ann") == Forwarding()

    rule = await server.add_dial_rule("default", "7200", "user", "cache-ann")
    await server.set_route("7100", app.id)
    await server.set_forwarding("cache-ann", parse_forwarding({"dnd": True}))
    assert [r.id for r in await server.dial_rules("default")] == [rule.id]
    assert await server.find_route("7100") == app.id
    assert (await server.routing_forwarding("cache-ann")).dnd

    await server.remove_dial_rule(rule.id, "default")
    await server.delete_route("7100")
    await server.clear_forwarding("cache-ann")
    assert await server.dial_rules("default") == []
    assert await server.find_route("7100") is None
    assert await server.routing_forwarding("cache-ann") == Forwarding()


async def test_changes_made_by_another_process_apply_after_the_check(
    stores: tuple[Store, Store],
) -> None:
    server, other = stores
    await server.add_user("cache-bob", "7002")
    app = await other.create_application(
        application_name="cache-app-2", webhook_event_url="http://127.0.0.1:9/hook"
    )
    await server.check_routing()
    assert await server.dial_rules("default") == []  # now cached
    assert await server.find_route("+14155550100") is None
    assert await server.routing_forwarding("cache-bob") == Forwarding()
    assert await server.get_forwarding("cache-bob") == Forwarding()

    rule = await other.add_dial_rule("default", "7300", "user", "cache-bob")
    await other.set_route("+1 (415) 555-0100", app.id)
    await other.set_forwarding("cache-bob", parse_forwarding({"ring_seconds": 7}))
    await server.check_routing()  # what each call's routing does first
    assert [r.id for r in await server.dial_rules("default")] == [rule.id]
    assert await server.find_route("14155550100") == app.id
    assert (await server.routing_forwarding("cache-bob")).ring_seconds == 7
    assert (await server.get_forwarding("cache-bob")).ring_seconds == 7

    await other.delete_application(app.id)
    await other.set_dial_settings("default", time_zone="Europe/Paris")
    await server.check_routing()
    assert await server.find_route("+14155550100") is None
    assert (await server.dial_settings("default")).time_zone == "Europe/Paris"
