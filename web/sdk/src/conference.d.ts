/** @typedef {import("./call.js").Call} Call */
/** A hosted conference as this phone sees it (host or participant). */
export class Conference {
    /**
     * @param {{id: string, name?: string, role: "host"|"participant", mediaType?: string,
     *   call?: Call|null, invitationId?: string|null, from?: string, fromName?: string}} init
     */
    constructor(init: {
        id: string;
        name?: string;
        role: "host" | "participant";
        mediaType?: string;
        call?: Call | null;
        invitationId?: string | null;
        from?: string;
        fromName?: string;
    });
    /** @type {string} */ id: string;
    /** @type {string} */ name: string;
    /** @type {"host"|"participant"} */ role: "host" | "participant";
    /** @type {string} */ mediaType: string;
    /** @type {Call|null} our leg */ call: Call | null;
    /** @type {"connecting"|"invited"|"connected"|"held"|"ended"} */
    state: "connecting" | "invited" | "connected" | "held" | "ended";
    /** @type {string|null} the invitation that rings us (participant) */
    invitationId: string | null;
    /** @type {string} who invited us */ from: string;
    /** @type {string} */ fromName: string;
    /** @type {Record<string, any>} participant id -> {id, call_id, name, status, muted, held, …} */
    participants: Record<string, any>;
    /** @type {Record<string, any>} participant id -> {id, invitation_id, name, status} */
    invitations: Record<string, any>;
    /** @type {string|null} */ endReason: string | null;
    /** @type {string} the host's caller id (known after `phone.refreshConference()`) */
    host: string;
    /** @param {Record<string, any>} msg */
    _follow(msg: Record<string, any>): void;
    toJSON(): {
        id: string;
        name: string;
        role: "host" | "participant";
        state: "connected" | "connecting" | "ended" | "held" | "invited";
        participants: Record<string, any>;
        invitations: Record<string, any>;
        callId: string;
    };
}
/**
 * Seed 000's TelephonyCallGroup. Events (no arguments; handlers or `on<name>` properties):
 * callschanged, statechange, connected, holding, held, resuming, error(err).
 * `state`: "" (no group), "connected", "holding", "held", "resuming".
 */
export class CallGroup extends Emitter {
    /**
     * @param {{request: (msg: Record<string, any>) => Promise<Record<string, any>>,
     *   getCall: (id: string) => Call|null}} host
     */
    constructor(host: {
        request: (msg: Record<string, any>) => Promise<Record<string, any>>;
        getCall: (id: string) => Call | null;
    });
    _host: {
        request: (msg: Record<string, any>) => Promise<Record<string, any>>;
        getCall: (id: string) => Call | null;
    };
    /** @type {string|null} the server's conference_id of the group */ id: string | null;
    /** @type {""|"connected"|"holding"|"held"|"resuming"} */ state: "" | "connected" | "holding" | "held" | "resuming";
    /** @type {Call[]} */ _calls: Call[];
    /** @type {Call|null} the call that carries our voice and the mix */ mediaCall: Call | null;
    /** @type {Function|null} */ oncallschanged: Function | null;
    /** @type {Function|null} */ onstatechange: Function | null;
    /** @type {Function|null} */ onconnected: Function | null;
    /** @type {Function|null} */ onholding: Function | null;
    /** @type {Function|null} */ onheld: Function | null;
    /** @type {Function|null} */ onresuming: Function | null;
    /** @type {Function|null} */ onerror: Function | null;
    /** The calls in the group (seed 000 `calls`). */
    get calls(): import("./call.js").Call[];
    /** @param {""|"connected"|"holding"|"held"|"resuming"} state */
    _setState(state: "" | "connected" | "holding" | "held" | "resuming"): void;
    /** @param {Record<string, any>} msg the server's view of the group */
    _follow(msg: Record<string, any>): void;
    /** A conference.* message about the group. @param {Record<string, any>} msg */
    _handle(msg: Record<string, any>): void;
    _dissolve(): void;
    /** @param {Call} call */
    _callEnded(call: Call): void;
    /** @param {Record<string, any>} msg */
    _request(msg: Record<string, any>): Promise<Record<string, any>>;
    /** Merge answered calls into the group (two to make it; then one at a time). A held call
     * is resumed by the merge. @param {...Call} calls */
    add(...calls: Call[]): Promise<void>;
    /** Take a call out of the group: an ordinary call again. @param {Call} call */
    remove(call: Call): Promise<void>;
    /** Hang up every call in the group (seed 000 `hangUp`). */
    hangUp(): Promise<void>;
    /** Hold the whole group: we hear nothing and are not heard; the others go on talking. */
    hold(): Promise<void>;
    /** Resume a held group. */
    resume(): Promise<void>;
    /**
     * @param {"hold"|"resume"} verb
     * @param {"connected"|"held"} settled
     * @param {"holding"|"resuming"} passing
     */
    _switch(verb: "hold" | "resume", settled: "connected" | "held", passing: "holding" | "resuming"): Promise<void>;
}
export type Call = import("./call.js").Call;
import { Emitter } from "./emitter.js";
