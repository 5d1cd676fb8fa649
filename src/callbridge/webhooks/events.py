"""The webhook envelope, as Telnyx sends it (call control, API v2)::

    {"data": {"event_type": "call.answered",
              "id": "0ccc7b54-4df3-4bcb-a65a-3da1ecc997d7",
              "occurred_at": "2018-02-02T22:25:27.521992Z",
              "payload": {...},
              "record_type": "event"},
     "meta": {"attempt": 1, "delivered_to": "https://example.com/webhooks"}}

``data`` is the event: fixed when it is enqueued and sent byte for byte on every attempt (its
``id`` is how an app recognises a retry of something it already handled). ``meta`` describes
one attempt: its number (1, 2, …) and the URL it went to (the primary or the failover URL). So
the body differs between attempts, in ``meta`` only, and each attempt is signed as sent. This is
what Telnyx does; the alternative, one body fixed at enqueue, would freeze ``meta`` at attempt 1
and lie about failover deliveries.

The official ``telnyx`` SDK's ``webhooks.unwrap`` turns these bodies into its typed events
(``CallAnsweredWebhookEvent``, ``ConferenceCreatedWebhookEvent``, …): it picks the class by
``data.event_type``, so the payload's fields must be the ones Telnyx documents for that type.

JSON is written compact and ASCII-only (``\\u`` escapes): the bytes on the wire, the text that is
signed and the text an app verifies are then the same whatever decoding the app applies.
"""

from __future__ import annotations

import json
import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from callbridge.store.records import as_utc

__all__ = ["WebhookEvent", "format_instant", "new_event", "new_message_id", "webhook_body"]

# Dotted lowercase words: "call.answered", "conference.participant.joined", "call.dtmf.received".
_EVENT_TYPE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+", re.ASCII)


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """One event, ready to enqueue: ``data_json`` is the envelope's ``data`` as sent."""

    id: str
    event_type: str
    occurred_at: datetime
    data_json: str


def new_event(
    event_type: str,
    payload: Mapping[str, Any],
    *,
    event_id: str | None = None,
    occurred_at: datetime | None = None,
) -> WebhookEvent:
    """The event ``data`` for ``payload``; ``ValueError`` if it cannot be one.

    Datetimes anywhere in ``payload`` are written as ``format_instant`` does (ISO 8601 UTC, "Z").
    """
    if not _EVENT_TYPE.fullmatch(event_type):
        raise ValueError(
            f"invalid event type {event_type!r}: use dotted lowercase words, e.g. call.answered"
        )
    at = datetime.now(UTC) if occurred_at is None else occurred_at
    if at.tzinfo is None:
        raise ValueError("occurred_at is a naive datetime: pass a timezone-aware one")
    identifier = event_id or str(uuid.uuid4())
    data = {
        "event_type": event_type,
        "id": identifier,
        "occurred_at": format_instant(at),
        "payload": dict(payload),
        "record_type": "event",
    }
    try:
        text = _dumps(data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the {event_type} payload is not JSON: {exc}") from exc
    return WebhookEvent(identifier, event_type, as_utc(at), text)


def webhook_body(data_json: str, attempt: int, delivered_to: str) -> str:
    """The body of one attempt: the stored event text verbatim, with this attempt's ``meta``."""
    meta = _dumps({"attempt": attempt, "delivered_to": delivered_to})
    return f'{{"data":{data_json},"meta":{meta}}}'


def new_message_id() -> str:
    """A Standard Webhooks message id (``webhook-id``): "msg_" and 128 random bits."""
    return "msg_" + secrets.token_hex(16)


def format_instant(at: datetime) -> str:
    """ISO 8601 in UTC with microseconds and "Z", as Telnyx writes instants."""
    return as_utc(at).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _dumps(value: Any) -> str:
    return json.dumps(
        value, separators=(",", ":"), ensure_ascii=True, allow_nan=False, default=_json_default
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} in a payload")
        return format_instant(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
