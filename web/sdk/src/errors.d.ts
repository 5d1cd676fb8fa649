/**
 * The CallbridgeError for a server `error` message.
 * @param {Record<string, any>} msg
 * @returns {CallbridgeError}
 */
export function remoteError(msg: Record<string, any>): CallbridgeError;
/**
 * @param {string} code
 * @param {string} message
 * @param {{object?: string, method?: string, callId?: string|null}} [details]
 */
export function clientError(code: string, message: string, details?: {
    object?: string;
    method?: string;
    callId?: string | null;
}): CallbridgeError;
/**
 * Errors of the SDK. One class, CallbridgeError, with the fields of the server's `error`
 * message (docs/protocol.md, "Errors") under their wire names and under seed 002's names
 * (JSObject, JSMethod, ErrorCode, ErrorMessage, Cause, Resolution), so either style of
 * handler reads them.
 * @module
 */
/** Codes the SDK raises itself (the server's codes come as the server sends them). */
export const ClientCode: Readonly<{
    NOT_CONNECTED: "not_connected";
    INVALID_ARGUMENT: "invalid_argument";
    INVALID_STATE: "invalid_state";
    CALL_ENDED: "call_ended";
    TIMEOUT: "timeout";
    MEDIA: "media_error";
    INVALID_DIGITS: "invalid_digits";
    DTMF_NOT_NEGOTIATED: "dtmf_not_negotiated";
}>;
export class CallbridgeError extends Error {
    /**
     * @param {string} code the protocol's error code, or one of {@link ClientCode}
     * @param {string} message what went wrong
     * @param {{cause?: string, resolution?: string, object?: string, method?: string,
     *   callId?: string|null, conferenceId?: string|null, reqId?: string|null,
     *   retryAfter?: number|null, remote?: boolean}} [details]
     */
    constructor(code: string, message: string, details?: {
        cause?: string;
        resolution?: string;
        object?: string;
        method?: string;
        callId?: string | null;
        conferenceId?: string | null;
        reqId?: string | null;
        retryAfter?: number | null;
        remote?: boolean;
    });
    /** @type {string} */ code: string;
    /** @type {string} the message alone, without the code */
    detail: string;
    /** @type {string} */ reason: string;
    /** @type {string} */ resolution: string;
    /** @type {string} */ object: string;
    /** @type {string} */ method: string;
    /** @type {string|null} */ callId: string | null;
    /** @type {string|null} */ conferenceId: string | null;
    /** @type {string|null} */ reqId: string | null;
    /** @type {number|null} seconds (with `draining`) */
    retryAfter: number | null;
    /** @type {boolean} true: the server sent it; false: the SDK refused or gave up */
    remote: boolean;
    /** @type {Date} seed 002's `timestamp` */
    timestamp: Date;
    get JSObject(): string;
    get JSMethod(): string;
    get ErrorCode(): string;
    get ErrorMessage(): string;
    get Cause(): string;
    get Resolution(): string;
    get APIError(): string;
    /** A plain object with the seed 002 field names (what the `error` event carries). */
    toJSON(): {
        JSObject: string;
        JSMethod: string;
        ErrorCode: string;
        ErrorMessage: string;
        Cause: string;
        Resolution: string;
        APIError: string;
        timestamp: string;
        code: string;
        message: string;
        call_id: string;
    };
}
