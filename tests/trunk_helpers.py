"""Helpers of the SIP trunk tests (tests/test_sip_trunks*.py): users, trunks, routes and CDRs
in a running server's store, and SIPp carriers on loopback."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from telnyx import AsyncTelnyx

from api_helpers import WebhookSink
from callbridge.client import Phone
from callbridge.store.records import Cdr
from callbridge.testing.server import Server, create_user
from callbridge.trunks import Trunk
from sip_peers import LOOPBACK, Sipp

TONE = 1000.0
TRUNK_USER, TRUNK_PASSWORD = "trunkuser", "trunkpass"

_n = itertools.count(1000)


def unique() -> int:
    """A number no other trunk test of this session uses (names, extensions)."""
    return next(_n)


async def caller(server: Server, phones: list[Phone]) -> tuple[str, Phone]:
    """A new user, logged in on a ``/ws`` phone (kept in ``phones`` for the logout)."""
    n = unique()
    async with server.store() as store:
        user = await create_user(store, f"tr{n}", str(5000 + n), ttl=timedelta(hours=1))
    phone = Phone(server.ws_url, user.token)
    await phone.login()
    phones.append(phone)
    return user.name, phone


async def add_trunk(server: Server, port: int, **values: Any) -> Trunk:
    """A trunk to SIPp at 127.0.0.1:``port`` (OPTIONS checks off unless ``values`` say)."""
    async with server.store() as store:
        return await store.add_trunk(
            **{
                "name": f"carrier{unique()}",
                "host": LOOPBACK,
                "port": port,
                "username": TRUNK_USER,
                "password": TRUNK_PASSWORD,
                "options_interval": 0,
                **values,
            }
        )


async def add_route(server: Server, prefix: str, *trunks: Trunk) -> None:
    async with server.store() as store:
        await store.set_outbound_route(prefix, [t.id for t in trunks])


async def cdr_to(server: Server, destination: str, limit: float = 10.0) -> Cdr:
    """The first CDR whose destination is ``destination`` (waits for it)."""
    async with asyncio.timeout(limit):
        while True:
            async with server.store() as store:
                cdrs = await store.list_cdrs(500)
            for cdr in cdrs:
                if cdr.destination == destination:
                    return cdr
            await asyncio.sleep(0.1)


def sipp_carrier(tmp_path: Path, scenario: str, **kw: Any) -> Sipp:
    """SIPp as a carrier (UAS) running ``scenario`` with an RTP echo."""
    options: dict[str, Any] = {"service": "carrier", "rtp_echo": True, "deadline": 25, **kw}
    return Sipp(tmp_path / scenario, scenario, **options)


@asynccontextmanager
async def telnyx_app(server: Server) -> AsyncIterator[tuple[AsyncTelnyx, WebhookSink, str]]:
    """The official telnyx SDK with a new API key, and an application sending its webhooks to
    a local sink: ``(client, sink, application id)``."""
    async with server.store() as store:
        key = await store.create_api_key(f"trunk tests {unique()}")
    client = AsyncTelnyx(api_key=key, base_url=f"{server.url}/v2", max_retries=0)
    sink = WebhookSink()
    try:
        app = await client.call_control_applications.create(
            application_name=f"trunk app {unique()}", webhook_event_url=await sink.start()
        )
        assert app.data is not None and app.data.id is not None
        yield client, sink, app.data.id
    finally:
        await sink.close()
        await client.close()


class InboundSipp(Sipp):
    """SIPp as a calling carrier: ``start`` returns at once (``Sipp`` waits until its SIP port
    is bound on 127.0.0.1, but this one binds 127.0.0.2, and nobody needs to reach a caller
    first: the wait would only stall the test for its 5 s limit)."""

    async def _bound(self, limit: float = 5.0) -> None:
        return None


def inbound_carrier(tmp_path: Path, server: Server, number: str, name: str = "in") -> Sipp:
    """carrier_inbound.xml from 127.0.0.2 calling ``number`` at the server."""
    return InboundSipp(
        tmp_path / name,
        "carrier_inbound.xml",
        remote=f"{LOOPBACK}:{server.sip_port}",
        service=number,
        rtp_echo=True,
        extra=["-i", "127.0.0.2"],
        deadline=20,
    )
