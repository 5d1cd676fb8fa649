// @ts-check
/**
 * A call's media: its RTCPeerConnection (seed 001's `call.peerConnection`), the local
 * microphone (or a given MediaStream), the remote audio played on the chosen speaker, trickle
 * ICE both ways, and the renegotiations of the protocol (video upgrade / downgrade, media
 * restart). The server anchors media (docs/protocol.md, "Media"): the far end of every peer
 * connection is callbridge itself.
 * @module
 */

import { CallbridgeError, ClientCode } from "./errors.js";

/**
 * @typedef {object} MediaOptions
 * @property {RTCIceServer[]} iceServers
 * @property {RTCIceTransportPolicy} iceTransportPolicy
 * @property {() => Promise<MediaStream>} getLocalStream the microphone (or a given stream)
 * @property {(constraints?: MediaTrackConstraints|boolean) => Promise<MediaStream>} getVideoStream
 * @property {string|null} speakerId audio output device (setSinkId), null: the default
 * @property {(msg: Record<string, any>) => void} sendCandidate an `ice.candidate` / `ice.done`
 *   without `call_id` (the call adds it, or queues it until it has one)
 */

export class CallMedia {
  /** @param {MediaOptions} options */
  constructor(options) {
    this.options = options;
    /** @type {RTCPeerConnection} */
    this.pc = this._newPeerConnection();
    /** @type {MediaStream|null} */ this.localStream = null;
    /** @type {MediaStream|null} */ this.localVideoStream = null;
    /** @type {MediaStream} */ this.remoteStream = new MediaStream();
    /** @type {HTMLAudioElement|null} */ this.audioElement = null;
    /** @type {Record<string, any>[]} remote candidates that came before the SDP */
    this._early = [];
    this._closed = false;
    this.muted = false;
    /** @type {((state: RTCPeerConnectionState) => void)|null} */
    this.onConnectionState = null;
    /** @type {((track: MediaStreamTrack) => void)|null} */
    this.onTrack = null;
  }

  _newPeerConnection() {
    const pc = new RTCPeerConnection({
      iceServers: this.options.iceServers,
      iceTransportPolicy: this.options.iceTransportPolicy,
    });
    pc.onicecandidate = (event) => {
      if (pc !== this.pc) return;
      if (event.candidate && event.candidate.candidate) {
        // mDNS candidates are refused by the server (it sends no multicast): skip them.
        if (/\s[0-9a-f-]+\.local\s/i.test(event.candidate.candidate)) return;
        this.options.sendCandidate({
          type: "ice.candidate",
          candidate: event.candidate.candidate,
          sdp_mid: event.candidate.sdpMid,
          sdp_m_line_index: event.candidate.sdpMLineIndex,
        });
      } else if (!event.candidate) {
        this.options.sendCandidate({ type: "ice.done" });
      }
    };
    pc.ontrack = (event) => {
      if (pc !== this.pc) return;
      for (const old of this.remoteStream.getTracks()) {
        if (old.kind === event.track.kind) this.remoteStream.removeTrack(old);
      }
      this.remoteStream.addTrack(event.track);
      if (event.track.kind === "audio") this._play();
      this.onTrack?.(event.track);
    };
    pc.onconnectionstatechange = () => {
      if (pc === this.pc) this.onConnectionState?.(pc.connectionState);
    };
    return pc;
  }

  /** Play the remote audio on the chosen speaker (an Audio element, not in the DOM). */
  _play() {
    if (typeof Audio === "undefined") return;
    if (!this.audioElement) {
      this.audioElement = new Audio();
      this.audioElement.autoplay = true;
    }
    const el = this.audioElement;
    el.srcObject = new MediaStream(this.remoteStream.getAudioTracks());
    if (this.options.speakerId) this.setSpeaker(this.options.speakerId).catch(() => {});
    el.play().catch(() => { /* autoplay refused: the page plays it after a gesture */ });
  }

  /** @param {string} deviceId */
  async setSpeaker(deviceId) {
    this.options.speakerId = deviceId;
    const el = /** @type {any} */ (this.audioElement);
    if (el && typeof el.setSinkId === "function") await el.setSinkId(deviceId);
  }

  async _addLocalAudio() {
    if (!this.localStream) this.localStream = await this.options.getLocalStream();
    for (const track of this.localStream.getAudioTracks()) {
      track.enabled = !this.muted;
      this.pc.addTrack(track, this.localStream);
    }
    if (this.localStream.getAudioTracks().length === 0) this.pc.addTransceiver("audio");
  }

  /**
   * @param {boolean} video also send and receive video
   * @returns {Promise<string>} our offer
   */
  async offer(video = false) {
    await this._addLocalAudio();
    if (video) await this._addVideo("sendrecv");
    const offer = await this.pc.createOffer();
    await this.pc.setLocalDescription(offer);
    return /** @type {string} */ (this.pc.localDescription?.sdp ?? offer.sdp);
  }

  /**
   * Answer the server's offer.
   * @param {string} sdp the server's offer
   * @param {boolean} video send (and receive) video if the offer has it
   * @returns {Promise<string>} our answer
   */
  async answer(sdp, video = false) {
    await this.pc.setRemoteDescription({ type: "offer", sdp });
    await this._addLocalAudio();
    const videoTransceiver = this._videoTransceiver();
    if (videoTransceiver) {
      if (video) await this._sendVideo(videoTransceiver);
      else videoTransceiver.direction = "inactive";
    }
    await this._flushEarly();
    const answer = await this.pc.createAnswer();
    await this.pc.setLocalDescription(answer);
    return /** @type {string} */ (this.pc.localDescription?.sdp ?? answer.sdp);
  }

  /** @param {string} sdp the server's answer */
  async acceptAnswer(sdp) {
    if (this.pc.signalingState !== "have-local-offer") return;
    await this.pc.setRemoteDescription({ type: "answer", sdp });
    await this._flushEarly();
  }

  /** @param {Record<string, any>} msg an `ice.candidate` or `ice.done` from the server */
  async addRemoteCandidate(msg) {
    if (!this.pc.remoteDescription) {
      this._early.push(msg);
      return;
    }
    if (msg.type === "ice.done") {
      await this.pc.addIceCandidate(null).catch(() => {});
      return;
    }
    await this.pc.addIceCandidate({
      candidate: msg.candidate, sdpMid: msg.sdp_mid ?? null,
      sdpMLineIndex: msg.sdp_m_line_index ?? null,
    }).catch((/** @type {any} */ e) => console.warn("callbridge: ICE candidate refused:", e));
  }

  async _flushEarly() {
    for (const msg of this._early.splice(0)) await this.addRemoteCandidate(msg);
  }

  _videoTransceiver() {
    return this.pc.getTransceivers().find(
      (t) => (t.receiver.track && t.receiver.track.kind === "video") || t.mid === "1") ?? null;
  }

  /** @param {RTCRtpTransceiverDirection} direction */
  async _addVideo(direction) {
    if (!this.localVideoStream) this.localVideoStream = await this.options.getVideoStream();
    const track = this.localVideoStream.getVideoTracks()[0];
    const existing = this._videoTransceiver();
    if (existing) {
      await existing.sender.replaceTrack(track ?? null);
      existing.direction = direction;
      return existing;
    }
    return this.pc.addTransceiver(track ?? "video", {
      direction, streams: [this.localVideoStream],
    });
  }

  /** @param {RTCRtpTransceiver} transceiver */
  async _sendVideo(transceiver) {
    if (!this.localVideoStream) this.localVideoStream = await this.options.getVideoStream();
    const track = this.localVideoStream.getVideoTracks()[0] ?? null;
    await transceiver.sender.replaceTrack(track);
    transceiver.direction = "sendrecv";
  }

  /**
   * A new offer for this peer connection: video on (upgrade) or off (downgrade).
   * @param {boolean} video
   * @returns {Promise<string>}
   */
  async reoffer(video) {
    if (video) await this._addVideo("sendrecv");
    else {
      const t = this._videoTransceiver();
      if (t) {
        t.direction = "inactive";
        await t.sender.replaceTrack(null);
      }
      this.stopVideo();
    }
    const offer = await this.pc.createOffer();
    await this.pc.setLocalDescription(offer);
    return /** @type {string} */ (this.pc.localDescription?.sdp ?? offer.sdp);
  }

  /**
   * Answer a new offer of the server (a media modification).
   * @param {string} sdp
   * @param {boolean} send send our video
   * @param {boolean} receive receive the far party's video
   */
  async answerReoffer(sdp, send, receive) {
    await this.pc.setRemoteDescription({ type: "offer", sdp });
    const t = this._videoTransceiver();
    if (t) {
      if (send) await this._sendVideo(t);
      else await t.sender.replaceTrack(null);
      t.direction = send && receive ? "sendrecv" : send ? "sendonly" : receive ? "recvonly" : "inactive";
      if (!send) this.stopVideo();
    }
    const answer = await this.pc.createAnswer();
    await this.pc.setLocalDescription(answer);
    return /** @type {string} */ (this.pc.localDescription?.sdp ?? answer.sdp);
  }

  stopVideo() {
    this.localVideoStream?.getTracks().forEach((t) => t.stop());
    this.localVideoStream = null;
  }

  /**
   * Replace the peer connection by a new one (media restart after a network change): the
   * same local stream, a fresh offer.
   * @returns {Promise<string>} the new offer
   */
  async restart() {
    const old = this.pc;
    const hadVideo = Boolean(this._videoTransceiver() && this.localVideoStream);
    this.pc = this._newPeerConnection();
    this._early = [];
    old.close();
    return this.offer(hadVideo);
  }

  /** @param {boolean} muted */
  setMuted(muted) {
    this.muted = muted;
    for (const t of this.localStream?.getAudioTracks() ?? []) t.enabled = !muted;
  }

  /** Replace the microphone track on the live connection (another input device). */
  async replaceAudio(/** @type {MediaStream} */ stream) {
    const track = stream.getAudioTracks()[0];
    if (!track) throw new CallbridgeError(ClientCode.MEDIA, "the new stream has no audio track");
    track.enabled = !this.muted;
    const sender = this.pc.getSenders().find((s) => s.track && s.track.kind === "audio")
      ?? this.pc.getTransceivers().find((t) => t.mid === "0")?.sender;
    if (sender) await sender.replaceTrack(track);
    const old = this.localStream;
    this.localStream = stream;
    if (old && old !== stream && /** @type {any} */ (old)._callbridgeOwned) {
      old.getTracks().forEach((t) => t.stop());
    }
  }

  /**
   * Replace the camera track on the live connection (another camera). Nothing is sent
   * until the call sends video; the new stream is then the one an upgrade uses.
   * @param {MediaStream} stream
   */
  async replaceVideo(stream) {
    const track = stream.getVideoTracks()[0];
    if (!track) throw new CallbridgeError(ClientCode.MEDIA, "the new stream has no video track");
    const old = this.localVideoStream;
    const t = this._videoTransceiver();
    const sending = Boolean(t && t.sender.track && (t.currentDirection === "sendrecv" || t.currentDirection === "sendonly"));
    if (t && sending) await t.sender.replaceTrack(track);
    if (sending) this.localVideoStream = stream;
    else stream.getTracks().forEach((tr) => tr.stop());  // the next upgrade opens the chosen camera
    if (sending && old && old !== stream) old.getTracks().forEach((tr) => tr.stop());
    return sending;
  }

  /** The audio RTCRtpSender (for insertDTMF). */
  get audioSender() {
    return this.pc.getSenders().find((s) => s.track && s.track.kind === "audio")
      ?? this.pc.getSenders().find((s) => s.dtmf) ?? null;
  }

  /** Wait until the peer connection is connected. @param {number} [timeoutMs] */
  waitConnected(timeoutMs = 15000) {
    return new Promise((resolve, reject) => {
      const check = () => {
        const s = this.pc.connectionState;
        if (s === "connected") return resolve(undefined), true;
        if (s === "failed" || s === "closed") {
          return reject(new CallbridgeError(ClientCode.MEDIA, `media ${s}`)), true;
        }
        return false;
      };
      if (check()) return;
      const timer = setTimeout(() => {
        clearInterval(poll);
        reject(new CallbridgeError(ClientCode.TIMEOUT, `media not connected in ${timeoutMs} ms`));
      }, timeoutMs);
      const poll = setInterval(() => { if (check()) { clearInterval(poll); clearTimeout(timer); } }, 50);
    });
  }

  close() {
    if (this._closed) return;
    this._closed = true;
    this.pc.close();
    this.stopVideo();
    if (this.localStream && /** @type {any} */ (this.localStream)._callbridgeOwned) {
      this.localStream.getTracks().forEach((t) => t.stop());
    }
    if (this.audioElement) {
      this.audioElement.pause();
      this.audioElement.srcObject = null;
    }
  }
}
