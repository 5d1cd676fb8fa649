// @ts-check
/**
 * One call leg of this phone (seed 001's `call`): its state, its events, its controls, and
 * its RTCPeerConnection (`call.peerConnection`). The phone makes calls (`phone.call()`,
 * `incoming`); a call reaches the server only through its phone.
 *
 * Events (handler arguments in brackets): trying, ringing, answered, held(heldBy),
 * resumed(by), muted, unmuted, dtmf(digit), recording(on), transferred(peer), moved(toSession),
 * move-failed(reason), media-modification(newMediaType), modification-in-progress,
 * state-changed(old, new, data), media-established, ringback-provided, answering,
 * disconnecting, transferring, dtmf-tone-sending(digits), dtmf-tone-sent(digits), error(err),
 * ended(reason). The last argument of each is the server's message when there is one.
 * @module
 */

import { Emitter } from "./emitter.js";
import * as video from "./callvideo.js";
import { CallbridgeError, ClientCode, remoteError } from "./errors.js";

/** @typedef {"trying"|"ringing"|"active"|"held"|"ended"} CallState */
/** @typedef {"incoming"|"outgoing"} CallDirection */
/** @typedef {"audio"|"video"} MediaType */
/** @typedef {import("./media.js").CallMedia} CallMedia */

const DTMF_DIGITS = /^[0-9A-Da-d*#,]+$/;

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
  constructor(host, init) {
    super();
    this._host = host;
    /** @type {string} the server's id of this leg ("" until `call.trying`) */
    this.id = init.id ?? "";
    /** @type {CallDirection} */ this.direction = init.direction;
    /** @type {string} the caller's number (E.164) or extension */ this.from = init.from;
    /** @type {string} the caller's display name (may be empty) */
    this.fromName = init.fromName ?? "";
    /** @type {string} the destination as dialled */ this.to = init.to;
    /** @type {CallState} */
    this.state = init.direction === "incoming" ? "ringing" : "trying";
    /** @type {MediaType} */ this.mediaType = init.mediaType ?? "audio";
    /** @type {string|null} the call this one takes over (seed 002 move), for incoming */
    this.movedFrom = init.movedFrom ?? null;
    /** @type {string|null} set for the leg of a conference */
    this.conferenceId = init.conferenceId ?? null;
    /** @type {CallMedia|null} */ this.media = init.media ?? null;
    /** @type {string|null} */ this._offerSdp = init.offerSdp ?? null;
    /** @type {string|null} why the call ended */ this.endReason = null;
    /** @type {CallbridgeError|null} the last `error` about this call */ this.lastError = null;
    /** @type {string|null} the far party after a transfer or bridge (else from/to) */
    this._peerOverride = null;
    /** @type {string} */ this.peerName = "";
    /** @type {Date} */ this.startTime = new Date();
    /** @type {Date|null} */ this.answerTime = null;
    /** @type {Date|null} */ this.endTime = null;
    /** @type {boolean} the server records this call (`call.recording`) */ this.isRecorded = false;
    /** @type {Record<string, any>|null} a media modification waiting for our answer */
    this.pendingModification = null;
    this._holders = /** @type {Set<"local"|"remote">} */ (new Set());
    this._muted = false;
    this._serverMuted = false;
    this.heldExplicitly = false;
    /** @type {Record<string, any>[]} our candidates waiting until the server knows the leg */
    this._outbox = [];
    this._signalled = false;
    /** @type {Promise<any>} media work, one step at a time (answers before candidates) */
    this._ops = Promise.resolve();
    /** @type {any[][]|null} events held back until the code awaiting this call has it */
    this._deferred = null;
    if (this.media) this._bindMedia(this.media);
  }

  // -- properties -----------------------------------------------------------------------------

  /** The RTCPeerConnection (seed 001: `getSenders()…dtmf.insertDTMF('1234#')`). */
  get peerConnection() { return this.media ? this.media.pc : null; }
  /** The far party's media (audio, and video when there is some). */
  get remoteStream() { return this.media ? this.media.remoteStream : null; }
  /** What this phone sends. */
  get localStream() { return this.media ? this.media.localStream : null; }
  get localVideoStream() { return this.media ? this.media.localVideoStream : null; }
  /** Seed 001: true after mute() until unmute(). */
  get isMuted() { return this._muted || this._serverMuted; }
  /** @returns {"local"|"remote"|null} who holds the call (local first) */
  get heldBy() {
    if (this._holders.has("local")) return "local";
    return this._holders.has("remote") ? "remote" : null;
  }
  get isHeld() { return this.state === "held"; }
  get heldLocally() { return this._holders.has("local"); }
  get isLive() { return this.state !== "ended"; }
  get isEstablished() { return this.state === "active" || this.state === "held"; }
  /** The far party: `to` of an outgoing call, `from` of an incoming one (or who a transfer
   * connected us to). */
  get peer() {
    return this._peerOverride ?? (this.direction === "outgoing" ? this.to : this.from);
  }
  /** Seconds since answered (0 before). */
  get duration() {
    if (!this.answerTime) return 0;
    return ((this.endTime ?? new Date()).getTime() - this.answerTime.getTime()) / 1000;
  }

  toJSON() {
    return { id: this.id, from: this.from, fromName: this.fromName, to: this.to,
      state: this.state, direction: this.direction, mediaType: this.mediaType,
      isMuted: this.isMuted, heldBy: this.heldBy, endReason: this.endReason };
  }

  // -- events ---------------------------------------------------------------------------------

  /** @param {string} name @param {...any} args */
  emit(name, ...args) {
    if (this._deferred) {
      this._deferred.push([name, ...args]);
      return true;
    }
    return super.emit(name, ...args);
  }

  /** Hold events back until `release()` (the code awaiting phone.call() attaches handlers). */
  _defer() { this._deferred = this._deferred ?? []; }

  _release() {
    const queued = this._deferred ?? [];
    this._deferred = null;
    for (const [name, ...args] of queued) super.emit(name, ...args);
  }

  /**
   * @param {string} name
   * @param {Record<string, any>} data
   * @param {...any} args
   */
  _event(name, data, ...args) {
    this.emit(name, ...args, data);
    this._host.announce(name, this, data);
  }

  // -- messages from the server ---------------------------------------------------------------

  /** @param {string} id */
  _setId(id) {
    this.id = id;
  }

  /** The server knows this leg now: send the candidates we kept. */
  _flushOutbox() {
    this._signalled = true;
    for (const msg of this._outbox.splice(0)) this._sendCandidate(msg);
  }

  /** @param {Record<string, any>} msg */
  _sendCandidate(msg) {
    if (!this._signalled || !this.id) {
      this._outbox.push(msg);
      return;
    }
    if (!this.isLive) return;
    try {
      this._host.send({ ...msg, call_id: this.id });
    } catch (e) {
      this._outbox.push(msg);  // the socket is down: sent after the session resumes
    }
  }

  /** @param {() => Promise<any>} fn */
  _op(fn) {
    this._ops = this._ops.then(fn).catch((e) => {
      console.warn(`callbridge: call ${this.id}:`, e);
    });
    return this._ops;
  }

  /** @param {CallMedia} media */
  _bindMedia(media) {
    media.options.sendCandidate = (msg) => this._sendCandidate(msg);
    media.onConnectionState = (state) => {
      if (media !== this.media || !this.isLive) return;
      if (state === "connected" && !this._established) {
        this._established = true;
        // Connected before the answer (the server answers a caller's offer at once and plays
        // ringback): said after "answered", in seed 002's order.
        if (this.isEstablished) this._event("media-established", { call_id: this.id });
        else this._mediaPending = media;
      }
      if (state === "failed") this.restartMedia().catch((e) => console.warn(e));
    };
  }

  /** @param {Record<string, any>} msg a server message about this call */
  _deliver(msg) {
    const kind = msg.type;
    switch (kind) {
      case "sdp.answer": {
        const media = this.media;
        if (media) this._op(() => media.acceptAnswer(String(msg.sdp ?? "")));
        break;
      }
      case "ice.candidate":
      case "ice.done": {
        const media = this.media;
        if (media) this._op(() => media.addRemoteCandidate(msg));
        else this._earlyCandidates = [...(this._earlyCandidates ?? []), msg];
        break;
      }
      case "call.trying":
        this._follow(msg.media_type);
        this._event("trying", msg);
        break;
      case "call.ringing":
        if (this.state === "trying") this.state = "ringing";
        this._event("ringing", msg);
        if (msg.ringback) this._event("ringback-provided", msg);
        break;
      case "call.answered":
        this._holders.clear();
        this.heldExplicitly = false;
        this.state = "active";
        this.answerTime = this.answerTime ?? new Date();
        this._follow(msg.media_type);
        this._event("answered", msg);
        if (this._mediaPending === this.media && this.isLive) {
          this._event("media-established", { call_id: this.id });
        }
        this._mediaPending = null;
        break;
      case "call.held":
      case "call.resumed":
        this._onHold(msg, kind === "call.held");
        break;
      case "call.muted":
        this._serverMuted = true;
        this._event("muted", msg);
        break;
      case "call.unmuted":
        this._serverMuted = false;
        this._event("unmuted", msg);
        break;
      case "call.dtmf":
        this._event("dtmf", msg, String(msg.digit ?? ""));
        break;
      case "call.recording":
        this.isRecorded = msg.recording === true;
        this._event("recording", msg, this.isRecorded);
        break;
      case "call.moving":
        this._event("moving", msg);
        break;
      case "call.moved":
        this._event("moved", msg, String(msg.to_session ?? ""));
        break;
      case "call.move-failed":
        this._event("move-failed", msg, String(msg.reason ?? ""));
        break;
      case "call.transferred":
        this._peerOverride = String(msg.peer ?? "");
        this.peerName = String(msg.peer_name ?? "");
        this._event("transferred", msg, this._peerOverride);
        break;
      case "call.bridged":
        this._peerOverride = String(msg.peer ?? "");
        this.peerName = String(msg.peer_name ?? "");
        this._event("bridged", msg, this._peerOverride);
        break;
      case "call.modification-in-progress":
        this._event("modification-in-progress", msg);
        break;
      case "call.media-modification":
        this.pendingModification = msg;
        this._event("media-modification", msg, String(msg.new_media_type ?? ""));
        break;
      case "call.state-changed":
        // After the sdp.answer before it has been applied.
        this._op(async () => {
          this._follow(msg.new_state);
          this._event("state-changed", msg, String(msg.old_state ?? ""), String(msg.new_state ?? ""));
        });
        break;
      case "call.ended":
        this._end(String(msg.reason ?? "hangup"), msg);
        break;
      case "error": {
        const err = remoteError(msg);
        this.lastError = err;
        if (this.listenerCount("error")) this.emit("error", err, msg);
        break;
      }
      default:
        break;
    }
  }

  /** @param {string} name */
  listenerCount(name) {
    return this._handlers.get(name)?.size ?? 0;
  }

  /** @param {unknown} value */
  _follow(value) {
    if (value === "audio" || value === "video") this.mediaType = value;
  }

  /** @param {Record<string, any>} msg @param {boolean} held */
  _onHold(msg, held) {
    /** @type {"local"|"remote"} */
    const by = msg.by === "remote" ? "remote" : "local";
    if (held) this._holders.add(by);
    else {
      this._holders.delete(by);
      if (by === "local") this.heldExplicitly = false;
    }
    if (this.isLive && this.state !== "trying" && this.state !== "ringing") {
      this.state = this._holders.size ? "held" : "active";
    }
    this._event(held ? "held" : "resumed", msg, by);
  }

  /**
   * End the call here (server said so, or the session is over).
   * @param {string} reason
   * @param {Record<string, any>} data
   */
  _end(reason, data) {
    if (this.state === "ended") return;
    this.state = "ended";
    this.endReason = reason;
    this.endTime = new Date();
    this.media?.close();
    this._host.callEnded(this);
    this._event("ended", data, reason);
  }

  /** @param {string} reason */
  _endLocally(reason) {
    this._end(reason, { type: "call.ended", call_id: this.id, reason, local: true });
  }

  // -- commands -------------------------------------------------------------------------------

  /** @param {string} type @param {Record<string, any>} [fields] */
  _request(type, fields = {}) {
    return this._host.request({ type, call_id: this.id, ...fields });
  }

  /** @param {string} what */
  _requireLive(what) {
    if (!this.isLive) {
      throw new CallbridgeError(ClientCode.CALL_ENDED, `${what}: call ${this.id} has ended (${this.endReason})`,
        { object: "call", method: what, callId: this.id });
    }
  }

  /**
   * Answer this incoming call (seed 001 `answer()`, seed 002 `answer({action})`).
   * @param {{action?: "hold"|"end", mediaType?: MediaType, localStream?: MediaStream}} [options]
   *   action: what happens first to the phone's other answered calls (hold or hang up);
   *   mediaType: "audio" answers a video call without video.
   */
  async answer(options = {}) {
    if (this.direction !== "incoming") {
      throw new CallbridgeError(ClientCode.INVALID_STATE, `call ${this.id} is outgoing: only incoming calls are answered`,
        { object: "call", method: "answer", callId: this.id });
    }
    if (!this.isLive) return;
    if (this.media) {
      throw new CallbridgeError(ClientCode.INVALID_STATE, `call ${this.id} is answered already`,
        { object: "call", method: "answer", callId: this.id });
    }
    const action = options.action;
    if (action !== undefined && action !== "hold" && action !== "end") {
      throw new CallbridgeError(ClientCode.INVALID_ARGUMENT, `answer({action: ${action}}): use 'hold' or 'end'`);
    }
    this._event("answering", { call_id: this.id });
    const video = (options.mediaType ?? this.mediaType) === "video";
    await this._host.answering(this, action, async () => {
      const media = this._host.newMedia({ localStream: options.localStream });
      this.media = media;
      this._bindMedia(media);
      try {
        const sdp = await media.answer(String(this._offerSdp ?? ""), video);
        for (const msg of (this._earlyCandidates ?? []).splice(0)) await media.addRemoteCandidate(msg);
        if (!this.isLive) { media.close(); return; }
        const reply = this._request("call.answer", { sdp });
        this._flushOutbox();
        await reply;
      } catch (e) {
        if (this.media === media && this.isLive) this.media = null;
        media.close();
        throw e;
      }
    });
  }

  /**
   * Decline this incoming call: silently, or with 'busy' (seed 001 `reject('busy')`).
   * @param {"busy"} [reason]
   */
  async reject(reason) {
    if (this.direction !== "incoming") {
      throw new CallbridgeError(ClientCode.INVALID_STATE, `call ${this.id} is outgoing: use hangup()`,
        { object: "call", method: "reject", callId: this.id });
    }
    if (!this.isLive) return;
    await this._request("call.reject", reason ? { reason } : {});
    this._endLocally(reason ?? "rejected");
  }

  /** End the call (cancels it while it rings: seed 002 `cancel`). */
  async hangup() {
    if (!this.isLive) return;
    this._event("disconnecting", { call_id: this.id });
    try {
      if (this.id) await this._request("call.hangup");
    } catch (e) {
      if (!(e instanceof CallbridgeError) || e.code !== "call_not_found") throw e;
    }
    this._endLocally("hangup");
  }

  /** Seed 002 `cancel()`: hang up an outgoing call that has not been answered. */
  cancel() { return this.hangup(); }

  /** Hold: the far party hears hold music (`held` with heldBy "local"). */
  async hold() {
    this._requireLive("hold");
    if (!this._holders.has("local")) await this._request("call.hold");
    this.heldExplicitly = this._holders.has("local");
  }

  /** Hold unless held already (automatic: add_call, switch). @returns {Promise<boolean>} */
  async _autoHold() {
    if (this._holders.has("local") || !this.isLive) return false;
    await this._request("call.hold");
    return true;
  }

  async _autoResume() {
    if (this.isLive && this._holders.has("local") && !this.heldExplicitly) await this.resume();
  }

  /** Take the call off hold (`resumed`). */
  async resume() {
    this._requireLive("resume");
    await this._request("call.resume");
    this.heldExplicitly = false;
    this._host.broughtForward(this);
  }

  /**
   * Mute: the microphone track is disabled and the server stops forwarding our audio
   * (authoritative). `{keepSending: true}` mutes at the server only.
   * @param {{keepSending?: boolean}} [options]
   */
  async mute(options = {}) {
    this._requireLive("mute");
    this._muted = true;
    if (!options.keepSending) this.media?.setMuted(true);
    try {
      await this._request("call.mute");
    } catch (e) {
      if (!(e instanceof CallbridgeError) || e.code !== "already_muted") throw e;
    }
  }

  async unmute() {
    this._requireLive("unmute");
    this._muted = false;
    this.media?.setMuted(false);
    await this._request("call.unmute");
  }

  /** Blind transfer (seed 001): this call ends with `transferred`. @param {string} destination */
  async transfer(destination) {
    this._requireLive("transfer");
    this._event("transferring", { call_id: this.id, destination });
    await this._request("call.transfer", { destination });
  }

  /**
   * Attended transfer, step 1 (seed 001): hold this call and place a consultation call,
   * which is returned. If the consultation fails or is hung up, this call is resumed.
   * @param {string} destination
   * @param {Record<string, any>} [options] as phone.call()
   * @returns {Promise<Call>}
   */
  async attendedTransfer(destination, options = {}) {
    if (!this.isEstablished) {
      throw new CallbridgeError(ClientCode.INVALID_STATE, `call ${this.id} is ${this.state}: answer it before transferring`,
        { object: "call", method: "attendedTransfer", callId: this.id });
    }
    return this._host.consult(this, destination, options);
  }

  /** Attended transfer, step 2: connect this call's far party to the consultation's. */
  async completeTransfer() {
    const consult = this._host.takeConsultation(this);
    if (!consult) {
      throw new CallbridgeError(ClientCode.INVALID_STATE, `call ${this.id} has no answered consultation call`,
        { object: "call", method: "completeTransfer", callId: this.id });
    }
    this._event("transferring", { call_id: this.id, target_call_id: consult.id });
    await this._request("call.complete_transfer", { target_call_id: consult.id });
  }

  /** Seed 002 `move()`: ring the user's other devices; the one that answers takes over. */
  async move() {
    this._requireLive("move");
    await this._request("call.move");
  }

  /**
   * Send DTMF with the browser's RTCDTMFSender (RFC 4733), seed 002 `sendDTMFTone`.
   * Resolves when the tones have been sent.
   * @param {string} digits 0-9 * # A-D and `,` (a 2 s pause)
   * @param {{duration?: number, gap?: number}} [options] milliseconds per tone and between
   */
  async sendDTMF(digits, options = {}) {
    if (typeof digits !== "string" || !DTMF_DIGITS.test(digits)) {
      throw new CallbridgeError(ClientCode.INVALID_DIGITS, `invalid DTMF digits ${JSON.stringify(digits)}: use 0-9 * # A-D ,`);
    }
    const sender = this.media?.audioSender;
    if (!sender || !sender.dtmf || !sender.dtmf.canInsertDTMF) {
      throw new CallbridgeError(ClientCode.DTMF_NOT_NEGOTIATED, `call ${this.id} cannot send DTMF (no telephone-event)`);
    }
    const dtmf = sender.dtmf;
    this._event("dtmf-tone-sending", { call_id: this.id, digits }, digits);
    const duration = options.duration ?? 100;
    const gap = options.gap ?? 70;
    await new Promise((resolve) => {
      const previous = dtmf.ontonechange;
      dtmf.ontonechange = (event) => {
        if (event.tone === "") {
          dtmf.ontonechange = previous;
          resolve(undefined);
        }
      };
      dtmf.insertDTMF(digits, duration, gap);
    });
    this._event("dtmf-tone-sent", { call_id: this.id, digits }, digits);
  }

  /**
   * Renegotiate the media on a new peer connection (`call.restart_media`): after a network
   * change; done by the SDK itself when the connection fails or the session resumes.
   */
  async restartMedia() {
    this._requireLive("restartMedia");
    const media = this.media;
    if (!media) return;
    this._established = false;
    this._signalled = false;
    const sdp = await media.restart();
    const reply = this._request("call.restart_media", { sdp });
    this._flushOutbox();
    const answer = await reply;
    if (answer.type === "sdp.answer") await this._op(() => media.acceptAnswer(String(answer.sdp ?? "")));
  }

  // -- seed 002 audio <-> video (callvideo.js) -------------------------------------------------

  /** Ask to make this audio call a video call (seed 002 `upgrade`). */
  async upgrade() { await video.upgrade(this); }

  /** Make this video call an audio call (seed 002 `downgrade`). */
  async downgrade() { await video.downgrade(this); }

  /** Accept the far party's upgrade or downgrade (seed 002 `acceptModification`). */
  async acceptModification() { await video.acceptModification(this); }

  /** Reject it (seed 002 `rejectModification`): an upgrade then brings the far party's
   * video to us, but we send none; a downgrade ends video anyway. */
  async rejectModification() { await video.rejectModification(this); }

  /**
   * Wait for an event (resolves with its first argument).
   * @param {string} name
   * @param {number} [timeoutMs]
   */
  waitFor(name, timeoutMs = 30000) {
    if (name === "ended" && this.state === "ended") return Promise.resolve(this.endReason);
    if (name === "answered" && this.isEstablished) return Promise.resolve(undefined);
    return super.waitFor(name, timeoutMs);
  }
}
