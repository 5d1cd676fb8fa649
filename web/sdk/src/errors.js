// @ts-check
/**
 * Errors of the SDK. One class, CallbridgeError, with the fields of the server's `error`
 * message (docs/protocol.md, "Errors") under their wire names and under seed 002's names
 * (JSObject, JSMethod, ErrorCode, ErrorMessage, Cause, Resolution), so either style of
 * handler reads them.
 * @module
 */

/** Codes the SDK raises itself (the server's codes come as the server sends them). */
export const ClientCode = Object.freeze({
  NOT_CONNECTED: "not_connected",
  INVALID_ARGUMENT: "invalid_argument",
  INVALID_STATE: "invalid_state",
  CALL_ENDED: "call_ended",
  TIMEOUT: "timeout",
  MEDIA: "media_error",
  INVALID_DIGITS: "invalid_digits",
  DTMF_NOT_NEGOTIATED: "dtmf_not_negotiated",
});

export class CallbridgeError extends Error {
  /**
   * @param {string} code the protocol's error code, or one of {@link ClientCode}
   * @param {string} message what went wrong
   * @param {{cause?: string, resolution?: string, object?: string, method?: string,
   *   callId?: string|null, conferenceId?: string|null, reqId?: string|null,
   *   retryAfter?: number|null, remote?: boolean}} [details]
   */
  constructor(code, message, details = {}) {
    super(`${code}: ${message}`);
    this.name = "CallbridgeError";
    /** @type {string} */ this.code = code;
    /** @type {string} the message alone, without the code */
    this.detail = message;
    /** @type {string} */ this.reason = details.cause ?? "";
    /** @type {string} */ this.resolution = details.resolution ?? "";
    /** @type {string} */ this.object = details.object ?? "";
    /** @type {string} */ this.method = details.method ?? "";
    /** @type {string|null} */ this.callId = details.callId ?? null;
    /** @type {string|null} */ this.conferenceId = details.conferenceId ?? null;
    /** @type {string|null} */ this.reqId = details.reqId ?? null;
    /** @type {number|null} seconds (with `draining`) */
    this.retryAfter = details.retryAfter ?? null;
    /** @type {boolean} true: the server sent it; false: the SDK refused or gave up */
    this.remote = details.remote ?? false;
    /** @type {Date} seed 002's `timestamp` */
    this.timestamp = new Date();
  }

  // Seed 002's error object ("error" event data): JSObject, JSMethod, ErrorCode, ...
  get JSObject() { return this.object; }
  get JSMethod() { return this.method; }
  get ErrorCode() { return this.code; }
  get ErrorMessage() { return this.detail; }
  get Cause() { return this.reason; }
  get Resolution() { return this.resolution; }
  get APIError() { return this.remote ? this.code : undefined; }

  /** A plain object with the seed 002 field names (what the `error` event carries). */
  toJSON() {
    return {
      JSObject: this.object, JSMethod: this.method, ErrorCode: this.code,
      ErrorMessage: this.detail, Cause: this.reason, Resolution: this.resolution,
      APIError: this.APIError, timestamp: this.timestamp.toISOString(),
      code: this.code, message: this.detail, call_id: this.callId,
    };
  }
}

/**
 * The CallbridgeError for a server `error` message.
 * @param {Record<string, any>} msg
 * @returns {CallbridgeError}
 */
export function remoteError(msg) {
  return new CallbridgeError(String(msg.code ?? "unknown"), String(msg.message ?? ""), {
    cause: msg.cause, resolution: msg.resolution, object: msg.object, method: msg.method,
    callId: msg.call_id ?? null, conferenceId: msg.conference_id ?? null,
    reqId: msg.req_id ?? null, remote: true,
    retryAfter: typeof msg.retry_after === "number" ? msg.retry_after : null,
  });
}

/**
 * @param {string} code
 * @param {string} message
 * @param {{object?: string, method?: string, callId?: string|null}} [details]
 */
export function clientError(code, message, details = {}) {
  return new CallbridgeError(code, message, details);
}
