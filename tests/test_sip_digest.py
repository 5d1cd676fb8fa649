"""Digest authentication for SIP (callbridge.sip.digest): RFC 7616 vectors, nonces, replays,
and the registrar's handling of failures (rate limit, fail2ban line)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest

from callbridge.abuse import SourceGuard
from callbridge.sip import Headers, Request, parse_uri
from callbridge.sip.digest import (
    ALGORITHMS,
    Algorithm,
    Credentials,
    DigestError,
    NonceMint,
    NonceState,
    ReplayGuard,
    Verdict,
    algorithm_order,
    challenges,
    ha1,
    parse_credentials,
    response,
    verify,
)
from callbridge.sip.headers import Auth
from callbridge.sip.registrar import Registrar, Source, _safe
from callbridge.store import Store

# RFC 7616 §3.9.1: the same request answered with SHA-256 and with MD5.
RFC = {
    "username": "Mufasa",
    "realm": "http-auth@example.org",
    "password": "Circle of Life",
    "method": "GET",
    "uri": "/dir/index.html",
    "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    "opaque": "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS",
}
RFC_RESPONSES = {
    "MD5": "8ca523f5e9506fed4657c9700eebdbec",
    "SHA-256": "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
}
SECRET = b"s" * 32


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_the_rfc_7616_examples_reproduce_exactly(algorithm: str) -> None:
    assert algorithm in ("MD5", "SHA-256")
    secret = ha1(RFC["username"], RFC["realm"], RFC["password"], algorithm)  # type: ignore[arg-type]
    got = response(
        secret,
        algorithm,  # type: ignore[arg-type]
        RFC["method"],
        RFC["uri"],
        RFC["nonce"],
        qop="auth",
        nc="00000001",
        cnonce=RFC["cnonce"],
    )
    assert got == RFC_RESPONSES[algorithm]


def test_the_rfc_7616_authorization_header_parses() -> None:
    value = (
        f'Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", '
        f'algorithm=SHA-256, nonce="{RFC["nonce"]}", nc=00000001, cnonce="{RFC["cnonce"]}", '
        f'qop=auth, response="{RFC_RESPONSES["SHA-256"]}", opaque="{RFC["opaque"]}"'
    )
    creds = parse_credentials(value)
    assert (creds.username, creds.realm, creds.algorithm, creds.qop, creds.nc) == (
        "Mufasa",
        "http-auth@example.org",
        "SHA-256",
        "auth",
        "00000001",
    )
    assert creds.response == RFC_RESPONSES["SHA-256"]
    assert creds.opaque == RFC["opaque"]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ('Basic dXNlcjpwYXNz', "is not Digest"),
        ('Digest username="a", realm="r", nonce="n", uri="sip:x"', "lacks response"),
        ('Digest username="a", realm="r", nonce="n", uri="sip:x", response="0", '
         'algorithm=SHA-512-256', "algorithm 'SHA-512-256' is not supported"),
        ('Digest username="a", realm="r", nonce="n", uri="sip:x", response="0", '
         'qop=auth-int, nc=00000001, cnonce="c"', "qop 'auth-int' is not supported"),
        ('Digest username="a", realm="r", nonce="n", uri="sip:x", response="0", qop=auth',
         "lacks nc or cnonce"),
        ('Digest username="a", realm="r", nonce="n", uri="sip:x", response="0", qop=auth, '
         'nc=1, cnonce="c"', "nc is not 8 hex digits"),
        ('Digest username="a", username="b"', "given twice"),
        ('Digest username="a", realm="r", nonce="n", uri="sip:x", response="0", '
         'userhash=true', "userhash is not supported"),
        ("Digest " + "x" * 5000, "too long"),
    ],
)  # fmt: skip
def test_malformed_credentials_are_refused_with_a_reason(value: str, reason: str) -> None:
    with pytest.raises(DigestError) as caught:
        parse_credentials(value)
    assert reason in caught.value.reason


def test_challenges_offer_sha256_first_then_md5() -> None:
    values = challenges("example.org", "abc", stale=True)
    parsed = [Auth.parse(v, "WWW-Authenticate") for v in values]
    assert [p.get("algorithm") for p in parsed] == ["SHA-256", "MD5"]
    assert all(p.get("realm") == "example.org" and p.get("qop") == "auth" for p in parsed)
    assert all(p.get("stale") == "true" for p in parsed)
    assert all(p.get("stale") is None for p in map(Auth.parse, challenges("e", "n")))


def test_nonces_are_ours_for_their_realm_and_go_stale() -> None:
    clock = Clock()
    mint = NonceMint(SECRET, lifetime=300, clock=clock)
    nonce = mint.make("example.org")
    assert mint.check("example.org", nonce) is NonceState.VALID
    assert mint.check("other.org", nonce) is NonceState.FORGED
    assert NonceMint(b"t" * 32, clock=clock).check("example.org", nonce) is NonceState.FORGED
    stamp, salt, mac = nonce.split(".")
    assert mint.check("example.org", f"{int(stamp, 16) + 1:x}.{salt}.{mac}") is NonceState.FORGED
    assert mint.check("example.org", "garbage") is NonceState.FORGED
    clock.now += 301
    assert mint.check("example.org", nonce) is NonceState.STALE


def _signed(
    mint: NonceMint,
    password: str = "secret123",
    *,
    algorithm: Algorithm = "SHA-256",
    nc: str = "00000001",
    realm: str = "example.org",
    nonce: str | None = None,
) -> Credentials:
    nonce = nonce or mint.make("example.org")
    key = ha1("alice", realm, password, algorithm)
    digest = response(
        key, algorithm, "REGISTER", "sip:example.org", nonce, qop="auth", nc=nc, cnonce="xyz"
    )
    return Credentials(
        "alice", realm, nonce, "sip:example.org", digest, algorithm, "auth", nc, "xyz"
    )


def _check(creds: Credentials, mint: NonceMint, replays: ReplayGuard) -> Verdict:
    stored = {a: ha1("alice", "example.org", "secret123", a) for a in ALGORITHMS}
    return verify(
        creds,
        method="REGISTER",
        request_uri="sip:example.org",
        realm="example.org",
        mint=mint,
        replays=replays,
        stored_ha1=lambda a: stored[a],
    )


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_a_right_response_passes_and_its_replay_is_stale(algorithm: Algorithm) -> None:
    clock = Clock()
    mint, replays = NonceMint(SECRET, clock=clock), ReplayGuard()
    first = _signed(mint, algorithm=algorithm)
    assert _check(first, mint, replays) is Verdict.OK
    assert _check(first, mint, replays) is Verdict.STALE  # the same nc again: a replay
    again = _signed(mint, algorithm=algorithm, nc="00000002", nonce=first.nonce)
    assert _check(again, mint, replays) is Verdict.OK  # the next nc on the same nonce
    clock.now += 301
    later = _signed(mint, algorithm=algorithm, nc="00000003", nonce=first.nonce)
    assert _check(later, mint, replays) is Verdict.STALE  # expired: stale=true


def test_wrong_password_realm_and_forged_nonce_are_told_apart() -> None:
    mint, replays = NonceMint(SECRET, clock=Clock()), ReplayGuard()
    assert _check(_signed(mint, "wrong-pass"), mint, replays) is Verdict.WRONG_PASSWORD
    assert _check(_signed(mint, realm="other.org"), mint, replays) is Verdict.WRONG_REALM
    forged = _signed(mint, nonce="1.2.3")
    assert _check(forged, mint, replays) is Verdict.FORGED_NONCE
    # A wrong guess does not burn the nonce count of the right client.
    nonce = mint.make("example.org")
    assert _check(_signed(mint, "bad-guess", nonce=nonce), mint, replays) is Verdict.WRONG_PASSWORD
    assert _check(_signed(mint, nonce=nonce), mint, replays) is Verdict.OK


def test_the_replay_memory_is_bounded_and_forgets_expired_nonces() -> None:
    replays = ReplayGuard(capacity=3, lifetime=10)
    for i in range(5):
        assert replays.fresh(f"n{i}", "00000001", now=0.0)
    assert len(replays._seen) == 3
    assert replays.fresh("late", None, now=100.0)
    assert list(replays._seen) == ["late"]
    assert not replays.fresh("late", None, now=100.0)  # without qop: single use


# the registrar's side: rate limit and log line ---------------------------------------------
@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'cb.db'}") as opened:
        await opened.add_user("alice", "201")
        await opened.set_sip_password("alice", "secret123", "127.0.0.1")
        yield opened


def _register(authorization: str | None = None, cseq: int = 1) -> Request:
    headers = [
        ("Via", "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1;rport"),
        ("From", "<sip:alice@127.0.0.1>;tag=a1"),
        ("To", "<sip:alice@127.0.0.1>"),
        ("Call-ID", "digest-test"),
        ("CSeq", f"{cseq} REGISTER"),
        ("Contact", "<sip:alice@127.0.0.1:5070>"),
    ]
    if authorization:
        headers.append(("Authorization", authorization))
    return Request("REGISTER", parse_uri("sip:127.0.0.1"), Headers(headers))


def _answer(challenge: str, password: str, nc: str = "00000001") -> str:
    auth = Auth.parse(challenge, "WWW-Authenticate")
    algorithm = cast(Algorithm, auth.get("algorithm") or "MD5")
    nonce = auth.get("nonce") or ""
    key = ha1("alice", "127.0.0.1", password, algorithm)
    digest = response(
        key, algorithm, "REGISTER", "sip:127.0.0.1", nonce, qop="auth", nc=nc, cnonce="c0ffee"
    )
    return (
        f'Digest username="alice", realm="127.0.0.1", nonce="{nonce}", uri="sip:127.0.0.1", '
        f'response="{digest}", algorithm={algorithm}, qop=auth, nc={nc}, cnonce="c0ffee"'
    )


async def test_repeated_wrong_passwords_from_one_source_get_403_and_a_fail2ban_line(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    guard = SourceGuard(max_connections_per_source=32, login_failures_per_minute=3)
    registrar = await Registrar.open(store, "127.0.0.1", guard=guard)
    source = Source("UDP", "192.0.2.7", 5070)
    caplog.set_level(logging.WARNING, logger="callbridge.abuse")
    statuses = []
    for cseq in range(1, 4):
        challenge = await registrar.register(_register(cseq=2 * cseq), source)
        assert challenge.status == 401
        value = challenge.headers.get_all("WWW-Authenticate")[0]
        answer = await registrar.register(
            _register(_answer(value, "not-it-123"), 2 * cseq + 1), source
        )
        statuses.append(answer.status)
    assert statuses == [401, 401, 403]  # the third failure reaches the limit
    lines = [r.getMessage() for r in caplog.records if r.name == "callbridge.abuse"]
    assert lines[0] == "login failed from 192.0.2.7: sip: REGISTER 'alice': wrong password"
    # The right password from the blocked source is refused too, before any password work...
    blocked = await registrar.register(_register(cseq=9), source)
    assert blocked.status == 403 and "too many failed logins" in blocked.reason
    refused = caplog.records[-1].getMessage()
    assert refused == "refused from 192.0.2.7: sip: REGISTER: blocked"
    # ... while another source is served.
    other = Source("UDP", "192.0.2.8", 5070)
    challenge = await registrar.register(_register(cseq=10), other)
    value = challenge.headers.get_all("WWW-Authenticate")[1]  # MD5 this time
    ok = await registrar.register(_register(_answer(value, "secret123"), 11), other)
    assert ok.status == 200


async def test_an_unknown_user_looks_like_a_wrong_password(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    registrar = await Registrar.open(store, "127.0.0.1", guard=SourceGuard(32, 10))
    caplog.set_level(logging.WARNING, logger="callbridge.abuse")
    challenge = await registrar.register(_register(), Source("TCP", "192.0.2.9", 4000))
    value = challenge.headers.get_all("WWW-Authenticate")[0]
    forged = _answer(value, "whatever1").replace('username="alice"', 'username="' + "m" * 99 + '"')
    answer = await registrar.register(_register(forged, 2), Source("TCP", "192.0.2.9", 4000))
    assert answer.status == 401 and answer.headers.get_all("WWW-Authenticate")
    line = caplog.records[-1].getMessage()
    # The peer's text is quoted and cut short: one bounded line whatever it sent.
    assert line == f"login failed from 192.0.2.9: sip: REGISTER '{'m' * 64}': wrong password"
    assert _safe("a\nb") == "'a\\nb'"


def _check_for(creds: Credentials, request_uri: str) -> Verdict:
    mint = NonceMint(SECRET, clock=Clock())
    stored = {a: ha1("alice", "example.org", "secret123", a) for a in ALGORITHMS}
    return verify(
        creds,
        method="INVITE",
        request_uri=request_uri,
        realm="example.org",
        mint=mint,
        replays=ReplayGuard(),
        stored_ha1=lambda a: stored[a],
    )


@pytest.mark.parametrize(
    ("digest_uri", "request_uri", "verdict"),
    [
        # SIPp 3.6 signs its INVITEs with the server's address, not the Request-URI.
        ("sip:example.org:5060", "sip:1001@example.org:5060", Verdict.OK),
        ("sip:1001@example.org:5060", "sip:1001@example.org:5060", Verdict.OK),
        # Another server, port, scheme or user: a response made for another target.
        ("sip:other.org:5060", "sip:1001@example.org:5060", Verdict.URI_MISMATCH),
        ("sip:example.org:5070", "sip:1001@example.org:5060", Verdict.URI_MISMATCH),
        ("sips:example.org:5060", "sip:1001@example.org:5060", Verdict.URI_MISMATCH),
        ("sip:1002@example.org:5060", "sip:1001@example.org:5060", Verdict.URI_MISMATCH),
        ("not a uri", "sip:1001@example.org:5060", Verdict.URI_MISMATCH),
    ],
)
def test_the_digest_uri_may_name_the_server_but_no_other_target(
    digest_uri: str, request_uri: str, verdict: Verdict
) -> None:
    mint = NonceMint(SECRET, clock=Clock())
    nonce = mint.make("example.org")
    key = ha1("alice", "example.org", "secret123", "MD5")
    digest = response(
        key, "MD5", "INVITE", digest_uri, nonce, qop="auth", nc="00000001", cnonce="c"
    )
    creds = Credentials(
        "alice", "example.org", nonce, digest_uri, digest, "MD5", "auth", "00000001", "c"
    )
    assert _check_for(creds, request_uri) is verdict


def test_sipp_is_offered_md5_only() -> None:
    assert algorithm_order("SIPp register.xml") == ("MD5",)
