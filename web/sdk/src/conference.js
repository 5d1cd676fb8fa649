// @ts-check
/**
 * Seed 002's conferences (a mixer at the server, hosted by one phone, joined by invitation)
 * and seed 000's call group (`phone.conferenceGroup`: this phone's own answered calls merged
 * into one conversation). docs/protocol.md, "Conferences (seed 002) and call groups (seed 000)".
 * @module
 */

import { Emitter } from "./emitter.js";
import { CallbridgeError, ClientCode } from "./errors.js";

/** @typedef {import("./call.js").Call} Call */

/** A hosted conference as this phone sees it (host or participant). */
export class Conference {
  /**
   * @param {{id: string, name?: string, role: "host"|"participant", mediaType?: string,
   *   call?: Call|null, invitationId?: string|null, from?: string, fromName?: string}} init
   */
  constructor(init) {
    /** @type {string} */ this.id = init.id;
    /** @type {string} */ this.name = init.name ?? "";
    /** @type {"host"|"participant"} */ this.role = init.role;
    /** @type {string} */ this.mediaType = init.mediaType ?? "audio";
    /** @type {Call|null} our leg */ this.call = init.call ?? null;
    /** @type {"connecting"|"invited"|"connected"|"held"|"ended"} */
    this.state = init.role === "host" ? "connecting" : "invited";
    /** @type {string|null} the invitation that rings us (participant) */
    this.invitationId = init.invitationId ?? null;
    /** @type {string} who invited us */ this.from = init.from ?? "";
    /** @type {string} */ this.fromName = init.fromName ?? "";
    /** @type {Record<string, any>} participant id -> {id, call_id, name, status, muted, held, …} */
    this.participants = {};
    /** @type {Record<string, any>} participant id -> {id, invitation_id, name, status} */
    this.invitations = {};
    /** @type {string|null} */ this.endReason = null;
    /** @type {string} the host's caller id (known after `phone.refreshConference()`) */
    this.host = "";
  }

  /** @param {Record<string, any>} msg */
  _follow(msg) {
    if (msg.participants && typeof msg.participants === "object") this.participants = msg.participants;
    if (msg.invitations && typeof msg.invitations === "object") this.invitations = msg.invitations;
    if (msg.name) this.name = String(msg.name);
    if (msg.media_type) this.mediaType = String(msg.media_type);
  }

  toJSON() {
    return { id: this.id, name: this.name, role: this.role, state: this.state,
      participants: this.participants, invitations: this.invitations, callId: this.call?.id ?? null };
  }
}

/**
 * Seed 000's TelephonyCallGroup. Events (no arguments; handlers or `on<name>` properties):
 * callschanged, statechange, connected, holding, held, resuming, error(err).
 * `state`: "" (no group), "connected", "holding", "held", "resuming".
 */
export class CallGroup extends Emitter {
  /**
   * @param {{request: (msg: Record<string, any>) => Promise<Record<string, any>>,
   *   getCall: (id: string) => Call|null}} host
   */
  constructor(host) {
    super();
    this._host = host;
    /** @type {string|null} the server's conference_id of the group */ this.id = null;
    /** @type {""|"connected"|"holding"|"held"|"resuming"} */ this.state = "";
    /** @type {Call[]} */ this._calls = [];
    /** @type {Call|null} the call that carries our voice and the mix */ this.mediaCall = null;
    /** @type {Function|null} */ this.oncallschanged = null;
    /** @type {Function|null} */ this.onstatechange = null;
    /** @type {Function|null} */ this.onconnected = null;
    /** @type {Function|null} */ this.onholding = null;
    /** @type {Function|null} */ this.onheld = null;
    /** @type {Function|null} */ this.onresuming = null;
    /** @type {Function|null} */ this.onerror = null;
  }

  /** The calls in the group (seed 000 `calls`). */
  get calls() { return [...this._calls]; }

  /** @param {""|"connected"|"holding"|"held"|"resuming"} state */
  _setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.emit("statechange");
    if (state === "connected") this.emit("connected");
    else if (state === "held") this.emit("held");
  }

  /** @param {Record<string, any>} msg the server's view of the group */
  _follow(msg) {
    this.id = String(msg.conference_id ?? this.id ?? "") || null;
    const calls = (msg.call_ids ?? []).map((/** @type {string} */ id) => this._host.getCall(String(id))).filter(Boolean);
    this.mediaCall = msg.media_call_id ? this._host.getCall(String(msg.media_call_id)) : this.mediaCall;
    if (calls.length !== this._calls.length || calls.some((/** @type {Call} */ c, /** @type {number} */ i) => c !== this._calls[i])) {
      this._calls = calls;
      this.emit("callschanged");
    }
    if (msg.state === "connected" || msg.state === "held") this._setState(msg.state);
  }

  /** A conference.* message about the group. @param {Record<string, any>} msg */
  _handle(msg) {
    if (msg.type === "conference.ended") this._dissolve();
    else if (msg.type === "conference.held") this._follow({ ...msg, state: "held" });
    else if (msg.type === "conference.resumed") this._follow({ ...msg, state: "connected" });
    else this._follow(msg);
  }

  _dissolve() {
    this.id = null;
    this.mediaCall = null;
    if (this._calls.length) {
      this._calls = [];
      this.emit("callschanged");
    }
    this._setState("");
  }

  /** @param {Call} call */
  _callEnded(call) {
    if (!this._calls.includes(call)) return;
    this._calls = this._calls.filter((c) => c !== call);
    this.emit("callschanged");
    if (!this._calls.length) this._dissolve();
  }

  /** @param {Record<string, any>} msg */
  async _request(msg) {
    try {
      return await this._host.request(msg);
    } catch (e) {
      this.emit("error", e);
      throw e;
    }
  }

  /** Merge answered calls into the group (two to make it; then one at a time). A held call
   * is resumed by the merge. @param {...Call} calls */
  async add(...calls) {
    if (!calls.length) throw new CallbridgeError(ClientCode.INVALID_ARGUMENT, "add() needs at least one call", { object: "CallGroup", method: "add" });
    /** @type {Record<string, any>} */
    const msg = { type: "conference.merge", call_ids: calls.map((c) => c.id) };
    if (this.id) msg.conference_id = this.id;
    this._follow(await this._request(msg));
  }

  /** Take a call out of the group: an ordinary call again. @param {Call} call */
  async remove(call) {
    if (!this.id || !this._calls.includes(call)) {
      throw new CallbridgeError(ClientCode.INVALID_STATE, `call ${call.id} is not in the call group`, { object: "CallGroup", method: "remove" });
    }
    this._handle(await this._request({ type: "conference.split", conference_id: this.id, call_id: call.id }));
  }

  /** Hang up every call in the group (seed 000 `hangUp`). */
  async hangUp() {
    if (!this.id) throw new CallbridgeError(ClientCode.INVALID_STATE, "there is no call group to hang up", { object: "CallGroup", method: "hangUp" });
    const calls = [...this._calls];
    await this._request({ type: "conference.end", conference_id: this.id });
    await Promise.all(calls.map((c) => c.waitFor("ended", 10000).catch(() => {})));
    this._dissolve();
  }

  /** Hold the whole group: we hear nothing and are not heard; the others go on talking. */
  hold() { return this._switch("hold", "connected", "holding"); }
  /** Resume a held group. */
  resume() { return this._switch("resume", "held", "resuming"); }

  /**
   * @param {"hold"|"resume"} verb
   * @param {"connected"|"held"} settled
   * @param {"holding"|"resuming"} passing
   */
  async _switch(verb, settled, passing) {
    if (!this.id || this.state !== settled) {
      throw new CallbridgeError(ClientCode.INVALID_STATE, `${verb}() needs a ${settled} call group; it is '${this.state}'`, { object: "CallGroup", method: verb });
    }
    this._setState(passing);
    this.emit(passing);
    try {
      this._handle(await this._request({ type: `conference.${verb}`, conference_id: this.id }));
    } catch (e) {
      this._setState(settled);
      throw e;
    }
  }
}
