// @ts-check
/**
 * The phone's session: logging in over `/ws`, keeping the session when the socket drops
 * (`session.resume` with backoff, within the server's `resume_grace`), the token's expiry,
 * and a draining server (`session.draining`: move to a fallback URL). The Phone (phone.js)
 * adds calls and conferences on top.
 *
 * Phone events from here: ready(info), connectivity-off, connectivity-on,
 * gateway-unreachable, session-expired, session-draining(notice), server-changed(url),
 * disconnected(reason), address-updated(e911Id), notification(msg), warning(msg), error(err);
 * and under seed 002's names: session:ready, connectivity:off, connectivity:on,
 * gateway:unreachable, session:expired, session:disconnected.
 * @module
 */

import { Emitter } from "./emitter.js";
import { CallbridgeError, ClientCode, remoteError } from "./errors.js";
import { Transport } from "./transport.js";

/** @typedef {"idle"|"connecting"|"ready"|"reconnecting"|"closed"} PhoneState */

/**
 * @typedef {object} SessionInfo
 * @property {string} sessionId
 * @property {{name: string, extension: string, number: string, display_name: string}} user
 * @property {string|null} e911Id
 * @property {string|null} expiresAt ISO 8601
 * @property {number} resumeGrace seconds
 */

/**
 * @typedef {object} PhoneOptions
 * @property {string} [url] ws(s)://host/ws; default: this page's server
 * @property {string} [token] from `callbridge token USER`
 * @property {string} [userId] must be the token's user (seed 002 login)
 * @property {string} [e911Id]
 * @property {string[]} [fallbackUrls] servers to move to when this one drains
 * @property {boolean} [reconnect] resume the session when the socket drops (default true)
 * @property {number} [requestTimeoutMs] default 15000
 * @property {RTCIceServer[]} [iceServers] default none (the server anchors media)
 * @property {RTCIceTransportPolicy} [iceTransportPolicy] "all" (default) or "relay"
 * @property {MediaStream} [localStream] send this instead of the microphone
 * @property {string} [audioInput] microphone deviceId
 * @property {string} [audioOutput] speaker deviceId (setSinkId)
 * @property {string} [videoInput] camera deviceId
 * @property {typeof WebSocket} [WebSocket]
 */

const BACKOFF_MS = [0, 250, 500, 1000, 2000, 4000];

/** @param {string|undefined} url */
function defaultUrl(url) {
  if (url) return url;
  if (typeof location !== "undefined" && /^https?:$/.test(location.protocol)) {
    return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  }
  throw new CallbridgeError(ClientCode.INVALID_ARGUMENT, "new Phone({url}): the /ws URL is required here");
}

const sleep = (/** @type {number} */ ms) => new Promise((r) => setTimeout(r, ms));

export class PhoneSession extends Emitter {
  /** @param {PhoneOptions} [options] */
  constructor(options = {}) {
    super();
    /** @type {PhoneOptions} */ this.options = { ...options };
    /** @type {string} */ this.url = options.url ?? "";
    /** @type {string|null} */ this.token = options.token ?? null;
    /** @type {string[]} */ this.fallbackUrls = [...(options.fallbackUrls ?? [])];
    /** @type {boolean} */ this.reconnect = options.reconnect ?? true;
    /** @type {PhoneState} */ this.state = "idle";
    /** @type {SessionInfo|null} */ this.session = null;
    /** @type {{sessionId: string, deadlineMs: number, retryAfter: number, at: number}|null} */
    this.draining = null;
    /** @type {string|null} why the phone closed */ this.disconnectReason = null;
    this._transport = new Transport((m) => this._receive(m), (e) => this._connectionLost(e), {
      requestTimeoutMs: options.requestTimeoutMs, WebSocket: options.WebSocket,
    });
    this._expired = false;
    this._loggingOut = false;
    /** @type {Promise<void>|null} */ this._reconnecting = null;
  }

  get isReady() { return this.state === "ready"; }
  get isConnected() { return this.state === "ready"; }
  /** The logged-in user. */
  get user() { return this.session ? this.session.user : null; }
  get sessionId() { return this.session ? this.session.sessionId : null; }

  /** @param {string} what */
  _requireReady(what) {
    if (this.state !== "ready") {
      throw new CallbridgeError(ClientCode.NOT_CONNECTED,
        `${what}: the phone is ${this.state}; connect() first`, { object: "Phone", method: what });
    }
  }

  /**
   * Send a request; resolves with the server's answer.
   * @param {Record<string, any>} msg
   * @param {number} [timeoutMs]
   */
  request(msg, timeoutMs) {
    return this._transport.request(msg, timeoutMs);
  }

  /** @param {Record<string, any>} msg */
  send(msg) {
    this._transport.send(msg);
  }

  /**
   * Emit under the SDK name and seed 002's name.
   * @param {string} name
   * @param {string|null} seedName
   * @param {...any} args
   */
  _announce(name, seedName, ...args) {
    this.emit(name, ...args);
    if (seedName) {
      const data = args[0] && typeof args[0] === "object" && !(args[0] instanceof Error)
        ? { ...args[0], timestamp: new Date() } : { value: args[0], timestamp: new Date() };
      this.emit(seedName, data);
    }
  }

  // -- login ----------------------------------------------------------------------------------

  /** Seed 001: log in with the constructor's token. @returns {Promise<SessionInfo>} */
  connect() {
    return this.login();
  }

  /**
   * Log in (seed 002 `login({token, userId, e911Id})`); options override the constructor's.
   * @param {{token?: string, userId?: string, e911Id?: string, url?: string}} [options]
   * @returns {Promise<SessionInfo>}
   */
  async login(options = {}) {
    if (this.state === "ready" || this.state === "connecting") {
      throw new CallbridgeError("already_logged_in", `login: the phone is ${this.state}`,
        { object: "Phone", method: "login" });
    }
    if (options.token) this.token = options.token;
    if (options.userId) this.options.userId = options.userId;
    if (options.e911Id) this.options.e911Id = options.e911Id;
    if (options.url) this.url = options.url;
    this.url = defaultUrl(this.url);
    if (!this.token) {
      throw new CallbridgeError(ClientCode.INVALID_ARGUMENT, "login: a token is required",
        { object: "Phone", method: "login" });
    }
    this.state = "connecting";
    this._expired = false;
    this._loggingOut = false;
    this.disconnectReason = null;
    try {
      const reply = await this._openAndLogin(this.url);
      this._ready(reply);
      return /** @type {SessionInfo} */ (this.session);
    } catch (e) {
      this.state = "idle";
      this._transport.close();
      throw e;
    }
  }

  /** @param {string} url */
  async _openAndLogin(url) {
    await this._transport.open(url);
    return this._transport.request(this._loginMessage());
  }

  _loginMessage() {
    /** @type {Record<string, any>} */
    const msg = { type: "session.login", token: this.token };
    if (this.options.userId) msg.user_id = this.options.userId;
    if (this.options.e911Id) msg.e911_id = this.options.e911Id;
    return msg;
  }

  /** @param {Record<string, any>} reply session.ready */
  _ready(reply) {
    this.session = {
      sessionId: String(reply.session_id),
      user: reply.user ?? {},
      e911Id: reply.e911_id ?? null,
      expiresAt: reply.expires_at ?? null,
      resumeGrace: Number(reply.resume_grace ?? 60),
    };
    this.state = "ready";
    this._announce("ready", "session:ready", this.session);
  }

  /** Seed 002 `associateE911Id({e911Id})` (or a string). @param {string|{e911Id: string}} e911 */
  async associateE911Id(e911) {
    this._requireReady("associateE911Id");
    const id = typeof e911 === "string" ? e911 : e911.e911Id;
    await this.request({ type: "session.associate_e911", e911_id: id });
    if (this.session) this.session.e911Id = id;
    this.options.e911Id = id;
    this._announce("address-updated", "address-updated", id);
  }

  /** Use a newer token for this session (before `expiresAt`). @param {string} token */
  async refresh(token) {
    this._requireReady("refresh");
    const reply = await this.request({ type: "session.refresh", token });
    this.token = token;
    if (this.session) this.session.expiresAt = reply.expires_at ?? null;
  }

  /** Seed 002 `logout()`: this device's calls end; the session is over. */
  async logout() {
    if (this.state !== "ready") {
      this._transport.close();
      this._finish("logout", "hangup");
      return;
    }
    this._loggingOut = true;
    try {
      await this.request({ type: "session.logout" }, 5000);
    } catch (e) {
      console.warn("callbridge: logout:", e);
    }
    this._transport.close();
    this._finish("logout", "hangup");
  }

  /** Close the socket without logging out (the session's calls end at the server after
   * the grace period). */
  close() {
    this._transport.close();
    this._finish("closed", "disconnected");
  }

  /** Drop the socket as a network failure would: the phone then resumes its session. For
   * tests and demos of reconnection. */
  dropConnection() {
    this._transport.drop();
  }

  /**
   * The session is over here.
   * @param {string} reason for `disconnected`
   * @param {string} endReason for the calls still up
   */
  _finish(reason, endReason) {
    if (this.state === "closed") return;
    this.state = "closed";
    this.disconnectReason = reason;
    this._sessionOver(endReason);
    this._announce("disconnected", "session:disconnected", reason);
  }

  /** @param {string} endReason @protected */
  _sessionOver(endReason) { void endReason; }

  // -- messages -------------------------------------------------------------------------------

  /** @param {Record<string, any>} msg */
  _receive(msg) {
    if (!this._sessionMessage(msg)) this._dispatch(msg);
  }

  /** @param {Record<string, any>} msg @protected */
  _dispatch(msg) { void msg; }

  /** @param {Record<string, any>} msg @returns {boolean} handled */
  _sessionMessage(msg) {
    switch (msg.type) {
      case "session.expired":
        this._expired = true;
        this._announce("session-expired", "session:expired", msg);
        this._transport.close();
        this._finish("expired", "hangup");
        return true;
      case "session.disconnected":
        if (msg.reason === "draining" && this.state === "ready") {
          this._serverDrained();
        }
        return true;
      case "session.draining":
        this.draining = {
          sessionId: String(msg.session_id ?? ""),
          deadlineMs: Number(msg.deadline_ms ?? 0),
          retryAfter: Number(msg.retry_after ?? 0),
          at: Date.now(),
        };
        this._announce("session-draining", "session:draining", this.draining);
        return true;
      case "notification":
        this._announce("notification", null, msg);
        return false;  // the call hears of it too
      case "warning":
        this.emit("warning", msg);
        return false;
      default:
        return false;
    }
  }

  // -- losing the socket ----------------------------------------------------------------------

  /** @param {CloseEvent|null} event */
  _connectionLost(event) {
    void event;
    if (this.state !== "ready" || this._loggingOut || this._expired) {
      if (this.state === "ready") this._finish(this._expired ? "expired" : "logout", "hangup");
      return;
    }
    if (this.draining) {
      const left = this.draining.deadlineMs - (Date.now() - this.draining.at);
      if (left <= 0 || !this.reconnect) {
        this._serverDrained();
        return;
      }
    }
    if (!this.reconnect || !this.session) {
      this._finish("disconnected", "disconnected");
      return;
    }
    this.state = "reconnecting";
    this._reconnecting = this._resume();
  }

  async _resume() {
    const session = /** @type {SessionInfo} */ (this.session);
    this._announce("connectivity-off", "connectivity:off", {});
    let graceMs = Math.max(session.resumeGrace, 1) * 1000;
    if (this.draining) {
      graceMs = Math.min(graceMs, Math.max(this.draining.deadlineMs - (Date.now() - this.draining.at), 1000));
    }
    const until = Date.now() + graceMs;
    for (let attempt = 0; Date.now() < until && this.state === "reconnecting"; attempt++) {
      await sleep(BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)]);
      if (this.state !== "reconnecting") return;
      try {
        await this._transport.open(this.url, Math.max(1000, Math.min(5000, until - Date.now())));
        const reply = await this._transport.request(
          { type: "session.resume", session_id: session.sessionId, token: this.token });
        this.state = "ready";
        this._resumed(reply);
        this._announce("connectivity-on", "connectivity:on", {});
        return;
      } catch (e) {
        if (e instanceof CallbridgeError && e.remote) {
          // The server is there but the session is not (grace over, logged out, expired).
          break;
        }
      }
    }
    if (this.state !== "reconnecting") return;
    this.state = "ready";  // so that _finish / the move see a session to end
    if (this.draining) {
      this._serverDrained();
      return;
    }
    this._announce("gateway-unreachable", "gateway:unreachable", {});
    this._transport.close();
    this._finish("disconnected", "disconnected");
  }

  /** @param {Record<string, any>} reply session.resumed @protected */
  _resumed(reply) { void reply; }

  _serverDrained() {
    if (this.state !== "ready") return;
    this.disconnectReason = "draining";
    this.state = "reconnecting";
    this._reconnecting = this._move();
  }

  async _move() {
    const drained = this.url;
    const urls = this.fallbackUrls.filter((u) => u !== drained);
    if (this.fallbackUrls.includes(drained)) urls.push(drained);
    this._transport.close();
    this._sessionOver("disconnected");
    for (const url of urls) {
      try {
        const reply = await this._openAndLogin(url);
        const previous = this.url;
        this.url = url;
        this.draining = null;
        this.disconnectReason = null;
        this._ready(reply);
        this._announce("server-changed", "server-changed", url, previous);
        return;
      } catch (e) {
        console.warn(`callbridge: ${url} does not take this phone:`, e);
        this._transport.close();
      }
    }
    this.state = "ready";
    this._finish("draining", "disconnected");
  }
}

export { remoteError };
