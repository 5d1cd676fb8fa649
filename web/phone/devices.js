// @ts-check
/**
 * The softphone's Devices panel: microphone, speaker and camera lists and the input level
 * meter. A choice applies to the next call and to the calls in progress (the SDK's
 * `setDevices`: the new microphone or camera replaces the old one with replaceTrack, the call
 * goes on). The meter listens to the chosen microphone while the Devices panel is open.
 * The camera list is made here (index.html has the microphone and speaker ones).
 * @module
 */

import { $, showError } from "/phone/ui.js";

/** @type {{stream: MediaStream, context: AudioContext, frame: number}|null} */
let meter = null;

/** @type {any} the signed-in phone, for the change handlers */
let current = null;

/** The camera list, after the speaker one (once). */
function cameraSelect() {
  let select = /** @type {HTMLSelectElement|null} */ (document.getElementById("camera"));
  if (select) return select;
  const label = document.createElement("label");
  label.htmlFor = "camera";
  label.textContent = "Camera";
  select = document.createElement("select");
  select.id = "camera";
  $("devices-hint").before(label, select);
  return select;
}

/** Switch the calls in progress too; the phone.js handlers keep the choice for new calls. */
function listen() {
  if (document.getElementById("camera")) return;
  const live = () => current && current.activeCalls.length > 0;
  cameraSelect().addEventListener("change", (e) => {
    const id = /** @type {HTMLSelectElement} */ (e.target).value;
    if (!current) return;
    if (id) current.setDevices({ videoInput: id }).catch((/** @type {any} */ err) => showError("Switching the camera", err));
    else current.videoInput = null;
  });
  $("mic").addEventListener("change", (e) => {
    const id = /** @type {HTMLSelectElement} */ (e.target).value || "default";
    if (live()) current.setDevices({ audioInput: id }).catch((/** @type {any} */ err) => showError("Switching the microphone", err));
  });
  $("speaker").addEventListener("change", (e) => {
    const id = /** @type {HTMLSelectElement} */ (e.target).value;
    if (live() && id) current.setDevices({ audioOutput: id }).catch((/** @type {any} */ err) => showError("Switching the speaker", err));
  });
}

/** @param {any} phone the SDK's Phone */
export async function refreshDevices(phone) {
  current = phone;
  listen();
  await fillDevices(phone);
  if (!$("settings").hidden) await startMeter(phone);
}

/** The device lists (names appear once the page may use the microphone). @param {any} phone */
async function fillDevices(phone) {
  if (!phone || !navigator.mediaDevices?.enumerateDevices) return;
  const devices = await navigator.mediaDevices.enumerateDevices();
  /** @param {string} id @param {MediaDeviceKind} kind @param {string|null} chosen @param {string} fallback */
  const fill = (id, kind, chosen, fallback) => {
    const select = /** @type {HTMLSelectElement} */ ($(id));
    const options = [["", `Default ${fallback}`]];
    let n = 0;
    for (const d of devices) {
      if (d.kind === kind && d.deviceId && d.deviceId !== "default") options.push([d.deviceId, d.label || `${fallback} ${++n}`]);
    }
    select.replaceChildren(...options.map(([value, label]) => new Option(label, value, false, value === (chosen ?? ""))));
  };
  fill("mic", "audioinput", phone.audioInput, "microphone");
  fill("speaker", "audiooutput", phone.audioOutput, "speaker");
  cameraSelect();
  fill("camera", "videoinput", phone.videoInput, "camera");
  const canPickSpeaker = "setSinkId" in HTMLMediaElement.prototype;
  /** @type {HTMLSelectElement} */ ($("speaker")).disabled = !canPickSpeaker;
  $("devices-hint").textContent = (canPickSpeaker ? "" : "This browser plays calls on its default speaker. ") +
    "A new choice applies to the calls in progress and the next ones.";
}

/** @param {any} phone */
export async function startMeter(phone) {
  stopMeter();
  const id = phone?.audioInput;
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: id ? { deviceId: { exact: id } } : true });
  } catch (e) {
    showError("Opening the microphone", e);
    return;
  }
  if ($("settings").hidden) { for (const t of stream.getTracks()) t.stop(); return; }
  const context = new AudioContext();
  const analyser = context.createAnalyser();
  analyser.fftSize = 1024;
  context.createMediaStreamSource(stream).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  const bar = $("meter-bar");
  const draw = () => {
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const v of samples) sum += v * v;
    const db = 10 * Math.log10(sum / samples.length + 1e-12);  // dBFS of the last ~20 ms
    const percent = Math.max(0, Math.min(100, Math.round((db + 60) * (100 / 60))));
    bar.style.width = `${percent}%`;
    $("meter").setAttribute("aria-valuenow", String(percent));
    if (meter) meter.frame = requestAnimationFrame(draw);
  };
  meter = { stream, context, frame: requestAnimationFrame(draw) };
  await fillDevices(phone);  // with the microphone open, the lists have the devices' names
}

export function stopMeter() {
  if (!meter) return;
  cancelAnimationFrame(meter.frame);
  for (const t of meter.stream.getTracks()) t.stop();
  meter.context.close();
  meter = null;
  $("meter-bar").style.width = "0";
  $("meter").setAttribute("aria-valuenow", "0");
}

