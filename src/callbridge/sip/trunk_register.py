"""Registration to a carrier (RFC 3261 §10.2): a trunk with ``register`` binds the server's
contact at its registrar, so the carrier knows where to send the account's calls.

One :class:`TrunkRegistration` per registering trunk:

- ``REGISTER sip:HOST[:PORT]`` with To/From the trunk's address-of-record
  (``sip:USERNAME@HOST``), one Call-ID for all refreshes and a CSeq that only grows
  (§10.2.4), ``Contact`` our address and ``Expires`` the trunk's ``register_expires``;
  a 401/407 is answered with the trunk's credentials (:mod:`callbridge.sip.digest_client`);
- refreshed before the binding expires: at half the granted time for short ones, 30 s before
  the end for long ones (the registrar's grant wins: ``Contact;expires=``, else ``Expires``;
  a 423 raises our request to its ``Min-Expires``, §10.2.8);
- on failure (a final non-2xx, a timeout) retried with back-off (5 s doubling to 5 min,
  shorter when the requested expiry is short, as in tests);
- each change of state is written with
  :meth:`~callbridge.trunks.TrunkDirectory.set_registration_state` (``registering``,
  ``registered``, ``failed`` with the last error): ``callbridge trunks list`` and
  ``GET /v2/sip_registration_status`` read it;
- :meth:`TrunkRegistration.stop` (server shutdown or drain, trunk removed) un-registers
  (``Expires: 0``, §10.2.2) when a binding is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import TYPE_CHECKING

from callbridge.sip.digest_client import AUTH_STATUSES, DigestSession
from callbridge.sip.message import Headers, Request, Response
from callbridge.sip.syntax import SipParseError

if TYPE_CHECKING:
    from callbridge.sip.stack import SipStack, Target
    from callbridge.trunks import Trunk, TrunkDirectory

__all__ = ["BACKOFF_MAX", "TrunkRegistration", "refresh_delay"]

log = logging.getLogger(__name__)

BACKOFF_MAX = 300.0
_BACKOFF_FIRST = 5.0


def refresh_delay(granted: int) -> float:
    """Seconds until the refresh of a binding granted for ``granted`` seconds: half of it for
    short bindings, 30 s before its end for long ones (never under 1 s)."""
    if granted <= 120:
        return max(1.0, granted / 2)
    return float(granted - 30)


class TrunkRegistration:
    """Keeps one trunk registered (see the module docstring)."""

    def __init__(
        self,
        stack: SipStack,
        trunk: Trunk,
        directory: TrunkDirectory,
        target: Target,
        session: DigestSession | None,
    ) -> None:
        self.stack = stack
        self.trunk = trunk
        self.directory = directory
        self.target = target
        self.session = session
        self.call_id = f"{secrets.token_hex(12)}@{stack.domain}"
        self.from_tag = secrets.token_hex(6)
        self.cseq = 0
        self.expires = trunk.register_expires
        self.registered = False
        self.state = ""
        self.refreshes = 0  # successful REGISTERs (tests read it)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop refreshing; un-REGISTER (``Expires: 0``) if a binding is up."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self.registered:
            self.registered = False
            try:
                async with asyncio.timeout(5):
                    response = await self._register(0)
                log.info("trunk %s: un-registered (%d)", self.trunk.name, response.status)
            except (TimeoutError, OSError) as exc:
                log.info("trunk %s: un-REGISTER failed: %s", self.trunk.name, exc)
            with contextlib.suppress(Exception):
                await self.directory.set_registration_state(self.trunk.id, "off", "un-registered")

    async def _set(self, state: str, detail: str = "") -> None:
        if state == self.state == "registering":
            return
        self.state = state
        try:
            await self.directory.set_registration_state(self.trunk.id, state, detail)
        except Exception:  # the trunk was removed meanwhile, the store is away: keep going
            log.exception("trunk %s: could not store registration state", self.trunk.name)

    async def _run(self) -> None:
        backoff = min(_BACKOFF_FIRST, max(1.0, self.expires / 2))
        await self._set("registering")
        while True:
            response: Response | None = None
            try:
                response = await self._register(self.expires)
                why = f"{response.status} {response.reason}"
            except OSError as exc:
                why = f"cannot reach the registrar: {exc}"
            if response is not None and response.status == 423:
                minimum = response.headers.get("Min-Expires") or ""
                if minimum.strip().isdigit() and int(minimum) > self.expires:
                    self.expires = int(minimum)  # §10.2.8: ask again with at least that
                    continue
            if response is not None and 200 <= response.status < 300:
                granted = self._granted(response)
                self.registered = granted > 0
                self.refreshes += 1
                await self._set("registered", f"expires in {granted} s")
                backoff = min(_BACKOFF_FIRST, max(1.0, self.expires / 2))
                await asyncio.sleep(refresh_delay(granted))
                continue
            self.registered = False
            if (
                self.session is not None
                and self.session.failure
                and response is not None
                and (response.status in AUTH_STATUSES)
            ):
                why = self.session.failure
            log.warning("trunk %s: registration failed: %s (retry in %.0f s)",
                        self.trunk.name, why, backoff)  # fmt: skip
            await self._set("failed", why[:200])
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    def _granted(self, response: Response) -> int:
        """The expiry the registrar granted our contact (§10.2.4)."""
        ours = self.stack.contact(self.target.transport, user=self.trunk.username)
        try:
            contacts = response.contacts
        except SipParseError:
            contacts = []
        for contact in contacts:
            if f"<{contact.uri}>" == ours or len(contacts) == 1:
                value = contact.params.get("expires")
                if value is not None and value.isdigit():
                    return int(value)
        header = response.headers.get("Expires") or ""
        return int(header) if header.strip().isdigit() else self.expires

    def _request(self, expires: int) -> Request:
        trunk = self.trunk
        host = f"[{trunk.host}]" if ":" in trunk.host else trunk.host
        port = "" if trunk.port == 5060 and trunk.transport == "udp" else f":{trunk.port}"
        suffix = "" if trunk.transport == "udp" else f";transport={trunk.transport}"
        aor = f"sip:{trunk.username}@{host}{port}"
        self.cseq += 1
        headers = Headers(
            [
                ("From", f"<{aor}>;tag={self.from_tag}"),
                ("To", f"<{aor}>"),
                ("Call-ID", self.call_id),
                ("CSeq", f"{self.cseq} REGISTER"),
                ("Contact", self.stack.contact(self.target.transport, user=trunk.username)),
                ("Expires", str(expires)),
            ]
        )
        if trunk.outbound_proxy:
            headers.add("Route", f"<sip:{trunk.outbound_proxy};lr>", first=True)
        return Request("REGISTER", f"sip:{host}{port}{suffix}", headers)

    async def _register(self, expires: int) -> Response:
        request = self._request(expires)
        while True:
            response = await self.stack.request(request, self.target)
            if response.status in AUTH_STATUSES and self.session is not None:
                retry = self.session.retry(request, response)
                if retry is not None:
                    request = retry
                    self.cseq = request.cseq_number
                    continue
            if self.session is not None:
                self.session.done(request.call_id)
            return response
