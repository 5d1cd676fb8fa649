// @ts-check
/**
 * The callbridge softphone (/phone): a page built only on the browser SDK's public API
 * (/sdk/callbridge.js, docs/sdk-js.md). No framework: a little state, and functions that draw
 * it. Read it as a worked example of the SDK.
 *
 * The page keeps, per call, one <li> that `drawCall` redraws from the call's public state on
 * every event of that call; incoming calls are banners until answered. Everything the user
 * does goes through `act()`, which shows a failure as an alert in words.
 */

import { Phone } from "/sdk/callbridge.js";
import { setupConference } from "/phone/conference.js";
import { refreshDevices, startMeter, stopMeter } from "/phone/devices.js";
import { buildPad, destination, drawFormatted, formatNumber, showName, typeKey } from "/phone/dialpad.js";
import { setupHistory } from "/phone/history.js";
import { $, act, button, showError, showInfo, toggle } from "/phone/ui.js";

/** @typedef {any} Call  the SDK's Call */

const WS_URL = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
const TOKEN_KEY = "callbridge.phone.token";
const HISTORY_LIMIT = 50;

/** @type {any} the SDK's Phone, while signed in */
let phone = null;
/** @type {Map<Call, HTMLElement>} answered and outgoing calls, in the order they began */
const callItems = new Map();
/** @type {Map<Call, HTMLElement>} incoming calls still ringing */
const banners = new Map();
/** @type {Map<Call, {direction: string, peer: string, start: number, answeredAt: number|null}>} */
const logEntries = new Map();
/** @type {import("/phone/history.js").LocalEntry[]} this session's ended calls, until the server lists them */
const history = [];
/** @type {Call|null} the consultation call of an attended transfer, and the call it is for */
let consultation = null;
let consultationFor = /** @type {Call|null} */ (null);
const conferenceCard = setupConference({ getPhone: () => phone, showName });

// For the browser console (and the page's own test): the phone of this page.
/** @type {any} */ (window).phoneApp = { get phone() { return phone; }, get calls() { return [...callItems.keys()]; } };

// -- sign in / out ------------------------------------------------------------------------------

/** @param {"signed-out"|"connecting"|"online"|"offline"} state @param {string} text */
function setStatus(state, text) {
  $("status").dataset.state = state;
  $("status-text").textContent = text;
}

/** @param {string} token */
async function signIn(token) {
  setStatus("connecting", "Signing in…");
  const candidate = new Phone({ url: WS_URL, token });
  wirePhone(candidate);
  try {
    await candidate.connect();
  } catch (e) {
    setStatus("signed-out", "Signed out");
    candidate.removeAllListeners?.();
    throw e;
  }
  phone = candidate;
  const user = phone.user ?? {};
  const name = user.display_name || user.name || "you";
  setStatus("online", `Online as ${name}`);
  const me = $("me");
  me.replaceChildren();
  const strong = document.createElement("strong");
  strong.textContent = name;
  me.append(strong);
  const reach = [user.extension && `extension ${user.extension}`, user.number && formatNumber(user.number)];
  for (const [i, part] of reach.filter(Boolean).entries()) {
    if (i) me.append(" · ");
    const span = document.createElement("span");
    span.className = "nowrap";
    span.textContent = part;
    me.append(span);
  }
  $("signin").hidden = true;
  $("phone").hidden = false;
  $("signout").hidden = false;
  $("settings-toggle").hidden = false;
  drawHistory();
  drawCalls();
  conferenceCard.draw();
  $("number").focus();
  refreshDevices(phone);
}

async function signOut() {
  const old = phone;
  phone = null;
  sessionStorage.removeItem(TOKEN_KEY);
  stopMeter();
  if (old) await old.logout?.().catch(() => old.disconnect?.());
  for (const el of [...callItems.values(), ...banners.values()]) el.remove();
  callItems.clear();
  banners.clear();
  conferenceCard.reset();
  historyPanel.reset();
  $("phone").hidden = true;
  $("signout").hidden = true;
  $("settings-toggle").hidden = true;
  $("settings").hidden = true;
  $("signin").hidden = false;
  setStatus("signed-out", "Signed out");
  /** @type {HTMLInputElement} */ ($("token")).value = "";
  $("token").focus();
}

/** The phone's own events: incoming calls, connectivity, invitations, errors. @param {any} p */
function wirePhone(p) {
  p.on("incoming", (/** @type {Call} */ call) => onIncoming(call));
  conferenceCard.wire(p);
  p.on("connectivity-off", () => setStatus("connecting", "Reconnecting…"));
  p.on("connectivity-on", () => setStatus("online", `Online as ${p.user?.display_name || p.user?.name || "you"}`));
  p.on("disconnected", (/** @type {any} */ reason) => {
    if (phone !== p) return;
    setStatus("offline", "Disconnected");
    showError("The connection", { detail: `the server ended this session (${reason?.reason ?? reason ?? "closed"})`,
      resolution: "Sign in again" });
  });
  p.on("error", (/** @type {any} */ error) => {
    if (phone === p) showError("The phone", error);
  });
}

// -- dialling -------------------------------------------------------------------------------

/** @param {boolean} video */
async function dial(video) {
  const dest = destination();
  if (!dest) {
    showError("Calling", { detail: "there is no number to call", resolution: "Type a number, an extension or a user name" });
    $("number").focus();
    return;
  }
  const button = /** @type {HTMLButtonElement} */ ($(video ? "call-video" : "call-audio"));
  await act(`Calling ${dest}`, async () => {
    const call = await phone.call(dest, video ? { mediaType: "video" } : {});
    trackCall(call, "outgoing", dest);
    /** @type {HTMLInputElement} */ ($("number")).value = "";
    drawFormatted();
  }, button);
}

// -- calls ----------------------------------------------------------------------------------

const STATE_TEXT = /** @type {Record<string, string>} */ ({
  trying: "Calling…", ringing: "Ringing…", active: "Connected", held: "On hold", ended: "Ended",
});

/** @param {Call} call */
function peerOf(call) {
  const raw = call.direction === "incoming" ? call.from : (call.peer || call.to);
  // After a transfer (or bridge) the far party is someone else: the SDK's peer and peerName.
  if (call.peerName) return showName(call.peer || raw, call.peerName);
  return showName(raw, call.direction === "incoming" ? call.fromName : "");
}

/**
 * Start showing a call: its row, its events, its log entry.
 * @param {Call} call @param {"incoming"|"outgoing"} direction @param {string} peer
 */
function trackCall(call, direction, peer) {
  if (callItems.has(call)) return;
  const item = /** @type {HTMLElement} */ (
    /** @type {HTMLTemplateElement} */ ($("call-template")).content.firstElementChild?.cloneNode(true));
  callItems.set(call, item);
  if (!logEntries.has(call)) logEntries.set(call, { direction, peer, start: Date.now(), answeredAt: null });
  wireCallItem(call, item);
  $("call-list").append(item);
  for (const name of ["trying", "ringing", "answered", "held", "resumed", "muted", "unmuted",
    "state-changed", "media-modification", "transferred", "move-failed", "moved", "media-established",
    "recording", "bridged"]) {
    call.on(name, () => { drawCall(call); drawCalls(); });
  }
  call.on("answered", () => {
    const entry = logEntries.get(call);
    if (entry && entry.answeredAt === null) entry.answeredAt = Date.now();
  });
  call.on("move-failed", (/** @type {any} */ reason) => showInfo(`Nobody took the call on another device (${reason}); it stays here.`));
  call.on("transferred", () => showInfo(`You are now talking to ${peerOf(call)}.`));
  call.on("media-modification", (/** @type {string} */ type) => offerModification(call, type));
  call.on("ended", (/** @type {any} */ reason) => callEnded(call, reason));
  drawCall(call);
  drawCalls();
}

/** @param {Call} call @param {any} reason */
function callEnded(call, reason) {
  const item = callItems.get(call);
  item?.remove();
  callItems.delete(call);
  dropBanner(call);
  const entry = logEntries.get(call);
  logEntries.delete(call);
  if (consultation === call || consultationFor === call) consultation = consultationFor = null;
  if (entry) {
    entry.peer = peerOf(call);
    const seconds = entry.answeredAt ? Math.round((Date.now() - entry.answeredAt) / 1000) : null;
    history.unshift({ ...entry, seconds, reason: typeof reason === "string" ? reason : String(reason ?? call.endReason ?? ""),
      callId: call.id, ended: Date.now() });
    history.length = Math.min(history.length, HISTORY_LIMIT);
    drawHistory(true);
  }
  drawCalls();
}

/** Wire a call row's buttons. @param {Call} call @param {HTMLElement} item */
function wireCallItem(call, item) {
  const q = (/** @type {string} */ sel) => /** @type {HTMLButtonElement} */ (item.querySelector(sel));
  const keypad = /** @type {HTMLElement} */ (item.querySelector(".call-keypad"));
  const transfer = /** @type {HTMLFormElement} */ (item.querySelector(".call-transfer"));
  buildPad(keypad, (key) => act(`Sending ${key}`, () => call.sendDTMF(key)), false);
  keypad.setAttribute("aria-label", "Keypad: send tones");
  q('[data-act="hold"]').addEventListener("click", (e) =>
    act(call.heldLocally ? "Resuming" : "Holding", () => (call.heldLocally ? call.resume() : call.hold()),
      /** @type {HTMLButtonElement} */ (e.currentTarget)));
  q('[data-act="mute"]').addEventListener("click", (e) =>
    act(call.isMuted ? "Unmuting" : "Muting", () => (call.isMuted ? call.unmute() : call.mute()),
      /** @type {HTMLButtonElement} */ (e.currentTarget)));
  q('[data-act="keypad"]').addEventListener("click", () => toggle(keypad, q('[data-act="keypad"]')));
  q('[data-act="transfer"]').addEventListener("click", () => {
    toggle(transfer, q('[data-act="transfer"]'));
    if (!transfer.hidden) /** @type {HTMLInputElement} */ (transfer.elements.namedItem("dest")).focus();
  });
  q('[data-act="video"]').addEventListener("click", (e) =>
    act(call.mediaType === "video" ? "Turning video off" : "Turning video on",
      () => (call.mediaType === "video" ? call.downgrade() : call.upgrade()), /** @type {HTMLButtonElement} */ (e.currentTarget)));
  q('[data-act="move"]').addEventListener("click", (e) =>
    act("Moving the call", async () => {
      await call.move();
      showInfo("Your other devices are ringing: answer there to take the call over.");
    }, /** @type {HTMLButtonElement} */ (e.currentTarget)));
  q('[data-act="hangup"]').addEventListener("click", (e) =>
    act("Hanging up", () => call.hangup(), /** @type {HTMLButtonElement} */ (e.currentTarget)));
  const target = () => {
    const input = /** @type {HTMLInputElement} */ (transfer.elements.namedItem("dest"));
    const value = input.value.trim();
    if (!value) throw { detail: "there is no one to transfer to", resolution: "Type an extension, a number or a name" };
    return value;
  };
  transfer.addEventListener("submit", (e) => {
    e.preventDefault();
    act("Transferring", () => call.transfer(target()), q('[data-act="blind"]'));
  });
  q('[data-act="consult"]').addEventListener("click", (e) =>
    act("Calling the transfer target", async () => {
      const dest = target();
      const consult = await call.attendedTransfer(dest);
      consultation = consult;
      consultationFor = call;
      trackCall(consult, "outgoing", dest);
      transfer.hidden = true;
    }, /** @type {HTMLButtonElement} */ (e.currentTarget)));
}

/** Redraw a call's row from its state. @param {Call} call */
function drawCall(call) {
  const item = callItems.get(call);
  if (!item) return;
  item.dataset.state = call.state;
  const peer = peerOf(call);
  /** @type {HTMLElement} */ (item.querySelector(".peer")).textContent = peer;
  /** @type {HTMLElement} */ (item.querySelector(".avatar")).textContent = initial(peer);
  let state = STATE_TEXT[call.state] ?? call.state;
  if (call.state === "held") state = call.heldLocally ? "On hold" : "Held by the other side";
  if (call.isMuted && call.state !== "ended") state += " · muted";
  if (call.mediaType === "video") state += " · video";
  if (consultation === call) state += " · transfer target";
  /** @type {HTMLElement} */ (item.querySelector(".state")).textContent = state;
  // The server tells both parties when a call is recorded (`call.recording`): say so.
  const recorded = Boolean(call.isRecorded) && call.state !== "ended";
  /** @type {HTMLElement} */ (item.querySelector(".recorded")).hidden = !recorded;
  item.setAttribute("aria-label", `Call with ${peer}: ${state}${recorded ? " · recorded" : ""}`);
  const q = (/** @type {string} */ act) => /** @type {HTMLButtonElement} */ (item.querySelector(`[data-act="${act}"]`));
  const established = call.state === "active" || call.state === "held";
  q("hold").textContent = call.heldLocally ? "Resume" : "Hold";
  q("hold").disabled = !established;
  q("mute").setAttribute("aria-pressed", String(Boolean(call.isMuted)));
  q("mute").disabled = !established;
  q("keypad").disabled = !established;
  q("transfer").disabled = !established;
  q("video").textContent = call.mediaType === "video" ? "Video off" : "Video";
  q("video").disabled = call.state !== "active";
  q("move").disabled = call.state !== "active";
  q("hangup").textContent = established ? "Hang up" : "Cancel";
}

/** @param {string} text */
function initial(text) {
  const letter = text.replace(/[^\p{L}\p{N}]/gu, "").charAt(0);
  return letter ? letter.toUpperCase() : "?";
}

/** The list as a whole: the empty text, swap, attended transfer, video, the timers. */
function drawCalls() {
  const calls = [...callItems.keys()];
  $("no-calls").hidden = calls.length > 0 || banners.size > 0;
  const established = calls.filter((c) => c.state === "active" || c.state === "held");
  $("multi-actions").hidden = established.length < 2;
  $("complete-transfer").hidden = !(consultation && consultationFor && consultation.state === "active");
  drawVideo();
}

function drawVideo() {
  const call = [...callItems.keys()].find((c) => c.state === "active" && c.mediaType === "video");
  const remote = /** @type {HTMLVideoElement} */ ($("remote-video"));
  const local = /** @type {HTMLVideoElement} */ ($("local-video"));
  $("videos").hidden = !call;
  const remoteStream = call ? call.remoteStream : null;
  const localStream = call ? call.localVideoStream : null;
  if (remote.srcObject !== remoteStream) remote.srcObject = remoteStream;
  if (local.srcObject !== localStream) local.srcObject = localStream;
}

setInterval(() => {
  for (const [call, item] of callItems) {
    const entry = logEntries.get(call);
    const timer = /** @type {HTMLElement} */ (item.querySelector(".timer"));
    timer.textContent = entry?.answeredAt ? clock((Date.now() - entry.answeredAt) / 1000) : "";
  }
}, 1000);

/** @param {number} seconds */
function clock(seconds) {
  const s = Math.floor(seconds);
  const mm = String(Math.floor(s / 60) % 60).padStart(2, "0");
  const ss = String(s % 60).padStart(2, "0");
  return s >= 3600 ? `${Math.floor(s / 3600)}:${mm}:${ss}` : `${mm}:${ss}`;
}

// -- incoming calls -------------------------------------------------------------------------

/** @param {Call} call */
function onIncoming(call) {
  const waiting = [...callItems.keys()].some((c) => c.state === "active");
  const banner = document.createElement("div");
  banner.className = "incoming";
  banner.setAttribute("role", "group");
  const number = typeof call.from === "string" && call.from.startsWith("+") ? formatNumber(call.from) : call.from;
  const who = document.createElement("strong");
  who.className = "who";
  who.textContent = call.fromName || number || "Unknown caller";
  const sub = document.createElement("span");
  sub.className = "sub";
  const kind = call.mediaType === "video" ? "Incoming video call" : "Incoming call";
  const what = call.movedFrom ? "Your call, moved from another device" : waiting ? `${kind} — call waiting` : kind;
  sub.textContent = call.fromName && number ? `${what} · ${number}` : what;
  banner.setAttribute("aria-label", `${what} from ${who.textContent}${call.fromName && number ? ` (${number})` : ""}`);
  const row = document.createElement("div");
  row.className = "row";
  const answer = button("Answer", "call", () => answerCall(call, "audio", answer));
  answer.setAttribute("aria-keyshortcuts", "Alt+A");
  row.append(answer);
  if (call.mediaType === "video") row.append(button("Answer with video", "secondary", () => answerCall(call, "video", null)));
  const busy = button("Busy", "danger", () => act("Rejecting", () => call.reject("busy"), busy));
  busy.setAttribute("aria-label", "Reject: busy");
  row.append(busy);
  banner.append(who, sub, row);
  banners.set(call, banner);
  $("incoming").append(banner);
  call.on("ended", (/** @type {any} */ reason) => {
    if (banners.has(call)) {
      dropBanner(call);
      history.unshift({ direction: "missed", peer: peerOf(call), start: Date.now(), seconds: null, reason: String(reason),
        ended: Date.now() });
      drawHistory(true);
    }
  });
  drawCalls();
  answer.focus();
}

/** @param {Call} call */
function dropBanner(call) {
  banners.get(call)?.remove();
  banners.delete(call);
}

/**
 * Answer; a call already up goes on hold first (call waiting).
 * @param {Call} call @param {"audio"|"video"} mediaType @param {HTMLButtonElement|null} btn
 */
async function answerCall(call, mediaType, btn) {
  await act("Answering", async () => {
    const entry = { direction: "incoming", peer: peerOf(call), start: Date.now(), answeredAt: null };
    await call.answer({ action: "hold", mediaType });
    dropBanner(call);
    logEntries.set(call, entry);
    trackCall(call, "incoming", entry.peer);
    const entryNow = logEntries.get(call);
    if (entryNow && entryNow.answeredAt === null) entryNow.answeredAt = Date.now();
    drawCall(call);
  }, btn);
}

/** The far party asks for video (or to drop it). @param {Call} call @param {string} type */
function offerModification(call, type) {
  const item = callItems.get(call);
  if (!item) return;
  const box = document.createElement("div");
  box.className = "incoming";
  const text = document.createElement("span");
  text.className = "sub";
  text.textContent = type === "video" ? `${peerOf(call)} asks to turn video on.` : `${peerOf(call)} turns video off.`;
  const row = document.createElement("div");
  row.className = "row";
  const done = () => box.remove();
  row.append(
    button(type === "video" ? "Turn my video on" : "OK", "primary",
      () => act("Accepting", async () => { await call.acceptModification(); done(); })),
    button(type === "video" ? "Only watch" : "Keep", "secondary",
      () => act("Declining", async () => { await call.rejectModification(); done(); })),
  );
  box.append(text, row);
  item.append(box);
  /** @type {HTMLElement} */ (row.firstElementChild).focus();
}

// -- history --------------------------------------------------------------------------------

const historyPanel = setupHistory({ getPhone: () => phone, local: history, showName, clock, callBack });

/**
 * Draw the Recent calls panel, and ask the server for its records again (history.js); after
 * a call, again a little later too (its record may not be written yet).
 * @param {boolean} [callEnded]
 */
function drawHistory(callEnded = false) {
  historyPanel.draw();
  if (phone && callEnded) historyPanel.afterCall();
  else if (phone) historyPanel.refresh();
}

/** "Call back" in Recent calls: the number goes in the dial field and is called. @param {string} dest */
function callBack(dest) {
  /** @type {HTMLInputElement} */ ($("number")).value = dest;
  drawFormatted();
  dial(false);
}

// -- keyboard -------------------------------------------------------------------------------

document.addEventListener("keydown", (e) => {
  if (!phone) return;
  const ringing = [...banners.keys()][0];
  const current = [...callItems.keys()].find((c) => c.state === "active") ?? [...callItems.keys()][0];
  if (e.altKey && !e.ctrlKey && !e.metaKey) {
    const key = e.key.toLowerCase();
    if (key === "a" && ringing) answerCall(ringing, "audio", null);
    else if (key === "h" && ringing && !current) act("Rejecting", () => ringing.reject("busy"));
    else if (key === "h" && current) act("Hanging up", () => current.hangup());
    else if (key === "m" && current) act("Muting", () => (current.isMuted ? current.unmute() : current.mute()));
    else if (key === "k" && current) act("Holding", () => (current.heldLocally ? current.resume() : current.hold()));
    else return;
    e.preventDefault();
    return;
  }
  const target = /** @type {HTMLElement} */ (e.target);
  const typing = target instanceof HTMLInputElement || target instanceof HTMLSelectElement || target instanceof HTMLTextAreaElement;
  if (typing || e.ctrlKey || e.metaKey || !/^[0-9*#+]$/.test(e.key)) return;
  if (current && current.state === "active" && e.key !== "+") {
    act(`Sending ${e.key}`, () => current.sendDTMF(e.key));
  } else {
    $("number").focus();
    typeKey(e.key);
  }
  e.preventDefault();
});

// -- start ----------------------------------------------------------------------------------

function start() {
  $("server-url").textContent = `Server: ${WS_URL}`;
  buildPad($("pad"), typeKey, true);
  $("number").addEventListener("input", drawFormatted);
  $("backspace").addEventListener("click", () => {
    const input = /** @type {HTMLInputElement} */ ($("number"));
    input.value = input.value.slice(0, -1);
    drawFormatted();
    input.focus();
  });
  $("dial-form").addEventListener("submit", (e) => { e.preventDefault(); dial(false); });
  $("call-video").addEventListener("click", () => dial(true));
  $("swap").addEventListener("click", (e) => act("Swapping", swap, /** @type {HTMLButtonElement} */ (e.currentTarget)));
  $("complete-transfer").addEventListener("click", (e) => act("Connecting the two", async () => {
    if (!consultationFor) throw { detail: "there is no transfer under way" };
    await consultationFor.completeTransfer();
  }, /** @type {HTMLButtonElement} */ (e.currentTarget)));
  $("signin-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const token = /** @type {HTMLInputElement} */ ($("token")).value.trim();
    const remember = /** @type {HTMLInputElement} */ ($("remember")).checked;
    act("Signing in", async () => {
      await signIn(token);
      if (remember) sessionStorage.setItem(TOKEN_KEY, token);
    }, /** @type {HTMLButtonElement} */ ($("signin-button")));
  });
  $("signout").addEventListener("click", (e) => act("Signing out", signOut, /** @type {HTMLButtonElement} */ (e.currentTarget)));
  $("settings-toggle").addEventListener("click", () => {
    toggle($("settings"), /** @type {HTMLButtonElement} */ ($("settings-toggle")));
    if ($("settings").hidden) stopMeter();
    else act("Listing devices", () => refreshDevices(phone));
  });
  $("mic").addEventListener("change", () => {
    phone.audioInput = /** @type {HTMLSelectElement} */ ($("mic")).value || null;
    act("Opening the microphone", () => startMeter(phone));
  });
  $("speaker").addEventListener("change", () => {
    phone.audioOutput = /** @type {HTMLSelectElement} */ ($("speaker")).value || null;
  });
  navigator.mediaDevices?.addEventListener?.("devicechange", () => { if (phone) refreshDevices(phone); });
  drawHistory();
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) act("Signing in", () => signIn(saved));
  else $("token").focus();
}

/** Swap: the active call goes on hold, the held one comes back. */
async function swap() {
  const calls = [...callItems.keys()];
  const active = calls.find((c) => c.state === "active");
  const held = calls.find((c) => c !== active && c.heldLocally);
  if (!held) throw { detail: "there is no call on hold to swap to" };
  if (active) await active.hold();
  await held.resume();
}

start();
