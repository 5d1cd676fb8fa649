// In-page helpers for the callbridge-web tests (tests/test_web_sdk.py). Loaded by
// sdk_page.html, which the scenario serves at http://127.0.0.1:PORT/test/ (playwright route),
// so the page shares the server's origin and imports the SDK from /sdk/callbridge.js.
//
//   kit.phone(name, {url, token, hz})  a Phone whose microphone is a WebAudio sine of hz
//   kit.log                            every phone/call event, in order: [who, event, arg]
//   kit.calls[label]                   calls kept by label; kit.keep(label, call)
//   kit.until(pred, ms, what)          waits for a condition (events arrive asynchronously)
//   kit.listen(stream, ms, freqs)      what a stream carries: peak frequency, dB at freqs
import * as sdk from "/sdk/callbridge.js";

const ctx = new AudioContext({ sampleRate: 48000 });
const kit = {
  sdk,
  ctx,
  phones: {},
  calls: {},
  log: [],
  errors: [],
};

kit.tone = (hz) => {
  const osc = new OscillatorNode(ctx, { type: "sine", frequency: hz });
  const gain = new GainNode(ctx, { gain: 0.5 });
  const dest = ctx.createMediaStreamDestination();
  osc.connect(gain).connect(dest);
  osc.start();
  return dest.stream;
};

const brief = (a) => {
  if (a === undefined || a === null) return a ?? null;
  if (a instanceof sdk.Call) return { call: a.id };
  if (a instanceof Error) return { error: a.code ?? a.name, message: a.message };
  if (typeof a === "object") {
    const out = {};
    for (const [k, v] of Object.entries(a)) {
      if (k === "sdp" || k === "call" || k === "token") continue;
      if (v instanceof sdk.Call) out[k] = v.id;
      else if (v === null || ["string", "number", "boolean"].includes(typeof v)) out[k] = v;
      else if (k === "participants" || k === "invitations" || k === "call_ids") out[k] = v;
    }
    return out;
  }
  return a;
};

const PHONE_EVENTS = ["incoming", "error", "warning", "notification", "dialing", "disconnected",
  "call-switched", "connectivity-off", "connectivity-on", "gateway-unreachable", "ready",
  "session-draining", "server-changed", "call:incoming", "call:connected", "call:connecting",
  "call:ringback-provided", "call:held", "call:resumed", "call:disconnected", "call:canceled",
  "call:rejected", "media:established", "conference:invitation-received", "conference:connected",
  "conference:ended", "conference:invitation-sent", "conference:invitation-accepted",
  "conference:invitation-rejected", "conference:participant-removed", "conference:joining",
  "conference:connecting", "connectivity:off", "connectivity:on", "session:ready"];
const CALL_EVENTS = ["trying", "ringing", "answered", "held", "resumed", "muted", "unmuted",
  "dtmf", "recording", "transferred", "moved", "move-failed", "media-established", "ended",
  "ringback-provided", "state-changed", "media-modification", "error"];

kit.watchCall = (who, call) => {
  for (const name of CALL_EVENTS) {
    call.on(name, (arg) => kit.log.push([`${who}:${call.id}`, name, brief(arg)]));
  }
};

kit.phone = (name, { url, token, hz, options = {} }) => {
  const phone = new sdk.Phone({ url, token, localStream: kit.tone(hz), ...options });
  kit.phones[name] = phone;
  for (const ev of PHONE_EVENTS) {
    phone.on(ev, (arg) => {
      kit.log.push([name, ev, brief(arg)]);
      if (ev === "incoming") kit.watchCall(name, arg);
    });
  }
  return phone;
};

kit.keep = (label, call, who) => {
  kit.calls[label] = call;
  if (who) kit.watchCall(who, call);
  return call.id;
};

kit.sleep = (ms) => new Promise((r) => setTimeout(r, ms));

kit.until = async (pred, ms = 10000, what = "condition") => {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    const v = pred();
    if (v) return v;
    await kit.sleep(25);
  }
  throw new Error(`browser: no ${what} within ${ms} ms`);
};

// The first event `name` logged for `who` (a phone name or "name:callId") after index `from`.
kit.event = (who, name, ms = 10000, from = 0) =>
  kit.until(() => kit.log.slice(from).find((e) => e[0] === who && e[1] === name), ms, `${who} ${name}`);

kit.listen = async (stream, ms = 1200, freqs = [440, 1000]) => {
  const source = ctx.createMediaStreamSource(stream);
  const analyser = new AnalyserNode(ctx, { fftSize: 8192, smoothingTimeConstant: 0 });
  source.connect(analyser);
  await kit.sleep(ms);
  const bins = new Float32Array(analyser.frequencyBinCount);
  analyser.getFloatFrequencyData(bins);
  source.disconnect();
  const at = (f) => {
    const i = Math.round((f * analyser.fftSize) / ctx.sampleRate);
    return Math.max(bins[i - 1], bins[i], bins[i + 1]);
  };
  let peak = 1;
  for (let i = 1; i < bins.length; i++) if (bins[i] > bins[peak]) peak = i;
  const db = {};
  for (const f of freqs) db[f] = at(f);
  return { peakHz: (peak * ctx.sampleRate) / analyser.fftSize, peakDb: bins[peak], db };
};

// Chromium feeds WebAudio from a remote track only while an element plays it: the SDK's own
// Audio element does; this one is a guard for pages that mute it.
kit.remote = (label) => kit.calls[label].remoteStream;

// What a page shows of call `label`'s remote video over `ms`: a <video> element (as a page
// would have) counting the frames it presents (requestVideoFrameCallback) and its videoWidth.
kit.videoFrames = async (label, ms = 1200) => {
  const call = kit.calls[label];
  const tracks = call.remoteStream.getVideoTracks().filter((t) => t.readyState === "live");
  const out = { mediaType: call.mediaType, tracks: tracks.length, frames: 0, width: 0, videoWidth: 0 };
  if (!tracks.length) return out;
  const el = document.createElement("video");
  el.muted = true;
  el.playsInline = true;
  document.body.append(el);
  el.srcObject = new MediaStream(tracks);
  const tick = (_now, meta) => {
    out.frames += 1;
    out.width = meta.width;
    el.requestVideoFrameCallback(tick);
  };
  el.requestVideoFrameCallback(tick);
  el.play().catch(() => {});
  await kit.sleep(ms);
  out.videoWidth = el.videoWidth;
  el.srcObject = null;
  el.remove();
  return out;
};

window.addEventListener("error", (e) => kit.errors.push(String(e.message)));
window.addEventListener("unhandledrejection", (e) => kit.errors.push(`unhandled: ${e.reason}`));
window.kit = kit;
window.kitReady = true;
