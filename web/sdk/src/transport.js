// @ts-check
/**
 * The WebSocket to `/ws`: opening it, sending JSON, and matching answers to requests by
 * `req_id` (docs/protocol.md: the first server message carrying a request's `req_id`
 * answers it; an `error` rejects it). Every message, answers included, also goes to the
 * `onMessage` callback, synchronously and in arrival order, so the phone can make its call
 * objects before any later message about them is read.
 * @module
 */

import { CallbridgeError, ClientCode, remoteError } from "./errors.js";

/** @typedef {Record<string, any>} Message */

export class Transport {
  /**
   * @param {(msg: Message) => void} onMessage every server message
   * @param {(event: CloseEvent|null) => void} onClose the socket closed (not by close())
   * @param {{requestTimeoutMs?: number, WebSocket?: typeof WebSocket}} [options]
   */
  constructor(onMessage, onClose, options = {}) {
    this._onMessage = onMessage;
    this._onClose = onClose;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 15000;
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    /** @type {WebSocket|null} */ this.ws = null;
    /** @type {Map<string, {resolve: Function, reject: Function, timer: any, type: string}>} */
    this._pending = new Map();
    this._counter = 0;
    this._prefix = Math.random().toString(36).slice(2, 8);
  }

  get isOpen() {
    return this.ws !== null && this.ws.readyState === 1;
  }

  newReqId() {
    return `js-${this._prefix}-${++this._counter}`;
  }

  /**
   * Open a socket to `url` (closing any previous one silently).
   * @param {string} url
   * @param {number} [timeoutMs]
   */
  async open(url, timeoutMs = 10000) {
    this._detach();
    const ws = new this._WebSocket(url);
    this.ws = ws;
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        ws.close();
        reject(new CallbridgeError(ClientCode.NOT_CONNECTED, `cannot reach ${url}: timed out`));
      }, timeoutMs);
      ws.onopen = () => { clearTimeout(timer); resolve(undefined); };
      ws.onerror = () => {
        clearTimeout(timer);
        reject(new CallbridgeError(ClientCode.NOT_CONNECTED, `cannot reach ${url}`));
      };
      ws.onclose = () => {
        clearTimeout(timer);
        reject(new CallbridgeError(ClientCode.NOT_CONNECTED, `${url} closed the connection`));
      };
    });
    ws.onerror = null;
    ws.onmessage = (event) => this._receive(event.data);
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this._failPending("the connection closed");
      this._onClose(event);
    };
  }

  /** Close the socket; no onClose callback. */
  close() {
    this._detach();
    this._failPending("the phone closed");
  }

  /** Drop the socket as a network failure would (onClose runs): for tests and demos. */
  drop() {
    const ws = this.ws;
    if (ws) ws.close(4000, "dropped by the client");
  }

  _detach() {
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onmessage = ws.onclose = ws.onerror = ws.onopen = null;
      try { ws.close(1000); } catch { /* already closed */ }
    }
  }

  /** @param {string} reason */
  _failPending(reason) {
    for (const [id, p] of this._pending) {
      clearTimeout(p.timer);
      p.reject(new CallbridgeError(ClientCode.NOT_CONNECTED, `${p.type}: ${reason}`, { reqId: id }));
    }
    this._pending.clear();
  }

  /**
   * Send without waiting for an answer.
   * @param {Message} msg
   */
  send(msg) {
    if (!this.isOpen || !this.ws) {
      throw new CallbridgeError(ClientCode.NOT_CONNECTED, `${msg.type}: not connected`);
    }
    this.ws.send(JSON.stringify(msg));
  }

  /**
   * Send `msg` with a new `req_id`; resolves with the first server message carrying it,
   * rejects with a CallbridgeError when it is an `error`.
   * @param {Message} msg
   * @param {number} [timeoutMs]
   * @returns {Promise<Message>}
   */
  request(msg, timeoutMs) {
    const reqId = msg.req_id ?? this.newReqId();
    const out = { ...msg, req_id: reqId };
    return new Promise((resolve, reject) => {
      const ms = timeoutMs ?? this.requestTimeoutMs;
      const timer = setTimeout(() => {
        this._pending.delete(reqId);
        reject(new CallbridgeError(ClientCode.TIMEOUT, `${msg.type}: no answer within ${ms} ms`,
          { reqId, callId: msg.call_id ?? null }));
      }, ms);
      this._pending.set(reqId, { resolve, reject, timer, type: String(msg.type) });
      try {
        this.send(out);
      } catch (e) {
        clearTimeout(timer);
        this._pending.delete(reqId);
        reject(e);
      }
    });
  }

  /** @param {string} data */
  _receive(data) {
    /** @type {Message} */
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      console.warn("callbridge: a frame that is not JSON was ignored");
      return;
    }
    if (!msg || typeof msg !== "object") return;
    // The phone sees the message first: it makes objects (a call at call.trying) that the
    // code awaiting the answer expects to find.
    try {
      this._onMessage(msg);
    } catch (e) {
      console.error("callbridge: handling", msg.type, "failed:", e);
    }
    const reqId = msg.req_id;
    if (typeof reqId === "string" && this._pending.has(reqId)) {
      const p = /** @type {any} */ (this._pending.get(reqId));
      this._pending.delete(reqId);
      clearTimeout(p.timer);
      if (msg.type === "error") p.reject(remoteError(msg));
      else p.resolve(msg);
    }
  }
}
