/**
 * What a call needs of its phone (the Phone implements it).
 * @typedef {object} CallHost
 * @property {(msg: Record<string, any>, timeoutMs?: number) => Promise<Record<string, any>>} request
 * @property {(msg: Record<string, any>) => void} send
 * @property {(opts?: {localStream?: MediaStream}) => CallMedia} newMedia
 * @property {(call: Call) => void} callEnded
 * @property {(call: Call) => void} broughtForward
 * @property {(call: Call, action: string|undefined, answer: () => Promise<void>) => Promise<void>} answering
 * @property {(call: Call, destination: string, options: Record<string, any>) => Promise<Call>} consult
 * @property {(call: Call) => Call|null} takeConsultation
 * @property {(name: string, call: Call, data: Record<string, any>) => void} announce
 */
export class Call extends Emitter {
    /**
     * @param {CallHost} host
     * @param {{id: string|null, direction: CallDirection, from: string, fromName?: string,
     *   to: string, mediaType?: MediaType, offerSdp?: string|null, media?: CallMedia|null,
     *   movedFrom?: string|null, conferenceId?: string|null}} init
     */
    constructor(host: CallHost, init: {
        id: string | null;
        direction: CallDirection;
        from: string;
        fromName?: string;
        to: string;
        mediaType?: MediaType;
        offerSdp?: string | null;
        media?: CallMedia | null;
        movedFrom?: string | null;
        conferenceId?: string | null;
    });
    _host: CallHost;
    /** @type {string} the server's id of this leg ("" until `call.trying`) */
    id: string;
    /** @type {CallDirection} */ direction: CallDirection;
    /** @type {string} the caller's number (E.164) or extension */ from: string;
    /** @type {string} the caller's display name (may be empty) */
    fromName: string;
    /** @type {string} the destination as dialled */ to: string;
    /** @type {CallState} */
    state: CallState;
    /** @type {MediaType} */ mediaType: MediaType;
    /** @type {string|null} the call this one takes over (seed 002 move), for incoming */
    movedFrom: string | null;
    /** @type {string|null} set for the leg of a conference */
    conferenceId: string | null;
    /** @type {CallMedia|null} */ media: CallMedia | null;
    /** @type {string|null} */ _offerSdp: string | null;
    /** @type {string|null} why the call ended */ endReason: string | null;
    /** @type {CallbridgeError|null} the last `error` about this call */ lastError: CallbridgeError | null;
    /** @type {string|null} the far party after a transfer or bridge (else from/to) */
    _peerOverride: string | null;
    /** @type {string} */ peerName: string;
    /** @type {Date} */ startTime: Date;
    /** @type {Date|null} */ answerTime: Date | null;
    /** @type {Date|null} */ endTime: Date | null;
    /** @type {boolean} the server records this call (`call.recording`) */ isRecorded: boolean;
    /** @type {Record<string, any>|null} a media modification waiting for our answer */
    pendingModification: Record<string, any> | null;
    _holders: Set<"local" | "remote">;
    _muted: boolean;
    _serverMuted: boolean;
    heldExplicitly: boolean;
    /** @type {Record<string, any>[]} our candidates waiting until the server knows the leg */
    _outbox: Record<string, any>[];
    _signalled: boolean;
    /** @type {Promise<any>} media work, one step at a time (answers before candidates) */
    _ops: Promise<any>;
    /** @type {any[][]|null} events held back until the code awaiting this call has it */
    _deferred: any[][] | null;
    /** The RTCPeerConnection (seed 001: `getSenders()…dtmf.insertDTMF('1234#')`). */
    get peerConnection(): RTCPeerConnection;
    /** The far party's media (audio, and video when there is some). */
    get remoteStream(): MediaStream;
    /** What this phone sends. */
    get localStream(): MediaStream;
    get localVideoStream(): MediaStream;
    /** Seed 001: true after mute() until unmute(). */
    get isMuted(): boolean;
    /** @returns {"local"|"remote"|null} who holds the call (local first) */
    get heldBy(): "local" | "remote" | null;
    get isHeld(): boolean;
    get heldLocally(): boolean;
    get isLive(): boolean;
    get isEstablished(): boolean;
    /** The far party: `to` of an outgoing call, `from` of an incoming one (or who a transfer
     * connected us to). */
    get peer(): string;
    /** Seconds since answered (0 before). */
    get duration(): number;
    toJSON(): {
        id: string;
        from: string;
        fromName: string;
        to: string;
        state: CallState;
        direction: CallDirection;
        mediaType: MediaType;
        isMuted: boolean;
        heldBy: "local" | "remote";
        endReason: string;
    };
    /** Hold events back until `release()` (the code awaiting phone.call() attaches handlers). */
    _defer(): void;
    _release(): void;
    /**
     * @param {string} name
     * @param {Record<string, any>} data
     * @param {...any} args
     */
    _event(name: string, data: Record<string, any>, ...args: any[]): void;
    /** @param {string} id */
    _setId(id: string): void;
    /** The server knows this leg now: send the candidates we kept. */
    _flushOutbox(): void;
    /** @param {Record<string, any>} msg */
    _sendCandidate(msg: Record<string, any>): void;
    /** @param {() => Promise<any>} fn */
    _op(fn: () => Promise<any>): Promise<any>;
    /** @param {CallMedia} media */
    _bindMedia(media: CallMedia): void;
    _established: boolean;
    _mediaPending: CallMedia | null | undefined;
    /** @param {Record<string, any>} msg a server message about this call */
    _deliver(msg: Record<string, any>): void;
    _earlyCandidates: any;
    /** @param {string} name */
    listenerCount(name: string): number;
    /** @param {unknown} value */
    _follow(value: unknown): void;
    /** @param {Record<string, any>} msg @param {boolean} held */
    _onHold(msg: Record<string, any>, held: boolean): void;
    /**
     * End the call here (server said so, or the session is over).
     * @param {string} reason
     * @param {Record<string, any>} data
     */
    _end(reason: string, data: Record<string, any>): void;
    /** @param {string} reason */
    _endLocally(reason: string): void;
    /** @param {string} type @param {Record<string, any>} [fields] */
    _request(type: string, fields?: Record<string, any>): Promise<Record<string, any>>;
    /** @param {string} what */
    _requireLive(what: string): void;
    /**
     * Answer this incoming call (seed 001 `answer()`, seed 002 `answer({action})`).
     * @param {{action?: "hold"|"end", mediaType?: MediaType, localStream?: MediaStream}} [options]
     *   action: what happens first to the phone's other answered calls (hold or hang up);
     *   mediaType: "audio" answers a video call without video.
     */
    answer(options?: {
        action?: "hold" | "end";
        mediaType?: MediaType;
        localStream?: MediaStream;
    }): Promise<void>;
    /**
     * Decline this incoming call: silently, or with 'busy' (seed 001 `reject('busy')`).
     * @param {"busy"} [reason]
     */
    reject(reason?: "busy"): Promise<void>;
    /** End the call (cancels it while it rings: seed 002 `cancel`). */
    hangup(): Promise<void>;
    /** Seed 002 `cancel()`: hang up an outgoing call that has not been answered. */
    cancel(): Promise<void>;
    /** Hold: the far party hears hold music (`held` with heldBy "local"). */
    hold(): Promise<void>;
    /** Hold unless held already (automatic: add_call, switch). @returns {Promise<boolean>} */
    _autoHold(): Promise<boolean>;
    _autoResume(): Promise<void>;
    /** Take the call off hold (`resumed`). */
    resume(): Promise<void>;
    /**
     * Mute: the microphone track is disabled and the server stops forwarding our audio
     * (authoritative). `{keepSending: true}` mutes at the server only.
     * @param {{keepSending?: boolean}} [options]
     */
    mute(options?: {
        keepSending?: boolean;
    }): Promise<void>;
    unmute(): Promise<void>;
    /** Blind transfer (seed 001): this call ends with `transferred`. @param {string} destination */
    transfer(destination: string): Promise<void>;
    /**
     * Attended transfer, step 1 (seed 001): hold this call and place a consultation call,
     * which is returned. If the consultation fails or is hung up, this call is resumed.
     * @param {string} destination
     * @param {Record<string, any>} [options] as phone.call()
     * @returns {Promise<Call>}
     */
    attendedTransfer(destination: string, options?: Record<string, any>): Promise<Call>;
    /** Attended transfer, step 2: connect this call's far party to the consultation's. */
    completeTransfer(): Promise<void>;
    /** Seed 002 `move()`: ring the user's other devices; the one that answers takes over. */
    move(): Promise<void>;
    /**
     * Send DTMF with the browser's RTCDTMFSender (RFC 4733), seed 002 `sendDTMFTone`.
     * Resolves when the tones have been sent.
     * @param {string} digits 0-9 * # A-D and `,` (a 2 s pause)
     * @param {{duration?: number, gap?: number}} [options] milliseconds per tone and between
     */
    sendDTMF(digits: string, options?: {
        duration?: number;
        gap?: number;
    }): Promise<void>;
    /**
     * Renegotiate the media on a new peer connection (`call.restart_media`): after a network
     * change; done by the SDK itself when the connection fails or the session resumes.
     */
    restartMedia(): Promise<void>;
    /** Ask to make this audio call a video call (seed 002 `upgrade`). */
    upgrade(): Promise<void>;
    /** Make this video call an audio call (seed 002 `downgrade`). */
    downgrade(): Promise<void>;
    /** Accept the far party's upgrade or downgrade (seed 002 `acceptModification`). */
    acceptModification(): Promise<void>;
    /** Reject it (seed 002 `rejectModification`): an upgrade then brings the far party's
     * video to us, but we send none; a downgrade ends video anyway. */
    rejectModification(): Promise<void>;
}
export type CallState = "trying" | "ringing" | "active" | "held" | "ended";
export type CallDirection = "incoming" | "outgoing";
export type MediaType = "audio" | "video";
export type CallMedia = import("./media.js").CallMedia;
/**
 * What a call needs of its phone (the Phone implements it).
 */
export type CallHost = {
    request: (msg: Record<string, any>, timeoutMs?: number) => Promise<Record<string, any>>;
    send: (msg: Record<string, any>) => void;
    newMedia: (opts?: {
        localStream?: MediaStream;
    }) => CallMedia;
    callEnded: (call: Call) => void;
    broughtForward: (call: Call) => void;
    answering: (call: Call, action: string | undefined, answer: () => Promise<void>) => Promise<void>;
    consult: (call: Call, destination: string, options: Record<string, any>) => Promise<Call>;
    takeConsultation: (call: Call) => Call | null;
    announce: (name: string, call: Call, data: Record<string, any>) => void;
};
import { Emitter } from "./emitter.js";
import { CallbridgeError } from "./errors.js";
