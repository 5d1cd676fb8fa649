"""The REST call-control API under ``/v2``, shaped so that the official ``telnyx`` SDKs work
against callbridge with only ``base_url`` changed::

    from telnyx import AsyncTelnyx
    client = AsyncTelnyx(api_key=KEY, base_url="http://127.0.0.1:8080/v2")

Layout (one module per resource family, all on FastAPI + pydantic, so ``/openapi.json`` and
``/docs`` describe every endpoint):

- ``context``: what endpoints work with (:class:`ApiContext`) and the Bearer API-key check
  (keys from ``callbridge apikey create``; 401 when missing or unknown).
- ``errors``: ``{"errors": [{code, title, detail, source}]}`` for every refusal, with 401,
  403, 404 and 422 (never a status the SDK retries for something a retry cannot fix).
- ``pagination``: ``page[number]`` / ``page[size]`` and ``meta``.
- ``openapi``: the error responses (401, 404, 422, ...) of every operation in
  ``/openapi.json``, with the error body's schema.
- ``applications``: ``/call_control_applications`` CRUD; callbridge's ``/routes`` (which
  destinations ring an application) and ``/public_key`` (the webhook signature key).
- ``commands``: what every call command shares (finding the call, ``command_id``,
  ``client_state``, refusals as API errors, the audio a request names).
- ``calls``: ``POST /calls``, status, and the commands that connect and end calls;
  ``call_media``: speak, playback, DTMF, gather, record; ``conferences``; ``queues``; ``media``
  (uploads and ``/recordings``).

The endpoints only translate: calls, queues and conferences live in the control plane, which
they reach through one facade (:class:`~callbridge.core.control.CallControl`); stored things
are in the store; webhooks are the webhook adapter's (:mod:`callbridge.webhooks.telnyx`:
application events → Telnyx payloads → the durable outbox).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI

from callbridge.api import (
    accounts,
    api_keys,
    applications,
    call_media,
    calls,
    conferences,
    credentials,
    detail_records,
    dial_plans,
    forwarding,
    live_calls,
    media,
    numbers,
    queues,
    trunks,
)
from callbridge.api.context import ApiContext, require_api_key
from callbridge.api.errors import install_error_handlers
from callbridge.api.openapi import install_openapi
from callbridge.webhooks.telnyx import WebhookEvents

__all__ = ["API_PREFIX", "ApiContext", "WebhookEvents", "install_api"]

API_PREFIX = "/v2"


def install_api(app: FastAPI) -> None:
    """Mount ``/v2`` on ``app`` (its lifespan must set ``app.state.api`` to an ApiContext)."""
    router = APIRouter(prefix=API_PREFIX, dependencies=[Depends(require_api_key)])
    for module in (applications, calls, call_media, conferences, queues, media, accounts):
        router.include_router(module.router)
    for identities in (credentials, api_keys):  # issue 14: users, tokens, keys over REST
        router.include_router(identities.router)
    for cdrs in (detail_records, live_calls):  # issue 14: CDR search, live calls
        router.include_router(cdrs.router)
    for telephony in (trunks, numbers):  # issue 12: trunks, numbers, outbound routes
        router.include_router(telephony.router)
    router.include_router(dial_plans.router)  # issue 16: dial plan rules, ring groups
    router.include_router(forwarding.router)  # issue 16: a user's forwarding rules
    app.include_router(router)
    install_error_handlers(app)
    install_openapi(app, API_PREFIX)  # every operation lists its error responses
