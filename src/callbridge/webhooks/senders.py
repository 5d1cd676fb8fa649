"""How the webhook outbox sends one attempt: ``Http1Sender`` (its own keep-alive HTTP/1.1
pools, ``callbridge.webhooks.http1``; the default) or ``HttpxSender`` (an ``httpx`` client
the caller gave, as tests and embedders do). Both keep one pool per destination (origin),
bound the whole request by the attempt's deadline and return ``None`` when the receiver
answered 2xx, else why not (the attempt's ``last_error``).
"""

from __future__ import annotations

import asyncio
from typing import Protocol
from urllib.parse import urlsplit

import httpx

from callbridge import __version__
from callbridge.outbound import OutboundPolicy, OutboundRefused, guarded_client
from callbridge.webhooks.http1 import Http1Error, Http1Pool

__all__ = ["ANSWER_READ", "Http1Sender", "HttpxSender", "Sender"]

ANSWER_READ = 64 * 1024  # bytes of a receiver's answer read to keep its connection
_USER_AGENT = f"callbridge-webhooks/{__version__}"


class Sender(Protocol):
    """What the outbox posts through; ``policy`` is the operator's outbound policy, set again
    at each start (pools made after that use it)."""

    policy: OutboundPolicy

    async def post(
        self, origin: str, url: str, body: str, headers: dict[str, str], answer_within: float
    ) -> str | None: ...

    async def aclose(self) -> None: ...


class Http1Sender:
    """Posts through one ``Http1Pool`` per destination, at most ``per_destination`` kept."""

    def __init__(self, policy: OutboundPolicy, per_destination: int) -> None:
        self.policy = policy
        self._per_destination = per_destination
        self._pools: dict[str, Http1Pool] = {}

    async def post(
        self, origin: str, url: str, body: str, headers: dict[str, str], answer_within: float
    ) -> str | None:
        """POST one attempt; None if it was delivered, else why not."""
        try:
            pool = self._pools.get(origin)
            if pool is None:
                pool = self._pools[origin] = Http1Pool(
                    origin, self.policy, keep=self._per_destination, user_agent=_USER_AGENT
                )
            parts = urlsplit(url)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            headers = {"content-type": "application/json", **headers}
            # Whole-request deadline: a receiver that trickles bytes would otherwise hold the
            # attempt for ever.
            async with asyncio.timeout(answer_within):
                status = await pool.post(target, body.encode("ascii"), headers, ANSWER_READ)
        except TimeoutError:
            return f"no answer within {answer_within:g} s"
        except OutboundRefused as exc:
            return f"{type(exc).__name__}: {exc}"
        except Http1Error as exc:
            return f"{exc.kind}: {exc}"
        except ValueError as exc:  # a URL the pool cannot use
            return f"InvalidURL: {exc}"
        return None if 200 <= status < 300 else f"HTTP {status}"

    async def aclose(self) -> None:
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            pool.close()


class HttpxSender:
    """Posts through ``client`` if given (never closed here), else one guarded
    ``httpx.AsyncClient`` per destination."""

    def __init__(
        self, policy: OutboundPolicy, per_destination: int, client: httpx.AsyncClient | None
    ) -> None:
        self.policy = policy
        self._per_destination = per_destination
        self._given_client = client
        self._clients: dict[str, httpx.AsyncClient] = {}

    def _client_for(self, origin: str) -> httpx.AsyncClient:
        """One client, so one connection pool, per destination: httpcore looks through every
        connection of its pool for each request, so small pools keep that cheap. Never a
        proxy from the environment, never a redirect (the URL the app set is the one that gets
        the event), never an internal address the operator did not allow
        (--allow-webhooks-to): a refused URL fails the attempt with the reason."""
        client = self._given_client or guarded_client(
            self.policy,
            max_connections=self._per_destination,
            keepalive=self._per_destination,
            headers={"user-agent": _USER_AGENT},
        )
        self._clients[origin] = client
        return client

    async def post(
        self, origin: str, url: str, body: str, headers: dict[str, str], answer_within: float
    ) -> str | None:
        """POST one attempt; None if it was delivered, else why not."""
        client = self._clients.get(origin) or self._client_for(origin)
        headers = {"content-type": "application/json", **headers}
        try:
            # Whole-request deadline: httpx's own timeouts are per read, and a receiver that
            # trickles bytes would otherwise hold the attempt for ever.
            async with asyncio.timeout(answer_within):
                # Streamed: the status is all that counts, and an app's (possibly large)
                # answer is no reason to spend memory. A short answer is read to its end, so
                # that the connection can be kept for the next message; a long one is cut off
                # (the connection is closed instead).
                async with client.stream(
                    "POST",
                    url,
                    content=body.encode("ascii"),
                    headers=headers,
                    timeout=answer_within,
                ) as response:
                    status = response.status_code
                    read = 0
                    async for chunk in response.aiter_raw():
                        read += len(chunk)
                        if read > ANSWER_READ:
                            break
        except (TimeoutError, httpx.TimeoutException):
            return f"no answer within {answer_within:g} s"
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return None if 200 <= status < 300 else f"HTTP {status}"

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            if client is not self._given_client:
                await client.aclose()
