// @ts-check
/**
 * Devices: listing microphones, speakers and cameras, an input level meter, and a pre-call
 * test (microphone level, then the media path to the server: a one-person conference whose
 * peer connection must connect and carry RTP both ways).
 * @module
 */

/** @returns {Promise<{microphones: MediaDeviceInfo[], speakers: MediaDeviceInfo[], cameras: MediaDeviceInfo[]}>} */
export async function listDevices() {
  const all = await navigator.mediaDevices.enumerateDevices();
  return {
    microphones: all.filter((d) => d.kind === "audioinput"),
    speakers: all.filter((d) => d.kind === "audiooutput"),
    cameras: all.filter((d) => d.kind === "videoinput"),
  };
}

/** The input level of a stream: `level` (RMS, 0..1) and `db` (dBFS), updated ~20 times a
 * second; `onLevel(level, db)` is called with each update. */
export class LevelMeter {
  /**
   * @param {MediaStream} stream
   * @param {{onLevel?: (level: number, db: number) => void, intervalMs?: number}} [options]
   */
  constructor(stream, options = {}) {
    this.ctx = new AudioContext();
    this.source = this.ctx.createMediaStreamSource(stream);
    this.analyser = new AnalyserNode(this.ctx, { fftSize: 2048 });
    this.source.connect(this.analyser);
    this.level = 0;
    this.db = -Infinity;
    this.onLevel = options.onLevel ?? null;
    const buf = new Float32Array(this.analyser.fftSize);
    this._timer = setInterval(() => {
      this.analyser.getFloatTimeDomainData(buf);
      let sum = 0;
      for (const v of buf) sum += v * v;
      this.level = Math.sqrt(sum / buf.length);
      this.db = this.level > 0 ? 20 * Math.log10(this.level) : -Infinity;
      this.onLevel?.(this.level, this.db);
    }, options.intervalMs ?? 50);
  }

  stop() {
    clearInterval(this._timer);
    this.source.disconnect();
    this.ctx.close().catch(() => {});
  }
}

/**
 * @typedef {object} PreCallResult
 * @property {boolean} microphone getUserMedia gave an audio track
 * @property {number} inputLevelDb the loudest input level seen (dBFS)
 * @property {boolean} mediaConnected the peer connection to the server connected
 * @property {number} packetsSent RTP packets sent to the server
 * @property {number} packetsReceived RTP packets received from it
 * @property {number|null} roundTripMs ICE round trip to the server
 * @property {string[]} problems what failed, in words
 */

/**
 * Check the microphone and the media path before calling. Needs a logged-in phone.
 * @param {import("./conferencephone.js").ConferencePhone} phone
 * @param {{durationMs?: number, localStream?: MediaStream}} [options]
 * @returns {Promise<PreCallResult>}
 */
export async function preCallTest(phone, options = {}) {
  const durationMs = options.durationMs ?? 2000;
  /** @type {PreCallResult} */
  const result = { microphone: false, inputLevelDb: -Infinity, mediaConnected: false,
    packetsSent: 0, packetsReceived: 0, roundTripMs: null, problems: [] };
  let stream = options.localStream ?? null;
  try {
    stream = stream ?? await navigator.mediaDevices.getUserMedia({
      audio: phone.audioInput ? { deviceId: { exact: phone.audioInput } } : true });
    result.microphone = stream.getAudioTracks().length > 0;
  } catch (e) {
    result.problems.push(`microphone: ${/** @type {any} */ (e)?.message ?? e}`);
    return result;
  }
  const meter = new LevelMeter(stream, {
    onLevel: (_, db) => { if (db > result.inputLevelDb) result.inputLevelDb = db; } });
  let conf = null;
  try {
    conf = await phone.startConference({ conferenceName: "pre-call test", localStream: stream });
    const call = /** @type {any} */ (conf.call);
    await call.media.waitConnected(10000);
    result.mediaConnected = true;
    await new Promise((r) => setTimeout(r, durationMs));
    (await call.peerConnection.getStats()).forEach((/** @type {any} */ s) => {
      if (s.type === "outbound-rtp" && s.kind === "audio") result.packetsSent = s.packetsSent ?? 0;
      if (s.type === "inbound-rtp" && s.kind === "audio") result.packetsReceived = s.packetsReceived ?? 0;
      if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime !== undefined) {
        result.roundTripMs = s.currentRoundTripTime * 1000;
      }
    });
  } catch (e) {
    result.problems.push(`media path: ${/** @type {any} */ (e)?.message ?? e}`);
  } finally {
    meter.stop();
    if (conf && conf.state !== "ended") await phone.endConference().catch(() => {});
    if (!options.localStream) stream.getTracks().forEach((t) => t.stop());
  }
  if (result.inputLevelDb < -70) result.problems.push("microphone: no sound (is it muted?)");
  if (result.mediaConnected && result.packetsSent === 0) result.problems.push("media path: no audio sent");
  return result;
}
