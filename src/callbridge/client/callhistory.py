"""The signed-in user's call history, from the server's call records (``history.list``,
docs/protocol.md "Call history"): :meth:`Phone.call_history
<callbridge.client.phone.Phone.call_history>` returns a :class:`HistoryPage` of
:class:`HistoryEntry`.

::

    page = await phone.call_history(limit=20)
    for entry in page.entries:
        print(entry.direction, entry.party_name or entry.party, entry.end_reason,
              "missed" if entry.missed else "")
    if page.next_before is not None:
        older = await phone.call_history(limit=20, before=page.next_before)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

__all__ = ["HistoryEntry", "HistoryPage", "parse_history_page"]


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One ended call of the user, from their side. Datetimes are timezone-aware UTC."""

    call_id: str  # the call's record (for a placed call, the caller's call_id)
    direction: Literal["in", "out"]  # out: you placed it; in: you were called
    party: str  # the other party: a user name, or what the record names (dialled, an app)
    party_name: str | None  # their display name, when they are a user of your account
    party_number: str | None  # their E.164 number, when they are a user with one
    party_extension: str | None  # their extension, when they are a user
    dial: str  # what to dial to call them back
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime
    duration_seconds: float  # talk time; 0 when nobody answered
    end_reason: str  # docs/protocol.md, "Call end reasons"
    missed: bool  # in, never answered, and not rejected by you

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> HistoryEntry:
        answered = data.get("answered_at")
        return cls(
            call_id=str(data["call_id"]),
            direction="out" if data["direction"] == "out" else "in",
            party=str(data["party"]),
            party_name=data.get("party_name"),
            party_number=data.get("party_number"),
            party_extension=data.get("party_extension"),
            dial=str(data["dial"]),
            started_at=datetime.fromisoformat(data["started_at"]),
            answered_at=datetime.fromisoformat(answered) if answered else None,
            ended_at=datetime.fromisoformat(data["ended_at"]),
            duration_seconds=float(data["duration_seconds"]),
            end_reason=str(data["end_reason"]),
            missed=bool(data["missed"]),
        )


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """A page of the history, newest call first; ``next_before`` asks for the next (older)
    page, ``None`` on the last one."""

    entries: list[HistoryEntry]
    next_before: str | None

    def __iter__(self) -> Iterator[HistoryEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


def parse_history_page(reply: dict[str, Any]) -> HistoryPage:
    """The ``history.page`` message, typed."""
    after = reply.get("next_before")
    return HistoryPage(
        [HistoryEntry.from_wire(entry) for entry in reply.get("calls", [])],
        after if isinstance(after, str) else None,
    )
