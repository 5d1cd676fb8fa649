export class ConferencePhone extends CallPhone {
    /** @type {Map<string, Conference>} */ _conferences: Map<string, Conference>;
    /** @type {Map<string, Conference>} conference.start req_id -> the conference */
    _starting: Map<string, Conference>;
    /** Seed 000's call group of this phone's calls. */
    conferenceGroup: CallGroup;
    /** Seed 000 `telephony.calls`: the live calls that are not in the call group. */
    get calls(): Call[];
    /** The conferences this phone hosts or is invited to / in. */
    get conferences(): Conference[];
    /** The current conference (the last one started or joined). */
    get conference(): Conference;
    /** @param {string} what @param {"host"|null} role */
    _currentConference(what: string, role?: "host" | null): Conference;
    /**
     * @param {string} name
     * @param {Conference} conf
     * @param {Record<string, any>} [data]
     */
    _confEvent(name: string, conf: Conference, data?: Record<string, any>): void;
    /**
     * Seed 002 `startConference({conferenceName, mediaType, localMedia, remoteMedia})`: host a
     * conference; resolves once it is connected.
     * @param {{conferenceName?: string, name?: string, mediaType?: "audio"|"video",
     *   beep?: "never"|"always"|"on_enter"|"on_exit", localStream?: MediaStream}} [options]
     * @returns {Promise<Conference>}
     */
    startConference(options?: {
        conferenceName?: string;
        name?: string;
        mediaType?: "audio" | "video";
        beep?: "never" | "always" | "on_enter" | "on_exit";
        localStream?: MediaStream;
    }): Promise<Conference>;
    /** @param {() => boolean} pred @param {string} what @param {number} [ms] */
    _until(pred: () => boolean, what: string, ms?: number): Promise<void>;
    /** Seed 002 `addParticipant(participant)` (host): invite a user. @param {string} to */
    addParticipant(to: string): Promise<void>;
    /** Seed 002 `addParticipants([...])`. @param {string[]} list */
    addParticipants(list: string[]): Promise<void>;
    /** Seed 002 `joinConference()`: accept the invitation ringing here. */
    joinConference(options?: {}): Promise<Conference>;
    /** Seed 002 `rejectConference()`: decline the invitation ringing here. */
    rejectConference(): Promise<void>;
    /** Seed 002 `removeParticipant(participant)` (host). @param {string} participant */
    removeParticipant(participant: string): Promise<void>;
    /** Seed 002 `getParticipants()` (host): participant id -> details. */
    getParticipants(): {
        [x: string]: any;
    };
    /**
     * Ask the server who is in the current conference (`conference.get`): the host learns it
     * from events too, a participant only this way. Updates `conference.participants`,
     * `invitations` and `host` (the host's caller id), and emits `conference:updated`.
     * @returns {Promise<Conference>}
     */
    refreshConference(): Promise<Conference>;
    /** Seed 002 `endConference()`: the host ends it for everyone; a participant leaves. */
    endConference(): Promise<void>;
    /** Hold / resume our own membership of the current conference. */
    holdConference(): Promise<void>;
    resumeConference(): Promise<void>;
    /** @param {Record<string, any>} msg conference.invitation */
    _incomingInvitation(msg: Record<string, any>): Call;
}
import { CallPhone } from "./callphone.js";
import { Conference } from "./conference.js";
import { CallGroup } from "./conference.js";
import { Call } from "./call.js";
