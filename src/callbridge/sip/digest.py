"""HTTP Digest authentication for SIP (RFC 3261 §22, RFC 7616, RFC 8760).

What a registrar (or any SIP server part that challenges) needs, and nothing about messages:

- :func:`ha1` — ``H(username ":" realm ":" password)``, the only form in which a SIP password
  is stored (one for MD5, one for SHA-256). An HA1 is password-equivalent *for its realm*, so it
  is a secret too, but it is useless in another realm and does not reveal the password.
- :func:`parse_credentials` — the ``Authorization`` / ``Proxy-Authorization`` header value
  (RFC 7616 §3.4, read by :class:`callbridge.sip.headers.Auth`) as :class:`Credentials`; a
  malformed one raises :class:`DigestError` with a reason phrase that names the problem.
- :class:`NonceMint` — stateless nonces: ``time ‖ salt ‖ HMAC-SHA-256(secret, realm ‖ time ‖
  salt)``. Any node that shares the secret (it is kept in the store) can check a nonce; an
  expired one gets ``stale=true`` (RFC 7616 §3.3) so the UA retries with the same password
  instead of asking its user. Replayed nonce counts are caught by a bounded memory of the
  highest ``nc`` seen per nonce (RFC 7616 §3.4: "nc ... allows the server to detect request
  replays"); a nonce used without ``qop`` is single-use.
- :func:`challenges` — the ``WWW-Authenticate`` values: SHA-256 first, then MD5 (RFC 8760
  §2.4: a UAS offering several algorithms sends one header per algorithm, most preferred first).
- :func:`verify` — checks a response against stored HA1s and answers a :class:`Verdict`.

The ``-sess`` algorithms, ``qop=auth-int`` and ``userhash`` are not offered, and credentials
using them are refused with a reason (docs/sip.md). Rate limiting of failures and the log line
are the caller's (:mod:`callbridge.sip.registrar`, with :class:`callbridge.abuse.SourceGuard`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from callbridge.errors import CallbridgeError
from callbridge.sip.headers import Auth
from callbridge.sip.syntax import SipParseError
from callbridge.sip.uri import parse_uri

__all__ = [
    "ALGORITHMS",
    "NONCE_LIFETIME",
    "Algorithm",
    "Credentials",
    "DigestError",
    "NonceMint",
    "NonceState",
    "ReplayGuard",
    "Verdict",
    "algorithm_order",
    "challenges",
    "ha1",
    "parse_credentials",
    "response",
    "verify",
]

Algorithm = Literal["SHA-256", "MD5"]
# Most preferred first: the order of the challenges (RFC 8760 §2.4).
ALGORITHMS: tuple[Algorithm, ...] = ("SHA-256", "MD5")
_HASHES: dict[str, Callable[[bytes], str]] = {
    "MD5": lambda data: hashlib.md5(data, usedforsecurity=False).hexdigest(),
    "SHA-256": lambda data: hashlib.sha256(data).hexdigest(),
}
NONCE_LIFETIME = 300.0  # seconds a nonce is accepted; older ones are answered stale=true
_SALT_BYTES = 8
_MAC_BYTES = 16  # HMAC-SHA-256 truncated to 128 bits: forging one is 2^128 work
_MAX_HEADER = 4096  # an Authorization value longer than this is refused unread
_MAX_PARAM = 1024  # any single parameter value
_NC = re.compile(r"[0-9a-fA-F]{8}")


class DigestError(CallbridgeError):
    """Credentials that cannot be checked; ``reason`` is fit for a SIP reason phrase."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _hash(algorithm: str, text: str) -> str:
    return _HASHES[algorithm](text.encode("utf-8"))


def ha1(username: str, realm: str, password: str, algorithm: Algorithm) -> str:
    """``H(username:realm:password)`` as lowercase hex (RFC 7616 §3.4.2)."""
    return _hash(algorithm, f"{username}:{realm}:{password}")


def response(
    ha1_hex: str,
    algorithm: Algorithm,
    method: str,
    uri: str,
    nonce: str,
    *,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
) -> str:
    """The ``response`` a client computes (RFC 7616 §3.4.1; without ``qop``, RFC 2069 as
    RFC 3261 §22.4 still allows)."""
    ha2 = _hash(algorithm, f"{method}:{uri}")
    if qop is None:
        return _hash(algorithm, f"{ha1_hex}:{nonce}:{ha2}")
    return _hash(algorithm, f"{ha1_hex}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


@dataclass(frozen=True, slots=True)
class Credentials:
    """A parsed ``Authorization: Digest ...`` value (RFC 7616 §3.4)."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: Algorithm
    qop: str | None = None
    nc: str | None = None
    cnonce: str | None = None
    opaque: str | None = None


def parse_credentials(value: str) -> Credentials:
    """Parse a ``Digest`` credentials header value; :class:`DigestError` says what is wrong."""
    if len(value) > _MAX_HEADER:
        raise DigestError("Authorization header too long")
    scheme = value.strip().split(None, 1)[0] if value.strip() else ""
    if scheme.lower() != "digest":  # another scheme's credentials need not parse as params
        raise DigestError(f"Authorization scheme {scheme[:20]!r} is not Digest")
    try:
        auth = Auth.parse(value)
    except SipParseError as exc:
        raise DigestError(exc.reason) from None
    params = auth.params
    too_long = next((name for name, v in params.items() if len(v) > _MAX_PARAM), None)
    if too_long is not None:
        raise DigestError(f"Authorization {too_long} is too long")
    missing = [p for p in ("username", "realm", "nonce", "uri", "response") if p not in params]
    if missing:
        raise DigestError(f"Authorization lacks {', '.join(missing)}")
    if params.get("userhash", "false").lower() == "true":
        raise DigestError("Authorization userhash is not supported")
    algorithm = params.get("algorithm", "MD5")  # MD5 when absent (RFC 7616 §3.3)
    canonical = next((a for a in ALGORITHMS if a.lower() == algorithm.lower()), None)
    if canonical is None:
        raise DigestError(f"Authorization algorithm {algorithm[:20]!r} is not supported")
    qop = params.get("qop")
    nc = params.get("nc")
    cnonce = params.get("cnonce")
    if qop is not None:
        if qop.lower() != "auth":
            raise DigestError(f"Authorization qop {qop[:20]!r} is not supported")
        if nc is None or cnonce is None:
            raise DigestError("Authorization with qop lacks nc or cnonce")
        if not _NC.fullmatch(nc):
            raise DigestError("Authorization nc is not 8 hex digits")
        qop = "auth"
    return Credentials(
        username=params["username"],
        realm=params["realm"],
        nonce=params["nonce"],
        uri=params["uri"],
        response=params["response"].lower(),
        algorithm=canonical,
        qop=qop,
        nc=nc.lower() if nc is not None else None,
        cnonce=cnonce,
        opaque=params.get("opaque"),
    )


class NonceState(StrEnum):
    """What a nonce is worth."""

    VALID = "valid"  # made by a node sharing the secret, for this realm, still fresh
    STALE = "stale"  # genuine but older than the lifetime: challenge again with stale=true
    FORGED = "forged"  # not one of ours (or for another realm)


class NonceMint:
    """Makes and checks stateless nonces (the secret is shared through the store)."""

    def __init__(
        self,
        secret: bytes,
        lifetime: float = NONCE_LIFETIME,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("the nonce secret must be at least 16 bytes")
        self._secret = secret
        self.lifetime = lifetime
        self.clock = clock

    def _mac(self, realm: str, stamp: str, salt: str) -> str:
        data = f"{realm}\x00{stamp}\x00{salt}".encode()
        return hmac.new(self._secret, data, hashlib.sha256).hexdigest()[: 2 * _MAC_BYTES]

    def make(self, realm: str) -> str:
        """A new nonce for ``realm``: hex time, salt and MAC (no characters to escape)."""
        stamp = f"{int(self.clock()):x}"
        salt = secrets.token_hex(_SALT_BYTES)
        return f"{stamp}.{salt}.{self._mac(realm, stamp, salt)}"

    def check(self, realm: str, nonce: str) -> NonceState:
        parts = nonce.split(".")
        if len(parts) != 3 or len(parts[0]) > 16:
            return NonceState.FORGED
        stamp, salt, mac = parts
        if not hmac.compare_digest(self._mac(realm, stamp, salt), mac):
            return NonceState.FORGED
        try:
            made = int(stamp, 16)
        except ValueError:
            return NonceState.FORGED
        age = self.clock() - made
        # A nonce from the future (clocks of nodes apart) is accepted within the lifetime.
        return NonceState.VALID if -self.lifetime <= age <= self.lifetime else NonceState.STALE


class ReplayGuard:
    """The highest ``nc`` seen per nonce, for nonces still alive (bounded memory).

    Forgetting is safe in one direction only: a nonce pushed out by ``capacity`` newer ones
    could be replayed until it expires. ``capacity`` is sized so that only a flood of valid
    logins (which needs passwords) can push one out.
    """

    def __init__(self, capacity: int = 100_000, lifetime: float = NONCE_LIFETIME) -> None:
        self.capacity = capacity
        self.lifetime = lifetime
        self._seen: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def fresh(self, nonce: str, nc: str | None, now: float) -> bool:
        """Record this use of ``nonce``; False if it repeats (or goes below) an earlier ``nc``.

        Without ``qop`` there is no ``nc``: such a nonce may be used once.
        """
        while self._seen:  # drop what has expired (oldest first)
            first, (since, _) = next(iter(self._seen.items()))
            if now - since <= self.lifetime:
                break
            del self._seen[first]
        count = int(nc, 16) if nc is not None else 0
        seen = self._seen.get(nonce)
        if seen is not None:
            if nc is None or count <= seen[1]:
                return False
            self._seen[nonce] = (seen[0], count)
            return True
        if len(self._seen) >= self.capacity:
            self._seen.popitem(last=False)
        self._seen[nonce] = (now, count)
        return True


def challenges(
    realm: str, nonce: str, *, stale: bool = False, order: tuple[Algorithm, ...] = ALGORITHMS
) -> list[str]:
    """``WWW-Authenticate`` values, one per algorithm, SHA-256 first (RFC 8760 §2.4) unless
    ``order`` says otherwise (see :func:`algorithm_order`)."""
    tail = ", stale=true" if stale else ""
    return [
        f'Digest realm="{_quote(realm)}", nonce="{nonce}", algorithm={algorithm}, qop="auth"{tail}'
        for algorithm in order
    ]


# User agents that fail on any challenge whose algorithm is not MD5 instead of taking the
# topmost one they support (RFC 8760 §2.4). Measured: baresip 1.0 (libre) reads every
# WWW-Authenticate and answers "Register: Function not implemented" if one is SHA-256,
# whatever the order. SIPp 3.6 stops its scenario with "createAuthHeader: authentication must
# use MD5" when the first challenge is SHA-256 (its scenarios send "User-Agent: SIPp ...").
_MD5_ONLY_AGENTS = ("baresip v0.", "baresip v1.", "SIPp")


def algorithm_order(user_agent: str | None) -> tuple[Algorithm, ...]:
    """The algorithms to offer ``user_agent``, most preferred first: SHA-256 then MD5, or
    MD5 alone to the known agents that cannot skip a challenge they do not understand."""
    if user_agent is not None and user_agent.startswith(_MD5_ONLY_AGENTS):
        return ("MD5",)
    return ALGORITHMS


def _same_target(digest_uri: str, request_uri: str) -> bool:
    """Whether a digest-uri names the request's target (RFC 7616 §3.4.6). Exactly the
    Request-URI, or (as Asterisk and Kamailio accept) a URI without a user part naming the same
    host and port: SIPp 3.6 always sends ``uri="sip:HOST:PORT"`` of the server it talks to. A
    response made for another server never passes."""
    if digest_uri == request_uri:
        return True
    try:
        digest, target = parse_uri(digest_uri), parse_uri(request_uri)
    except SipParseError:
        return False
    return (
        digest.user is None
        and digest.scheme == target.scheme
        and digest.host.lower() == target.host.lower()
        and digest.port == target.port
    )


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


class Verdict(StrEnum):
    """The outcome of :func:`verify`; every one but ``OK`` is answered with a new challenge."""

    OK = "ok"
    STALE = "stale"  # the nonce expired or its nc was replayed: stale=true, not a failure
    WRONG_REALM = "wrong realm"
    FORGED_NONCE = "unknown nonce"
    URI_MISMATCH = "digest uri is not the Request-URI"
    NO_CREDENTIALS = "no SIP password"
    WRONG_PASSWORD = "wrong password"


def verify(
    credentials: Credentials,
    *,
    method: str,
    request_uri: str,
    realm: str,
    mint: NonceMint,
    replays: ReplayGuard,
    stored_ha1: Callable[[Algorithm], str | None],
) -> Verdict:
    """Check ``credentials`` for a request (``stored_ha1(algorithm)``: the user's HA1 in
    ``realm``, ``None`` when the user has none). Only ``OK`` lets a request through.

    The order matters: a forged or foreign nonce is refused before any password work, and a
    replay is only recorded once the response is proved right (so a wrong guess cannot burn a
    legitimate client's nonce count).
    """
    if credentials.realm != realm:
        return Verdict.WRONG_REALM
    state = mint.check(realm, credentials.nonce)
    if state is NonceState.FORGED:
        return Verdict.FORGED_NONCE
    # RFC 7616 §3.4.6: the digest-uri must name the request's target.
    if not _same_target(credentials.uri, request_uri):
        return Verdict.URI_MISMATCH
    secret = stored_ha1(credentials.algorithm)
    if secret is None:
        return Verdict.NO_CREDENTIALS
    expected = response(
        secret,
        credentials.algorithm,
        method,
        credentials.uri,
        credentials.nonce,
        qop=credentials.qop,
        nc=credentials.nc,
        cnonce=credentials.cnonce,
    )
    if not hmac.compare_digest(expected, credentials.response):
        return Verdict.WRONG_PASSWORD
    if state is NonceState.STALE:
        return Verdict.STALE
    if not replays.fresh(credentials.nonce, credentials.nc, mint.clock()):
        return Verdict.STALE
    return Verdict.OK
