"""OPTIONS health checks of trunks (RFC 3261 §11): is the carrier there?

Every ``options_interval`` seconds an out-of-dialog ``OPTIONS sip:HOST[:PORT]`` goes to the
trunk (or its outbound proxy); an answer is awaited for at most that interval
(:func:`check_timeout`; Timer F at most). Any answer but a timeout or a 5xx means the carrier
is there (a 2xx, and also a 4xx such as 401/404/405: many carriers refuse OPTIONS from
strangers, yet the refusal proves the host is up): the trunk is ``up``. No answer in time (or
Timer F's synthesized 408, §17.1.2.2) or a 5xx (503: overloaded, in maintenance) marks it
``down``. Changes are written with :meth:`~callbridge.trunks.TrunkDirectory.set_health`;
outbound routing skips ``down`` trunks (:mod:`callbridge.sip.trunk_calls`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import TYPE_CHECKING

from callbridge.sip.message import Headers, Request, Response

if TYPE_CHECKING:
    from callbridge.sip.stack import SipStack, Target
    from callbridge.trunks import Trunk, TrunkDirectory

__all__ = ["TrunkHealth", "check_timeout", "health_of"]

log = logging.getLogger(__name__)


def check_timeout(interval: int) -> float:
    """How long a check waits for its answer: the interval (an answer later than the next
    check is no answer), at least 1 s, at most Timer F (64·T1 = 32 s, §17.1.2.2)."""
    return float(min(max(1, interval), 32))


def health_of(response: Response) -> str:
    """``up`` or ``down`` for an OPTIONS answer (a synthesized 408 is the timeout)."""
    if response.status == 408 or response.status >= 500:
        return "down"
    return "up"


class TrunkHealth:
    """The OPTIONS loop of one trunk."""

    def __init__(
        self, stack: SipStack, trunk: Trunk, directory: TrunkDirectory, target: Target
    ) -> None:
        self.stack = stack
        self.trunk = trunk
        self.directory = directory
        self.target = target
        self.health = trunk.health
        self.checks = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def check(self) -> str:
        """One OPTIONS; the health it shows (written when it changed)."""
        trunk = self.trunk
        host = f"[{trunk.host}]" if ":" in trunk.host else trunk.host
        port = "" if trunk.port == 5060 and trunk.transport == "udp" else f":{trunk.port}"
        suffix = "" if trunk.transport == "udp" else f";transport={trunk.transport}"
        uri = f"sip:{host}{port}{suffix}"
        headers = Headers(
            [
                ("From", f"<sip:callbridge@{self.stack.domain}>;tag={secrets.token_hex(6)}"),
                ("To", f"<{uri}>"),
                ("Call-ID", f"{secrets.token_hex(12)}@{self.stack.domain}"),
                ("CSeq", "1 OPTIONS"),
                ("Accept", "application/sdp"),
            ]
        )
        if trunk.outbound_proxy:
            headers.add("Route", f"<sip:{trunk.outbound_proxy};lr>", first=True)
        try:
            async with asyncio.timeout(check_timeout(trunk.options_interval)):
                response = await self.stack.request(Request("OPTIONS", uri, headers), self.target)
            health, detail = health_of(response), f"OPTIONS: {response.status} {response.reason}"
        except TimeoutError:  # the transaction retransmits on until Timer F; nobody waits
            health = "down"
            detail = f"OPTIONS: no answer within {check_timeout(trunk.options_interval):g} s"
        except OSError as exc:
            health, detail = "down", f"OPTIONS: cannot reach {trunk.host}: {exc}"
        self.checks += 1
        if health != self.health:
            log.warning("trunk %s is %s (%s)", trunk.name, health, detail)
            self.health = health
            try:
                await self.directory.set_health(trunk.id, health, detail[:200])
            except Exception:  # removed meanwhile, store away: the next check writes again
                log.exception("trunk %s: could not store its health", trunk.name)
                self.health = "unknown"
        return health

    async def _run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(max(1, self.trunk.options_interval))
