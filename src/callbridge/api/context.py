"""What the REST endpoints work with (one :class:`ApiContext` per server) and the API key check.

The server builds the context in its lifespan and keeps it on ``app.state.api``; endpoints get
it with ``Depends(context)``. API keys (``callbridge apikey create``) are checked against the
store (only their SHA-256 is kept there); a positive answer is cached for
:data:`KEY_CACHE_SECONDS` so that a busy app does not cost a database read per request. A key
revoked in the database is therefore refused at most that long after.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from callbridge.api.errors import unauthorized
from callbridge.core.control import CallControl
from callbridge.store import Store

if TYPE_CHECKING:
    from callbridge.webhooks.telnyx import WebhookEvents

__all__ = ["KEY_CACHE_SECONDS", "ApiContext", "Ctx", "context", "require_api_key"]

KEY_CACHE_SECONDS = 10.0


@dataclass
class ApiContext:
    """What the endpoints work with: the store, the core (only through its call-control
    facade) and where things are."""

    store: Store
    control: CallControl
    media_dir: Path  # uploaded media files (/v2/media)
    public_url: str  # how clients reach this server, e.g. "http://127.0.0.1:8080"
    public_key: str  # webhook signatures verify with this (base64 ed25519)
    events: WebhookEvents | None = None
    _keys: dict[str, float] = field(default_factory=dict)  # key digest -> valid until

    async def check_api_key(self, key: str) -> bool:
        digest = hashlib.sha256(key.encode()).hexdigest()
        now = time.monotonic()
        until = self._keys.get(digest)
        if until is not None and until > now:
            return True
        if not await self.store.check_api_key(key):
            self._keys.pop(digest, None)
            return False
        if len(self._keys) > 1000:
            self._keys.clear()
        self._keys[digest] = now + KEY_CACHE_SECONDS
        return True


def context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.api
    return ctx


Ctx = Annotated[ApiContext, Depends(context)]

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key from `callbridge apikey create`, as `Authorization: Bearer KEY`.",
)


async def require_api_key(
    ctx: Ctx,
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Every /v2 endpoint: a valid ``Authorization: Bearer KEY`` or 401 saying what is wrong."""
    if credentials is None:
        header = request.headers.get("authorization")
        if header is None:
            raise unauthorized(
                "no Authorization header: send 'Authorization: Bearer <API key>' "
                "(create a key with `callbridge apikey create`)"
            )
        raise unauthorized("the Authorization header must be 'Bearer <API key>'")
    if not await ctx.check_api_key(credentials.credentials):
        raise unauthorized(
            "the API key is unknown or revoked: use a key printed by `callbridge apikey create`"
        )
