"""The SIP message layer against RFC 4475 (torture messages), RFC 5118 (IPv6) and RFC 3261.

Valid messages parse with the fields the RFCs describe; invalid ones raise SipParseError with
the status and a reason naming the problem; messages a parser must take but a UA must refuse
get that verdict from ``application_check``; nothing raises anything else, even mutated.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from callbridge.sip import (
    PING,
    Auth,
    NameAddr,
    ParseLimits,
    Reason,
    Replaces,
    Request,
    Response,
    SipParseError,
    StreamFramer,
    Uri,
    Via,
    application_check,
    error_response,
    parse,
    parse_uri,
)
from callbridge.sip.message import Message

TORTURE = Path(__file__).parent / "sip" / "torture"


def load(name: str) -> bytes:
    folder = "rfc4475" if name.endswith(".dat") else "rfc5118"
    return (TORTURE / folder / name).read_bytes()


def req(name: str) -> Request:
    msg = parse(load(name))
    assert isinstance(msg, Request)
    return msg


# --- RFC 4475 §3.1.1: valid messages, with the fields the RFC points out ---------------


def check_wsinv(m: Request) -> None:
    assert m.method == "INVITE" and m.uri.params.get("unknownparam") == ""
    assert m.cseq.number == 9 and m.cseq.method == "INVITE"
    assert m.max_forwards == 68
    assert m.to.tag == "1918181833n" and m.from_.tag == "98asjd8"
    assert m.from_.display_name == 'J Rosenberg \\"'
    assert [v.host for v in m.via] == ["192.0.2.2", "spindle.example.com", "192.168.255.111"]
    assert [v.branch for v in m.via] == ["390skdjuw", "z9hG4bK9ikj8", "z9hG4bK30239"]
    assert m.headers.get("Subject") == ""
    assert m.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert m.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    contact = m.contacts[0]
    assert contact.display_name == 'Quoted string ""'
    assert contact.params.get("newparam") == "newvalue" and contact.q == 0.33
    assert m.routes[0].uri.params.get("unknownwith") == "value"
    assert len(m.body) == 150


def check_intmeth(m: Request) -> None:
    assert m.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert m.cseq.method == m.method and m.cseq.number == 139122385
    assert m.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert m.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert m.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert m.from_.tag == "_token~1'+`*%!-."
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.top_via.branch == "z9hG4bK-.!%66*_+`'~"


def check_esc01(m: Request) -> None:
    assert m.uri.user == "sips:user@example.com"
    assert m.to.uri.user == "user" and m.from_.uri.user == "I have spaces"
    contact = m.contacts[0]
    assert contact.uri.params.get("lr") == "" and contact.uri.params.get("name") == "value%41"
    assert contact.uri.user == "caller"


def check_escnull(m: Request) -> None:
    assert m.to.uri.user == m.from_.uri.user == "null-\x00-null"
    assert [c.uri.user for c in m.contacts] == ["\x00", "\x00\x00"]


def check_esc02(m: Request) -> None:
    assert m.method == "RE%47IST%45R"  # not REGISTER: methods are not unescaped
    assert m.to.display_name == m.from_.display_name == "%Z%45"
    assert len(m.contacts) == 2


def check_longreq(m: Request) -> None:
    assert len(m.via) == 34 and m.via[-1].received == "192.0.2.5"
    assert m.to.display_name is not None and "extremeextreme" in m.to.display_name
    assert m.from_.uri.user is not None and len(m.from_.uri.user) > 100
    assert len(m.body) == 150


def check_dblreq(m: Request) -> None:
    assert m.method == "REGISTER" and m.body == b""  # the INVITE after it is ignored


def check_semiuri(m: Request) -> None:
    assert m.uri.user == "user;par=u@example.net" and m.uri.host == "example.com"


def check_transports(m: Request) -> None:
    assert [v.transport for v in m.via] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]


def check_mpart01(m: Request) -> None:
    assert m.content_type == "multipart/mixed" and len(m.body) == 553
    assert m.top_via.rport_requested and m.top_via.rport is None


def check_unreason(m: Response) -> None:
    assert m.status == 200
    assert m.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"


def check_noreason(m: Response) -> None:
    assert m.status == 100 and m.reason == ""


VALID: dict[str, Callable[..., object]] = {
    "wsinv.dat": check_wsinv,
    "intmeth.dat": check_intmeth,
    "esc01.dat": check_esc01,
    "escnull.dat": check_escnull,
    "esc02.dat": check_esc02,
    "lwsdisp.dat": lambda m: m.from_.display_name == "caller",
    "longreq.dat": check_longreq,
    "dblreq.dat": check_dblreq,
    "semiuri.dat": check_semiuri,
    "transports.dat": check_transports,
    "mpart01.dat": check_mpart01,
    "unreason.dat": check_unreason,
    "noreason.dat": check_noreason,
    # §3.3 and §3.4: well-formed, judged above the parser (see APPLICATION below)
    "badbranch.dat": lambda m: not m.top_via.rfc3261_branch,
    "bcast.dat": lambda m: m.via[1].host == "255.255.255.255",
    "bext01.dat": lambda m: None,
    "invut.dat": lambda m: None,
    "regaut01.dat": lambda m: None,
    "cparam01.dat": lambda m: None,
    "cparam02.dat": lambda m: None,
    "regescrt.dat": lambda m: None,
    "sdp01.dat": lambda m: None,
    "unkscm.dat": lambda m: None,
    "novelsc.dat": lambda m: None,
    "unksm2.dat": lambda m: None,
    "zeromf.dat": lambda m: None,
    "inv2543.dat": lambda m: None,
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_torture_message_parses(name: str) -> None:
    msg = parse(load(name))
    assert VALID[name](msg) in (None, True)
    read_everything(msg)


def test_rfc2543_invite_parses_without_branch_or_max_forwards() -> None:
    m = req("inv2543.dat")
    assert m.top_via.branch is None and not m.top_via.rfc3261_branch
    assert m.max_forwards is None and len(m.body) == 105


def test_contact_parameters_and_escaped_uri_headers_survive() -> None:
    # cparam01: bare addr-spec, so ;unknownparam is a header parameter; cparam02: in <>.
    assert "unknownparam" in req("cparam01.dat").contacts[0].params
    assert "unknownparam" in req("cparam02.dat").contacts[0].uri.params
    route = req("regescrt.dat").contacts[0].uri.header("Route")
    assert route == "<sip:sip.example.com>"


def test_unknown_schemes_in_header_fields_are_opaque_uris() -> None:
    m = req("unksm2.dat")
    assert m.to.uri.scheme == "isbn" and m.to.uri.opaque == "2983792873"
    assert str(m.from_.uri) == "http://www.example.com"


# --- RFC 4475 §3.1.2 (and §3.3 ones a parser refuses): invalid messages ----------------

INVALID: dict[str, tuple[int, str]] = {
    "badinv01.dat": (400, "Via: empty element"),
    "clerr.dat": (400, "Content-Length 9999 exceeds"),
    "ncl.dat": (400, "Content-Length"),
    "scalar02.dat": (400, "CSeq"),
    "scalarlg.dat": (400, "CSeq"),
    "quotbal.dat": (400, "unterminated quoted string"),
    "ltgtruri.dat": (400, "Request-URI enclosed in '<>'"),
    "lwsruri.dat": (400, "single spaces"),
    "lwsstart.dat": (400, "single spaces"),
    "trws.dat": (400, "single spaces"),
    "escruri.dat": (400, "URI headers"),
    "baddate.dat": (400, "Date"),
    "regbadct.dat": (400, "must be enclosed in '<…>'"),
    "badaspec.dat": (400, "whitespace inside '<…>'"),
    "baddn.dat": (400, "display name"),
    "badvers.dat": (505, "SIP/7.0"),
    "mismatch01.dat": (400, "CSeq method INVITE does not match the request's OPTIONS"),
    "mismatch02.dat": (400, "does not match the request's NEWMETHOD"),
    "bigcode.dat": (400, "status code"),
    "insuf.dat": (400, "missing"),
    "multi01.dat": (400, "more than once"),
    "mcl01.dat": (400, "Content-Length given more than once"),
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_torture_message_is_refused(name: str) -> None:
    status, words = INVALID[name]
    with pytest.raises(SipParseError) as info:
        parse(load(name))
    assert info.value.status == status
    assert words in info.value.reason


def test_every_rfc4475_message_has_a_verdict() -> None:
    names = {p.name for p in (TORTURE / "rfc4475").iterdir()}
    assert len(names) == 49
    assert names == set(VALID) | set(INVALID)


def test_scalar02_each_overlarge_field_is_refused_on_its_own() -> None:
    base = load("scalar02.dat").replace(b"36893488147419103232", b"1")
    with pytest.raises(SipParseError, match="Max-Forwards: 300 is over the maximum 255"):
        parse(base)
    base = base.replace(b"Max-Forwards: 300", b"Max-Forwards: 70")
    with pytest.raises(SipParseError, match="Expires"):
        parse(base)


# §3.3: parsed fine, refused by the UA's checks (application_check) or by another layer.
APPLICATION: dict[str, int | None] = {
    "unkscm.dat": 416,
    "novelsc.dat": 416,
    "bext01.dat": 420,
    "invut.dat": 415,
    "sdp01.dat": 406,
    "zeromf.dat": None,  # a UA answers Max-Forwards: 0 normally; only proxies send 483
    "cparam01.dat": None,
    "cparam02.dat": None,
    "regescrt.dat": None,
    "transports.dat": None,
}


@pytest.mark.parametrize("name", sorted(APPLICATION))
def test_application_check_verdict(name: str) -> None:
    verdict = application_check(req(name))
    expected = APPLICATION[name]
    assert (verdict[0] if verdict else None) == expected
    if name == "bext01.dat":
        assert verdict is not None and "nothingSupportsThis" in verdict[1]


def test_unknown_authorization_scheme_is_read_for_the_registrar_to_refuse() -> None:
    (auth,) = req("regaut01.dat").auth("Authorization")
    assert auth.scheme == "NoOneKnowsThisScheme" and auth.get("opaque-data") == "here"


# --- RFC 5118: IPv6 ---------------------------------------------------------------------


def test_rfc5118_ipv6_references() -> None:
    good = req("4.1-ipv6-good.sip")
    assert good.uri.host == "[2001:db8::10]" and good.top_via.host == "[2001:db8::9:1]"
    assert good.contacts[0].uri.host == "[2001:db8::1]"
    with pytest.raises(SipParseError, match=r"IPv6 address '2001:db8::10' without '\[ \]'"):
        parse(load("4.2-ipv6-bad.sip"))
    ambiguous = req("4.3-port-ambiguous.sip")
    assert ambiguous.uri.host == "[2001:db8::10:5070]" and ambiguous.uri.port is None
    unambiguous = req("4.4-port-unambiguous.sip")
    assert unambiguous.uri.host == "[2001:db8::10]" and unambiguous.uri.port == 5070
    assert req("4.5-via-received-param-with-delim.sip").top_via.received == "2001:db8::9:255"
    assert req("4.5-via-received-param-no-delim.sip").top_via.received == "2001:db8::9:255"
    sdp = req("4.6-ipv6-in-sdp.sip")
    assert b"c=IN IP6 2001:db8::20" in sdp.body
    multi = req("4.7-mult-ip-in-header.sip")
    assert [v.sent_by for v in multi.via] == [
        "[2001:db8::9:1]:6050",
        "192.0.2.1",
        "[2001:db8::9:255]",
    ]
    assert multi.via[2].received == "192.0.2.200"
    assert b"c=IN IP6 2001:db8::1" in req("4.8-mult-ip-in-sdp.sip").body
    mapped = req("4.9-ipv4-mapped-ipv6.sip")
    assert mapped.top_via.host == "[::ffff:192.0.2.10]" and mapped.top_via.port == 19823
    # §4.10: the extra colon is read robustly and written back corrected.
    bug = req("4.10-ipv6-bug-abnf-3-colons.sip")
    fixed = req("4.10-ipv6-correct-abnf-2-colons.sip")
    assert bug.uri == fixed.uri and str(bug.uri) == "sip:user@[2001:db8::192.0.2.1]"


# --- round trip ------------------------------------------------------------------------


def all_valid() -> list[bytes]:
    files = [TORTURE / "rfc4475" / n for n in VALID] + sorted((TORTURE / "rfc5118").iterdir())
    out = []
    for f in files:
        try:
            parse(f.read_bytes())
        except SipParseError:
            continue
        out.append(f.read_bytes())
    return out


def summary(m: Request | Response) -> tuple[object, ...]:
    first = (m.method, str(m.uri)) if isinstance(m, Request) else (m.status, m.reason)
    return (*first, list(m.headers), m.body)


@pytest.mark.parametrize("index", range(len(all_valid())))
def test_parse_serialize_parse_is_stable(index: int) -> None:
    data = all_valid()[index]
    once = parse(data)
    wire = once.serialize()
    twice = parse(wire, stream=True)  # serialize always writes Content-Length
    assert summary(twice)[:2] == summary(once)[:2]
    assert twice.body == once.body
    assert parse(twice.serialize()).serialize() == wire


# --- RFC 3261 rules one by one -----------------------------------------------------------

BASIC = (
    "OPTIONS sip:bob@example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776;rport\r\n"
    "Max-Forwards: 70\r\n"
    "To: <sip:bob@example.com>\r\n"
    "From: Alice <sip:alice@example.com>;tag=1928\r\n"
    "Call-ID: a84b4c76e66710\r\n"
    "CSeq: 63104 OPTIONS\r\n"
    "{extra}"
    "Content-Length: 0\r\n\r\n"
)


def basic(extra: str = "") -> bytes:
    return BASIC.format(extra=extra).encode()


def test_compact_forms_and_case_insensitive_names() -> None:
    data = (
        b"INVITE sip:bob@example.com SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        b"t: sip:bob@example.com\r\nf: sip:a@example.com;tag=1\r\ni: abc\r\n"
        b"CSEQ: 1 INVITE\r\nm: <sip:a@h>\r\nc: application/sdp\r\nk: timer\r\n"
        b"s: hi\r\nr: <sip:c@example.com>\r\nb: <sip:d@example.com>\r\nx: 1800\r\n"
        b"o: refer\r\nu: refer\r\ne: gzip\r\ny: abc\r\nl: 3\r\n\r\nv=0"
    )
    m = req_bytes(data)
    assert m.call_id == "abc" and m.headers.get("call-id") == "abc"
    assert m.headers.get("Supported") == "timer" and m.headers.get("k") == "timer"
    assert m.refer_to is not None and m.refer_to.uri.user == "c"
    for name in ("Subject", "Referred-By", "Session-Expires", "Event", "Allow-Events"):
        assert name in m.headers
    assert m.headers.get("Content-Encoding") == "gzip" and m.headers.get("Identity") == "abc"
    assert [n for n, _ in m.headers][:2] == ["Via", "To"]  # written back long-form


def req_bytes(data: bytes) -> Request:
    m = parse(data)
    assert isinstance(m, Request)
    return m


def test_folding_and_whitespace_around_separators() -> None:
    m = req_bytes(basic("Route: <sip:p1@example.com;lr> ,\r\n\t<sip:p2@example.com;lr>\r\n"))
    assert [r.uri.user for r in m.routes] == ["p1", "p2"]
    via = Via.parse("SIP / 2.0 / udp  host.example.com : 5061 ; branch = z9hG4bKx ; rport")
    assert (via.transport, via.host, via.port, via.branch) == (
        "UDP",
        "host.example.com",
        5061,
        "z9hG4bKx",
    )
    assert via.rport_requested


def test_multi_values_across_lines_and_commas_read_the_same() -> None:
    one = req_bytes(basic("Via: SIP/2.0/TCP a;branch=z9hG4bK2, SIP/2.0/TCP b;branch=z9hG4bK3\r\n"))
    assert [v.host for v in one.via] == ["192.0.2.1", "a", "b"]


def test_auth_headers_are_never_split_at_commas() -> None:
    value = (
        'Digest username="bob", realm="biloxi.com", nonce="dcd98b,7102dd2", '
        'uri="sip:bob@biloxi.com", qop=auth, nc=00000001, cnonce="0a4f113b", '
        'response="6629fae49393a05397450978507c4ef1", algorithm=SHA-256'
    )
    m = req_bytes(basic(f'Authorization: {value}\r\nWWW-Authenticate: Digest realm="a,b"\r\n'))
    (auth,) = m.auth()
    assert auth.scheme == "Digest" and auth.get("nonce") == "dcd98b,7102dd2"
    assert auth.get("qop") == "auth" and auth.get("algorithm") == "SHA-256"
    assert "qop" not in auth.quoted and Auth.parse(str(auth)).params == auth.params
    assert m.auth("WWW-Authenticate")[0].get("realm") == "a,b"
    with pytest.raises(SipParseError, match="realm given twice"):
        Auth.parse('Digest realm="a", realm="b"')


def test_reason_replaces_and_refer_to_with_replaces() -> None:
    reason = Reason.sip(200, "Call completed elsewhere")
    assert str(reason) == 'SIP;cause=200;text="Call completed elsewhere"'
    back = Reason.parse('SIP ;cause=200 ;text="Call completed elsewhere"')
    assert (back.protocol, back.cause, back.text) == ("SIP", 200, "Call completed elsewhere")
    refer = NameAddr.parse(
        "<sip:dave@example.com?Replaces=425928%40bobster.example.org%3Bto-tag%3D7743%3Bfrom-tag%3D6472>",
        "Refer-To",
    )
    rep = Replaces.parse(refer.uri.header("Replaces") or "")
    assert (rep.call_id, rep.to_tag, rep.from_tag, rep.early_only) == (
        "425928@bobster.example.org",
        "7743",
        "6472",
        False,
    )
    assert Replaces.parse("abc@h;to-tag=1;from-tag=2;early-only").early_only
    with pytest.raises(SipParseError, match="to-tag and from-tag"):
        Replaces.parse("abc@h;to-tag=1")


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("Max-Forwards: 256\r\n", "Max-Forwards: 256 is over the maximum 255"),
        ("Expires: 4294967296\r\n", "Expires"),
        ("Expires: -1\r\n", "Expires"),
        ("Contact: <sip:a@b>;expires=4294967296\r\n", "Contact expires"),
        ("Contact: *\r\n", "only for REGISTER"),
        ("Content-Type: sdp\r\n", "Content-Type"),
        ("Via: SIP/2.0/UDP h;received=nothost\r\n", "received"),
        ("Via: SIP/2.0/UDP h;ttl=300\r\n", "ttl"),
        ("Via: SIP/2.0/UDP h:70000\r\n", "port"),
        ("To: <sip:x@y>\r\n", "To: appears more than once"),
        ("Bad Name: x\r\n", "header name"),
        ("NoColon\r\n", "without ':'"),
    ],
)
def test_bad_fields_are_named(line: str, words: str) -> None:
    data = basic(line)
    if line.startswith("Max-Forwards"):
        data = data.replace(b"Max-Forwards: 70\r\n", b"")
    with pytest.raises(SipParseError) as info:
        parse(data)
    assert info.value.status == 400 and words in info.value.reason


def test_request_line_and_version_checks() -> None:
    for bad, words in [
        (b"OPTIONS  sip:a@b SIP/2.0", "single spaces"),
        (b"OPTIONS sip:a@b SIP/2.0 ", "single spaces"),
        (b"OPT<IONS sip:a@b SIP/2.0", "not a token"),
        (b"OPTIONS sip:a@b HTTP/1.1", "not a SIP-Version"),
        (b"OPTIONS sip:a@b sip/2.1", "only SIP/2.0"),
        (b"OPTIONS sip:a@b:99999 SIP/2.0", "port"),
        (b"OPTIONS sip:a@b%zz SIP/2.0", "not a host"),
        (b"OPTIONS sip:a%zz@b SIP/2.0", "two hex digits"),
        (b"SIP/2.0 99 Too Low", "status code"),
        (b"SIP/2.0 700 Too High", "status code"),
    ]:
        data = basic().replace(b"OPTIONS sip:bob@example.com SIP/2.0", bad, 1)
        with pytest.raises(SipParseError) as info:
            parse(data)
        assert words in info.value.reason, (bad, info.value.reason)


def test_body_length_on_datagram_and_stream() -> None:
    sdp = b"v=0\r\n"
    base = basic("Content-Type: application/sdp\r\n").replace(
        b"Content-Length: 0", b"Content-Length: 5"
    )
    assert parse(base + sdp + b"garbage").body == sdp  # extra octets of a datagram ignored
    with pytest.raises(SipParseError, match="exceeds the 3 body bytes"):
        parse(base + b"v=0")
    no_length = base.replace(b"Content-Length: 5\r\n", b"")
    assert parse(no_length + sdp).body == sdp  # UDP: the body runs to the datagram's end
    with pytest.raises(SipParseError, match="required over a stream"):
        parse(no_length + sdp, stream=True)


def test_limits_each_refusal_names_its_limit() -> None:
    limits = ParseLimits(
        max_message_bytes=2000, max_body_bytes=100, max_headers=12, max_header_bytes=200
    )
    with pytest.raises(SipParseError, match="at most 12") as info:
        parse(basic("X-A: 1\r\n" * 10), limits=limits)
    assert info.value.status == 400
    with pytest.raises(SipParseError, match="over 200 bytes"):
        parse(basic("Subject: " + "x" * 300 + "\r\n"), limits=limits)
    with pytest.raises(SipParseError, match="at most 2000") as info:
        parse(basic("Subject: x\r\n") + b"x" * 2000, limits=limits)
    assert info.value.status == 513
    big = basic("Content-Type: text/plain\r\n").replace(
        b"Content-Length: 0", b"Content-Length: 150"
    )
    with pytest.raises(SipParseError, match="at most 100") as info:
        parse(big + b"x" * 150, limits=limits)
    assert info.value.status == 413
    # Folded continuation lines count towards the header line limit too.
    with pytest.raises(SipParseError, match="at most 12"):
        parse(basic("Subject: a\r\n" + " b\r\n" * 12), limits=limits)


def test_error_response_answers_a_refused_request() -> None:
    with pytest.raises(SipParseError) as info:
        parse(basic("Max-Forwards: 999\r\n"))
    resp = error_response(info.value)
    assert resp is not None and resp.status == 400 and "Max-Forwards" in resp.reason
    again = parse(resp.serialize())
    assert isinstance(again, Response)
    assert again.top_via.branch == "z9hG4bK776" and again.cseq.number == 63104
    assert again.to.tag  # a tag is added to a To that has none (§8.2.6.2)
    with pytest.raises(SipParseError) as info:
        parse(b"garbage\r\n\r\n")
    assert error_response(info.value) is None


def test_request_response_builds_a_reply() -> None:
    r = req_bytes(basic())
    ok = r.response(200, to_tag="xyz")
    assert ok.reason == "OK" and ok.to.tag == "xyz" and ok.from_.tag == "1928"
    assert parse(ok.serialize()).call_id == "a84b4c76e66710"


# --- URIs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [  # RFC 3261 §19.1.4 equal pairs
        ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
        ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;newparam=5"),
        ("sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
         "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"),
        ("sip:alice@atlanta.com?subject=project%20x&priority=urgent",
         "sip:alice@atlanta.com?priority=urgent&subject=project%20x"),
        ("tel:+1-201-555-0123", "tel:+12015550123"),
    ],
)  # fmt: skip
def test_uri_equal(a: str, b: str) -> None:
    assert parse_uri(a) == parse_uri(b) and hash(parse_uri(a)) == hash(parse_uri(b))


@pytest.mark.parametrize(
    ("a", "b"),
    [  # RFC 3261 §19.1.4 unequal pairs
        ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
        ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
        ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
        ("sip:alice@atlanta.com", "sips:alice@atlanta.com"),
    ],
)
def test_uri_not_equal(a: str, b: str) -> None:
    assert parse_uri(a) != parse_uri(b)


def test_uri_fields_and_escaping() -> None:
    u = parse_uri("sips:al%20ice:pw@[2001:DB8::1]:5061;transport=tls;lr?Subject=a%26b&X=1")
    assert (u.scheme, u.user, u.password, u.host, u.port) == (
        "sips",
        "al ice",
        "pw",
        "[2001:db8::1]",
        5061,
    )
    assert u.params.get("lr") == "" and u.header("subject") == "a&b"
    assert str(u) == "sips:al%20ice:pw@[2001:db8::1]:5061;transport=tls;lr?Subject=a%26b&X=1"
    assert parse_uri(str(u)) == u
    tel = parse_uri("tel:+1-201-555-0123;phone-context=example.com")
    assert tel.user == "+1-201-555-0123" and tel.params.get("phone-context") == "example.com"
    built = Uri("sip", user="a@b;c", host="example.com")
    assert str(built) == "sip:a%40b;c@example.com" and parse_uri(str(built)).user == "a@b;c"
    for bad in ["sip:", "sip:a@", "sip:a@b:x", "sip:[::1", "sip:a b@c", "sip:a@b;", "nocolon"]:
        with pytest.raises(SipParseError):
            parse_uri(bad)


# --- stream framing (§18.3) and keep-alives (RFC 5626) --------------------------------------


def test_framer_cuts_messages_split_anywhere_and_answers_pings() -> None:
    body = b"v=0\r\n"
    one = (
        basic("Content-Type: application/sdp\r\n").replace(
            b"Content-Length: 0", b"Content-Length: 5"
        )
        + body
    )
    two = basic()
    stream = PING + one + b"\r\n" + two + PING + one
    framer = StreamFramer()
    got: list[bytes | SipParseError] = []
    for i in range(len(stream)):  # one byte at a time: the worst case for a framer
        got += framer.feed(stream[i : i + 1])
    assert got == [PING, one, two, PING, one]
    assert framer.buffered == 0
    framer = StreamFramer()
    assert framer.feed(stream) == [PING, one, two, PING, one]
    assert parse(one, stream=True).body == body


def test_framer_fails_without_content_length_and_over_limits() -> None:
    framer = StreamFramer()
    items = framer.feed(basic() + basic().replace(b"Content-Length: 0\r\n", b""))
    assert items[0] == basic()
    err = items[1]
    assert isinstance(err, SipParseError) and "Content-Length is required" in err.reason
    resp = error_response(err)
    assert resp is not None and resp.status == 400  # answerable before closing
    assert framer.feed(basic()) == [err]  # the stream stays failed
    small = StreamFramer(ParseLimits(max_message_bytes=1000, max_body_bytes=100))
    (e,) = small.feed(b"OPTIONS sip:a@b SIP/2.0\r\nSubject: " + b"x" * 1200)
    assert isinstance(e, SipParseError) and e.status == 513
    small = StreamFramer(ParseLimits(max_message_bytes=1000, max_body_bytes=100))
    (e,) = small.feed(basic().replace(b"Content-Length: 0", b"Content-Length: 500"))
    assert isinstance(e, SipParseError) and e.status == 413


# --- fuzz ------------------------------------------------------------------------------------


def read_everything(msg: Message) -> None:
    """Every typed accessor; each may raise SipParseError and nothing else."""
    for attr in ("via", "from_", "to", "call_id", "cseq", "contacts", "routes",
                 "record_routes", "max_forwards", "expires", "content_type", "reasons",
                 "refer_to", "replaces"):  # fmt: skip
        try:
            getattr(msg, attr)
        except SipParseError:
            pass
    for name in ("Authorization", "WWW-Authenticate"):
        try:
            msg.auth(name)
        except SipParseError:
            pass
    try:
        for contact in msg.contacts:
            contact.expires  # noqa: B018
    except SipParseError:
        pass
    if isinstance(msg, Request):
        application_check(msg)
    msg.serialize()


TOKENS = [
    *(bytes([c]) for c in b" \t:;,<>\"\\%@[]=?*\x00\xff\r\n"),
    b"\r\n", b"%0", b"\r\n ", b"SIP/2.0", b"Content-Length: 99999\r\n", b"l: -1\r\n",
    b"v: SIP/2.0/UDP [::1]\r\n",
]  # fmt: skip


def mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        pos = rng.randrange(len(buf) + 1)
        op = rng.random()
        if op < 0.3:
            del buf[pos : pos + rng.randint(1, 8)]
        elif op < 0.6:
            buf[pos:pos] = rng.choice(TOKENS)
        elif op < 0.8 and buf:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        else:
            start = rng.randrange(len(buf) + 1)
            buf[pos:pos] = buf[start : start + rng.randint(1, 40)]
    return bytes(buf)


def test_fuzzed_torture_messages_raise_only_sip_parse_errors() -> None:
    rng = random.Random(11)
    corpus = [*all_valid(), basic()]
    deadline = time.monotonic() + 20
    parsed = refused = 0
    for _ in range(4000):
        if time.monotonic() > deadline:
            break
        data = mutate(rng.choice(corpus), rng)
        try:
            msg = parse(data, stream=rng.random() < 0.2)
        except SipParseError as exc:
            refused += 1
            assert exc.reason and 400 <= exc.status < 600
            error_response(exc)
        else:
            parsed += 1
            read_everything(msg)
        framer = StreamFramer()
        cut = rng.randrange(len(data) + 1)
        framer.feed(data[:cut])
        framer.feed(data[cut:])
    assert parsed > 100 and refused > 100, (parsed, refused)
