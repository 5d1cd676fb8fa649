"""Trunks, numbers and outbound routes (issue 12), the model side: the store on SQLite and
PostgreSQL, longest-prefix routing, IP ACLs (IPv4, IPv6, IPv4-mapped), the toll-fraud guard
(who, where, how many, how often; the log line), caller ID on trunk calls, the CLI, and REST
through the official telnyx SDK (``/v2/uac_connections``, ``/v2/phone_numbers``,
``/v2/outbound_voice_profiles``, ``/v2/sip_registration_status``) with its errors."""

from __future__ import annotations

import io
import itertools
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import telnyx
from telnyx import AsyncTelnyx

import pg
from callbridge.cli import main
from callbridge.core.callerid import CallerIdNotAllowed, CallerIds
from callbridge.core.tollfraud import (
    Placer,
    TollFraudGuard,
    TollFraudRefused,
    trunk_caller_id,
)
from callbridge.errors import ErrorCode
from callbridge.store import Store
from callbridge.store.accounts import NumberNotFound
from callbridge.store.trunks import OutboundRouteNotFound, TrunkExists, TrunkNotFound
from callbridge.testing.server import Server
from callbridge.trunks import (
    DialPolicy,
    OutboundRoute,
    Trunk,
    TrunkDirectory,
    longest_prefix,
    parse_acl,
    source_match,
    validate_host,
    validate_prefix,
)

pytestmark = pytest.mark.timeout(60)

database = pg.database
_n = itertools.count(1)


def _unique(stem: str) -> str:
    return f"{stem}-{int(time.time() * 1000) % 10**9}-{next(_n)}"


@pytest.fixture
async def db(database: pg.Database) -> AsyncIterator[Store]:
    store = await Store.open(database.url)
    yield store
    await store.close()


# the store, on both databases ---------------------------------------------------------------------
async def test_trunks_routes_numbers_and_policies_round_trip(db: Store) -> None:
    carrier = await db.add_trunk(
        name="carrier",
        host="SIP.Example.NET.",
        transport="tls",
        outbound_proxy="proxy.example.net:5070",
        username="acme",
        auth_username="acme-auth",
        password="s3cret",
        register=True,
        register_expires=600,
        inbound_acl=["192.0.2.0/24", "2001:db8::/32", "192.0.2.0/24"],
        inbound_username="in",
        inbound_password="in-secret",
        codecs=["pcma", "PCMU"],
        options_interval=0,
        max_calls=None,
        calls_per_minute=5,
        send_pai=True,
        privacy="id",
    )
    assert (carrier.host, carrier.port, carrier.transport) == ("sip.example.net", 5061, "tls")
    assert carrier.inbound_acl == ("192.0.2.0/24", "2001:db8::/32")
    assert carrier.codecs == ("PCMA", "PCMU") and carrier.digest_username == "acme-auth"
    assert carrier.registration_state == "registering" and carrier.health == "unknown"
    assert (carrier.max_calls, carrier.calls_per_minute) == (None, 5)
    assert "s3cret" not in repr(carrier) and "in-secret" not in repr(carrier)
    backup = await db.add_trunk(name="backup", host="2001:DB8::10")
    assert (backup.host, backup.port, backup.max_calls, backup.calls_per_minute) == (
        "2001:db8::10",
        5060,
        10,
        60,
    )  # toll-fraud safety on by default
    assert await db.get_trunk(carrier.id) == carrier
    assert await db.find_trunk("carrier", "default") == carrier  # by name within the account
    assert [t.name for t in await db.list_trunks("default")] == ["carrier", "backup"]
    with pytest.raises(TrunkExists):
        await db.add_trunk(name="carrier", host="other.example.net")

    changed = await db.update_trunk(carrier.id, "default", transport="udp", register=False)
    assert (changed.port, changed.registration_state) == (5060, "off")
    with pytest.raises(ValueError, match="registers needs a username"):
        await db.add_trunk(name="noreg", host="h.example.net", register=True)
    with pytest.raises(ValueError, match="host bits set"):
        await db.update_trunk(carrier.id, None, inbound_acl=["10.0.0.1/8"])
    with pytest.raises(ValueError, match="unknown codec"):
        await db.update_trunk(carrier.id, None, codecs=["G729"])

    directory = TrunkDirectory(db)
    await directory.set_registration_state(carrier.id, "registered", "200 OK")
    await directory.set_health(carrier.id, "down", "408 to OPTIONS")
    seen = await directory.trunk(carrier.id)
    assert seen is not None
    assert (seen.registration_state, seen.registration_detail) == ("registered", "200 OK")
    assert (seen.health, seen.health_detail) == ("down", "408 to OPTIONS")
    with pytest.raises(ValueError):
        await directory.set_health(carrier.id, "sideways")

    await db.set_outbound_route("+1", ["carrier", backup.id])
    await db.set_outbound_route("+44", ["backup"], name="uk")
    await db.set_outbound_route("+", ["backup"])
    replaced = await db.set_outbound_route("1 415", ["backup", "carrier"])
    assert replaced.prefix == "+1415"
    assert [t.name for t in await directory.routes_for("+14155550100", "default")] == [
        "backup",
        "carrier",
    ]
    assert [t.name for t in await directory.routes_for("+12125550100", "default")] == [
        "carrier",
        "backup",
    ]
    assert [t.name for t in await directory.routes_for("+33155550100", "default")] == ["backup"]
    with pytest.raises(TrunkNotFound):
        await db.set_outbound_route("+49", ["nope"])
    assert (await directory.trunk_for_source("192.0.2.9")) == seen
    assert (await directory.trunk_for_source("198.51.100.1")) is None

    await db.remove_trunk("carrier", "default")  # drops it from the routes
    routes = {r.prefix: r.trunk_ids for r in await db.list_outbound_routes("default")}
    assert routes["+1"] == (backup.id,) and routes["+1415"] == (backup.id,)
    await db.remove_outbound_route("+44", "default")
    with pytest.raises(OutboundRouteNotFound):
        await db.remove_outbound_route("+44", "default")

    await db.add_number("+14155550100")
    assert (await directory.number("+1 415 555 0100")) is not None
    routed = await db.route_number("14155550100", "default", "queue", "sales", True)
    assert (routed.target_kind, routed.target_id, routed.allow_outbound) == ("queue", "sales", True)
    assert await directory.number("+14155550100") == routed
    with pytest.raises(NumberNotFound):
        await db.route_number("+14155550199", "default", "queue", "sales")
    with pytest.raises(ValueError, match="no user named"):
        await db.check_number_target("default", "user", "nobody")

    assert await db.dial_policy("default") == DialPolicy("default")
    policy = await db.set_dial_policy("default", allow_prefixes=["1", "+44"], user_max_calls=3)
    assert policy.allow_prefixes == ("+1", "+44") and policy.deny_prefixes == ("+1900", "+1976")
    assert await db.dial_policy("default") == policy
    cleared = await db.set_dial_policy("default", allow_prefixes=None, deny_prefixes=[])
    assert (cleared.allow_prefixes, cleared.deny_prefixes, cleared.user_max_calls) == (None, (), 3)

    other = await db.create_account("other-tenant")
    await db.add_trunk(other.id, name="carrier", host="sip.example.org")  # names are per account
    assert await db.find_trunk("carrier", "default") is None
    await db.delete_account(other.id)
    assert [t.account_id for t in await db.list_trunks()] == ["default"]


async def test_caller_id_on_a_trunk_is_an_owned_number_or_the_users_own(db: Store) -> None:
    other = await db.create_account("tenant-b")
    await db.add_number("+14155550100")
    await db.add_number("+14155550177", other.id)
    await db.add_user("ann", "201", number="+14155550111")
    user = Placer("user", "ann", "default")
    assert await trunk_caller_id(db, user, "+1 415 555 0100") == "+14155550100"
    assert await trunk_caller_id(db, user, "+14155550111", user_number="+14155550111") == (
        "+14155550111"
    )
    app = Placer("application", "42", "default")
    assert await trunk_caller_id(db, app, "+14155550111", field="from") == "+14155550111"
    for presented in ("+14155550177", "+14155550999", "201", "\u202eecilA"):
        with pytest.raises(CallerIdNotAllowed) as refused:
            await trunk_caller_id(db, user, presented)
        assert refused.value.code == ErrorCode.CALLER_ID_NOT_ALLOWED
        assert "+14155550100" in str(refused.value)
    # An account that owns no numbers: nothing unclaimed goes out (the local rule is lenient).
    bare = Placer("user", "x", other.id)
    await db.remove_number("+14155550177")
    with pytest.raises(CallerIdNotAllowed, match="owns none"):
        await trunk_caller_id(db, bare, "+14155550888", field="from")

    # The local rule (core.callerid): an account owning no numbers may present an unclaimed
    # E.164 number, until it has a trunk (its calls may then reach the public network).
    local = CallerIds(db)
    assert await local.for_application(other.id, "+14155550888") == "+14155550888"
    await db.add_trunk(other.id, name="carrier", host="sip.example.net")
    with pytest.raises(CallerIdNotAllowed, match="may go out through a SIP trunk"):
        await local.for_application(other.id, "+14155550888")
    assert await local.for_application("default", "+14155550100") == "+14155550100"


# pure rules ---------------------------------------------------------------------------------------
def test_acls_prefixes_and_hosts() -> None:
    acl = parse_acl(["203.0.113.0/24", "203.0.113.7", "2001:db8::/32", " "])
    assert acl == ("203.0.113.0/24", "203.0.113.7/32", "2001:db8::/32")
    assert source_match(acl, "203.0.113.7") == 32  # the most specific entry
    assert source_match(acl, "203.0.113.8") == 24
    assert source_match(acl, "::ffff:203.0.113.8") == 24  # dual-stack socket's IPv4 peer
    assert source_match(acl, "[2001:db8::5]") == 32
    assert source_match(acl, "2001:db9::5") is None
    assert source_match(acl, "198.51.100.1") is None
    assert source_match(acl, "not-an-ip") is None
    for bad in ("10.0.0.1/8", "300.1.1.1", "example.com"):
        with pytest.raises(ValueError, match="inbound ACL entry"):
            parse_acl([bad])
    assert validate_prefix("44 20") == "+4420" and validate_prefix("+") == "+"
    with pytest.raises(ValueError, match="up to 15 digits"):
        validate_prefix("+1x")
    assert validate_host("[::1]") == "::1"
    with pytest.raises(ValueError, match="DNS name"):
        validate_host("bad host")
    routes = [
        OutboundRoute("a", "default", "+", ("t1",)),
        OutboundRoute("b", "default", "+1", ("t2",)),
        OutboundRoute("c", "default", "+1415", ("t3",)),
    ]
    assert longest_prefix(routes, "+14155550100") == routes[2]
    assert longest_prefix(routes, "+12125550100") == routes[1]
    assert longest_prefix(routes, "+33155550100") == routes[0]
    assert longest_prefix(routes[1:], "+33155550100") is None


# toll-fraud ---------------------------------------------------------------------------------------
class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _Policies:
    def __init__(self, policy: DialPolicy) -> None:
        self.policy = policy

    async def dial_policy(self, account_id: str) -> DialPolicy:
        return self.policy


def _trunk(**overrides: object) -> Trunk:
    values: dict[str, object] = {
        "id": "t1",
        "account_id": "acme",
        "name": "carrier",
        "host": "sip.example.net",
        "port": 5060,
        "max_calls": 3,
        "calls_per_minute": 5,
    }
    values.update(overrides)
    return Trunk(**values)  # type: ignore[arg-type]


async def test_toll_fraud_who_may_reach_a_trunk_and_where(
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard = TollFraudGuard(_Policies(DialPolicy("acme", allow_prefixes=("+1", "+44"))))
    trunk = _trunk()
    alice = Placer("user", "alice", "acme", source="ws 127.0.0.1:5000")
    await guard.check(alice, "+14155550100", trunk)
    await guard.check(Placer("application", "42", "acme"), "+442071234567", trunk)
    # As the SIP side makes it: a carrier's call is no authenticated user; its number allows.
    forwarded = Placer("inbound", "+14155550100", "acme", authenticated=False, allow_outbound=True)
    await guard.check(forwarded, "+12125550100", trunk)
    caplog.set_level(logging.WARNING, "callbridge.tollfraud")
    refusals = [
        (Placer("user", "mallory", "other"), "+14155550100", ErrorCode.TRUNK_NOT_ALLOWED),
        (Placer("user", "anon", "acme", authenticated=False), "+1415", ErrorCode.TRUNK_NOT_ALLOWED),
        (
            Placer("inbound", "+14155550100", "acme", authenticated=False),
            "+1415",
            ErrorCode.TRUNK_NOT_ALLOWED,
        ),
        (alice, "+19005550100", ErrorCode.DESTINATION_BLOCKED),  # premium rate, denied by default
        (alice, "+33155550100", ErrorCode.DESTINATION_BLOCKED),  # not on the allow-list
    ]
    for placer, destination, code in refusals:
        with pytest.raises(TollFraudRefused) as refused:
            await guard.check(placer, destination, trunk)
        assert refused.value.code == code
    lines = [r.getMessage() for r in caplog.records if r.name == "callbridge.tollfraud"]
    assert len(lines) == len(refusals)
    assert all(line.startswith("toll-fraud refused code=") for line in lines)
    assert "placer=user:mallory account=other" in lines[0]
    assert "destination=+19005550100" in lines[3] and "'ws 127.0.0.1:5000'" in lines[3]
    assert "allow-list (+1, +44)" in lines[4] and "--allow" in lines[4]


async def test_toll_fraud_limits_per_user_and_per_trunk() -> None:
    clock = _Clock()
    policy = DialPolicy("acme", user_max_calls=2, user_calls_per_minute=3)
    guard = TollFraudGuard(_Policies(policy), clock=clock)
    trunk, spare = _trunk(), _trunk(id="t2", name="spare", max_calls=None, calls_per_minute=None)
    alice, bob = Placer("user", "alice", "acme"), Placer("user", "bob", "acme")
    await guard.admit(alice, "+14155550100", trunk, "c1")
    await guard.admit(alice, "+14155550101", trunk, "c2")
    with pytest.raises(TollFraudRefused) as refused:
        await guard.admit(alice, "+14155550102", trunk, "c3")  # her third at once
    assert refused.value.code == ErrorCode.TOO_MANY_CALLS and "user_max_calls" in str(refused.value)
    await guard.admit(bob, "+14155550103", trunk, "c4")
    with pytest.raises(TollFraudRefused) as refused:
        await guard.admit(bob, "+14155550104", trunk, "c5")  # the trunk's max_calls, 3
    assert refused.value.code == ErrorCode.TOO_MANY_CALLS and "max_calls" in str(refused.value)
    assert guard.active(trunk=trunk) == 3 and guard.active(placer=alice) == 2

    # Failover: c1 moves from trunk to spare; it counts once for alice's rate.
    guard.ended("c1")
    await guard.admit(alice, "+14155550100", spare, "c1")
    assert guard.active(trunk=trunk) == 2 and guard.active(trunk=spare) == 1
    guard.ended("c1")
    guard.ended("c1")  # idempotent
    guard.ended("c2")
    await guard.admit(alice, "+14155550105", spare, "c6")  # her 3rd call in the minute
    guard.ended("c6")
    with pytest.raises(TollFraudRefused) as refused:
        await guard.admit(alice, "+14155550106", spare, "c7")
    assert refused.value.code == ErrorCode.CALL_RATE_EXCEEDED
    assert refused.value.retry_after == 60
    clock.now += 61  # the window slides
    await guard.admit(alice, "+14155550106", spare, "c7")

    # Applications are bounded by the trunk's limits only; the trunk's rate counts attempts.
    app = Placer("application", "42", "acme")
    guard.ended("c4")
    for i in range(5):  # no per-placer limit (2 at once, 3 a minute) for an application
        await guard.admit(app, "+14155550110", trunk, f"a{i}")
        guard.ended(f"a{i}")
    with pytest.raises(TollFraudRefused) as refused:
        await guard.admit(app, "+14155550110", trunk, "a9")  # the trunk's 5 a minute
    assert refused.value.code == ErrorCode.CALL_RATE_EXCEEDED and refused.value.retry_after == 60
    assert "calls_per_minute" in str(refused.value)


# the CLI ------------------------------------------------------------------------------------------
def test_cli_trunks_outbound_and_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    assert main(["users", "add", "ann", "--extension", "201", "--init", *data]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("carrier-secret\n"))
    carrier = ["--host", "sip.telnyx.com", "--username", "acme", "--password-stdin", "--register"]
    assert main(["trunks", "add", "telnyx", *carrier, "--acl", "192.0.2.0/24", *data]) == 0
    assert (
        main(["trunks", "add", "backup", "--host", "127.0.0.1", "--transport", "tls", *data]) == 0
    )
    capsys.readouterr()
    assert main(["trunks", "list", *data]) == 0
    out = capsys.readouterr().out
    header, first, second = out.splitlines()
    assert header.split()[:5] == ["NAME", "ACCOUNT", "ADDRESS", "REGISTRATION", "HEALTH"]
    assert first.split()[:5] == [
        "telnyx",
        "default",
        "udp:sip.telnyx.com:5060",
        "registering",
        "unknown",
    ]
    assert second.split()[3] == "off" and "carrier-secret" not in out
    assert main(["outbound", "add", "+1", "--trunks", "telnyx,backup", *data]) == 0
    assert main(["outbound", "add", "+", "--trunks", "backup", *data]) == 0
    assert main(["outbound", "add", "+44", "--trunks", "nope", *data]) == 2
    assert "no trunk 'nope' in account default (see: callbridge" in capsys.readouterr().err
    assert main(["outbound", "list", *data]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[1].split()[:3] == ["+", "default", "backup"]
    assert rows[2].split()[:4] == ["+1", "default", "telnyx,", "backup"]
    assert main(["numbers", "add", "+14155550100", "--user", "ann", "--allow-outbound", *data]) == 0
    out = capsys.readouterr().out
    assert "now owns +14155550100" in out and "go to user ann" in out and "through a trunk" in out
    assert main(["numbers", "add", "+14155550101", "--user", "nobody", *data]) == 2
    assert "no user named 'nobody'" in capsys.readouterr().err
    assert main(["numbers", "add", "+14155550100", "--queue", "sales", *data]) == 0  # re-route
    assert "go to queue sales" in capsys.readouterr().out
    assert main(["numbers", "add", "+14155550102", *data]) == 0
    assert main(["numbers", "list", *data]) == 0
    numbers = [line.split() for line in capsys.readouterr().out.splitlines()[-2:]]
    assert numbers[0][:4] == ["+14155550100", "default", "queue", "sales"]
    assert "trunk)" in numbers[0] and numbers[1] == ["+14155550102", "default", "-"]
    assert main(["outbound", "policy", "--allow", "+1,+44", "--user-max-calls", "4", *data]) == 0
    out = capsys.readouterr().out
    assert "allow:                  +1, +44" in out and "user max calls:         4" in out
    assert main(["trunks", "remove", "telnyx", *data]) == 0
    assert main(["trunks", "add", "bad", "--host", "bad host", *data]) == 2
    assert "invalid host 'bad host'" in capsys.readouterr().err


# REST through the telnyx SDK ----------------------------------------------------------------------
@pytest.fixture
async def tenant(server: Server, store: Store) -> AsyncIterator[tuple[AsyncTelnyx, str]]:
    """An SDK client for a fresh account, and the account's id."""
    account = await store.create_account(_unique("trunks"))
    key = await store.create_api_key("trunks", account_id=account.id)
    sdk = AsyncTelnyx(api_key=key, base_url=f"{server.url}/v2", max_retries=0)
    yield sdk, account.id
    await sdk.close()


async def test_rest_trunks_as_uac_connections(
    tenant: tuple[AsyncTelnyx, str], server: Server, store: Store
) -> None:
    client, account = tenant
    made = await client.uac_connections.create(
        connection_name="carrier",
        external_uac_settings={
            "proxy": "sip.example.net:5080",
            "transport": "TCP",
            "username": "acme",
            "password": "s3cret",
            "expiration_sec": 900,
        },
        inbound={"codecs": ["G711U", "OPUS"], "channel_limit": 4},
        webhook_event_url="https://example.com/ignored",  # a Telnyx field with no meaning here
        extra_body={"register": True, "inbound_ip_acl": ["192.0.2.0/24"], "send_pai": True},
    )
    trunk = made.data
    assert trunk is not None and trunk.id is not None
    assert trunk.connection_name == "carrier" and trunk.record_type == "uac_connection"
    ext = trunk.external_uac_settings
    assert ext is not None and ext.proxy == "sip.example.net:5080" and ext.transport == "TCP"
    assert ext.password is None  # write-only
    assert trunk.inbound is not None and trunk.inbound.codecs == ["G711U", "OPUS"]
    assert trunk.outbound is not None and trunk.outbound.channel_limit == 4
    assert trunk.registration_status == "Not Registered"
    extra = trunk.model_extra or {}
    assert extra["inbound_ip_acl"] == ["192.0.2.0/24"] and extra["send_pai"] is True
    stored = await store.get_trunk(trunk.id)
    assert (stored.password, stored.codecs, stored.register_expires) == (
        "s3cret",
        ("PCMU", "opus"),
        900,
    )

    await store.set_trunk_registration(trunk.id, "registered", "200 OK")
    status = await client.sip_registration_status.list(
        credential_type="uac_external_credential", connection_id=trunk.id
    )
    assert status.registered is True and status.sip_registration_status == "registered"
    assert status.last_registration_response == "200 OK"
    checked = await client.uac_connections.actions.check_registration_status(trunk.id)
    assert checked.data is not None and checked.data.status == "Registered"

    changed = await client.uac_connections.update(
        trunk.id, connection_name="carrier-a", outbound={"channel_limit": 2}
    )
    assert changed.data is not None and changed.data.connection_name == "carrier-a"
    listed = await client.uac_connections.list(filter={"connection_name": {"contains": "RIER"}})
    assert [t.id for t in listed.data] == [trunk.id]
    none = await client.uac_connections.list(filter={"connection_name": {"contains": "zz"}})
    assert none.data == []
    assert (await client.uac_connections.retrieve(trunk.id)).data is not None

    async def refused(call: object, pointer: str, words: str) -> None:
        with pytest.raises(telnyx.UnprocessableEntityError) as info:
            await call  # type: ignore[misc]
        error = info.value.body["errors"][0]  # type: ignore[index]
        assert error["source"]["pointer"] == pointer and words in error["detail"]

    await refused(
        client.uac_connections.create(connection_name="x"), "/external_uac_settings/proxy", "proxy"
    )
    await refused(
        client.uac_connections.create(
            connection_name="x", external_uac_settings={"proxy": "h.example", "from_user": "u"}
        ),
        "/external_uac_settings/from_user",
        "not supported",
    )
    await refused(
        client.uac_connections.update(
            trunk.id, inbound={"channel_limit": 1}, outbound={"channel_limit": 2}
        ),
        "/outbound/channel_limit",
        "differ",
    )
    await refused(
        client.uac_connections.update(trunk.id, extra_body={"inbound_ip_acl": ["10.0.0.1/8"]}),
        "/inbound_ip_acl",
        "host bits",
    )
    await refused(
        client.uac_connections.create(
            connection_name="carrier-a", external_uac_settings={"proxy": "h.example"}
        ),
        "/connection_name",
        "taken",
    )
    await refused(
        client.uac_connections.update(trunk.id, active=False), "/active", "cannot be disabled"
    )
    with pytest.raises(telnyx.UnprocessableEntityError):
        await client.sip_registration_status.list(
            credential_type="telephony_credential", username="x"
        )

    # Other accounts see nothing; read-only keys may not write.
    stranger = AsyncTelnyx(
        api_key=await store.create_api_key("stranger"), base_url=f"{server.url}/v2", max_retries=0
    )
    reader = AsyncTelnyx(
        api_key=await store.create_api_key("ro", account_id=account, scope="read"),
        base_url=f"{server.url}/v2",
        max_retries=0,
    )
    try:
        with pytest.raises(telnyx.NotFoundError):
            await stranger.uac_connections.retrieve(trunk.id)
        with pytest.raises(telnyx.NotFoundError):
            await stranger.uac_connections.delete(trunk.id)
        assert (await reader.uac_connections.retrieve(trunk.id)).data is not None
        with pytest.raises(telnyx.PermissionDeniedError):
            await reader.uac_connections.delete(trunk.id)
    finally:
        await stranger.close()
        await reader.close()
    gone = await client.uac_connections.delete(trunk.id)
    assert gone.data is not None and gone.data.id == trunk.id
    with pytest.raises(telnyx.NotFoundError):
        await client.uac_connections.retrieve(trunk.id)


async def test_rest_numbers_and_outbound_voice_profiles(
    tenant: tuple[AsyncTelnyx, str], server: Server, store: Store
) -> None:
    client, account = tenant
    suffix = f"{int(time.time() * 1000) % 10**7:07d}"
    number = f"+1415{suffix}"
    await store.add_number(number, account)
    app = await store.create_application(
        application_name=_unique("app"),
        webhook_event_url="https://example.com/hook",
        account_id=account,
    )
    a = await store.add_trunk(account, name="a", host="a.example.net")
    b = await store.add_trunk(account, name="b", host="b.example.net")

    listed = await client.phone_numbers.list(filter={"phone_number": suffix})
    assert [n.phone_number for n in listed.data] == [number]
    routed = await client.phone_numbers.update(number.lstrip("+"), connection_id=app.id)
    assert routed.data is not None and routed.data.connection_id == app.id
    got = await client.phone_numbers.retrieve(number.lstrip("+"))
    assert got.data is not None and (got.data.model_extra or {})["target_kind"] == "application"
    with pytest.raises(telnyx.UnprocessableEntityError, match="is a trunk"):
        await client.phone_numbers.update(number.lstrip("+"), connection_id=a.id)
    with pytest.raises(telnyx.UnprocessableEntityError, match="no application"):
        await client.phone_numbers.update(number.lstrip("+"), connection_id="123")
    queued = await client.phone_numbers.update(
        number.lstrip("+"),
        tags=["ignored"],
        extra_body={"target_kind": "queue", "target_id": "sales", "allow_outbound": True},
    )
    assert queued.data is not None and queued.data.connection_id is None
    route = await store.number_route(number)
    assert route is not None and (route.target_kind, route.allow_outbound) == ("queue", True)

    profile = await client.outbound_voice_profiles.create(
        name="north america",
        traffic_type="conversational",  # accepted, no meaning here
        extra_body={"prefix": "+1", "connection_ids": [b.id, a.id]},
    )
    assert profile.data is not None and profile.data.id is not None
    assert (profile.data.model_extra or {})["connection_ids"] == [b.id, a.id]
    directory = TrunkDirectory(store)
    assert [t.name for t in await directory.routes_for("+12125550100", account)] == ["b", "a"]
    updated = await client.outbound_voice_profiles.update(
        profile.data.id, name="na", extra_body={"connection_ids": [a.id]}
    )
    assert updated.data is not None and updated.data.name == "na"
    assert [t.name for t in await directory.routes_for("+12125550100", account)] == ["a"]
    assert [p.id for p in (await client.outbound_voice_profiles.list()).data] == [profile.data.id]
    for body, field in (
        ({"whitelisted_destinations": ["US"]}, "whitelisted_destinations"),
        ({"concurrent_call_limit": 5}, "concurrent_call_limit"),
        ({"max_destination_rate": 0.5}, "max_destination_rate"),
    ):
        with pytest.raises(telnyx.UnprocessableEntityError, match=field):
            await client.outbound_voice_profiles.create(
                name="x", extra_body={"connection_ids": [a.id], **body}
            )
    with pytest.raises(telnyx.UnprocessableEntityError, match="no trunk"):
        await client.outbound_voice_profiles.create(name="x", extra_body={"connection_ids": ["9"]})
    with pytest.raises(telnyx.UnprocessableEntityError, match="connection_ids is required"):
        await client.outbound_voice_profiles.create(name="x")

    stranger = AsyncTelnyx(
        api_key=await store.create_api_key("stranger"), base_url=f"{server.url}/v2", max_retries=0
    )
    try:
        with pytest.raises(telnyx.NotFoundError):
            await stranger.phone_numbers.retrieve(number.lstrip("+"))
        with pytest.raises(telnyx.NotFoundError):
            await stranger.outbound_voice_profiles.retrieve(profile.data.id)
    finally:
        await stranger.close()
    await client.outbound_voice_profiles.delete(profile.data.id)
    assert await directory.routes_for("+12125550100", account) == []
    released = await client.phone_numbers.delete(number.lstrip("+"))
    assert released.data is not None and released.data.phone_number == number
    with pytest.raises(telnyx.NotFoundError):
        await client.phone_numbers.retrieve(number)
