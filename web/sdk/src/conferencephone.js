// @ts-check
/**
 * Seed 002's conference methods and seed 000's call group on the phone. Conference events
 * go to the phone under seed 002's names (`conference:connected`,
 * `conference:invitation-received`, …) with data `{conference, id, from, participants,
 * invitations, reason, timestamp}`.
 * @module
 */

import { Call } from "./call.js";
import { CallPhone } from "./callphone.js";
import { CallGroup, Conference } from "./conference.js";
import { CallbridgeError, ClientCode } from "./errors.js";

const GROUP_MESSAGES = new Set(["conference.merged", "conference.updated", "conference.held", "conference.resumed"]);

export class ConferencePhone extends CallPhone {
  /** @param {import("./session.js").PhoneOptions} [options] */
  constructor(options = {}) {
    super(options);
    /** @type {Map<string, Conference>} */ this._conferences = new Map();
    /** @type {Map<string, Conference>} conference.start req_id -> the conference */
    this._starting = new Map();
    /** Seed 000's call group of this phone's calls. */
    this.conferenceGroup = new CallGroup({ request: (m) => this.request(m), getCall: (id) => this.getCall(id) });
    this._endedListeners.push((call) => this.conferenceGroup._callEnded(call));
  }

  /** Seed 000 `telephony.calls`: the live calls that are not in the call group. */
  get calls() {
    const grouped = new Set(this.conferenceGroup.calls);
    return this.activeCalls.filter((c) => !grouped.has(c) && !c.conferenceId);
  }

  /** The conferences this phone hosts or is invited to / in. */
  get conferences() { return [...this._conferences.values()].filter((c) => c.state !== "ended"); }

  /** The current conference (the last one started or joined). */
  get conference() { return this.conferences.at(-1) ?? null; }

  /** @param {string} what @param {"host"|null} role */
  _currentConference(what, role = null) {
    const conf = [...this.conferences].reverse().find((c) => c.state !== "invited" && (!role || c.role === role));
    if (!conf) {
      throw new CallbridgeError(ClientCode.INVALID_STATE, `${what}: there is no ${role ?? "established"} conference`, { object: "Phone", method: what });
    }
    return conf;
  }

  /**
   * @param {string} name
   * @param {Conference} conf
   * @param {Record<string, any>} [data]
   */
  _confEvent(name, conf, data = {}) {
    this.emit(name, {
      ...data, conference: conf, id: conf.id, conferenceId: conf.id, name: conf.name,
      from: conf.from, participants: conf.participants, invitations: conf.invitations,
      timestamp: new Date(),
    });
  }

  /**
   * Seed 002 `startConference({conferenceName, mediaType, localMedia, remoteMedia})`: host a
   * conference; resolves once it is connected.
   * @param {{conferenceName?: string, name?: string, mediaType?: "audio"|"video",
   *   beep?: "never"|"always"|"on_enter"|"on_exit", localStream?: MediaStream}} [options]
   * @returns {Promise<Conference>}
   */
  async startConference(options = {}) {
    this._requireReady("startConference");
    const media = this.newMedia({ localStream: options.localStream });
    const call = new Call(this, { id: null, direction: "outgoing", from: "", to: "conference", media });
    const conf = new Conference({ id: "", role: "host", name: options.conferenceName ?? options.name, call, mediaType: options.mediaType });
    this._confEvent("conference:connecting", conf);
    const reqId = this._transport.newReqId();
    this._starting.set(reqId, conf);
    try {
      const sdp = await media.offer(false);
      /** @type {Record<string, any>} */
      const msg = { type: "conference.start", req_id: reqId, sdp, media_type: options.mediaType ?? "audio" };
      if (conf.name) msg.name = conf.name;
      if (options.beep) msg.beep = options.beep;
      await this.request(msg);
    } catch (e) {
      this._starting.delete(reqId);
      media.close();
      throw e;
    }
    await this._until(() => conf.state !== "connecting", "conference.connected");
    return conf;
  }

  /** @param {() => boolean} pred @param {string} what @param {number} [ms] */
  async _until(pred, what, ms = 15000) {
    const end = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > end) throw new CallbridgeError(ClientCode.TIMEOUT, `no ${what} within ${ms} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Seed 002 `addParticipant(participant)` (host): invite a user. @param {string} to */
  async addParticipant(to) {
    const conf = this._currentConference("addParticipant", "host");
    this._confEvent("conference:invitation-sending", conf, { invitee: to });
    const reply = await this.request({ type: "conference.invite", conference_id: conf.id, to });
    conf._follow(reply);
    this._confEvent("conference:invitation-sent", conf, { invitee: to, invitationId: reply.invitation_id });
  }

  /** Seed 002 `addParticipants([...])`. @param {string[]} list */
  async addParticipants(list) {
    for (const to of list) await this.addParticipant(to);
  }

  /** Seed 002 `joinConference()`: accept the invitation ringing here. */
  async joinConference(options = {}) {
    const conf = [...this._conferences.values()].reverse().find((c) => c.state === "invited");
    if (!conf || !conf.call) {
      throw new CallbridgeError(ClientCode.INVALID_STATE, "joinConference: no conference invitation is ringing", { object: "Phone", method: "joinConference" });
    }
    this._confEvent("conference:joining", conf);
    await conf.call.answer(/** @type {any} */ (options));
    await this._until(() => conf.state !== "invited", "conference.joined");
    return conf;
  }

  /** Seed 002 `rejectConference()`: decline the invitation ringing here. */
  async rejectConference() {
    const conf = [...this._conferences.values()].reverse().find((c) => c.state === "invited");
    if (!conf || !conf.call) {
      throw new CallbridgeError(ClientCode.INVALID_STATE, "rejectConference: no conference invitation is ringing", { object: "Phone", method: "rejectConference" });
    }
    await conf.call.reject();
    conf.state = "ended";
    conf.endReason = "rejected";
  }

  /** Seed 002 `removeParticipant(participant)` (host). @param {string} participant */
  async removeParticipant(participant) {
    const conf = this._currentConference("removeParticipant", "host");
    const reply = await this.request({ type: "conference.remove", conference_id: conf.id, participant });
    conf._follow(reply);
    this._confEvent("conference:participant-removed", conf, { participant });
  }

  /** Seed 002 `getParticipants()` (host): participant id -> details. */
  getParticipants() {
    return { ...this._currentConference("getParticipants", "host").participants };
  }

  /**
   * Ask the server who is in the current conference (`conference.get`): the host learns it
   * from events too, a participant only this way. Updates `conference.participants`,
   * `invitations` and `host` (the host's caller id), and emits `conference:updated`.
   * @returns {Promise<Conference>}
   */
  async refreshConference() {
    const conf = this._currentConference("refreshConference");
    const reply = await this.request({ type: "conference.get", conference_id: conf.id });
    conf._follow(reply);
    if (typeof reply.host === "string") conf.host = reply.host;
    this._confEvent("conference:updated", conf);
    return conf;
  }

  /** Seed 002 `endConference()`: the host ends it for everyone; a participant leaves. */
  async endConference() {
    const conf = this._currentConference("endConference");
    this._confEvent("conference:disconnecting", conf);
    await this.request({ type: "conference.end", conference_id: conf.id });
  }

  /** Hold / resume our own membership of the current conference. */
  async holdConference() {
    const conf = this._currentConference("holdConference");
    await this.request({ type: "conference.hold", conference_id: conf.id });
  }

  async resumeConference() {
    const conf = this._currentConference("resumeConference");
    await this.request({ type: "conference.resume", conference_id: conf.id });
  }

  // -- routing ---------------------------------------------------------------------------------

  /** @param {Record<string, any>} msg @returns {boolean} */
  _dispatchMore(msg) {
    const type = String(msg.type ?? "");
    if (!type.startsWith("conference.")) return false;
    const group = this.conferenceGroup;
    if (type === "conference.merged" || (group.id && msg.conference_id === group.id && (GROUP_MESSAGES.has(type) || type === "conference.ended"))) {
      group._handle(msg);
      return true;
    }
    if (type === "conference.started") {
      const conf = typeof msg.req_id === "string" ? this._starting.get(msg.req_id) : undefined;
      if (conf && conf.call) {
        this._starting.delete(msg.req_id);
        conf.id = String(msg.conference_id);
        conf._follow(msg);
        conf.call.conferenceId = conf.id;
        conf.call._setId(String(msg.call_id));
        this._conferences.set(conf.id, conf);
        this._adopt(conf.call);
        conf.call._flushOutbox();
      }
      return true;
    }
    if (type === "conference.invitation") {
      const call = this._incomingInvitation(msg);
      const conf = new Conference({
        id: String(msg.conference_id), name: msg.name, role: "participant", call,
        invitationId: msg.invitation_id ?? null, from: String(msg.from ?? ""),
        fromName: String(msg.from_name ?? ""), mediaType: msg.media_type,
      });
      this._conferences.set(conf.id, conf);
      call.once("ended", (/** @type {string} */ reason) => {
        if (conf.state === "invited") {
          conf.state = "ended";
          conf.endReason = reason;
          if (reason === "canceled" || reason === "no-answer") this._confEvent("conference:canceled", conf, { reason });
        }
      });
      this._confEvent("conference:invitation-received", conf, { invitationId: conf.invitationId, fromName: conf.fromName, call });
      return true;
    }
    const conf = this._conferences.get(String(msg.conference_id ?? ""));
    if (!conf) return type !== "conference.state";
    conf._follow(msg);
    switch (type) {
      case "conference.connected":
      case "conference.joined":
        conf.state = "connected";
        this._confEvent("conference:connected", conf);
        break;
      case "conference.invitation-accepted":
      case "conference.invitation-rejected":
      case "conference.participant-left":
      case "conference.participant-updated":
      case "conference.floor-changed":
        this._confEvent(`conference:${type.slice("conference.".length)}`, conf, { invitee: msg.invitee, reason: msg.reason, participant: msg.participant });
        break;
      case "conference.ended":
        conf.state = "ended";
        conf.endReason = String(msg.reason ?? "");
        this._confEvent("conference:ended", conf, { reason: conf.endReason });
        break;
      default:
        break;
    }
    if (msg.call_id && type !== "conference.ended") this._deliver(String(msg.call_id), msg);
    return true;
  }

  /** @param {Record<string, any>} msg conference.invitation */
  _incomingInvitation(msg) {
    const call = new Call(this, {
      id: String(msg.call_id), direction: "incoming", from: String(msg.from ?? ""),
      fromName: String(msg.from_name ?? ""), to: String(msg.to ?? ""),
      mediaType: msg.media_type === "video" ? "video" : "audio", offerSdp: String(msg.sdp ?? ""),
      conferenceId: String(msg.conference_id),
    });
    return this._adopt(call);
  }
}
