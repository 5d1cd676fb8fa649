"""The registrar (callbridge.sip.registrar, RFC 3261 §10.3): its rules on parsed REGISTERs, and
a real baresip registering over UDP and TCP with digest authentication to a real SipStack."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from callbridge import cli
from callbridge.abuse import SourceGuard
from callbridge.sip import Headers, Request, Response, parse_uri
from callbridge.sip.digest import ha1, response
from callbridge.sip.headers import Auth, NameAddr
from callbridge.sip.registrar import Registrar, Source
from callbridge.store import Store
from callbridge.store.repository import now

DOMAIN = "127.0.0.1"
UDP = Source("UDP", "192.0.2.10", 40000)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with await Store.open(_url(tmp_path)) as opened:
        for name, ext in (("alice", "201"), ("bob", "202")):
            await opened.add_user(name, ext)
            await opened.set_sip_password(name, "secret123", DOMAIN)
        yield opened


def _url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'callbridge.db'}"


@pytest.fixture
async def registrar(store: Store) -> Registrar:
    return await Registrar.open(store, DOMAIN, guard=SourceGuard(32, 10))


class Phone:
    """A REGISTERing UA written from RFC 3261 §10.2 for these tests (answers challenges)."""

    def __init__(self, registrar: Registrar, user: str = "alice", source: Source = UDP) -> None:
        self.registrar = registrar
        self.user = user
        self.source = source
        self.call_id = f"reg-{user}-{id(self)}"
        self.cseq = 0

    def request(self, contacts: list[str], extra: list[tuple[str, str]]) -> Request:
        self.cseq += 1
        headers = [
            ("Via", f"SIP/2.0/{self.source.transport} {self.source.host}:{self.source.port}"),
            ("From", f"<sip:{self.user}@{DOMAIN}>;tag=f{self.cseq}"),
            ("To", f"<sip:{self.user}@{DOMAIN}>"),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.cseq} REGISTER"),
            *[("Contact", c) for c in contacts],
            *extra,
        ]
        return Request("REGISTER", parse_uri(f"sip:{DOMAIN}"), Headers(headers))

    async def register(
        self, *contacts: str, extra: list[tuple[str, str]] | None = None
    ) -> Response:
        first = await self.registrar.register(
            self.request(list(contacts), extra or []), self.source
        )
        if first.status != 401:
            return first
        challenge = Auth.parse(first.headers.get_all("WWW-Authenticate")[0], "WWW-Authenticate")
        nonce = challenge.get("nonce") or ""
        key = ha1(self.user, DOMAIN, "secret123", "SHA-256")
        digest = response(
            key, "SHA-256", "REGISTER", f"sip:{DOMAIN}", nonce, qop="auth", nc="00000001",
            cnonce="abc",
        )  # fmt: skip
        auth = (
            f'Digest username="{self.user}", realm="{DOMAIN}", nonce="{nonce}", '
            f'uri="sip:{DOMAIN}", response="{digest}", algorithm=SHA-256, qop=auth, '
            f'nc=00000001, cnonce="abc"'
        )
        request = self.request(list(contacts), [*(extra or []), ("Authorization", auth)])
        return await self.registrar.register(request, self.source)


def _contacts(resp: Response) -> dict[str, int]:
    """The 200's Contacts: URI -> expires."""
    parsed = [NameAddr.parse(v, "Contact") for v in resp.headers.values("Contact")]
    return {str(c.uri): c.expires or 0 for c in parsed}


async def test_alice_registers_two_phones_each_with_its_own_expiry(registrar: Registrar) -> None:
    phone = Phone(registrar)
    first = await phone.register("<sip:alice@192.0.2.10:40000>;expires=600")
    assert first.status == 200 and first.to_tag
    second = await phone.register("<sip:alice@192.0.2.11:5060>", extra=[("Expires", "120")])
    assert second.status == 200
    listed = _contacts(second)
    assert set(listed) == {"sip:alice@192.0.2.10:40000", "sip:alice@192.0.2.11:5060"}
    assert 590 <= listed["sip:alice@192.0.2.10:40000"] <= 600
    assert 110 <= listed["sip:alice@192.0.2.11:5060"] <= 120
    # A query (no Contact) lists them too; bob sees none of alice's.
    assert set(_contacts(await phone.register())) == set(listed)
    assert await registrar.contacts_of("bob") == []
    found = await registrar.contacts_of("alice")
    assert {b.contact for b in found} == set(listed)


async def test_too_brief_an_expiry_gets_423_with_min_expires(registrar: Registrar) -> None:
    answer = await Phone(registrar).register("<sip:alice@192.0.2.10>;expires=30")
    assert (answer.status, answer.headers.get("Min-Expires")) == (423, "60")
    assert await registrar.contacts_of("alice") == []
    # Longer than the maximum is shortened, not refused (§10.3 step 7).
    long = await Phone(registrar).register("<sip:alice@192.0.2.10>;expires=99999")
    assert 3590 <= _contacts(long)["sip:alice@192.0.2.10"] <= 3600


async def test_contact_star_with_expires_0_removes_every_binding(registrar: Registrar) -> None:
    phone = Phone(registrar)
    await phone.register("<sip:alice@192.0.2.10>", "<sip:alice@192.0.2.11>")
    refused = await phone.register("*")
    assert refused.status == 400 and "Expires: 0" in refused.reason
    refused = await phone.register("*", "<sip:alice@192.0.2.12>", extra=[("Expires", "0")])
    assert refused.status == 400
    assert len(await registrar.contacts_of("alice")) == 2
    cleared = await phone.register("*", extra=[("Expires", "0")])
    assert cleared.status == 200 and cleared.headers.values("Contact") == []
    assert await registrar.contacts_of("alice") == []


async def test_expires_0_removes_one_binding(registrar: Registrar) -> None:
    phone = Phone(registrar)
    await phone.register("<sip:alice@192.0.2.10>", "<sip:alice@192.0.2.11>")
    left = await phone.register("<sip:alice@192.0.2.10>;expires=0")
    assert set(_contacts(left)) == {"sip:alice@192.0.2.11"}


async def test_an_older_cseq_of_the_same_call_id_changes_nothing(registrar: Registrar) -> None:
    phone = Phone(registrar)
    await phone.register("<sip:alice@192.0.2.10>;expires=600")
    phone.cseq = 0  # the next REGISTER reuses CSeq 1 then 2: not above the stored 2
    stale = await phone.register("<sip:alice@192.0.2.10>;expires=0")
    assert stale.status == 400 and "is not above" in stale.reason
    assert [b.contact for b in await registrar.contacts_of("alice")] == ["sip:alice@192.0.2.10"]
    # Another Call-ID (the phone restarted) may update it whatever its CSeq (§10.3 step 7).
    restarted = Phone(registrar)
    assert (await restarted.register("<sip:alice@192.0.2.10>;expires=0")).status == 200


async def test_to_must_be_the_authenticated_users_own_address(registrar: Registrar) -> None:
    phone = Phone(registrar)
    phone.request = _spoof_to(phone.request, "bob")  # type: ignore[method-assign]
    answer = await phone.register("<sip:bob@192.0.2.66>")
    assert answer.status == 403 and "alice" in answer.reason
    assert await registrar.contacts_of("bob") == []


def _spoof_to(make, user: str):  # type: ignore[no-untyped-def]
    def request(contacts: list[str], extra: list[tuple[str, str]]) -> Request:
        req: Request = make(contacts, extra)
        req.headers.set("To", f"<sip:{user}@{DOMAIN}>")
        return req

    return request


async def test_another_domain_or_a_required_extension_is_refused(registrar: Registrar) -> None:
    phone = Phone(registrar)
    req = phone.request(["<sip:alice@192.0.2.10>"], [])
    req.uri = parse_uri("sip:example.com")
    answer = await registrar.register(req, UDP)
    assert answer.status == 404 and "example.com" in answer.reason
    req = phone.request(["<sip:alice@192.0.2.10>"], [("Require", "gruu")])
    answer = await registrar.register(req, UDP)
    assert (answer.status, answer.headers.get("Unsupported")) == (420, "gruu")


async def test_each_binding_keeps_its_source_connection_and_instance(registrar: Registrar) -> None:
    # A WebSocket client: its contact host is .invalid (RFC 7118 §5), reachable only over
    # the connection it registered on.
    ws = Phone(registrar, source=Source("WSS", "192.0.2.20", 50123))
    instance = '+sip.instance="<urn:uuid:00000000-0000-1000-8000-000a95a0e128>";reg-id=1'
    first = await ws.register(
        f"<sip:x7k2@df7jal23ls0d.invalid;transport=ws>;{instance}",
        extra=[("User-Agent", "JsSIP 3.13")],
    )
    assert first.status == 200
    (binding,) = await registrar.contacts_of("alice")
    assert (binding.transport, binding.source_host, binding.source_port) == (
        "wss",
        "192.0.2.20",
        50123,
    )
    assert binding.connection_id == "WSS 192.0.2.20:50123"
    assert binding.instance_id == "<urn:uuid:00000000-0000-1000-8000-000a95a0e128>"
    assert (binding.reg_id, binding.user_agent) == (1, "JsSIP 3.13")
    assert '+sip.instance="<urn:uuid:' in first.headers.values("Contact")[0]
    # The same instance and reg-id from a new contact replace the binding (RFC 5626 §6).
    again = await ws.register(f"<sip:k9@p0q1.invalid;transport=ws>;{instance}")
    assert list(_contacts(again)) == ["sip:k9@p0q1.invalid;transport=ws"]
    # UDP has no connection: the source address is how to reach it (NAT, RFC 3581).
    udp = await Phone(registrar, "bob").register("<sip:bob@10.0.0.5:5060>")
    assert udp.status == 200
    (bob,) = await registrar.contacts_of("bob")
    assert (bob.connection_id, bob.source_host, bob.source_port) == (None, "192.0.2.10", 40000)


async def test_a_user_has_at_most_max_bindings(store: Store) -> None:
    registrar = await Registrar.open(store, DOMAIN, max_bindings=2)
    phone = Phone(registrar)
    assert (await phone.register("<sip:alice@192.0.2.1>", "<sip:alice@192.0.2.2>")).status == 200
    refused = await phone.register("<sip:alice@192.0.2.3>")
    assert refused.status == 403 and "at most 2" in refused.reason
    assert len(await registrar.contacts_of("alice")) == 2


async def test_bindings_survive_a_restart_and_expired_ones_are_pruned(
    store: Store, tmp_path: Path
) -> None:
    registrar = await Registrar.open(store, DOMAIN)
    await Phone(registrar).register("<sip:alice@192.0.2.10>;expires=60")
    await Phone(registrar, "bob").register("<sip:bob@192.0.2.11>;expires=3600")
    async with await Store.open(_url(tmp_path)) as reopened:  # another process, same database
        again = await Registrar.open(reopened, DOMAIN)
        assert [b.contact for b in await again.contacts_of("alice")] == ["sip:alice@192.0.2.10"]
        later = now() + timedelta(seconds=61)
        assert await reopened.bindings("alice", at=later) == []  # expired: never returned
        assert await reopened.prune_bindings(later) == 1
        assert [b.user_name for b in await reopened.bindings()] == ["bob"]


async def test_a_nonce_from_another_node_sharing_the_database_is_accepted(
    store: Store, tmp_path: Path
) -> None:
    one = await Registrar.open(store, DOMAIN)
    async with await Store.open(_url(tmp_path)) as other_store:
        two = await Registrar.open(other_store, DOMAIN)
        phone = Phone(one)
        first = await one.register(phone.request(["<sip:alice@192.0.2.10>"], []), UDP)
        phone.registrar = two  # the answer to one's challenge goes to two
        challenge = first.headers.get_all("WWW-Authenticate")[0]
        nonce = Auth.parse(challenge, "WWW-Authenticate").get("nonce") or ""
        key = ha1("alice", DOMAIN, "secret123", "SHA-256")
        digest = response(
            key, "SHA-256", "REGISTER", f"sip:{DOMAIN}", nonce, qop="auth", nc="00000001",
            cnonce="n2",
        )  # fmt: skip
        auth = (
            f'Digest username="alice", realm="{DOMAIN}", nonce="{nonce}", uri="sip:{DOMAIN}", '
            f'response="{digest}", algorithm=SHA-256, qop=auth, nc=00000001, cnonce="n2"'
        )
        req = phone.request(["<sip:alice@192.0.2.10>"], [("Authorization", auth)])
        assert (await two.register(req, UDP)).status == 200


async def test_credentials_set_for_another_domain_do_not_work(store: Store) -> None:
    await store.set_sip_password("alice", "secret123", "old.example.org")
    registrar = await Registrar.open(store, DOMAIN)
    answer = await Phone(registrar).register("<sip:alice@192.0.2.10>")
    assert answer.status == 401  # challenged again: the HA1s are for another realm


# a real phone over a real SIP stack -------------------------------------------------------
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        tcp.bind(("127.0.0.1", 0))
        port = int(tcp.getsockname()[1])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", port))  # free for UDP too
    return port


def _baresip_config(folder: Path, sip_port: int, account: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config").write_text(
        "module_path /usr/lib/baresip/modules\n"
        f"sip_listen 127.0.0.1:{_free_port()}\n"
        "audio_player aubridge,nil\naudio_source aubridge,nil\n"
        "module stdio.so\nmodule g711.so\nmodule aubridge.so\n"
        "module_app account.so\nmodule_app menu.so\n"
    )
    (folder / "accounts").write_text(account + "\n")


@pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip is not installed")
@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_baresip_registers_with_digest_and_is_listed_and_kept_over_a_restart(
    store: Store, tmp_path: Path, transport: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from callbridge.sip.stack import Incoming, SipStack

    stack = SipStack(DOMAIN)
    port = _free_port()
    await stack.start("127.0.0.1", port)
    registrar = await Registrar.open(store, DOMAIN, guard=SourceGuard(32, 10))
    registrar.attach(stack)
    answered: asyncio.Queue[int] = asyncio.Queue()
    handle = stack.handlers["REGISTER"]

    async def observed(incoming: Incoming) -> None:
        sent: list[Response] = []
        respond = incoming.respond

        def recorded(response: Response | int, reason: str | None = None) -> Response:
            sent.append(respond(response, reason))
            return sent[-1]

        incoming.respond = recorded  # type: ignore[method-assign]
        await handle(incoming)
        answered.put_nowait(sent[-1].status)

    stack.on("REGISTER", observed)
    config = tmp_path / "baresip"
    _baresip_config(
        config,
        port,
        f"<sip:alice@127.0.0.1:{port};transport={transport}>;auth_pass=secret123;regint=120",
    )
    phone = await asyncio.create_subprocess_exec(
        "baresip", "-4", "-n", "127.0.0.1", "-f", str(config), "-t", "30",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        statuses: list[int] = []
        while not statuses or statuses[-1] != 200:  # 401 challenge, then 200
            status = await asyncio.wait_for(answered.get(), 20)
            statuses.append(status)
        assert statuses == [401, 200]
        (binding,) = await store.bindings("alice")
        assert binding.transport == transport and binding.source_host == "127.0.0.1"
        assert 100 <= binding.expires_in() <= 120
        assert (binding.connection_id is None) == (transport == "udp")
        assert binding.user_agent and "baresip" in binding.user_agent
        # `callbridge registrations` lists it, from another process's point of view.
        code = await asyncio.to_thread(
            cli.main, ["registrations", "--database-url", _url(tmp_path)]
        )
        out = capsys.readouterr().out
        assert code == 0 and "alice" in out and binding.contact in out
        assert f"{transport} 127.0.0.1:{binding.source_port}" in out
        # A restart of the server keeps the binding (the phone is not asked again).
        await stack.stop()
        async with await Store.open(_url(tmp_path)) as reopened:
            assert [b.contact for b in await reopened.bindings("alice")] == [binding.contact]
    finally:
        if phone.returncode is None:
            phone.kill()  # not terminate: it would unregister for 32 s into a stopped stack
        await phone.wait()
        await stack.stop()
