// @ts-check
/**
 * Seed 001's phone: placing and receiving calls, several at once (call waiting, swap), and
 * routing the server's messages to them. It is each call's host (see call.js `CallHost`):
 * the relations between calls live here, as in the Python SDK's calllist.py: the call that
 * `addCall` held (resumed when the second one ends) and the consultation of an attended
 * transfer (its failure resumes the transferred call).
 * @module
 */

import { Call } from "./call.js";
import { CallbridgeError, ClientCode, remoteError } from "./errors.js";
import { CallMedia } from "./media.js";
import { PhoneSession } from "./session.js";

/** @typedef {import("./call.js").MediaType} MediaType */

/**
 * @typedef {object} DialOptions
 * @property {string} [callerId] the caller id shown to the callee (docs/protocol.md)
 * @property {MediaType} [mediaType] "audio" (default) or "video"
 * @property {MediaStream} [localStream] send this instead of the phone's microphone
 */

// Seed 002 names of call events (phone.on('call:connected', data => …)).
const SEED_002 = /** @type {Record<string, string>} */ ({
  trying: "call:connecting",
  "ringback-provided": "call:ringback-provided",
  answered: "call:connected",
  held: "call:held",
  resumed: "call:resumed",
  muted: "call:muted",
  unmuted: "call:unmuted",
  transferred: "call:transferred",
  transferring: "call:transferring",
  moved: "call:moved",
  "media-modification": "call:media-modification",
  "modification-in-progress": "call:modification-in-progress",
  "state-changed": "call:state-changed",
  "media-established": "media:established",
  disconnecting: "call:disconnecting",
  answering: "answering",
  "dtmf-tone-sending": "dtmf:tone-sending",
  "dtmf-tone-sent": "dtmf:tone-sent",
});

const MAX_EARLY_CALLS = 64;
const MAX_EARLY_MESSAGES = 64;

export class CallPhone extends PhoneSession {
  /** @param {import("./session.js").PhoneOptions} [options] */
  constructor(options = {}) {
    super(options);
    /** @type {Map<string, Call>} live calls by id, oldest first */
    this._calls = new Map();
    /** @type {Call[]} placed/answered live calls, the foreground one last */
    this._focus = [];
    /** @type {Map<string, Call>} call.create req_id -> the call being placed */
    this._creating = new Map();
    /** @type {Map<string, Record<string, any>[]>} messages for calls not known yet */
    this._early = new Map();
    /** @type {Map<Call, Call>} addCall: second call -> the first, to resume */
    this._returns = new Map();
    /** @type {Map<Call, {consult: Call, heldHere: boolean}>} attendedTransfer */
    this._consults = new Map();
    /** @type {((call: Call) => void)[]} */
    this._endedListeners = [];
    /** @type {MediaStream|null} */ this._inputStream = options.localStream ?? null;
    /** @type {string|null} */ this.audioInput = options.audioInput ?? null;
    /** @type {string|null} */ this.audioOutput = options.audioOutput ?? null;
    /** @type {string|null} */ this.videoInput = options.videoInput ?? null;
    /** @type {RTCIceServer[]} */ this.iceServers = options.iceServers ?? [];
    /** @type {RTCIceTransportPolicy} */ this.iceTransportPolicy = options.iceTransportPolicy ?? "all";
  }

  // -- seed 001 -------------------------------------------------------------------------------

  /** The live calls (seed 001 `phone.activeCalls`), oldest first; each has id, from, to,
   * state ('trying' | 'ringing' | 'active' | 'held') and direction. */
  get activeCalls() {
    return [...this._calls.values()].filter((c) => c.isLive);
  }

  /** @param {string} callId @returns {Call|null} */
  getCall(callId) {
    return this._calls.get(callId) ?? null;
  }

  /** The call the user is on: the last one placed, answered, resumed or switched to. */
  get foregroundCall() {
    return this._focus.length ? this._focus[this._focus.length - 1] : null;
  }

  /**
   * Place a call (seed 001 `phone.call(dest, {callerId})`). Resolves once the server took
   * it (`call.trying`: the call has its id); its events from `trying` on reach handlers
   * attached right after the await.
   * @param {string} destination extension, E.164 number or user name
   * @param {DialOptions} [options]
   * @returns {Promise<Call>}
   */
  async call(destination, options = {}) {
    this._requireReady("call");
    if (typeof destination !== "string" || !destination.trim()) {
      throw new CallbridgeError(ClientCode.INVALID_ARGUMENT, "call(destination): a destination is required",
        { object: "Phone", method: "call" });
    }
    this._announce("dialing", "dialing", destination);
    const mediaType = options.mediaType ?? "audio";
    const media = this.newMedia({ localStream: options.localStream });
    const own = this.session?.user?.number || this.session?.user?.extension || "";
    const call = new Call(this, {
      id: null, direction: "outgoing", from: options.callerId ?? own, to: destination, mediaType, media,
    });
    call._defer();
    const reqId = this._transport.newReqId();
    this._creating.set(reqId, call);
    try {
      const sdp = await media.offer(mediaType === "video");
      /** @type {Record<string, any>} */
      const msg = { type: "call.create", req_id: reqId, destination, sdp, media_type: mediaType };
      if (options.callerId) msg.caller_id = options.callerId;
      const reply = await this.request(msg);
      if (reply.type !== "call.trying" || !call.id) {
        throw new CallbridgeError("failed", `call.create answered with ${reply.type}`);
      }
    } catch (e) {
      this._creating.delete(reqId);
      media.close();
      if (call.id) call._endLocally("failed");
      throw e;
    } finally {
      setTimeout(() => call._release(), 0);
    }
    this.broughtForward(call);
    return call;
  }

  // -- media ----------------------------------------------------------------------------------

  /**
   * A new call's media, with the phone's ICE settings and devices.
   * @param {{localStream?: MediaStream}} [opts]
   */
  newMedia(opts = {}) {
    const given = opts.localStream ?? this._inputStream;
    return new CallMedia({
      iceServers: this.iceServers,
      iceTransportPolicy: this.iceTransportPolicy,
      speakerId: this.audioOutput,
      sendCandidate: () => {},
      getLocalStream: async () => {
        // A clone per call: muting one call disables its own track only.
        const stream = given ? given.clone() : await navigator.mediaDevices.getUserMedia({
          audio: this.audioInput ? { deviceId: { exact: this.audioInput } } : true,
        });
        /** @type {any} */ (stream)._callbridgeOwned = true;
        return stream;
      },
      getVideoStream: async () => {
        const stream = await navigator.mediaDevices.getUserMedia({
          video: this.videoInput ? { deviceId: { exact: this.videoInput } } : true,
        });
        /** @type {any} */ (stream)._callbridgeOwned = true;
        return stream;
      },
    });
  }

  // -- CallHost -------------------------------------------------------------------------------

  /** @param {Call} call */
  callEnded(call) {
    for (const listener of [...this._endedListeners]) listener(call);
    if (this._calls.get(call.id) === call) this._calls.delete(call.id);
    const wasForeground = this.foregroundCall === call;
    this._focus = this._focus.filter((c) => c !== call);
    this._consults.delete(call);
    const first = this._returns.get(call);
    this._returns.delete(call);
    if (wasForeground && first && first.isLive && this.isReady) {
      this.broughtForward(first);
      first._autoResume().catch((e) => console.warn("callbridge: resume:", e));
    }
  }

  /** @param {Call} call */
  broughtForward(call) {
    if (call.isLive && this._calls.get(call.id) === call) {
      this._focus = this._focus.filter((c) => c !== call);
      this._focus.push(call);
    }
  }

  /**
   * @param {Call} call
   * @param {string|undefined} action
   * @param {() => Promise<void>} answer
   */
  async answering(call, action, answer) {
    const current = this.activeCalls.filter((c) => c !== call && c.isEstablished && !c.heldLocally);
    /** @type {Call[]} */ const held = [];
    try {
      for (const other of current) {
        if (action === "hold" && await other._autoHold()) held.push(other);
        else if (action === "end") {
          this._returns.delete(other);
          await other.hangup();
        }
      }
      await answer();
    } catch (e) {
      for (const c of held) await c._autoResume().catch(() => {});
      throw e;
    }
    if (!call.isLive) for (const c of held) await c._autoResume().catch(() => {});
    else this.broughtForward(call);
  }

  /**
   * @param {Call} call
   * @param {string} destination
   * @param {DialOptions} options
   */
  async consult(call, destination, options) {
    const heldHere = call.heldLocally;
    if (!heldHere) await this.request({ type: "call.hold", call_id: call.id });
    let consult;
    try {
      consult = await this.call(destination, options);
    } catch (e) {
      if (!heldHere && call.isLive) await call.resume();
      throw e;
    }
    const entry = { consult, heldHere };
    this._consults.set(call, entry);
    const over = async () => {
      if (this._consults.get(call) === entry) {
        this._consults.delete(call);
        if (!heldHere && call.isLive && call.heldLocally) await call.resume();
      }
    };
    consult.on("ended", over);
    if (!consult.isLive) await over();
    return consult;
  }

  /** @param {Call} call */
  takeConsultation(call) {
    const entry = this._consults.get(call);
    if (!entry || !entry.consult.isEstablished) return null;
    this._consults.delete(call);
    return entry.consult;
  }

  /**
   * A call event, under seed 002's name on the phone.
   * @param {string} name
   * @param {Call} call
   * @param {Record<string, any>} data
   */
  announce(name, call, data) {
    let seed = SEED_002[name] ?? null;
    if (name === "ended") {
      const reason = call.endReason;
      seed = reason === "canceled" ? "call:canceled"
        : reason === "rejected" || reason === "busy" ? "call:rejected" : "call:disconnected";
    }
    if (!seed) return;
    const live = this.activeCalls;
    this.emit(seed, {
      ...data, call, id: call.id, index: live.indexOf(call), from: call.from, to: call.to,
      mediaType: call.mediaType, reason: call.endReason ?? data.reason, codec: [],
      timestamp: new Date(),
    });
  }

  // -- routing server messages ----------------------------------------------------------------

  /** @param {Record<string, any>} msg @protected */
  _dispatch(msg) {
    const type = String(msg.type ?? "");
    if (type === "call.trying" && typeof msg.req_id === "string" && this._creating.has(msg.req_id)) {
      const call = /** @type {Call} */ (this._creating.get(msg.req_id));
      this._creating.delete(msg.req_id);
      call._setId(String(msg.call_id));
      this._adopt(call);
      call._flushOutbox();
      call._deliver(msg);
      return;
    }
    if (type === "call.incoming") {
      this._incoming(msg);
      return;
    }
    if (this._dispatchMore(msg)) return;
    if (type === "error" && !msg.call_id) {
      if (!msg.req_id) this._announceError(remoteError(msg));
      return;
    }
    if (typeof msg.call_id === "string") this._deliver(msg.call_id, msg);
    if (type === "error" && msg.call_id && !msg.req_id) this._announceError(remoteError(msg));
  }

  /** For subclasses: conference messages. @param {Record<string, any>} msg @returns {boolean} */
  _dispatchMore(msg) { void msg; return false; }

  /** @param {CallbridgeError} err */
  _announceError(err) {
    this.emit("error", err);
  }

  /** @param {Call} call */
  _adopt(call) {
    this._calls.set(call.id, call);
    const early = this._early.get(call.id) ?? [];
    this._early.delete(call.id);
    for (const m of early) call._deliver(m);
    return call;
  }

  /** @param {Record<string, any>} msg */
  _incoming(msg) {
    const call = this._adopt(new Call(this, {
      id: String(msg.call_id), direction: "incoming", from: String(msg.from ?? ""),
      fromName: String(msg.from_name ?? ""), to: String(msg.to ?? ""),
      mediaType: msg.media_type === "video" ? "video" : "audio",
      offerSdp: String(msg.sdp ?? ""), movedFrom: msg.moved_from ?? null,
    }));
    this.emit("incoming", call);
    this.emit("call:incoming", {
      call, id: call.id, from: call.from, fromName: call.fromName, to: call.to,
      mediaType: call.mediaType, movedFrom: call.movedFrom, codec: [], timestamp: new Date(),
    });
    return call;
  }

  /** @param {string} callId @param {Record<string, any>} msg */
  _deliver(callId, msg) {
    const call = this._calls.get(callId);
    if (call) {
      call._deliver(msg);
      return;
    }
    if (msg.type === "call.ended") {
      this._early.delete(callId);
      return;
    }
    let queue = this._early.get(callId);
    if (!queue) this._early.set(callId, (queue = []));
    if (queue.length < MAX_EARLY_MESSAGES) queue.push(msg);
    while (this._early.size > MAX_EARLY_CALLS) this._early.delete(/** @type {string} */ (this._early.keys().next().value));
  }

  /** @param {string} endReason @protected */
  _sessionOver(endReason) {
    for (const call of [...this._calls.values()]) call._endLocally(endReason);
    for (const call of this._creating.values()) call.media?.close();
    this._creating.clear();
  }

  /** The session came back: calls it no longer has are over; our candidates kept while the
   * socket was down go out; media that failed meanwhile is restarted.
   * @param {Record<string, any>} reply @protected */
  _resumed(reply) {
    const alive = new Set((reply.calls ?? []).map((/** @type {any} */ c) => String(c.call_id)));
    for (const call of [...this._calls.values()]) {
      if (!alive.has(call.id)) {
        call._endLocally("disconnected");
        continue;
      }
      if (call._signalled) call._flushOutbox();
      const state = call.peerConnection?.connectionState;
      if (state === "failed" || state === "disconnected") {
        call.restartMedia().catch((e) => console.warn("callbridge: media restart:", e));
      }
    }
  }
}
