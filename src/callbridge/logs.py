"""The server's logs: one format for every line (``text`` or ``json``), libraries kept quiet,
and one INFO line per call lifecycle event.

**Formats** (``callbridge serve --log-format``):

- ``text`` (default): ``2026-12-02 01:40:00,123 INFO    callbridge.calls: call … answered …``;
- ``json``: one JSON object per line with ``ts`` (UTC, ISO 8601, milliseconds), ``level``,
  ``logger`` and ``msg``, then whatever the line carries as fields (a call line: ``call_id``,
  ``leg_id``, ``event``, ``from``, ``to``, ``user``, ``direction``, ``state``, ``reason``;
  uvicorn's access line: ``client``, ``method``, ``path``, ``status``), and ``exc`` (the
  traceback) when there is one.

uvicorn's own lines (start-up, errors, the access log) go through the same handler: the server
runs uvicorn with ``log_config=None`` once :func:`configure` ran, so uvicorn's loggers
propagate to the root logger instead of printing in their own format.

**Libraries** (:data:`LIBRARIES`: aiosqlite, aioice, aiortc, httpx, websockets, SQLAlchemy,
alembic, …) log at WARNING and above whatever ``--log-level`` says: at DEBUG, aiosqlite alone
wrote 568 of one call's 798 lines. ``--debug-libraries`` lets them log at the server's level.

**Calls**: :class:`CallLog` listens to the core's bus (:mod:`callbridge.core.events`) and writes
one INFO line (logger ``callbridge.calls``) per lifecycle event of each leg: ``initiated`` (a
device placed a call, or is rung), ``ringing`` (the call's destination rings), ``answered``,
``ended`` (with the reason). Every line of one call has its ``call_id`` (the CDR's), so one
``grep`` or one JSON filter gives a call's story.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Literal

if TYPE_CHECKING:
    from callbridge.core.call_events import StateChangedEvent
    from callbridge.core.controller import CallController
    from callbridge.core.events import LegEvent, LegFacts

__all__ = [
    "LIBRARIES",
    "LOG_FORMATS",
    "CallLog",
    "JsonFormatter",
    "LogFormat",
    "configure",
    "uvicorn_log_config",
]

LogFormat = Literal["text", "json"]
LOG_FORMATS: Final = ("text", "json")
TEXT_FORMAT: Final = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# Kept at WARNING unless --debug-libraries: what they log below it is their own plumbing.
LIBRARIES: Final = (
    "aiosqlite",
    "aioice",
    "aiortc",
    "alembic",
    "asyncio",
    "httpcore",
    "httpx",
    "multipart",
    "python_multipart",
    "sqlalchemy",
    "websockets",
)
# Attributes every LogRecord has: the rest are a line's own fields (``extra=``).
_STANDARD: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)
_configured = False


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring for its fields)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.name == "uvicorn.access" and isinstance(record.args, tuple):
            args = record.args
            if len(args) == 5:  # uvicorn's access line: client, method, path, version, status
                line |= {"client": args[0], "method": args[1], "path": args[2], "status": args[4]}
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = (
                    value if isinstance(value, str | int | float | bool | None) else str(value)
                )
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.stack_info:
            line["exc"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False)


def configure(level: str = "info", fmt: LogFormat = "text", debug_libraries: bool = False) -> None:
    """Set up the root logger for ``callbridge serve``: one stderr handler in ``fmt``.

    ``level`` is a logging level name; libraries stay at WARNING unless ``debug_libraries``.
    """
    global _configured
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    numeric = logging.getLevelName(level.upper())
    root.setLevel(numeric)
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(
            numeric if debug_libraries else max(numeric, logging.WARNING)
        )
    _configured = True


def uvicorn_log_config() -> dict[str, Any] | None:
    """uvicorn's ``log_config``: ``None`` (leave logging alone, propagate to the root logger)
    once :func:`configure` ran, else uvicorn's own default."""
    if _configured:
        return None
    from uvicorn.config import LOGGING_CONFIG

    return LOGGING_CONFIG


class CallLog:
    """One INFO line per call lifecycle event (see the module docstring), from the bus."""

    def __init__(self, controller: CallController) -> None:
        # Imported here: every CLI command imports this module (for --log-format), and only
        # the server needs the core.
        from callbridge.core.call_events import StateChangedEvent
        from callbridge.core.events import LegAnswered, LegEnded, LegInitiated

        self.controller = controller
        self.log = logging.getLogger("callbridge.calls")
        bus = controller.bus
        self._unsubscribe = [
            bus.subscribe(LegInitiated, partial(self._leg, "initiated")),
            bus.subscribe(LegAnswered, partial(self._leg, "answered")),
            bus.subscribe(LegEnded, partial(self._leg, "ended")),
            bus.subscribe(StateChangedEvent, self._state_changed),
        ]

    def close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()

    def _leg(self, name: str, event: LegEvent) -> None:
        if not self.log.isEnabledFor(logging.INFO):
            return
        reason = getattr(event, "reason", None)  # LegEnded's EndReason
        self._write(name, event.leg, reason.value if reason is not None else None)

    def _state_changed(self, event: StateChangedEvent) -> None:
        # A call's ringing is the one lifecycle step that no leg event tells.
        if (
            event.kind != "call"
            or event.new != "ringing"
            or not self.log.isEnabledFor(logging.INFO)
        ):
            return
        leg = self.controller.legs.get(event.id)  # a placed call's id is its caller's leg's
        if leg is not None:
            self._write("ringing", leg.facts(), None)

    def _write(self, name: str, leg: LegFacts, reason: str | None) -> None:
        fields = {
            "call_id": leg.call_session_id,
            "leg_id": leg.call_control_id,
            "event": name,
            "from": leg.from_,
            "to": leg.to,
            "user": leg.user,
            "direction": leg.direction,
            "state": leg.state,
            "reason": reason,
        }
        tail = f" ({reason})" if reason else ""
        self.log.info(
            "call %s %s%s: %s -> %s, leg %s of %s (%s)",
            leg.call_session_id,
            name,
            tail,
            leg.from_ or "?",
            leg.to or "?",
            leg.call_control_id,
            leg.user,
            leg.direction,
            extra=fields,
        )
