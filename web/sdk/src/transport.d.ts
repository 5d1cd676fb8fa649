/** @typedef {Record<string, any>} Message */
export class Transport {
    /**
     * @param {(msg: Message) => void} onMessage every server message
     * @param {(event: CloseEvent|null) => void} onClose the socket closed (not by close())
     * @param {{requestTimeoutMs?: number, WebSocket?: typeof WebSocket}} [options]
     */
    constructor(onMessage: (msg: Message) => void, onClose: (event: CloseEvent | null) => void, options?: {
        requestTimeoutMs?: number;
        WebSocket?: typeof WebSocket;
    });
    _onMessage: (msg: Message) => void;
    _onClose: (event: CloseEvent | null) => void;
    requestTimeoutMs: number;
    _WebSocket: {
        new (url: string | URL, protocols?: string | string[]): WebSocket;
        prototype: WebSocket;
        readonly CONNECTING: 0;
        readonly OPEN: 1;
        readonly CLOSING: 2;
        readonly CLOSED: 3;
    };
    /** @type {WebSocket|null} */ ws: WebSocket | null;
    /** @type {Map<string, {resolve: Function, reject: Function, timer: any, type: string}>} */
    _pending: Map<string, {
        resolve: Function;
        reject: Function;
        timer: any;
        type: string;
    }>;
    _counter: number;
    _prefix: string;
    get isOpen(): boolean;
    newReqId(): string;
    /**
     * Open a socket to `url` (closing any previous one silently).
     * @param {string} url
     * @param {number} [timeoutMs]
     */
    open(url: string, timeoutMs?: number): Promise<void>;
    /** Close the socket; no onClose callback. */
    close(): void;
    /** Drop the socket as a network failure would (onClose runs): for tests and demos. */
    drop(): void;
    _detach(): void;
    /** @param {string} reason */
    _failPending(reason: string): void;
    /**
     * Send without waiting for an answer.
     * @param {Message} msg
     */
    send(msg: Message): void;
    /**
     * Send `msg` with a new `req_id`; resolves with the first server message carrying it,
     * rejects with a CallbridgeError when it is an `error`.
     * @param {Message} msg
     * @param {number} [timeoutMs]
     * @returns {Promise<Message>}
     */
    request(msg: Message, timeoutMs?: number): Promise<Message>;
    /** @param {string} data */
    _receive(data: string): void;
}
export type Message = Record<string, any>;
