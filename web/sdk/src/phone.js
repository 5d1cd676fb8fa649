// @ts-check
/**
 * The Phone: seed 001's `new Phone({url, token})` and seed 002's `Phone` in one object.
 *
 * Seed 002's methods act on the phone's *current* call (the foreground one, or the ringing
 * one for answer / reject), as the seed's singleton does. They return promises; when they
 * fail the phone also emits `error` with the seed's error object (CallbridgeError: JSObject,
 * JSMethod, ErrorCode, ErrorMessage, Cause, Resolution), and the promise resolves to
 * undefined if an `error` handler is attached (seed style) or rejects if none is.
 * Conferences and the seed 000 call group are in conferencephone.js.
 * @module
 */

import { CallbridgeError, ClientCode } from "./errors.js";
import { ConferencePhone } from "./conferencephone.js";
import { cleanPhoneNumber, formatNumber, getCallerInfo } from "./numbers.js";
import { VERSION } from "./version.js";
import { listDevices, preCallTest } from "./devices.js";

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
  static getPhone(options) {
    const self = /** @type {any} */ (Phone);
    if (!self._instance) self._instance = new Phone(options);
    return self._instance;
  }

  /** Seed 002 `getVersion()`. */
  getVersion() { return VERSION; }
  static getVersion() { return VERSION; }

  /** @param {string} n */
  cleanPhoneNumber(n) { return cleanPhoneNumber(n); }
  /** @param {string} n */
  formatNumber(n) { return formatNumber(n); }
  /** @param {string} uri */
  getCallerInfo(uri) { return getCallerInfo(uri); }

  // -- ICE settings (seed 002) ----------------------------------------------------------------

  getIceServers() { return [...this.iceServers]; }
  /** @param {RTCIceServer[]} servers */
  setIceServers(servers) {
    if (!Array.isArray(servers)) {
      throw new CallbridgeError(ClientCode.INVALID_ARGUMENT, "setIceServers(servers): an array of RTCIceServer", { object: "Phone", method: "setIceServers" });
    }
    this.iceServers = servers.map((s) => ({ ...s }));
  }
  resetIceServers() { this.iceServers = [...(this.options.iceServers ?? [])]; }
  getIceTransport() { return this.iceTransportPolicy; }
  /** @param {RTCIceTransportPolicy} policy "all" or "relay" */
  setIceTransport(policy) {
    if (policy !== "all" && policy !== "relay") {
      throw new CallbridgeError(ClientCode.INVALID_ARGUMENT, `setIceTransport(${JSON.stringify(policy)}): use "all" or "relay"`, { object: "Phone", method: "setIceTransport" });
    }
    this.iceTransportPolicy = policy;
  }
  resetIceTransport() { this.iceTransportPolicy = this.options.iceTransportPolicy ?? "all"; }
  /** Whether IPv6 candidates are used: browsers decide; kept for the seed's API. */
  getIpv6() { return this._ipv6 ?? true; }
  /** @param {boolean} on */
  setIpv6(on) { this._ipv6 = Boolean(on); }

  // -- seed 002 call methods ------------------------------------------------------------------

  /**
   * Run a seed 002 method: errors go to the `error` event (with JSObject/JSMethod set), and
   * reject only when nobody listens to `error`.
   * @template T
   * @param {string} method
   * @param {() => Promise<T>} fn
   * @returns {Promise<T|undefined>}
   */
  async _seed(method, fn) {
    try {
      return await fn();
    } catch (e) {
      const err = e instanceof CallbridgeError ? e
        : new CallbridgeError(ClientCode.MEDIA, String(/** @type {any} */ (e)?.message ?? e));
      if (!err.method) err.method = method;
      if (!err.object) err.object = "Phone";
      if (this._handlers.get("error")?.size) {
        this.emit("error", err);
        return undefined;
      }
      throw err;
    }
  }

  /** @param {string} what @returns {Call} */
  _current(what) {
    const call = this.foregroundCall ?? this.activeCalls.filter((c) => !c.conferenceId).at(-1);
    if (!call) {
      throw new CallbridgeError(ClientCode.INVALID_STATE, `${what}: there is no current call`, { object: "Phone", method: what });
    }
    return call;
  }

  /** @param {string} what @returns {Call} */
  _ringing(what) {
    const call = this.activeCalls.filter((c) => c.direction === "incoming" && c.state === "ringing" && !c.media && !c.conferenceId).at(-1);
    if (!call) {
      throw new CallbridgeError(ClientCode.INVALID_STATE, `${what}: no incoming call is ringing`, { object: "Phone", method: what });
    }
    return call;
  }

  /**
   * @param {Call} call
   * @param {HTMLMediaElement|undefined} localMedia
   * @param {HTMLMediaElement|undefined} remoteMedia
   */
  _attach(call, localMedia, remoteMedia) {
    const show = () => {
      if (localMedia && call.media) {
        const local = new MediaStream([...(call.media.localVideoStream?.getTracks() ?? [])]);
        localMedia.muted = true;
        localMedia.srcObject = local.getTracks().length ? local : call.media.localStream;
      }
      if (remoteMedia && call.media) {
        remoteMedia.srcObject = call.media.remoteStream;
        remoteMedia.play?.().catch(() => {});
      }
    };
    show();
    call.on("answered", show);
    call.on("state-changed", show);
  }

  /**
   * Seed 002 `dial(options)`, or seed 000 `dial(number)`.
   * @param {Seed002DialOptions|string} options
   * @returns {Promise<Call|undefined>}
   */
  dial(options) {
    return this._seed("dial", async () => {
      const o = typeof options === "string" ? { destination: options } : options;
      const call = await this.call(o.destination, { mediaType: o.mediaType, callerId: o.callerId, localStream: o.localStream });
      this._attach(call, o.localMedia, o.remoteMedia);
      return call;
    });
  }

  /**
   * Seed 002 `answer({action, mediaType, localMedia, remoteMedia})`: the ringing call.
   * @param {{action?: "hold"|"end", mediaType?: "audio"|"video", localMedia?: HTMLMediaElement,
   *   remoteMedia?: HTMLMediaElement, localStream?: MediaStream}} [options]
   */
  answer(options = {}) {
    return this._seed("answer", async () => {
      const call = this._ringing("answer");
      await call.answer({ action: options.action, mediaType: options.mediaType, localStream: options.localStream });
      this._attach(call, options.localMedia, options.remoteMedia);
      return call;
    });
  }

  /**
   * Seed 002 `addCall(options)`: hold the current call, dial a second one; back to the first
   * when the second fails or ends (unless the first was held explicitly).
   * @param {Seed002DialOptions|string} options
   */
  addCall(options) {
    return this._seed("addCall", async () => {
      const o = typeof options === "string" ? { destination: options } : options;
      const first = this.foregroundCall;
      if (!first || !first.isEstablished) {
        throw new CallbridgeError(ClientCode.INVALID_STATE, "addCall needs an answered call in the foreground: use dial() for a first call", { object: "Phone", method: "addCall" });
      }
      await first._autoHold();
      let second;
      try {
        second = await this.call(o.destination, { mediaType: o.mediaType, callerId: o.callerId, localStream: o.localStream });
      } catch (e) {
        this.broughtForward(first);
        await first._autoResume();
        throw e;
      }
      this._attach(second, o.localMedia, o.remoteMedia);
      if (second.isLive) this._returns.set(second, first);
      else await first._autoResume();
      return second;
    });
  }

  /** @param {string} what @returns {[Call, Call]} */
  _twoCalls(what) {
    const fg = this.foregroundCall;
    const bg = [...this._focus].reverse().find((c) => c !== fg && c.isEstablished);
    if (!fg || !fg.isEstablished || !bg) {
      throw new CallbridgeError(ClientCode.INVALID_STATE, `${what} needs two answered calls, one in the foreground and one in the background; this phone has ${this.activeCalls.length} live call(s)`, { object: "Phone", method: what });
    }
    return [fg, bg];
  }

  /** Seed 002 `switchCall()`: hold the foreground call, bring the background one forward. */
  switchCall() {
    return this._seed("switchCall", async () => {
      const [old, next] = this._twoCalls("switchCall");
      await old._autoHold();
      await next._autoResume();
      this.broughtForward(next);
      this.emit("call-switched", next);
      this.emit("session:call-switched", { from: old.peer, to: next.peer, call: next, timestamp: new Date() });
    });
  }

  /** Seed 002 `transfer()`: connect the two calls' far parties (the background one held). */
  transfer() {
    return this._seed("transfer", async () => {
      const [target, held] = this._twoCalls("transfer");
      if (held.state !== "held") {
        throw new CallbridgeError(ClientCode.INVALID_STATE, `transfer needs the background call ${held.id} on hold`, { object: "Phone", method: "transfer" });
      }
      for (const c of [target, held]) { this._returns.delete(c); this._consults.delete(c); }
      await this.request({ type: "call.complete_transfer", call_id: held.id, target_call_id: target.id });
    });
  }

  /** Seed 002 `cancel()`: the outgoing call that has not been answered. */
  cancel() {
    return this._seed("cancel", async () => {
      const call = this.activeCalls.filter((c) => c.direction === "outgoing" && !c.isEstablished).at(-1);
      if (!call) throw new CallbridgeError(ClientCode.INVALID_STATE, "cancel: no outgoing call is being placed", { object: "Phone", method: "cancel" });
      await call.hangup();
    });
  }

  /** Seed 002 `reject()`: decline the ringing call. @param {"busy"} [reason] */
  reject(reason) {
    return this._seed("reject", async () => this._ringing("reject").reject(reason));
  }

  /** Seed 002 `hangup()`: the current call. */
  hangup() { return this._seed("hangup", async () => this._current("hangup").hangup()); }
  hold() { return this._seed("hold", async () => this._current("hold").hold()); }
  resume() { return this._seed("resume", async () => this._current("resume").resume()); }
  mute() { return this._seed("mute", async () => this._current("mute").mute()); }
  unmute() { return this._seed("unmute", async () => this._current("unmute").unmute()); }
  move() { return this._seed("move", async () => this._current("move").move()); }
  upgrade() { return this._seed("upgrade", async () => this._current("upgrade").upgrade()); }
  downgrade() { return this._seed("downgrade", async () => this._current("downgrade").downgrade()); }
  acceptModification() {
    return this._seed("acceptModification", async () => this._modified("acceptModification").acceptModification());
  }
  rejectModification() {
    return this._seed("rejectModification", async () => this._modified("rejectModification").rejectModification());
  }

  /** @param {string} what */
  _modified(what) {
    const call = this.activeCalls.find((c) => c.pendingModification);
    if (!call) throw new CallbridgeError(ClientCode.INVALID_STATE, `${what}: no media modification is waiting`, { object: "Phone", method: what });
    return call;
  }

  /**
   * Seed 002 `sendDTMFTone({input, gap})` on the current call.
   * @param {{input: string, gap?: number, duration?: number}|string} options
   */
  sendDTMFTone(options) {
    return this._seed("sendDTMFTone", async () => {
      const o = typeof options === "string" ? { input: options } : options;
      await this._current("sendDTMFTone").sendDTMF(o.input, { gap: o.gap, duration: o.duration });
    });
  }

  /** Seed 002 `getCalls()`: [{index, breed, type, state, peer}], oldest first. */
  getCalls() {
    return this.activeCalls.map((call, index) => ({
      index,
      breed: call.conferenceId ? "conference" : "call",
      type: call.direction === "outgoing" ? "Outgoing" : "Incoming",
      state: call.state === "active" ? "connected" : call.state,
      peer: call.peer,
      id: call.id,
    }));
  }

  /** Seed 002 `getMediaType()`: the current call's, null without one. */
  getMediaType() {
    const call = this.foregroundCall ?? this.activeCalls.at(-1);
    return call ? call.mediaType : null;
  }

  isCallInProgress() { return this.activeCalls.length > 0; }

  // -- devices --------------------------------------------------------------------------------

  /** Microphones, speakers and cameras (labels need a granted getUserMedia first). */
  listDevices() { return listDevices(); }

  /**
   * Use this microphone for new calls, and switch the live calls to it.
   * @param {string|MediaStream} device a deviceId, or a stream to send instead
   */
  async setMicrophone(device) {
    if (typeof device === "string") {
      this.audioInput = device;
      this._inputStream = null;
    } else this._inputStream = device;
    for (const call of this.activeCalls) {
      if (!call.media) continue;
      const stream = typeof device === "string"
        ? await navigator.mediaDevices.getUserMedia({ audio: { deviceId: { exact: device } } })
        : device.clone();
      /** @type {any} */ (stream)._callbridgeOwned = true;
      await call.media.replaceAudio(stream);
    }
  }

  /** Play calls on this speaker (setSinkId), live calls included. @param {string} deviceId */
  async setSpeaker(deviceId) {
    this.audioOutput = deviceId;
    for (const call of this.activeCalls) await call.media?.setSpeaker(deviceId);
  }

  /**
   * The signed-in user's ended calls from the server's call records, newest first
   * (`history.list`, docs/protocol.md "Call history"). `before` is the previous page's
   * `nextBefore`. Each call: `{callId, direction: "in"|"out", party, partyName, partyNumber,
   * partyExtension, dial, startedAt, answeredAt, endedAt, durationSeconds, endReason, missed}`
   * (times are ISO 8601 strings; `dial` calls them back).
   * @param {{limit?: number, before?: string}} [options] limit 1-100 (default 20)
   * @returns {Promise<{calls: Array<Record<string, any>>, nextBefore: string|null}>}
   */
  async getCallHistory({ limit = 20, before } = {}) {
    /** @type {Record<string, any>} */
    const msg = { type: "history.list", limit };
    if (before !== undefined && before !== null) msg.before = before;
    const reply = await this.request(msg);
    const camel = (/** @type {string} */ k) => k.replace(/_([a-z])/g, (_, c) => c.toUpperCase());
    const calls = (reply.calls ?? []).map((/** @type {Record<string, any>} */ c) =>
      Object.fromEntries(Object.entries(c).map(([k, v]) => [camel(k), v])));
    return { calls, nextBefore: reply.next_before ?? null };
  }

  /**
   * The signed-in user's own forwarding rules (`forwarding.get`, docs/routing.md):
   * `{ringSeconds, dnd, steps: [{targets: [{type, value?, screening?}], seconds}], onBusy,
   * onNoAnswer, onOffline, onDnd}`.
   * @returns {Promise<Record<string, any>>}
   */
  async getForwarding() {
    return forwardingOf(await this.request({ type: "forwarding.get" }));
  }

  /**
   * Change the signed-in user's own rules (`forwarding.set`); what is left out is kept.
   * A target may be written `"devices"`, `"user:bob"`, `"number:+14155550100"`.
   * @param {{ringSeconds?: number|null, dnd?: boolean, steps?: Array<{targets: Array<string|{type: string, value?: string, screening?: boolean}>, seconds?: number}>, onBusy?: string, onNoAnswer?: string, onOffline?: string, onDnd?: string}} rules
   * @returns {Promise<Record<string, any>>} the rules now in force
   */
  async setForwarding(rules) {
    /** @type {Record<string, any>} */
    const msg = { type: "forwarding.set" };
    const names = { ringSeconds: "ring_seconds", dnd: "dnd", onBusy: "on_busy",
      onNoAnswer: "on_no_answer", onOffline: "on_offline", onDnd: "on_dnd" };
    for (const [key, wire] of Object.entries(names)) {
      if (rules[key] !== undefined) msg[wire] = rules[key];
    }
    if (rules.steps !== undefined) {
      msg.steps = rules.steps.map((step) => ({
        ...step,
        targets: step.targets.map((t) => {
          if (typeof t !== "string") return t;
          const [type, ...rest] = t.split(":");
          return rest.length ? { type, value: rest.join(":") } : { type };
        }),
      }));
    }
    return forwardingOf(await this.request(msg));
  }

  /**
   * Turn the signed-in user's do-not-disturb on or off (`forwarding.dnd`).
   * @param {boolean} on
   * @returns {Promise<Record<string, any>>}
   */
  async setDnd(on) {
    return forwardingOf(await this.request({ type: "forwarding.dnd", dnd: !!on }));
  }

  /**
   * Use this camera for new video, and switch the live calls that send video to it
   * (RTCRtpSender.replaceTrack: no renegotiation, the call goes on).
   * @param {string} deviceId
   */
  async setCamera(deviceId) {
    this.videoInput = deviceId;
    for (const call of this.activeCalls) {
      if (!call.media?.localVideoStream) continue;
      const stream = await navigator.mediaDevices.getUserMedia({ video: { deviceId: { exact: deviceId } } });
      /** @type {any} */ (stream)._callbridgeOwned = true;
      await call.media.replaceVideo(stream);
    }
  }

  /**
   * Choose the microphone, speaker and camera at once (each optional: a key left out keeps
   * its device). Live calls switch as with `setMicrophone`, `setSpeaker` and `setCamera`.
   * @param {{audioInput?: string|MediaStream, audioOutput?: string, videoInput?: string}} devices
   */
  async setDevices(devices) {
    if (devices.audioInput !== undefined) await this.setMicrophone(devices.audioInput);
    if (devices.audioOutput !== undefined) await this.setSpeaker(devices.audioOutput);
    if (devices.videoInput !== undefined) await this.setCamera(devices.videoInput);
  }

  /** The devices in use: deviceIds, null for the browser's default. */
  get devices() {
    return { audioInput: this.audioInput, audioOutput: this.audioOutput, videoInput: this.videoInput };
  }

  /**
   * Check the microphone and the media path to the server (see devices.js).
   * @param {{durationMs?: number, localStream?: MediaStream}} [options]
   */
  preCallTest(options = {}) {
    return preCallTest(this, { localStream: this._inputStream ?? undefined, ...options });
  }
}

/**
 * A `forwarding.state`'s rules with camelCase names.
 * @param {Record<string, any>} reply
 * @returns {Record<string, any>}
 */
function forwardingOf(reply) {
  const f = reply.forwarding ?? {};
  return {
    ringSeconds: f.ring_seconds ?? null, dnd: !!f.dnd, steps: f.steps ?? [],
    onBusy: f.on_busy, onNoAnswer: f.on_no_answer, onOffline: f.on_offline, onDnd: f.on_dnd,
  };
}
