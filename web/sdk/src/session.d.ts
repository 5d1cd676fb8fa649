export class PhoneSession extends Emitter {
    /** @param {PhoneOptions} [options] */
    constructor(options?: PhoneOptions);
    /** @type {PhoneOptions} */ options: PhoneOptions;
    /** @type {string} */ url: string;
    /** @type {string|null} */ token: string | null;
    /** @type {string[]} */ fallbackUrls: string[];
    /** @type {boolean} */ reconnect: boolean;
    /** @type {PhoneState} */ state: PhoneState;
    /** @type {SessionInfo|null} */ session: SessionInfo | null;
    /** @type {{sessionId: string, deadlineMs: number, retryAfter: number, at: number}|null} */
    draining: {
        sessionId: string;
        deadlineMs: number;
        retryAfter: number;
        at: number;
    } | null;
    /** @type {string|null} why the phone closed */ disconnectReason: string | null;
    _transport: Transport;
    _expired: boolean;
    _loggingOut: boolean;
    /** @type {Promise<void>|null} */ _reconnecting: Promise<void> | null;
    get isReady(): boolean;
    get isConnected(): boolean;
    /** The logged-in user. */
    get user(): {
        name: string;
        extension: string;
        number: string;
        display_name: string;
    };
    get sessionId(): string;
    /** @param {string} what */
    _requireReady(what: string): void;
    /**
     * Send a request; resolves with the server's answer.
     * @param {Record<string, any>} msg
     * @param {number} [timeoutMs]
     */
    request(msg: Record<string, any>, timeoutMs?: number): Promise<import("./transport.js").Message>;
    /** @param {Record<string, any>} msg */
    send(msg: Record<string, any>): void;
    /**
     * Emit under the SDK name and seed 002's name.
     * @param {string} name
     * @param {string|null} seedName
     * @param {...any} args
     */
    _announce(name: string, seedName: string | null, ...args: any[]): void;
    /** Seed 001: log in with the constructor's token. @returns {Promise<SessionInfo>} */
    connect(): Promise<SessionInfo>;
    /**
     * Log in (seed 002 `login({token, userId, e911Id})`); options override the constructor's.
     * @param {{token?: string, userId?: string, e911Id?: string, url?: string}} [options]
     * @returns {Promise<SessionInfo>}
     */
    login(options?: {
        token?: string;
        userId?: string;
        e911Id?: string;
        url?: string;
    }): Promise<SessionInfo>;
    /** @param {string} url */
    _openAndLogin(url: string): Promise<import("./transport.js").Message>;
    _loginMessage(): Record<string, any>;
    /** @param {Record<string, any>} reply session.ready */
    _ready(reply: Record<string, any>): void;
    /** Seed 002 `associateE911Id({e911Id})` (or a string). @param {string|{e911Id: string}} e911 */
    associateE911Id(e911: string | {
        e911Id: string;
    }): Promise<void>;
    /** Use a newer token for this session (before `expiresAt`). @param {string} token */
    refresh(token: string): Promise<void>;
    /** Seed 002 `logout()`: this device's calls end; the session is over. */
    logout(): Promise<void>;
    /** Close the socket without logging out (the session's calls end at the server after
     * the grace period). */
    close(): void;
    /** Drop the socket as a network failure would: the phone then resumes its session. For
     * tests and demos of reconnection. */
    dropConnection(): void;
    /**
     * The session is over here.
     * @param {string} reason for `disconnected`
     * @param {string} endReason for the calls still up
     */
    _finish(reason: string, endReason: string): void;
    /** @param {string} endReason @protected */
    protected _sessionOver(endReason: string): void;
    /** @param {Record<string, any>} msg */
    _receive(msg: Record<string, any>): void;
    /** @param {Record<string, any>} msg @protected */
    protected _dispatch(msg: Record<string, any>): void;
    /** @param {Record<string, any>} msg @returns {boolean} handled */
    _sessionMessage(msg: Record<string, any>): boolean;
    /** @param {CloseEvent|null} event */
    _connectionLost(event: CloseEvent | null): void;
    _resume(): Promise<void>;
    /** @param {Record<string, any>} reply session.resumed @protected */
    protected _resumed(reply: Record<string, any>): void;
    _serverDrained(): void;
    _move(): Promise<void>;
}
export { remoteError };
export type PhoneState = "idle" | "connecting" | "ready" | "reconnecting" | "closed";
export type SessionInfo = {
    sessionId: string;
    user: {
        name: string;
        extension: string;
        number: string;
        display_name: string;
    };
    e911Id: string | null;
    /**
     * ISO 8601
     */
    expiresAt: string | null;
    /**
     * seconds
     */
    resumeGrace: number;
};
export type PhoneOptions = {
    /**
     * ws(s)://host/ws; default: this page's server
     */
    url?: string;
    /**
     * from `callbridge token USER`
     */
    token?: string;
    /**
     * must be the token's user (seed 002 login)
     */
    userId?: string;
    e911Id?: string;
    /**
     * servers to move to when this one drains
     */
    fallbackUrls?: string[];
    /**
     * resume the session when the socket drops (default true)
     */
    reconnect?: boolean;
    /**
     * default 15000
     */
    requestTimeoutMs?: number;
    /**
     * default none (the server anchors media)
     */
    iceServers?: RTCIceServer[];
    /**
     * "all" (default) or "relay"
     */
    iceTransportPolicy?: RTCIceTransportPolicy;
    /**
     * send this instead of the microphone
     */
    localStream?: MediaStream;
    /**
     * microphone deviceId
     */
    audioInput?: string;
    /**
     * speaker deviceId (setSinkId)
     */
    audioOutput?: string;
    /**
     * camera deviceId
     */
    videoInput?: string;
    WebSocket?: typeof WebSocket;
};
import { Emitter } from "./emitter.js";
import { Transport } from "./transport.js";
import { remoteError } from "./errors.js";
