"""What ``/v2/conferences`` answers with: a conference and a participant, as Telnyx's records.

Participants are named by their calls' ``call_control_id`` (``id`` too: callbridge has no
separate participant id).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from callbridge.api.schemas import iso
from callbridge.core.control import ConferenceRecord, ParticipantInfo

__all__ = ["ConferenceOut", "ParticipantOut", "Role", "conference_out", "participant_out"]

Role = Literal["barge", "monitor", "none", "whisper"]


class ConferenceOut(BaseModel):
    record_type: Literal["conference"] = "conference"
    id: str
    name: str
    created_at: str
    updated_at: str
    expires_at: str
    status: Literal["init", "in_progress", "completed"]
    connection_id: str | None = None
    end_reason: Literal["all_left", "ended_via_api", "host_left", "time_exceeded"] | None = None


def conference_out(record: ConferenceRecord) -> ConferenceOut:
    expires = record.expires_at or record.created_at
    reason = record.end_reason
    return ConferenceOut(
        id=record.id,
        name=record.name,
        created_at=iso(record.created_at) or "",
        updated_at=iso(record.ended_at or record.created_at) or "",
        expires_at=iso(expires) or "",
        status="completed" if record.ended_at is not None else "in_progress",
        connection_id=record.application.id if record.application is not None else None,
        end_reason=reason,
    )


class ConferenceRef(BaseModel):
    id: str
    name: str


class ParticipantOut(BaseModel):
    record_type: Literal["participant"] = "participant"
    id: str
    call_control_id: str
    call_leg_id: str
    conference: ConferenceRef
    created_at: str
    updated_at: str
    status: Literal["joining", "joined", "left"] = "joined"
    muted: bool
    on_hold: bool
    end_conference_on_exit: bool = False
    soft_end_conference_on_exit: bool = False
    whisper_call_control_ids: list[str]
    supervisor_role: Role = Field(description="callbridge: the participant's supervisor role")


def participant_out(p: ParticipantInfo) -> ParticipantOut:
    joined = iso(p.joined_at) or ""
    return ParticipantOut(
        id=p.call_control_id,
        call_control_id=p.call_control_id,
        call_leg_id=p.call_control_id,
        conference=ConferenceRef(id=p.conference_id, name=p.conference_name),
        created_at=joined,
        updated_at=joined,
        muted=p.muted,
        on_hold=p.on_hold,
        whisper_call_control_ids=list(p.whisper_call_control_ids),
        supervisor_role=p.supervisor_role,
    )
