"""Webhooks: signed (ed25519 + Standard Webhooks), durable, ordered, retried.

Three modules, one concern each:

* ``events`` — the Telnyx v2 envelope (``{"data": {event_type, id, occurred_at, payload,
  record_type}, "meta": {attempt, delivered_to}}``) that the official ``telnyx`` SDKs unwrap
  into their typed events.
* ``signing`` — ``telnyx-signature-ed25519``/``telnyx-timestamp`` and Standard Webhooks'
  ``webhook-id``/``webhook-timestamp``/``webhook-signature`` (``v1a`` ed25519, ``v1`` HMAC with
  an app's ``whsec_`` secret), the server's key pair kept in the database, and a verifier.
* ``outbox`` — ``WebhookOutbox``: enqueue writes to the database; a worker task delivers with
  retries, exponential backoff, failover URL, per-key order, at least once across restarts.

In a server::

    store = await Store.open(url)
    outbox = await WebhookOutbox.create(store)           # loads (or makes) the signing key
    await outbox.start()                                 # in the app's lifespan
    await outbox.enqueue_for_application(app, "call.answered", payload,
                                         ordering_key=call_control_id)
    ...
    await outbox.stop()                                  # before store.close()

``GET /v2/public_key`` serves ``outbox.public_key`` (or ``await webhook_public_key(store)``).
"""

from callbridge.webhooks.events import WebhookEvent, format_instant, new_event, webhook_body
from callbridge.webhooks.outbox import RetryPolicy, WebhookOutbox
from callbridge.webhooks.signing import (
    SIGNATURE_TOLERANCE,
    WebhookSigner,
    WebhookVerificationError,
    generate_signing_secret,
    load_signer,
    verify_webhook,
    webhook_public_key,
)

__all__ = [
    "SIGNATURE_TOLERANCE",
    "RetryPolicy",
    "WebhookEvent",
    "WebhookOutbox",
    "WebhookSigner",
    "WebhookVerificationError",
    "format_instant",
    "generate_signing_secret",
    "load_signer",
    "new_event",
    "verify_webhook",
    "webhook_body",
    "webhook_public_key",
]
