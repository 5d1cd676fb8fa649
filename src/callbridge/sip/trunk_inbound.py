"""Calls from SIP trunks (issue 12): an INVITE from a carrier, routed by the number it is for.

Runs before the phones' INVITE handler (:class:`callbridge.sip.calls.SipCalls`):

- the source address is in a trunk's ``inbound_acl`` (the most specific CIDR wins,
  :meth:`~callbridge.trunks.TrunkDirectory.trunk_for_source`), or the INVITE carries
  ``Proxy-Authorization`` for a trunk's ``inbound_username`` that checks out (RFC 3261
  §22.3, RFC 7616; challenged with 407 in the server's realm like a phone) → a trunk call;
- otherwise, an INVITE for a number (a DID) from a foreign domain (its From host is not the
  server's SIP domain: not one of our phones) with no credentials is refused ``403`` and
  logged with its source — never routed. Everything else (our phones, calling DIDs or
  anything) takes the phones' path unchanged (407, digest of a user).

A trunk call's destination is the Request-URI's user (else the To's), looked up with
:meth:`~callbridge.trunks.TrunkDirectory.number`: the number must belong to the trunk's
account, and its route says where the call goes: ``user`` rings all the user's devices
(``/ws`` sessions and registered phones); ``application``, ``conference`` and ``queue``
targets are taken by :mod:`callbridge.sip.trunk_targets` (the call's destination is then
the number itself). A number with no
target gets ``404``. The call is then a phone's call in every way (183 ringback, 200, BYE,
hold, DTMF, REFER), with the carrier's From user as caller ID.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from typing import TYPE_CHECKING

from callbridge.errors import MediaError, ProtocolError
from callbridge.sip.device import SipDevice
from callbridge.sip.digest import (
    DigestError,
    NonceMint,
    ReplayGuard,
    Verdict,
    algorithm_order,
    challenges,
    ha1,
    parse_credentials,
    verify,
)
from callbridge.sip.syntax import SipParseError

if TYPE_CHECKING:
    from callbridge.sip.calls import SipCalls
    from callbridge.sip.stack import Incoming
    from callbridge.trunks import NumberRoute, Trunk, TrunkDirectory

__all__ = ["TrunkCaller", "TrunkInbound"]

log = logging.getLogger(__name__)


class TrunkCaller(SipDevice):
    """The carrier's caller on an inbound trunk call (a core device, never rung)."""

    def __init__(self, calls: SipCalls, trunk: Trunk, number: NumberRoute, caller: str) -> None:
        self._sink = calls
        self.user = None
        self.binding = None
        self.trunk = trunk
        self.inbound_number = number  # the toll-fraud placer of any call sent on from here
        self.user_name = caller or "anonymous"
        self.account_id = trunk.account_id
        self.caller_id = caller or "anonymous"
        self.display_name = caller or "anonymous"
        self.id = f"trunk:{trunk.name}:in:{secrets.token_hex(4)}"
        self.incoming: Incoming | None = None  # the carrier's INVITE

    @property
    def reachable(self) -> bool:
        return False

    @property
    def sip_status(self) -> int | None:
        """The final status the carrier's INVITE got (200 answered, 487 CANCELled, a
        refusal's): the call's SIP cause for its CDR and ``call.hangup``."""
        final = self.incoming.tx.final if self.incoming is not None else None
        return final.status if final is not None else None

    def __repr__(self) -> str:
        return f"<TrunkCaller {self.id}>"


class TrunkInbound:
    """The INVITE handler in front of the phones' (see the module docstring)."""

    def __init__(self, calls: SipCalls, directory: TrunkDirectory) -> None:
        self.calls = calls
        self.directory = directory
        self.realm = calls.stack.domain
        self.mint = NonceMint(secrets.token_bytes(32))
        self.replays = ReplayGuard()

    async def handle(self, incoming: Incoming) -> bool:
        """True when the INVITE was taken (a trunk call, a challenge or a refusal)."""
        request = incoming.request
        host, port = incoming.flow.remote[0], incoming.flow.remote[1]
        trunk = await self.directory.trunk_for_source(host)
        if trunk is None:
            taken, trunk = await self._digest(incoming)
            if taken:
                return True
        number_text = request.uri.user or ""
        with contextlib.suppress(SipParseError):
            number_text = number_text or (request.to.uri.user or "")
        if trunk is None:
            if "Proxy-Authorization" in request.headers or self._from_here(incoming):
                return False  # a phone of ours: its own digest decides
            number = await self.directory.number(number_text) if number_text else None
            if number is None:
                return False
            if any(t.inbound_username for t in await self.directory.trunks(number.account_id)):
                self._challenge(incoming)  # a trunk of the account authenticates by digest
                return True
            log.warning(
                "SIP: INVITE for %s from %s:%d refused: the source is in no trunk's inbound ACL "
                "and sent no credentials",
                number.e164, host, port,
            )  # fmt: skip
            incoming.respond(403, "Forbidden (source not allowed by any trunk)")
            return True
        await self._trunk_call(incoming, trunk, number_text)
        return True

    def _from_here(self, incoming: Incoming) -> bool:
        try:
            from_host = incoming.request.from_.uri.host.strip("[]").lower()
        except SipParseError:
            return False
        return from_host == self.realm.strip("[]").lower()

    async def _digest(self, incoming: Incoming) -> tuple[bool, Trunk | None]:
        """Inbound digest of a trunk: (taken, trunk). Credentials naming no trunk's
        inbound user are left to the phones' path (False, None)."""
        request = incoming.request
        value = request.headers.get("Proxy-Authorization")
        if not value:
            return False, None
        try:
            credentials = parse_credentials(value)
        except DigestError:
            return False, None
        trunk = next(
            (
                t
                for t in await self.directory.trunks()
                if t.inbound_username and t.inbound_username == credentials.username
            ),
            None,
        )
        if trunk is None or not trunk.inbound_password:
            return False, None
        password = trunk.inbound_password
        verdict = verify(
            credentials,
            method=request.method,
            request_uri=str(request.uri),
            realm=self.realm,
            mint=self.mint,
            replays=self.replays,
            stored_ha1=lambda algorithm: ha1(
                trunk.inbound_username or "", self.realm, password, algorithm
            ),
        )
        if verdict is Verdict.OK:
            return False, trunk
        host, port = incoming.flow.remote
        if verdict is Verdict.STALE:
            self._challenge(incoming, stale=True)
        else:
            log.warning("SIP: trunk %s inbound digest from %s:%d failed: %s",
                        trunk.name, host, port, verdict.value)  # fmt: skip
            incoming.respond(403, f"Forbidden (trunk credentials: {verdict.value})")
        return True, None

    def _challenge(self, incoming: Incoming, stale: bool = False) -> None:
        response = incoming.response(407, "Proxy Authentication Required")
        # SHA-256 first (RFC 8760 §2.4), but MD5 alone for agents known to fail on it.
        order = algorithm_order(incoming.request.headers.get("User-Agent"))
        for value in challenges(self.realm, self.mint.make(self.realm), stale=stale, order=order):
            response.headers.add("Proxy-Authenticate", value)
        incoming.respond(response)

    async def _trunk_call(self, incoming: Incoming, trunk: Trunk, number_text: str) -> None:
        from callbridge.sip.calls import refusal  # the phones' mapping of core errors

        request = incoming.request
        number = await self.directory.number(number_text) if number_text else None
        if number is None or number.account_id != trunk.account_id:
            incoming.respond(404, f"Not Found ({number_text or 'no number'} is not ours)")
            return
        if number.target_kind is None or not number.target_id:
            incoming.respond(404, f"Not Found ({number.e164} routes nowhere)")
            return
        destination = number.target_id if number.target_kind == "user" else number.e164
        offer = ""
        if request.body.strip():
            if "application/sdp" not in (request.content_type or "").lower():
                incoming.respond(415, "Unsupported Media Type (application/sdp only)")
                return
            offer = request.body.decode(errors="replace")
        caller = ""
        with contextlib.suppress(SipParseError):
            caller = request.from_.uri.user or ""
        device = TrunkCaller(self.calls, trunk, number, caller)
        device.incoming = incoming
        log.info("SIP: trunk %s call from %s for %s -> %s %s",
                 trunk.name, caller, number.e164, number.target_kind, number.target_id)  # fmt: skip
        calls = self.calls
        calls.callers[id(device)] = incoming
        try:
            await calls.controller.routing.create_call(
                device, destination, offer, None, None, "audio"
            )
        except (ProtocolError, MediaError) as exc:
            if not incoming.tx.answered:
                incoming.respond(*refusal(exc))
            return
        finally:
            calls.callers.pop(id(device), None)
        leg = next((x for x in calls.legs.values() if x.device is device), None)
        if leg is not None and not leg.ended:
            await calls.watch_cancel(leg, incoming)
