export class CallPhone extends PhoneSession {
    /** @type {Map<string, Call>} live calls by id, oldest first */
    _calls: Map<string, Call>;
    /** @type {Call[]} placed/answered live calls, the foreground one last */
    _focus: Call[];
    /** @type {Map<string, Call>} call.create req_id -> the call being placed */
    _creating: Map<string, Call>;
    /** @type {Map<string, Record<string, any>[]>} messages for calls not known yet */
    _early: Map<string, Record<string, any>[]>;
    /** @type {Map<Call, Call>} addCall: second call -> the first, to resume */
    _returns: Map<Call, Call>;
    /** @type {Map<Call, {consult: Call, heldHere: boolean}>} attendedTransfer */
    _consults: Map<Call, {
        consult: Call;
        heldHere: boolean;
    }>;
    /** @type {((call: Call) => void)[]} */
    _endedListeners: ((call: Call) => void)[];
    /** @type {MediaStream|null} */ _inputStream: MediaStream | null;
    /** @type {string|null} */ audioInput: string | null;
    /** @type {string|null} */ audioOutput: string | null;
    /** @type {string|null} */ videoInput: string | null;
    /** @type {RTCIceServer[]} */ iceServers: RTCIceServer[];
    /** @type {RTCIceTransportPolicy} */ iceTransportPolicy: RTCIceTransportPolicy;
    /** The live calls (seed 001 `phone.activeCalls`), oldest first; each has id, from, to,
     * state ('trying' | 'ringing' | 'active' | 'held') and direction. */
    get activeCalls(): Call[];
    /** @param {string} callId @returns {Call|null} */
    getCall(callId: string): Call | null;
    /** The call the user is on: the last one placed, answered, resumed or switched to. */
    get foregroundCall(): Call;
    /**
     * Place a call (seed 001 `phone.call(dest, {callerId})`). Resolves once the server took
     * it (`call.trying`: the call has its id); its events from `trying` on reach handlers
     * attached right after the await.
     * @param {string} destination extension, E.164 number or user name
     * @param {DialOptions} [options]
     * @returns {Promise<Call>}
     */
    call(destination: string, options?: DialOptions): Promise<Call>;
    /**
     * A new call's media, with the phone's ICE settings and devices.
     * @param {{localStream?: MediaStream}} [opts]
     */
    newMedia(opts?: {
        localStream?: MediaStream;
    }): CallMedia;
    /** @param {Call} call */
    callEnded(call: Call): void;
    /** @param {Call} call */
    broughtForward(call: Call): void;
    /**
     * @param {Call} call
     * @param {string|undefined} action
     * @param {() => Promise<void>} answer
     */
    answering(call: Call, action: string | undefined, answer: () => Promise<void>): Promise<void>;
    /**
     * @param {Call} call
     * @param {string} destination
     * @param {DialOptions} options
     */
    consult(call: Call, destination: string, options: DialOptions): Promise<Call>;
    /** @param {Call} call */
    takeConsultation(call: Call): Call;
    /**
     * A call event, under seed 002's name on the phone.
     * @param {string} name
     * @param {Call} call
     * @param {Record<string, any>} data
     */
    announce(name: string, call: Call, data: Record<string, any>): void;
    /** For subclasses: conference messages. @param {Record<string, any>} msg @returns {boolean} */
    _dispatchMore(msg: Record<string, any>): boolean;
    /** @param {CallbridgeError} err */
    _announceError(err: CallbridgeError): void;
    /** @param {Call} call */
    _adopt(call: Call): Call;
    /** @param {Record<string, any>} msg */
    _incoming(msg: Record<string, any>): Call;
    /** @param {string} callId @param {Record<string, any>} msg */
    _deliver(callId: string, msg: Record<string, any>): void;
}
export type MediaType = import("./call.js").MediaType;
export type DialOptions = {
    /**
     * the caller id shown to the callee (docs/protocol.md)
     */
    callerId?: string;
    /**
     * "audio" (default) or "video"
     */
    mediaType?: MediaType;
    /**
     * send this instead of the phone's microphone
     */
    localStream?: MediaStream;
};
import { PhoneSession } from "./session.js";
import { Call } from "./call.js";
import { CallMedia } from "./media.js";
import { CallbridgeError } from "./errors.js";
