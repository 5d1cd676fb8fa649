"""The server's SIP trunk services (issue 12), attached after the phones' (``attach_trunks``).

- outbound calls: :class:`~callbridge.sip.trunk_calls.TrunkCalls` as the controller's
  ``trunk_router``, with the toll-fraud guard (:mod:`callbridge.core.tollfraud`);
- inbound calls: :class:`~callbridge.sip.trunk_inbound.TrunkInbound` in front of the phones'
  INVITE handler;
- registrations and OPTIONS checks: one :class:`~callbridge.sip.trunk_register.
  TrunkRegistration` per trunk with ``register``, one :class:`~callbridge.sip.trunk_health.
  TrunkHealth` per trunk with an ``options_interval``. Trunks are added and removed from
  another process (the CLI) or REST, so the list is read again every :data:`RESCAN` seconds
  and workers start, restart (the trunk changed) or stop (removed: un-REGISTER).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from callbridge.core.app_dial import Dialer
from callbridge.core.tollfraud import TollFraudGuard
from callbridge.sip.calls import SipCalls
from callbridge.sip.trunk_calls import TrunkCalls
from callbridge.sip.trunk_health import TrunkHealth
from callbridge.sip.trunk_inbound import TrunkInbound
from callbridge.sip.trunk_register import TrunkRegistration
from callbridge.sip.trunk_targets import TrunkTargets
from callbridge.trunks import Trunk, TrunkDirectory

if TYPE_CHECKING:
    from callbridge.core.controller import CallController
    from callbridge.sip.stack import Incoming, SipStack
    from callbridge.store import Store

__all__ = ["RESCAN", "TrunkService", "attach_trunks"]

log = logging.getLogger(__name__)

RESCAN = 2.0  # seconds between reads of the trunk list (one short query)


def _config(trunk: Trunk) -> tuple[object, ...]:
    """What a worker depends on: a change restarts it."""
    return (trunk.host, trunk.port, trunk.transport, trunk.outbound_proxy, trunk.username,
            trunk.auth_username, trunk.password, trunk.register, trunk.register_expires,
            trunk.options_interval)  # fmt: skip


class TrunkService:
    """Trunk calls, registrations and health checks of one server."""

    def __init__(self, stack: SipStack, store: Store, controller: CallController) -> None:
        self.stack = stack
        self.directory = TrunkDirectory(store)
        self.guard = TollFraudGuard(store)
        self.calls = TrunkCalls(stack, controller, self.directory, self.guard)
        self.inbound: TrunkInbound | None = None
        self.registrations: dict[str, tuple[tuple[object, ...], TrunkRegistration]] = {}
        self.health: dict[str, tuple[tuple[object, ...], TrunkHealth]] = {}
        self._task: asyncio.Task[None] | None = None

    def attach(self) -> None:
        self.calls.attach()
        dialer = self.calls.controller.router
        if isinstance(dialer, Dialer):  # numbers routed to applications, conferences, queues
            TrunkTargets(self.calls.controller, dialer).attach()
        else:
            log.warning("SIP trunks: no application router: numbers can only route to users")
        phones = self.stack.handlers.get("INVITE")
        sip_calls = getattr(phones, "__self__", None)
        if phones is None or not isinstance(sip_calls, SipCalls):
            log.warning("SIP trunks: no phone INVITE handler to put inbound trunk calls before")
            return
        self.inbound = TrunkInbound(sip_calls, self.directory)
        inbound = self.inbound

        async def on_invite(incoming: Incoming) -> None:
            if not await inbound.handle(incoming):
                await phones(incoming)

        self.stack.on("INVITE", on_invite)
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            try:
                await self.sync(await self.directory.trunks())
            except Exception:
                log.exception("SIP trunks: reading the trunk list failed")
            await asyncio.sleep(RESCAN)

    async def sync(self, trunks: list[Trunk]) -> None:
        """Start, restart and stop workers to match ``trunks``."""
        by_id = {t.id: t for t in trunks}
        for trunk_id in list(self.registrations):
            trunk = by_id.get(trunk_id)
            config, worker = self.registrations[trunk_id]
            if trunk is None or not trunk.register or _config(trunk) != config:
                del self.registrations[trunk_id]
                await worker.stop()
        for trunk_id in list(self.health):
            trunk = by_id.get(trunk_id)
            config, checker = self.health[trunk_id]
            if trunk is None or trunk.options_interval <= 0 or _config(trunk) != config:
                del self.health[trunk_id]
                await checker.stop()
        for trunk in trunks:
            target = self.calls.target(trunk)
            if trunk.register and trunk.username and trunk.id not in self.registrations:
                registration = TrunkRegistration(
                    self.stack, trunk, self.directory, target, self.calls.session(trunk)
                )
                self.registrations[trunk.id] = (_config(trunk), registration)
                registration.start()
            if trunk.options_interval > 0 and trunk.id not in self.health:
                checker = TrunkHealth(self.stack, trunk, self.directory, target)
                self.health[trunk.id] = (_config(trunk), checker)
                checker.start()

    async def stop(self) -> None:
        """Server shutdown or drain: stop checking, un-REGISTER every trunk."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        workers = [w for _, w in self.registrations.values()]
        checkers = [c for _, c in self.health.values()]
        self.registrations.clear()
        self.health.clear()
        await asyncio.gather(*(c.stop() for c in checkers), return_exceptions=True)
        await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)


async def attach_trunks(
    stack: SipStack | None, store: Store, controller: CallController
) -> TrunkService | None:
    """The trunk services on the server's SIP stack (after ``attach_sip``); None without SIP."""
    if stack is None:
        return None
    service = TrunkService(stack, store, controller)
    service.attach()
    return service
