"""What the REST endpoints work with (one :class:`ApiContext` per server) and the API key check.

The server builds the context in its lifespan and keeps it on ``app.state.api``; endpoints get
it with ``Depends(context)``. API keys (``callbridge apikey create``) are checked against the
store (only their SHA-256 is kept there); a positive answer is cached for
:data:`KEY_CACHE_SECONDS` so that a busy app does not cost a database read per request. A key
revoked in the database is therefore refused at most that long after.

**Accounts and scopes.** A valid key is an :class:`~callbridge.store.accounts.ApiPrincipal`:
its account, its scope, whether it is an admin key. Every endpoint acts within the key's
account (``Principal``); another account's resource is answered exactly as a missing one (404,
same body), never 403, so that a key cannot learn what another account has. A read-only key
(scope ``read``) may only read: every other method is 403 before anything is looked up. The
account endpoints (``/v2/accounts``, tagged :data:`ADMIN_TAG`) answer a key that is not an admin
key as an unknown endpoint.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from callbridge.api.errors import forbidden, not_found, unauthorized
from callbridge.core.control import AppCall, CallControl
from callbridge.store import Store
from callbridge.store.accounts import ApiPrincipal

if TYPE_CHECKING:
    from callbridge.webhooks.telnyx import WebhookEvents

__all__ = [
    "ADMIN_TAG",
    "KEY_CACHE_SECONDS",
    "ApiContext",
    "Ctx",
    "Principal",
    "context",
    "require_api_key",
]

KEY_CACHE_SECONDS = 10.0
ADMIN_TAG = "Accounts (admin keys)"  # the tag of the endpoints only an admin key may use
_READS = frozenset({"GET", "HEAD", "OPTIONS"})


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
    # key digest -> (valid until, who the key is)
    _keys: dict[str, tuple[float, ApiPrincipal]] = field(default_factory=dict)

    async def check_api_key(self, key: str) -> ApiPrincipal | None:
        """Who ``key`` is, or ``None`` if it is unknown or revoked."""
        digest = hashlib.sha256(key.encode()).hexdigest()
        now = time.monotonic()
        cached = self._keys.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        principal = await self.store.check_api_key(key)
        if principal is None:
            self._keys.pop(digest, None)
            return None
        if len(self._keys) > 1000:
            self._keys.clear()
        self._keys[digest] = (now + KEY_CACHE_SECONDS, principal)
        return principal

    def forget_keys(self) -> None:
        """Check every key against the store again (keys were deleted: an account went)."""
        self._keys.clear()

    async def account_of(self, call: AppCall) -> str:
        """The account a live or recently ended call belongs to: its application's, else
        (a softphone's leg) its device's user's."""
        return self.control.account_of(call)


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
) -> ApiPrincipal:
    """Every /v2 endpoint: a valid ``Authorization: Bearer KEY`` or 401 saying what is wrong;
    then the key's rights (see the module docstring). Who the key is, for the endpoint."""
    if credentials is None:
        header = request.headers.get("authorization")
        if header is None:
            raise unauthorized(
                "no Authorization header: send 'Authorization: Bearer <API key>' "
                "(create a key with `callbridge apikey create`)"
            )
        raise unauthorized("the Authorization header must be 'Bearer <API key>'")
    principal = await ctx.check_api_key(credentials.credentials)
    if principal is None:
        raise unauthorized(
            "the API key is unknown or revoked: use a key printed by `callbridge apikey create`"
        )
    route = request.scope.get("route")
    if not principal.admin and ADMIN_TAG in getattr(route, "tags", ()):
        # The same answer as for a path that does not exist (api.errors), so that a key that
        # may not manage accounts does not learn that this API is there.
        raise not_found(f"no such endpoint: {request.method} {request.url.path}")
    if principal.read_only and request.method not in _READS:
        raise forbidden(
            f"this API key is read-only: it may only read (GET), not {request.method} "
            f"{request.url.path}; use a key created without --read-only"
        )
    return principal


# What an endpoint acts as: the key's principal (the dependency is run once per request).
Principal = Annotated[ApiPrincipal, Depends(require_api_key)]
