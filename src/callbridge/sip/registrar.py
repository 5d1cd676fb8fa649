"""The registrar (RFC 3261 §10.3) and digest authentication of SIP requests (§22).

``REGISTER`` is handled in the order of §10.3::

    Request-URI not our domain ............ 404  (we are no proxy)
    Require with an extension ............. 420 + Unsupported
    source blocked for failed logins ...... 403  (SourceGuard, shared with /ws and REST)
    no/unfit credentials .................. 401 + WWW-Authenticate (SHA-256, then MD5)
    expired nonce or replayed nc .......... 401 ... stale=true (not counted as a failure)
    wrong password, unknown user, ... ..... 401 again, counted; 403 once the source is blocked
    To is not the user's AOR .............. 403
    Contact: * without Expires: 0 ......... 400
    an expiry under Min-Expires ........... 423 + Min-Expires
    CSeq not above the binding's .......... 400  (§10.3 step 7; nothing is changed)
    more than ``max_bindings`` contacts ... 403
    otherwise ............................. 200 with every live binding and its expires

The SIP username is the user's name, the realm the SIP domain; the user's AOR is
``sip:NAME@DOMAIN``. Each failure is logged by :meth:`SourceGuard.login_failed` as the line
fail2ban matches (docs/security.md, "Abuse")::

    WARNING callbridge.abuse: login failed from 192.0.2.7: sip: REGISTER 'alice': wrong password

:meth:`Registrar.authenticate` is the same check for other requests (the call adapter
challenges INVITEs with it: no unauthenticated INVITE is routed). :meth:`Registrar.contacts_of`
is how the call adapter finds a user's phones: each :class:`~callbridge.store.sip.Binding`
says how to reach it (the connection it registered over, or the source address).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from dataclasses import dataclass
from email.utils import formatdate

from callbridge.abuse import SourceGuard
from callbridge.sip import wire
from callbridge.sip.digest import (
    NONCE_LIFETIME,
    DigestError,
    NonceMint,
    ReplayGuard,
    Verdict,
    algorithm_order,
    challenges,
    parse_credentials,
    verify,
)
from callbridge.sip.headers import Auth, NameAddr, parse_uint
from callbridge.sip.message import Request, Response
from callbridge.sip.syntax import SipParseError
from callbridge.sip.uri import parse_uri
from callbridge.store import Store
from callbridge.store.sip import (
    Binding,
    BindingUpdate,
    Origin,
    RegistrationOutOfOrder,
    SipCredentials,
    TooManyBindings,
)

__all__ = ["Registrar", "Source"]

log = logging.getLogger(__name__)

MIN_EXPIRES = 60  # seconds; shorter registrations get 423 (§10.3 step 7)
MAX_EXPIRES = 3600  # longer ones are shortened to this (a registrar MAY, §10.3 step 7)
DEFAULT_EXPIRES = 3600  # neither an expires param nor an Expires header (§10.2.1.1)
MAX_BINDINGS = 10  # live contacts per user
PRUNE_INTERVAL = 60.0  # seconds between deletions of expired bindings
_MAX_CONTACT = 2048
_MAX_CALL_ID = 255


@dataclass(frozen=True, slots=True)
class Source:
    """Where a request came from: the transport, the peer's address, and (for connection
    transports) the connection, as ``"TCP 192.0.2.7:51234"`` (``SipStack.flow_for`` finds it
    again while it is open)."""

    transport: str  # UDP, TCP, TLS, WS, WSS
    host: str
    port: int

    @property
    def connection_id(self) -> str | None:
        if self.transport == "UDP":
            return None
        return f"{self.transport} {self.host}:{self.port}"


def _safe(text: str, limit: int = 64) -> str:
    """A peer's text fit for one log line (no newlines: fail2ban reads lines)."""
    return repr(text[:limit])


class Registrar:
    """Handles REGISTER for the SIP domain ``domain``; make one with :meth:`open`."""

    def __init__(
        self,
        store: Store,
        domain: str,
        mint: NonceMint,
        *,
        guard: SourceGuard | None = None,
        min_expires: int = MIN_EXPIRES,
        max_expires: int = MAX_EXPIRES,
        default_expires: int = DEFAULT_EXPIRES,
        max_bindings: int = MAX_BINDINGS,
        node_id: str | None = None,
    ) -> None:
        self.store = store
        self.domain = domain.lower()
        self.mint = mint
        self.replays = ReplayGuard(lifetime=mint.lifetime)
        self.guard = guard
        self.min_expires = min_expires
        self.max_expires = max(max_expires, min_expires)
        self.default_expires = min(max(default_expires, min_expires), self.max_expires)
        self.max_bindings = max_bindings
        self.node_id = node_id
        self._pruner: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        store: Store,
        domain: str,
        *,
        nonce_lifetime: float = NONCE_LIFETIME,
        guard: SourceGuard | None = None,
        **options: int | str | None,
    ) -> Registrar:
        """A registrar whose nonces use the store's shared secret (any node accepts them)."""
        mint = NonceMint(await store.sip_secret("nonce"), nonce_lifetime)
        return cls(store, domain, mint, guard=guard, **options)  # type: ignore[arg-type]

    # wiring ---------------------------------------------------------------------------------
    def attach(self, stack: object) -> None:
        """Route REGISTER of ``stack`` (a :class:`~callbridge.sip.stack.SipStack`) here."""
        from callbridge.sip.stack import Incoming, SipStack

        assert isinstance(stack, SipStack)

        async def handle(incoming: Incoming) -> None:
            flow = incoming.flow
            source = Source(flow.transport.upper(), flow.remote[0], flow.remote[1])
            incoming.respond(await self.register(incoming.request, source))

        stack.on("REGISTER", handle)

    def start(self, interval: float = PRUNE_INTERVAL) -> None:
        """Delete expired bindings every ``interval`` seconds (until :meth:`stop`)."""

        async def prune() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await self.store.prune_bindings()
                except Exception:  # the database may be away for a while; try again later
                    log.warning("pruning expired SIP bindings failed", exc_info=True)

        if self._pruner is None:
            self._pruner = asyncio.get_running_loop().create_task(prune())

    async def stop(self) -> None:
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
            self._pruner = None

    async def contacts_of(self, user: str) -> list[Binding]:
        """The live bindings of user ``user``, highest q first (what rings on a call)."""
        return await self.store.bindings(user)

    # authentication -------------------------------------------------------------------------
    async def authenticate(
        self, request: Request, source: Source, *, proxy: bool = False
    ) -> SipCredentials | Response:
        """The user a request's digest credentials prove, or the response to send instead
        (401/407 challenge, 403 when the source is blocked, 400 for malformed credentials).

        ``proxy`` challenges with 407 and Proxy-Authenticate (for INVITE, as PBXs do).
        """
        what = f"{request.method} "
        if self.guard is not None and (wait := self.guard.retry_after(source.host)) > 0:
            self.guard.refused(source.host, "sip", f"{request.method}: blocked")
            return request.response(
                403,
                f"Forbidden (too many failed logins; retry in {wait:.0f} s)",
                to_tag=wire.new_tag(),
            )
        header = "Proxy-Authorization" if proxy else "Authorization"
        mine: Auth | None = None
        for value in request.headers.get_all(header):
            with contextlib.suppress(SipParseError):
                auth = Auth.parse(value, header)
                if auth.scheme.lower() == "digest" and auth.get("realm") == self.domain:
                    mine = auth
                    break
        if mine is None:
            if request.headers.get_all(header):  # credentials for another realm (or unreadable)
                return self._failed(request, source, what + "-", "wrong realm", proxy)
            return self._challenge(request, proxy, stale=False)
        try:
            credentials = parse_credentials(str(mine))
        except DigestError as exc:
            return self._failed(request, source, what + "-", exc.reason, proxy, status=400)
        user = _safe(credentials.username)
        stored = await self.store.sip_credentials(credentials.username)
        if stored is not None and stored.realm != self.domain:
            log.warning(
                "SIP credentials of %s were set for domain %r, not %r: set the password again "
                "(callbridge users sip-password %s)",
                user,
                stored.realm,
                self.domain,
                credentials.username,
            )
            stored = None
        verdict = verify(
            credentials,
            method=request.method,
            request_uri=str(request.uri),
            realm=self.domain,
            mint=self.mint,
            replays=self.replays,
            stored_ha1=lambda algorithm: (
                None
                if stored is None
                else stored.ha1_sha256
                if algorithm == "SHA-256"
                else stored.ha1_md5
            ),
        )
        if verdict is Verdict.OK:
            assert stored is not None
            return stored
        if verdict is Verdict.STALE:
            return self._challenge(request, proxy, stale=True)
        # An unknown user and a wrong password look the same to the peer (no user probing).
        reason = "wrong password" if verdict is Verdict.NO_CREDENTIALS else verdict.value
        return self._failed(request, source, what + user, reason, proxy)

    def _challenge(self, request: Request, proxy: bool, *, stale: bool) -> Response:
        status, header = (407, "Proxy-Authenticate") if proxy else (401, "WWW-Authenticate")
        response = request.response(
            status, "Proxy Authentication Required" if proxy else None, to_tag=wire.new_tag()
        )
        order = algorithm_order(request.headers.get("User-Agent"))
        nonce = self.mint.make(self.domain)
        for value in challenges(self.domain, nonce, stale=stale, order=order):
            response.headers.add(header, value)
        return response

    def _failed(
        self,
        request: Request,
        source: Source,
        who: str,
        reason: str,
        proxy: bool,
        *,
        status: int = 401,
    ) -> Response:
        if self.guard is not None:
            self.guard.login_failed(source.host, "sip", f"{who}: {reason}")
            if self.guard.retry_after(source.host) > 0:
                return request.response(
                    403, "Forbidden (too many failed logins)", to_tag=wire.new_tag()
                )
        if status == 400:
            return request.response(400, f"Bad Request ({reason})", to_tag=wire.new_tag())
        return self._challenge(request, proxy, stale=False)

    # REGISTER -------------------------------------------------------------------------------
    async def register(self, request: Request, source: Source) -> Response:
        """Handle one REGISTER (RFC 3261 §10.3) and return the response to send."""
        try:
            target = parse_uri(str(request.uri), "Request-URI")
        except SipParseError as exc:
            return request.response(400, f"Bad Request ({exc.reason})", to_tag=wire.new_tag())
        if target.host.strip("[]").lower() != self.domain.strip("[]"):
            return request.response(
                404,
                f"Not Found (domain {target.host[:64]} is not served here)",
                to_tag=wire.new_tag(),
            )
        required = [r.strip() for v in request.headers.values("Require") for r in v.split(",")]
        if any(required):
            response = request.response(420, "Bad Extension", to_tag=wire.new_tag())
            response.headers.set("Unsupported", ", ".join(r for r in required if r))
            return response
        authenticated = await self.authenticate(request, source)
        if isinstance(authenticated, Response):
            return authenticated
        user = authenticated.user
        try:
            to = NameAddr.parse(request.headers.get("To") or "", "To")
        except SipParseError as exc:
            return request.response(400, f"Bad Request ({exc.reason})", to_tag=wire.new_tag())
        if to.uri.user != user.name or to.uri.host.strip("[]") != self.domain.strip("[]"):
            return request.response(
                403, f"Forbidden (To is not {user.name}'s address)", to_tag=wire.new_tag()
            )
        try:
            updates, remove_all = self._contacts(request)
        except _Refusal as refusal:
            return refusal.response
        call_id = request.call_id
        if not call_id or len(call_id) > _MAX_CALL_ID:
            return request.response(
                400, "Bad Request (Call-ID missing or too long)", to_tag=wire.new_tag()
            )
        agent = request.headers.get("User-Agent")
        origin = Origin(
            source_host=source.host,
            source_port=source.port,
            transport=source.transport.lower(),
            connection_id=source.connection_id,
            user_agent=agent[:255] if agent else None,
            node_id=self.node_id,
        )
        try:
            if updates or remove_all:
                bindings = await self.store.register_bindings(
                    user.id,
                    call_id=call_id,
                    cseq=request.cseq_number,
                    origin=origin,
                    updates=updates,
                    remove_all=remove_all,
                    max_bindings=self.max_bindings,
                )
            else:  # a query (§10.2.3): no Contact
                bindings = await self.store.bindings(user.name)
        except RegistrationOutOfOrder as exc:
            return request.response(400, f"Bad Request ({exc})", to_tag=wire.new_tag())
        except TooManyBindings as exc:
            return request.response(403, f"Forbidden ({exc})", to_tag=wire.new_tag())
        response = request.response(200, "OK", to_tag=wire.new_tag())
        for binding in bindings:
            response.headers.add("Contact", _contact_value(binding))
        response.headers.set("Date", formatdate(usegmt=True))
        return response

    def _contacts(self, request: Request) -> tuple[list[BindingUpdate], bool]:
        """The Contacts of a REGISTER as updates, or whether it is ``Contact: *``."""
        values = request.headers.values("Contact")
        expires_header = request.headers.get("Expires")
        try:
            default = (
                parse_uint(expires_header, "Expires", 2**32 - 1)
                if expires_header is not None
                else self.default_expires
            )
        except SipParseError as exc:
            raise _Refusal(
                request.response(400, f"Bad Request ({exc.reason})", to_tag=wire.new_tag())
            ) from None
        if any(v.strip() == "*" for v in values):
            # §10.2.2 / §10.3 step 6: '*' only alone, and only with Expires: 0.
            if len(values) != 1 or expires_header is None or default != 0:
                raise _Refusal(
                    request.response(
                        400,
                        "Bad Request (Contact * needs Expires: 0, alone)",
                        to_tag=wire.new_tag(),
                    )
                )
            return [], True
        updates: list[BindingUpdate] = []
        for value in values:
            try:
                contact = NameAddr.parse(value, "Contact")
                expires = contact.expires
                q = contact.q
            except SipParseError as exc:
                raise _Refusal(
                    request.response(400, f"Bad Request ({exc.reason})", to_tag=wire.new_tag())
                ) from None
            expires = default if expires is None else expires
            if 0 < expires < self.min_expires:
                response = request.response(423, "Interval Too Brief", to_tag=wire.new_tag())
                response.headers.set("Min-Expires", str(self.min_expires))
                raise _Refusal(response)
            uri = str(contact.uri)
            if len(uri) > _MAX_CONTACT:
                raise _Refusal(
                    request.response(
                        400, "Bad Request (Contact URI too long)", to_tag=wire.new_tag()
                    )
                )
            instance = contact.params.get("+sip.instance")
            reg_id_text = contact.params.get("reg-id")
            reg_id = int(reg_id_text) if reg_id_text and reg_id_text.isdigit() else None
            if instance and reg_id is not None:  # RFC 5626 §6: the flow's identity
                identity = f"instance\x00{instance}\x00{reg_id}"
            else:  # the contact URI, in the canonical form of callbridge.sip.uri
                identity = f"uri\x00{uri}"
            updates.append(
                BindingUpdate(
                    binding_key=hashlib.sha256(identity.encode()).hexdigest(),
                    contact=uri,
                    expires=min(expires, self.max_expires),
                    q=q,
                    instance_id=instance[:255] if instance else None,
                    reg_id=reg_id,
                )
            )
        return updates, False


class _Refusal(Exception):
    """Carries the response that ends a REGISTER early."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def _contact_value(binding: Binding) -> str:
    params = f";expires={binding.expires_in()}"
    if binding.q is not None:
        params += f";q={binding.q:g}"
    if binding.instance_id:
        params += f';+sip.instance="{binding.instance_id}"'
    if binding.reg_id is not None:
        params += f";reg-id={binding.reg_id}"
    return f"<{binding.contact}>{params}"
