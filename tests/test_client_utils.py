"""Seed 002's utilities and settings: phone numbers, caller URIs, call queries, and the ICE
servers / transport policy / IPv6 of new calls.

The number and URI functions are pure. The settings are checked by their effect on real
peer connections: the candidates in a real offer, and a local TURN server that records who
asked it for an allocation (and refuses, so gathering ends at once). Call queries use the
real server of conftest.py.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import pytest
from aioice import stun

import callbridge
from callbridge.client import (
    CallerInfo,
    CallSummary,
    ClientError,
    InvalidArgumentError,
    PeerConnectionSettings,
    Phone,
    clean_phone_number,
    format_number,
    get_caller_info,
)
from callbridge.client.media import CallMedia
from callbridge.rtp.webrtc import restrict_ice_addresses
from callbridge.testing.server import Server
from conftest import MakeParty, MakeUser
from parties import ALICE, BOB, connect

# ---------------------------------------------------------------------------------------------
# clean_phone_number


@pytest.mark.parametrize(
    ("number", "cleaned"),
    [
        ("1800CALFEDE", "18002253333"),  # the seed's example
        ("1 (123) 123-1234", "11231231234"),  # the seed's dial() example
        ("1800calfede", "18002253333"),
        ("ABC DEF GHI JKL MNO PQRS TUV WXYZ", "22233344455566677778889999"),
        ("1-800-FLOWERS", "18003569377"),
        ("415.555.1234", "4155551234"),
        ("+1 (415) 555-1234", "+14155551234"),
        ("  +44 20 7946 0958 ", "+442079460958"),
        ("911", "911"),
        ("411", "411"),
        ("611", "611"),
        ("*69", "*69"),
        ("#89", "#89"),
        ("*67 1 800 555 1234", "*6718005551234"),
    ],
)
def test_clean_phone_number_turns_keypad_letters_into_digits(number: str, cleaned: str) -> None:
    assert clean_phone_number(number) == cleaned


@pytest.mark.parametrize(
    "address", ["john@domain.com", "sip:john@domain.com", "bob.smith@example.org"]
)
def test_clean_phone_number_ignores_email_formatted_input(address: str) -> None:
    assert clean_phone_number(address) == address
    assert clean_phone_number(f"  {address}\n") == address


@pytest.mark.parametrize(
    "junk",
    [
        "",
        "   ",
        "()-. ",
        "+",
        "1+800",  # '+' only first
        "+*69",  # '+' then digits only
        "++1800",
        "1800!CALL",
        "1,800",
        "tel:+14155551234",
        "straße",  # non-ASCII letters are not on a keypad
        "١٢٣",  # nor are non-ASCII digits
        "john@",
        "@domain.com",
        "a@b@c",
        "john doe@domain.com",
    ],
)
def test_clean_phone_number_returns_none_for_what_cannot_be_a_number(junk: str) -> None:
    assert clean_phone_number(junk) is None


def test_clean_phone_number_refuses_a_non_string() -> None:
    with pytest.raises(InvalidArgumentError, match="number must be a str, not int"):
        clean_phone_number(18002253333)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# format_number


@pytest.mark.parametrize(
    ("number", "formatted"),
    [
        ("9234567890", "1 (923) 456-7890"),  # the seed's example
        ("19234567890", "1 (923) 456-7890"),
        ("+19234567890", "1 (923) 456-7890"),
        ("+1 923 456 7890", "1 (923) 456-7890"),
        ("1 (923) 456-7890", "1 (923) 456-7890"),
        ("1-800-CALFEDE", "1 (800) 225-3333"),
        ("1231231234", "1 (123) 123-1234"),  # area codes are not checked
    ],
)
def test_format_number_formats_north_american_numbers(number: str, formatted: str) -> None:
    assert format_number(number) == formatted


@pytest.mark.parametrize(
    ("number", "cleaned"),
    [
        ("911", "911"),
        ("*69", "*69"),
        ("555-1234", "5551234"),
        ("29234567890", "29234567890"),  # 11 digits not starting with 1
        ("+9234567890", "+9234567890"),  # +92: Pakistan, not +1
        ("+44 20 7946 0958", "+442079460958"),
        ("192345678901", "192345678901"),
        ("*6719234567890", "*6719234567890"),
        ("john@domain.com", "john@domain.com"),
    ],
)
def test_format_number_leaves_other_numbers_cleaned_but_unformatted(
    number: str, cleaned: str
) -> None:
    assert format_number(number) == cleaned


@pytest.mark.parametrize("junk", ["", "1800!CALL", "+", "tel:+1"])
def test_format_number_refuses_what_is_not_a_number(junk: str) -> None:
    with pytest.raises(InvalidArgumentError, match="not a phone number") as info:
        format_number(junk)
    assert isinstance(info.value, ValueError) and isinstance(info.value, ClientError)
    assert "leading +" in str(info.value)  # says what is valid


# ---------------------------------------------------------------------------------------------
# get_caller_info


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("sip:bob@domain.com", CallerInfo("sip", "bob", "domain.com", None)),
        ("sip:+1111@icmn.api.att.com", CallerInfo("sip", "+1111", "icmn.api.att.com", None)),
        (
            "sip:bob@10.0.0.1:5060;transport=tcp",
            CallerInfo("sip", "bob", "10.0.0.1", 5060, {"transport": "tcp"}),
        ),
        ("tel:+14155551234", CallerInfo("tel", "+14155551234", "", None)),
        ("+14155551234", CallerInfo("", "+14155551234", "", None)),
        ("105", CallerInfo("", "105", "", None)),
        ("bob@domain.com", CallerInfo("", "bob", "domain.com", None)),
        ("bob@domain.com:5080", CallerInfo("", "bob", "domain.com", 5080)),
        ("SIPS:Bob@Domain.com", CallerInfo("sips", "Bob", "Domain.com", None)),
        ("sip:atlanta.com", CallerInfo("sip", "", "atlanta.com", None)),
        ("sip:alice:secret@atlanta.com", CallerInfo("sip", "alice", "atlanta.com", None)),
        ("sip:%2B1111@x.org", CallerInfo("sip", "+1111", "x.org", None)),
        ("sip:bob@[2001:db8::1]:5061", CallerInfo("sip", "bob", "[2001:db8::1]", 5061)),
        (
            "sip:+14155551234@gw.example.com;user=phone;lr;Transport=UDP?subject=hi",
            CallerInfo(
                "sip",
                "+14155551234",
                "gw.example.com",
                None,
                {"user": "phone", "lr": "", "transport": "UDP"},
            ),
        ),
        (
            "tel:+1-415-555-1234;phone-context=example.com",
            CallerInfo("tel", "+14155551234", "", None, {"phone-context": "example.com"}),
        ),
        (
            '"Bob" <sip:bob@x.org>',
            CallerInfo("sip", "bob", "x.org", None, display_name="Bob"),
        ),
        (
            '"Bob \\"the builder\\"" <sip:bob@x.org:5070;transport=tls>;tag=a6c85cf',
            CallerInfo("sip", "bob", "x.org", 5070, {"transport": "tls"}, 'Bob "the builder"'),
        ),
        (
            "Bob  Smith <tel:+14155551234>",
            CallerInfo("tel", "+14155551234", "", None, display_name="Bob Smith"),
        ),
        ("<sip:bob@x.org>", CallerInfo("sip", "bob", "x.org", None)),
        ("  sip:bob@domain.com  ", CallerInfo("sip", "bob", "domain.com", None)),
    ],
)
def test_get_caller_info_takes_a_caller_uri_apart(uri: str, expected: CallerInfo) -> None:
    assert get_caller_info(uri) == expected


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("http://bob@x.org", "unsupported scheme 'http'"),
        ("mailto:bob@x.org", "unsupported scheme 'mailto'"),
        ("sip:bob@", "no host"),
        ("sip:", "no host"),
        ("sip:@x.org", "empty user"),
        ("@x.org", "empty user"),
        ("sip:bob@x.org:0", "port '0' is not a number from 1 to 65535"),
        ("sip:bob@x.org:65536", "port '65536'"),
        ("sip:bob@x.org:http", "port 'http'"),
        ("sip:bob@x.org:5060:5061", "is not host[:port]"),
        ("sip:bob@[not-v6]", "not an IPv6 address"),
        ("sip:bob@bad_host!", "not a host name or IP address"),
        ("sip:bob smith@x.org", "spaces"),
        ("hello world", "spaces"),
        ("tel:", "no number"),
        ("tel:;phone-context=x", "no number"),
        ("<>", "nothing between"),
        ('"Bob" <sip:bob@x.org> trailing', "unexpected 'trailing' after '>'"),
        ('"Bob <sip:bob@x.org>', "only allowed in a display name"),
    ],
)
def test_get_caller_info_refuses_what_is_not_a_caller_uri(uri: str, why: str) -> None:
    with pytest.raises(InvalidArgumentError, match="expected sip:user@host") as info:
        get_caller_info(uri)
    assert why in str(info.value)
    assert isinstance(info.value, ValueError)


def test_get_caller_info_refuses_a_non_string() -> None:
    with pytest.raises(InvalidArgumentError, match="uri must be a str, not NoneType"):
        get_caller_info(None)  # type: ignore[arg-type]


def test_caller_info_is_frozen_and_hashable() -> None:
    info = get_caller_info("sip:bob@x.org;transport=tcp")
    with pytest.raises(AttributeError):
        info.caller_id = "eve"  # type: ignore[misc]
    assert hash(info) == hash(get_caller_info("sip:bob@x.org;transport=udp"))
    assert info != get_caller_info("sip:bob@x.org;transport=udp")


# ---------------------------------------------------------------------------------------------
# Phone: utilities and settings without a server


@pytest.fixture
def offline_phone() -> Phone:
    """A phone that never logs in: utilities and settings need no session."""
    return Phone("ws://127.0.0.1:9/ws", "no-token")


def test_the_utilities_are_phone_methods_too(offline_phone: Phone) -> None:
    assert offline_phone.clean_phone_number("1800CALFEDE") == "18002253333"
    assert Phone.clean_phone_number("john@domain.com") == "john@domain.com"
    assert offline_phone.format_number("9234567890") == "1 (923) 456-7890"
    assert offline_phone.get_caller_info("sip:bob@domain.com") == CallerInfo(
        "sip", "bob", "domain.com", None
    )
    assert offline_phone.get_version() == callbridge.__version__ == Phone.get_version()


def test_a_phone_without_calls_has_no_calls(offline_phone: Phone) -> None:
    assert offline_phone.get_calls() == []
    assert offline_phone.get_media_type() is None
    with pytest.deprecated_call():
        assert offline_phone.is_call_in_progress() is False


def test_settings_defaults_and_resets(offline_phone: Phone) -> None:
    phone = offline_phone
    assert (phone.get_ice_servers(), phone.get_ice_transport(), phone.get_ipv6()) == (
        [],
        "all",
        True,
    )
    turn = {"urls": "turn:turn.example.org", "username": "u", "credential": "p"}
    phone.set_ice_servers([turn])
    phone.set_ice_transport("relay")
    phone.set_ipv6(False)
    assert (phone.get_ice_servers(), phone.get_ice_transport(), phone.get_ipv6()) == (
        [turn],
        "relay",
        False,
    )
    phone.reset_ice_servers()
    phone.reset_ice_transport()
    phone.reset_ipv6()
    assert (phone.get_ice_servers(), phone.get_ice_transport(), phone.get_ipv6()) == (
        [],
        "all",
        True,
    )


def test_reset_ice_servers_goes_back_to_none_not_to_the_constructor_argument() -> None:
    phone = Phone("ws://127.0.0.1:9/ws", "t", ice_servers=[{"urls": "stun:stun.example.org"}])
    assert phone.get_ice_servers() == [{"urls": "stun:stun.example.org"}]
    phone.reset_ice_servers()
    assert phone.get_ice_servers() == []


def test_ice_servers_are_normalized_as_the_sdk_uses_them(offline_phone: Phone) -> None:
    offline_phone.set_ice_servers(
        [
            {"url": "STUN:12.45.15.xx"},  # the seed's own example: old key, upper-case scheme
            {"urls": ["stun:stun.example.org:3478", "Turn:t.example.org?transport=TCP"],
             "username": "alice", "credential": "s3cret"},
            {"urls": ("turns:t.example.org:443",), "username": "a", "credential": "b"},
        ]
    )  # fmt: skip
    assert offline_phone.get_ice_servers() == [
        {"urls": "stun:12.45.15.xx"},
        {
            "urls": ["stun:stun.example.org:3478", "turn:t.example.org?transport=tcp"],
            "username": "alice",
            "credential": "s3cret",
        },
        {"urls": ["turns:t.example.org:443"], "username": "a", "credential": "b"},
    ]
    assert offline_phone.ice_servers == offline_phone.get_ice_servers()


def test_the_getters_return_copies(offline_phone: Phone) -> None:
    offline_phone.set_ice_servers([{"urls": ["stun:a.example.org"]}])
    servers = offline_phone.get_ice_servers()
    servers[0]["urls"].append("stun:evil.example.org")
    servers.append({"urls": "stun:b.example.org"})
    offline_phone.ice_servers.clear()
    assert offline_phone.get_ice_servers() == [{"urls": ["stun:a.example.org"]}]


def test_the_ice_servers_attribute_validates_like_the_setter(offline_phone: Phone) -> None:
    offline_phone.ice_servers = [{"urls": "stun:a.example.org"}]
    assert offline_phone.get_ice_servers() == [{"urls": "stun:a.example.org"}]
    with pytest.raises(InvalidArgumentError, match="expected stun:host"):
        offline_phone.ice_servers = [{"urls": "http://a.example.org"}]
    with pytest.raises(InvalidArgumentError, match="needs a non-empty 'username'"):
        Phone("ws://127.0.0.1:9/ws", "t", ice_servers=[{"urls": "turn:t.example.org"}])


@pytest.mark.parametrize(
    ("servers", "message"),
    [
        ({"urls": "stun:a.example.org"}, "expected a list of servers"),
        ("stun:a.example.org", "expected a list of servers"),
        (None, "expected a list of servers"),
        (["stun:a.example.org"], r"ice_servers\[0\]: expected a dict with 'urls'"),
        ([{}], r"ice_servers\[0\]: 'urls' is missing"),
        ([{"urls": "stun:a.org", "url": "stun:b.org"}], "not both"),
        ([{"urls": "stun:a.org", "credentialType": "oauth"}], "unknown key.*valid: urls"),
        ([{"urls": []}], "non-empty list of URLs"),
        ([{"urls": 3478}], "non-empty list of URLs"),
        ([{"urls": [None]}], r"urls\[0\]: None: a URL is a str"),
        ([{"urls": "http://a.example.org"}], "expected stun:host"),
        ([{"urls": "a.example.org"}], "expected stun:host"),
        ([{"urls": "stuns:a.example.org"}], "not supported by aioice"),
        ([{"urls": "stun:"}], "no host"),
        ([{"urls": "stun::3478"}], "no host"),
        ([{"urls": "stun:[2001:db8::1]:3478"}], "IPv6 address"),
        ([{"urls": "stun:bad_host"}], "not a host name or IPv4 address"),
        ([{"urls": "stun:-a.example.org"}], "not a host name"),
        ([{"urls": "stun:a.example.org:0"}], "from 1 to 65535, not '0'"),
        ([{"urls": "stun:a.example.org:65536"}], "from 1 to 65535"),
        ([{"urls": "stun:a.example.org:"}], "from 1 to 65535, not ''"),
        ([{"urls": "stun:a.example.org:x"}], "from 1 to 65535"),
        ([{"urls": "stun:a.example.org?transport=udp"}], r"stun: takes no \?transport"),
        (
            [{"urls": "turn:t.org?transport=tls", "username": "u", "credential": "p"}],
            r"turn: takes \?transport=udp\|tcp only",
        ),
        (
            [{"urls": "turns:t.org?transport=udp", "username": "u", "credential": "p"}],
            r"turns: takes \?transport=tcp only",
        ),
        (
            [{"urls": "turn:t.org?foo=bar", "username": "u", "credential": "p"}],
            "transport=udp",
        ),
        ([{"urls": "turn:t.example.org"}], "TURN server needs a non-empty 'username'"),
        ([{"urls": "turn:t.example.org", "username": "u"}], "'credential'"),
        ([{"urls": "turns:t.org", "username": "", "credential": "p"}], "non-empty 'username'"),
        ([{"urls": "stun:a.org", "username": 7}], "'username' must be a str, not int"),
        (
            [{"urls": "stun:a.org"}, {"urls": ["stun:b.org", "turn:c.org"]}],
            r"ice_servers\[1\]: a TURN server needs",
        ),
    ],
)
def test_bad_ice_servers_are_refused_and_the_old_ones_kept(
    offline_phone: Phone, servers: Any, message: str
) -> None:
    before = [{"urls": "stun:kept.example.org"}]
    offline_phone.set_ice_servers(before)
    with pytest.raises(InvalidArgumentError, match=message):
        offline_phone.set_ice_servers(servers)
    assert offline_phone.get_ice_servers() == before


@pytest.mark.parametrize("policy", ["ALL", "Relay", "udp", "", None, 0, ["all"]])
def test_a_bad_ice_transport_is_refused(offline_phone: Phone, policy: Any) -> None:
    offline_phone.set_ice_transport("relay")
    with pytest.raises(InvalidArgumentError, match="expected one of all, relay, none"):
        offline_phone.set_ice_transport(policy)
    assert offline_phone.get_ice_transport() == "relay"


@pytest.mark.parametrize("value", [1, 0, "true", None])
def test_ipv6_takes_only_a_bool(offline_phone: Phone, value: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="expected True or False"):
        offline_phone.set_ipv6(value)
    assert offline_phone.get_ipv6() is True


def test_settings_validate_their_constructor_arguments() -> None:
    with pytest.raises(InvalidArgumentError, match="ice_transport: 'any'"):
        PeerConnectionSettings(ice_transport="any")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="ipv6: 'no'"):
        PeerConnectionSettings(ipv6="no")  # type: ignore[arg-type]
    settings = PeerConnectionSettings([{"url": "STUN:s.example.org"}], "relay", False)
    assert repr(settings) == (
        "PeerConnectionSettings(ice_servers=['stun:s.example.org'], ice_transport='relay', "
        "ipv6=False)"
    )


# ---------------------------------------------------------------------------------------------
# what the settings do to a real peer connection


class RefusingTurnServer:
    """A TURN server on 127.0.0.1 (TCP) that answers every Allocate with 403 Forbidden
    (RFC 8656 §7.2) and records that it was asked: gathering then ends at once."""

    def __init__(self) -> None:
        self.allocations = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> RefusingTurnServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"turn:127.0.0.1:{self._server.sockets[0].getsockname()[1]}?transport=tcp"

    def server(self) -> dict[str, str]:
        return {"urls": self.url, "username": "alice", "credential": "secret"}

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                header = await reader.readexactly(20)
                body = await reader.readexactly(int.from_bytes(header[2:4], "big"))
                request = stun.parse_message(header + body)
                if request.message_method == stun.Method.ALLOCATE:
                    self.allocations += 1
                response = stun.Message(
                    message_method=request.message_method,
                    message_class=stun.Class.ERROR,
                    transaction_id=request.transaction_id,
                )
                response.attributes["ERROR-CODE"] = (403, "Forbidden")
                writer.write(bytes(response))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def turn_server() -> AsyncIterator[RefusingTurnServer]:
    async with RefusingTurnServer() as server:
        yield server


@pytest.fixture
def ice_addresses() -> Iterator[Callable[[Sequence[str] | None], None]]:
    """Let ICE gather on other addresses for a test; back to 127.0.0.1 after it."""
    yield restrict_ice_addresses
    restrict_ice_addresses(["127.0.0.1"])


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


async def offered_candidates(settings: PeerConnectionSettings) -> list[str]:
    """The candidates (address and type) in a real offer made with ``settings``."""
    media = CallMedia(ice_servers=settings.ice_servers)
    try:
        settings.apply(media)
        sdp = await asyncio.wait_for(media.create_offer(), 10)
    finally:
        await media.close()
    fields = [line.split() for line in sdp.splitlines() if line.startswith("a=candidate:")]
    return [f"{f[4]} {f[7]}" for f in fields]


async def test_all_gathers_host_candidates_and_asks_the_turn_server(
    turn_server: RefusingTurnServer,
) -> None:
    settings = PeerConnectionSettings([turn_server.server()], "all")
    assert await offered_candidates(settings) == ["127.0.0.1 host"]
    assert turn_server.allocations == 1


async def test_relay_asks_only_the_turn_server_and_offers_no_host_candidate(
    turn_server: RefusingTurnServer,
) -> None:
    settings = PeerConnectionSettings([turn_server.server()], "relay")
    assert await offered_candidates(settings) == []  # the TURN server refused: nothing left
    assert turn_server.allocations == 1


async def test_none_gathers_nothing_and_contacts_no_server(turn_server: RefusingTurnServer) -> None:
    settings = PeerConnectionSettings([turn_server.server()], "none")
    assert await offered_candidates(settings) == []
    assert turn_server.allocations == 0


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback here")
async def test_ipv6_off_leaves_out_ipv6_host_candidates(
    ice_addresses: Callable[[Sequence[str] | None], None],
) -> None:
    ice_addresses(["127.0.0.1", "::1"])
    assert await offered_candidates(PeerConnectionSettings(ipv6=True)) == [
        "127.0.0.1 host",
        "::1 host",
    ]
    assert await offered_candidates(PeerConnectionSettings(ipv6=False)) == ["127.0.0.1 host"]


# ---------------------------------------------------------------------------------------------
# with the server: call queries, and settings reaching new calls


async def test_get_calls_on_both_phones_before_during_and_after_a_call(party: MakeParty) -> None:
    alice, bob = await party(ALICE), await party(BOB)
    assert alice.phone.get_calls() == bob.phone.get_calls() == []
    assert alice.phone.get_media_type() is None
    out = await alice.call(bob.user.extension)
    inc = await bob.ringing()
    assert alice.phone.get_calls() == [
        CallSummary(0, "call", "Outgoing", "ringing", bob.user.extension)
    ]
    assert bob.phone.get_calls() == [
        CallSummary(0, "call", "Incoming", "ringing", alice.user.number)
    ]
    with pytest.deprecated_call():
        assert bob.phone.is_call_in_progress() is True  # ringing is in progress
    await inc.answer()
    await out.wait_for("answered", timeout=5)
    assert [c.state for c in alice.phone.get_calls()] == ["active"]
    assert [c.state for c in bob.phone.get_calls()] == ["active"]
    assert alice.phone.get_media_type() == bob.phone.get_media_type() == "audio"
    await out.hold()
    await inc.wait_for("held", timeout=5)
    assert [c.state for c in bob.phone.get_calls()] == ["held"]
    await out.hangup()
    await inc.wait_for("ended", timeout=5)
    assert alice.phone.get_calls() == bob.phone.get_calls() == []
    assert alice.phone.get_media_type() is bob.phone.get_media_type() is None
    with pytest.deprecated_call():
        assert alice.phone.is_call_in_progress() is False


async def test_get_calls_indexes_live_calls_oldest_first(party: MakeParty) -> None:
    alice, bob, carol = await party(ALICE), await party(BOB), await party(440.0)
    first, _ = await connect(alice, bob)
    await first.hold()
    second = await alice.call(carol.user.extension)
    await carol.ringing()
    assert alice.phone.get_calls() == [
        CallSummary(0, "call", "Outgoing", "held", bob.user.extension),
        CallSummary(1, "call", "Outgoing", "ringing", carol.user.extension),
    ]
    await first.hangup()
    assert alice.phone.get_calls() == [
        CallSummary(0, "call", "Outgoing", "ringing", carol.user.extension)
    ]
    await second.hangup()
    assert alice.phone.get_calls() == []


async def test_ice_servers_set_on_the_phone_reach_the_next_call(
    party: MakeParty, turn_server: RefusingTurnServer
) -> None:
    alice, bob = await party(ALICE), await party(BOB)
    alice.phone.set_ice_servers([turn_server.server()])
    out, _ = await connect(alice, bob)  # 'all': host candidates still connect the call
    assert turn_server.allocations == 1
    await out.hangup()
    alice.phone.reset_ice_servers()
    out, _ = await connect(alice, bob)
    assert turn_server.allocations == 1  # the reset applies to the next call
    await out.hangup()


async def test_relay_without_a_turn_server_refuses_to_place_the_call(party: MakeParty) -> None:
    alice, bob = await party(ALICE), await party(BOB)
    alice.phone.set_ice_servers([{"urls": "stun:stun.example.org"}])
    alice.phone.set_ice_transport("relay")
    with pytest.raises(InvalidArgumentError, match="'relay' but no TURN server"):
        await alice.call(bob.user.extension)
    assert alice.phone.get_calls() == []
    await asyncio.sleep(0.3)  # an absence: time for a call that wrongly went out to ring
    assert bob.incoming.empty()  # nothing reached the server


async def test_an_incoming_call_cannot_be_answered_under_none_and_keeps_ringing(
    party: MakeParty,
) -> None:
    alice, bob = await party(ALICE), await party(BOB)
    bob.phone.set_ice_transport("none")
    out = await alice.call(bob.user.extension)
    inc = await bob.ringing()
    with pytest.raises(InvalidArgumentError, match="'none': no ICE candidates"):
        await inc.answer()
    assert inc.state == "ringing" and inc.media is None
    bob.phone.reset_ice_transport()
    await inc.answer()
    await out.wait_for("answered", timeout=5)
    await out.hangup()


async def test_ipv6_off_refuses_a_call_that_could_only_use_ipv6(
    server: Server, make_user: MakeUser
) -> None:
    user = await make_user()
    async with Phone(server.ws_url, user.token, media_addresses=["::1"]) as phone:
        phone.set_ipv6(False)
        with pytest.raises(InvalidArgumentError, match="ipv6 is off but ICE may only use IPv6"):
            await phone.call("105")
        assert phone.get_calls() == []
