"""The ``conference.*`` messages of a ``/ws`` connection (docs/protocol.md, "Conferences"),
dispatched to the core's conference manager."""

from __future__ import annotations

from callbridge.core.conferences import ConferenceManager, audio_spec
from callbridge.signalling import protocol as p
from callbridge.signalling.sessions import Session

__all__ = ["dispatch_conference"]


async def dispatch_conference(
    conferences: ConferenceManager, session: Session, msg: p.ClientMessage
) -> None:
    """The ``conference.*`` messages (docs/protocol.md, "Conferences")."""
    match msg:
        case p.ConferenceStart():
            await conferences.hosting.start(
                session, msg.sdp, msg.media_type, msg.name, msg.beep, msg.req_id
            )
        case p.ConferenceInvite():
            await conferences.hosting.invite(session, msg.conference_id, msg.to, msg.req_id)
        case p.ConferenceRemove():
            await conferences.hosting.remove(
                session, msg.conference_id, msg.participant, msg.req_id
            )
        case p.ConferenceEnd():
            await conferences.end(session, msg.conference_id, msg.req_id)
        case p.ConferenceGet():
            conferences.state(session, msg.conference_id, msg.req_id)
        case p.ConferenceHold() | p.ConferenceResume():
            held = isinstance(msg, p.ConferenceHold)
            await conferences.hold(session, msg.conference_id, held, msg.req_id)
        case p.ConferenceMerge():
            await conferences.groups.merge(session, msg.call_ids, msg.conference_id, msg.req_id)
        case p.ConferenceSplit():
            await conferences.groups.split(session, msg.conference_id, msg.call_id, msg.req_id)
        case p.ConferencePlay() | p.ConferenceSpeak():
            conf = conferences.hosted(session, msg.conference_id, msg.type)
            audio = (
                audio_spec(audio_url=msg.audio_url, loops=msg.loops)
                if isinstance(msg, p.ConferencePlay)
                else audio_spec(text=msg.text, voice=msg.voice, language=msg.language)
            )
            await conferences.media_ops.play(session, conf, audio, msg.participants, msg.req_id)
        case p.ConferenceStop():
            conf = conferences.hosted(session, msg.conference_id, msg.type)
            await conferences.media_ops.stop(session, conf, msg.participants, msg.req_id)
        case p.ConferenceRecord():
            conf = conferences.hosted(session, msg.conference_id, msg.type)
            await conferences.media_ops.record(session, conf, msg.action, msg.format, msg.req_id)
        case p.ConferenceUpdateParticipant():
            conf = conferences.hosted(session, msg.conference_id, msg.type)
            hold_audio = (
                audio_spec(audio_url=msg.hold_audio_url, loops=0) if msg.hold_audio_url else None
            )
            await conferences.media_ops.update_participant(
                session,
                conf,
                msg.participant,
                muted=msg.muted,
                held=msg.held,
                hold_audio=hold_audio,
                deaf=msg.deaf,
                role=msg.supervisor_role,
                whisper_to=msg.whisper_to,
                req_id=msg.req_id,
            )
