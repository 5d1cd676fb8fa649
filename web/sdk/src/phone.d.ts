/** @typedef {import("./call.js").Call} Call */
/**
 * @typedef {object} Seed002DialOptions
 * @property {string} destination
 * @property {"audio"|"video"} [mediaType] default "audio" (docs/protocol.md, "Audio and video")
 * @property {HTMLMediaElement} [localMedia] shows our own stream
 * @property {HTMLMediaElement} [remoteMedia] plays the far party's stream
 * @property {string} [callerId]
 * @property {MediaStream} [localStream]
 */
export class Phone extends ConferencePhone {
    /**
     * Seed 002 `ATT.rtc.Phone.getPhone()`: one phone per page, made on first use.
     * @param {import("./session.js").PhoneOptions} [options]
     * @returns {Phone}
     */
    static getPhone(options?: import("./session.js").PhoneOptions): Phone;
    static getVersion(): string;
    /** Seed 002 `getVersion()`. */
    getVersion(): string;
    /** @param {string} n */
    cleanPhoneNumber(n: string): string | false;
    /** @param {string} n */
    formatNumber(n: string): string;
    /** @param {string} uri */
    getCallerInfo(uri: string): import("./numbers.js").CallerInfo;
    getIceServers(): RTCIceServer[];
    /** @param {RTCIceServer[]} servers */
    setIceServers(servers: RTCIceServer[]): void;
    resetIceServers(): void;
    getIceTransport(): RTCIceTransportPolicy;
    /** @param {RTCIceTransportPolicy} policy "all" or "relay" */
    setIceTransport(policy: RTCIceTransportPolicy): void;
    resetIceTransport(): void;
    /** Whether IPv6 candidates are used: browsers decide; kept for the seed's API. */
    getIpv6(): boolean;
    /** @param {boolean} on */
    setIpv6(on: boolean): void;
    _ipv6: boolean;
    /**
     * Run a seed 002 method: errors go to the `error` event (with JSObject/JSMethod set), and
     * reject only when nobody listens to `error`.
     * @template T
     * @param {string} method
     * @param {() => Promise<T>} fn
     * @returns {Promise<T|undefined>}
     */
    _seed<T>(method: string, fn: () => Promise<T>): Promise<T | undefined>;
    /** @param {string} what @returns {Call} */
    _current(what: string): Call;
    /** @param {string} what @returns {Call} */
    _ringing(what: string): Call;
    /**
     * @param {Call} call
     * @param {HTMLMediaElement|undefined} localMedia
     * @param {HTMLMediaElement|undefined} remoteMedia
     */
    _attach(call: Call, localMedia: HTMLMediaElement | undefined, remoteMedia: HTMLMediaElement | undefined): void;
    /**
     * Seed 002 `dial(options)`, or seed 000 `dial(number)`.
     * @param {Seed002DialOptions|string} options
     * @returns {Promise<Call|undefined>}
     */
    dial(options: Seed002DialOptions | string): Promise<Call | undefined>;
    /**
     * Seed 002 `answer({action, mediaType, localMedia, remoteMedia})`: the ringing call.
     * @param {{action?: "hold"|"end", mediaType?: "audio"|"video", localMedia?: HTMLMediaElement,
     *   remoteMedia?: HTMLMediaElement, localStream?: MediaStream}} [options]
     */
    answer(options?: {
        action?: "hold" | "end";
        mediaType?: "audio" | "video";
        localMedia?: HTMLMediaElement;
        remoteMedia?: HTMLMediaElement;
        localStream?: MediaStream;
    }): Promise<import("./call.js").Call>;
    /**
     * Seed 002 `addCall(options)`: hold the current call, dial a second one; back to the first
     * when the second fails or ends (unless the first was held explicitly).
     * @param {Seed002DialOptions|string} options
     */
    addCall(options: Seed002DialOptions | string): Promise<import("./call.js").Call>;
    /** @param {string} what @returns {[Call, Call]} */
    _twoCalls(what: string): [Call, Call];
    /** Seed 002 `switchCall()`: hold the foreground call, bring the background one forward. */
    switchCall(): Promise<void>;
    /** Seed 002 `transfer()`: connect the two calls' far parties (the background one held). */
    transfer(): Promise<void>;
    /** Seed 002 `cancel()`: the outgoing call that has not been answered. */
    cancel(): Promise<void>;
    /** Seed 002 `reject()`: decline the ringing call. @param {"busy"} [reason] */
    reject(reason?: "busy"): Promise<void>;
    /** Seed 002 `hangup()`: the current call. */
    hangup(): Promise<void>;
    hold(): Promise<void>;
    resume(): Promise<void>;
    mute(): Promise<void>;
    unmute(): Promise<void>;
    move(): Promise<void>;
    upgrade(): Promise<void>;
    downgrade(): Promise<void>;
    acceptModification(): Promise<void>;
    rejectModification(): Promise<void>;
    /** @param {string} what */
    _modified(what: string): import("./call.js").Call;
    /**
     * Seed 002 `sendDTMFTone({input, gap})` on the current call.
     * @param {{input: string, gap?: number, duration?: number}|string} options
     */
    sendDTMFTone(options: {
        input: string;
        gap?: number;
        duration?: number;
    } | string): Promise<void>;
    /** Seed 002 `getCalls()`: [{index, breed, type, state, peer}], oldest first. */
    getCalls(): {
        index: number;
        breed: string;
        type: string;
        state: string;
        peer: string;
        id: string;
    }[];
    /** Seed 002 `getMediaType()`: the current call's, null without one. */
    getMediaType(): import("./call.js").MediaType;
    isCallInProgress(): boolean;
    /** Microphones, speakers and cameras (labels need a granted getUserMedia first). */
    listDevices(): Promise<{
        microphones: MediaDeviceInfo[];
        speakers: MediaDeviceInfo[];
        cameras: MediaDeviceInfo[];
    }>;
    /**
     * Use this microphone for new calls, and switch the live calls to it.
     * @param {string|MediaStream} device a deviceId, or a stream to send instead
     */
    setMicrophone(device: string | MediaStream): Promise<void>;
    /** Play calls on this speaker (setSinkId), live calls included. @param {string} deviceId */
    setSpeaker(deviceId: string): Promise<void>;
    /** The signed-in user's ended calls from the server, newest first (`history.list`). */
    getCallHistory({ limit, before }?: {
        limit?: number;
        before?: string;
    }): Promise<{
        calls: Array<Record<string, any>>;
        nextBefore: string | null;
    }>;
    /** The signed-in user's own forwarding rules (`forwarding.get`, docs/routing.md). */
    getForwarding(): Promise<Record<string, any>>;
    /** Change the signed-in user's own rules (`forwarding.set`); what is left out is kept. */
    setForwarding(rules: {
        ringSeconds?: number | null;
        dnd?: boolean;
        steps?: Array<{
            targets: Array<string | {
                type: string;
                value?: string;
                screening?: boolean;
            }>;
            seconds?: number;
        }>;
        onBusy?: string;
        onNoAnswer?: string;
        onOffline?: string;
        onDnd?: string;
    }): Promise<Record<string, any>>;
    /** Turn the signed-in user's do-not-disturb on or off (`forwarding.dnd`). */
    setDnd(on: boolean): Promise<Record<string, any>>;
    /**
     * Use this camera for new video, and switch the live calls that send video to it
     * (RTCRtpSender.replaceTrack: no renegotiation, the call goes on).
     * @param {string} deviceId
     */
    setCamera(deviceId: string): Promise<void>;
    /**
     * Choose the microphone, speaker and camera at once (each optional: a key left out keeps
     * its device). Live calls switch as with `setMicrophone`, `setSpeaker` and `setCamera`.
     * @param {{audioInput?: string|MediaStream, audioOutput?: string, videoInput?: string}} devices
     */
    setDevices(devices: {
        audioInput?: string | MediaStream;
        audioOutput?: string;
        videoInput?: string;
    }): Promise<void>;
    /** The devices in use: deviceIds, null for the browser's default. */
    get devices(): {
        audioInput: string;
        audioOutput: string;
        videoInput: string;
    };
    /**
     * Check the microphone and the media path to the server (see devices.js).
     * @param {{durationMs?: number, localStream?: MediaStream}} [options]
     */
    preCallTest(options?: {
        durationMs?: number;
        localStream?: MediaStream;
    }): Promise<import("./devices.js").PreCallResult>;
}
export type Call = import("./call.js").Call;
export type Seed002DialOptions = {
    destination: string;
    /**
     * default "audio" (docs/protocol.md, "Audio and video")
     */
    mediaType?: "audio" | "video";
    /**
     * shows our own stream
     */
    localMedia?: HTMLMediaElement;
    /**
     * plays the far party's stream
     */
    remoteMedia?: HTMLMediaElement;
    callerId?: string;
    localStream?: MediaStream;
};
import { ConferencePhone } from "./conferencephone.js";
