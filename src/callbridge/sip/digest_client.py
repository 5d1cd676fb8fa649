"""The client side of SIP digest authentication: answering a carrier's 401/407.

A trunk (issue 12) authenticates to its carrier as a user agent client (RFC 3261 §22.2):
the carrier answers a request with ``401`` + ``WWW-Authenticate`` or ``407`` +
``Proxy-Authenticate``; we send the request again with ``Authorization`` /
``Proxy-Authorization`` computed from the trunk's credentials (RFC 7616 §3.4: MD5 or
SHA-256, ``qop=auth`` with a client nonce and a nonce count; without ``qop`` the RFC 2069
form RFC 3261 §22.4 still allows). The retry keeps the Call-ID, increments CSeq
(§22.2, §8.1.3.5) and gets a new branch (the stack adds a fresh Via).

One retry per challenge: a second 401/407 for credentials just sent means they are wrong —
unless it says ``stale=true`` (RFC 7616 §3.3: the nonce expired, the password is fine), which
is answered once more. :class:`DigestSession` keeps that count and the nonce counts.

``-sess`` algorithms, ``qop=auth-int`` and ``userhash`` are not supported: a challenge
offering only those cannot be answered (:meth:`DigestSession.retry` returns None with a
reason in :attr:`DigestSession.failure`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from callbridge.sip.digest import Algorithm, ha1, response
from callbridge.sip.headers import Auth
from callbridge.sip.message import Headers, Request, Response
from callbridge.sip.syntax import SipParseError

__all__ = ["AUTH_STATUSES", "DigestSession", "authorization", "pick_challenge"]

AUTH_STATUSES = (401, 407)
_CHALLENGE = {401: "WWW-Authenticate", 407: "Proxy-Authenticate"}
_ANSWER = {401: "Authorization", 407: "Proxy-Authorization"}
_SUPPORTED: tuple[Algorithm, ...] = ("SHA-256", "MD5")  # preference when several are offered
MAX_STALE_RETRIES = 2  # stale=true answers in a row before giving up (a carrier in a loop)


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def pick_challenge(resp: Response) -> tuple[Auth | None, str]:
    """The challenge of a 401/407 we can answer (SHA-256 preferred over MD5, RFC 8760
    §2.4), or None and why not."""
    name = _CHALLENGE.get(resp.status)
    if name is None:
        return None, f"{resp.status} is not a challenge"
    offered: list[Auth] = []
    why = f"the {resp.status} has no {name} header"
    for value in resp.headers.get_all(name):
        try:
            auth = Auth.parse(value, name)
        except SipParseError as exc:
            why = f"unreadable {name}: {exc.reason}"
            continue
        if auth.scheme.lower() != "digest":
            why = f"{name} scheme {auth.scheme} is not Digest"
            continue
        algorithm = (auth.get("algorithm") or "MD5").upper()
        if algorithm not in _SUPPORTED:
            why = f"{name} algorithm {algorithm} is not supported (MD5 or SHA-256)"
            continue
        qops = [q.strip().lower() for q in (auth.get("qop") or "").split(",") if q.strip()]
        if qops and "auth" not in qops:
            why = f"{name} offers qop={','.join(qops)} only (qop=auth is supported)"
            continue
        if not auth.get("realm") or not auth.get("nonce"):
            why = f"{name} has no realm or nonce"
            continue
        offered.append(auth)
    if not offered:
        return None, why
    offered.sort(key=lambda a: _SUPPORTED.index((a.get("algorithm") or "MD5").upper()))
    return offered[0], ""


def authorization(
    challenge: Auth,
    method: str,
    uri: str,
    username: str,
    password: str,
    nc: int = 1,
    cnonce: str | None = None,
) -> str:
    """The ``Authorization``/``Proxy-Authorization`` value answering ``challenge`` (RFC 7616
    §3.4; RFC 3261 §22.4)."""
    realm = challenge.get("realm") or ""
    nonce = challenge.get("nonce") or ""
    algorithm: Algorithm = (
        "SHA-256" if (challenge.get("algorithm") or "").upper() == "SHA-256" else "MD5"
    )
    qops = [q.strip().lower() for q in (challenge.get("qop") or "").split(",") if q.strip()]
    key = ha1(username, realm, password, algorithm)
    parts = [
        f'username="{_quote(username)}"',
        f'realm="{_quote(realm)}"',
        f'nonce="{_quote(nonce)}"',
        f'uri="{_quote(uri)}"',
    ]
    if "auth" in qops:
        nc_text = f"{nc:08x}"
        cnonce = cnonce or secrets.token_hex(8)
        digest = response(key, algorithm, method, uri, nonce, qop="auth", nc=nc_text, cnonce=cnonce)
        parts += [f'response="{digest}"', f"algorithm={algorithm}", "qop=auth",
                  f"nc={nc_text}", f'cnonce="{cnonce}"']  # fmt: skip
    else:
        digest = response(key, algorithm, method, uri, nonce)
        parts += [f'response="{digest}"', f"algorithm={algorithm}"]
    opaque = challenge.get("opaque")
    if opaque is not None:
        parts.append(f'opaque="{_quote(opaque)}"')  # RFC 7616 §3.4: returned unchanged
    return "Digest " + ", ".join(parts)


@dataclass
class DigestSession:
    """The credentials of one client (a trunk) and what it learnt answering challenges.

    :meth:`retry` turns a sent request and its 401/407 into the request to send next, or None
    (then :attr:`failure` says why: no usable challenge, or the credentials were refused)."""

    username: str
    password: str
    failure: str = ""
    _nc: dict[str, int] = field(default_factory=dict)  # nonce -> last nonce count used
    _answered: dict[str, int] = field(default_factory=dict)  # Call-ID -> stale retries left

    def retry(self, sent: Request, resp: Response) -> Request | None:
        """The request to send after ``resp`` (a 401/407 to ``sent``), or None."""
        challenge, why = pick_challenge(resp)
        if challenge is None:
            self.failure = why
            return None
        call_id = sent.call_id
        answered = _ANSWER[resp.status] in sent.headers
        stale = (challenge.get("stale") or "").lower() == "true"
        if answered:
            left = self._answered.get(call_id, MAX_STALE_RETRIES)
            if not stale or left <= 0:
                self.failure = (
                    f"{resp.status} {resp.reason}: the carrier refused the credentials of "
                    f"{self.username!r} (check the trunk's username/password)"
                )
                self._answered.pop(call_id, None)
                return None
            self._answered[call_id] = left - 1
        else:
            self._answered[call_id] = MAX_STALE_RETRIES
        nonce = challenge.get("nonce") or ""
        nc = self._nc.get(nonce, 0) + 1
        self._nc[nonce] = nc
        if len(self._nc) > 64:  # old nonces are never reused: keep the newest few
            self._nc.pop(next(iter(self._nc)))
        if len(self._answered) > 256:
            self._answered.pop(next(iter(self._answered)))
        value = authorization(
            challenge, sent.method, str(sent.uri), self.username, self.password, nc
        )
        return next_request(sent, _ANSWER[resp.status], value)

    def done(self, call_id: str) -> None:
        """The request of ``call_id`` got its answer: forget its retry count."""
        self._answered.pop(call_id, None)


def next_request(sent: Request, header: str, value: str) -> Request:
    """``sent`` again with ``header: value``: same Call-ID, CSeq + 1, no Via (the stack adds
    one with a new branch, §8.1.1.7), earlier credentials replaced."""
    headers = Headers()
    for name, field_value in sent.headers:
        if name in ("Via", header):  # a proxy's and a registrar's credentials both stay
            continue
        if name == "CSeq":
            field_value = f"{sent.cseq_number + 1} {sent.method}"
        headers.add(name, field_value)
    headers.add(header, value)
    return Request(sent.method, sent.uri.copy(), headers, sent.body)
