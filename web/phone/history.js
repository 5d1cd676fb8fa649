// @ts-check
/**
 * The softphone's "Recent calls" panel: the signed-in user's call history from the server's
 * records (`phone.getCallHistory()`, `history.list` in docs/protocol.md), refreshed after
 * each call (and twice more soon after: see LATER), with a "Call back" button per row. Missed calls are marked.
 *
 * The calls of this session also appear at once, from the page's own view, until the server's
 * list has them: the server writes a call's record when the whole call ends, which for a call
 * you transferred or moved away is later (and names the parties of its end, not you).
 * @module
 */

import { $ } from "/phone/ui.js";

const LIMIT = 50;
// After a call ends the page asks again at these delays (ms): the server writes a call's
// record once it has processed the end, which can be after the page's first request (the
// hang-up and the request are handled side by side), and the record of a call transferred
// away waits up to 3 s for the call it goes on as (so the new call's record can come later).
const LATER = [1500, 4000];
// A call of this session that ended this long before a request has its record in the answer
// if it ever will (before that, its own entry stays rather than blink out).
const SETTLED = 3500;
// Your part of these calls ended, the call itself went on: its record may never name you.
const KEEP = new Set(["transferred", "moved"]);

/**
 * @typedef {{direction: string, peer: string, start: number, seconds: number|null,
 *   reason: string, callId?: string, ended?: number, dial?: string}} LocalEntry
 */

/**
 * @param {{getPhone: () => any, local: LocalEntry[], showName: (raw: any, name?: string) => string,
 *   clock: (seconds: number) => string, callBack: (dial: string) => void}} deps
 */
export function setupHistory({ getPhone, local, showName, clock, callBack }) {
  /** @type {Array<Record<string, any>>} */
  let server = [];
  let loaded = false;
  let failed = "";
  /** @type {Promise<void>|null} */
  let running = null;
  let again = false;

  /** Ask the server again (one request at a time; one more if asked meanwhile). */
  function refresh() {
    if (running) { again = true; return running; }
    running = (async () => {
      const phone = getPhone();
      if (!phone?.getCallHistory) return;
      const asked = Date.now();
      try {
        const page = await phone.getCallHistory({ limit: LIMIT });
        if (phone !== getPhone()) return;
        server = page.calls;
        loaded = true;
        failed = "";
        const known = new Set(server.map((c) => c.callId));
        for (let i = local.length - 1; i >= 0; i--) {
          const e = local[i];
          const settled = (e.ended ?? 0) <= asked - SETTLED;
          if ((e.callId && known.has(e.callId)) || (!KEEP.has(e.reason) && settled)) local.splice(i, 1);
        }
      } catch (e) {
        failed = /** @type {any} */ (e)?.message ?? String(e);
      }
    })().finally(() => {
      running = null;
      draw();
      if (again) { again = false; refresh(); }
    });
    return running;
  }

  /** @type {ReturnType<typeof setTimeout>[]} */
  let timers = [];

  /** A call ended: ask now, and again a little later (LATER). */
  function afterCall() {
    refresh();
    for (const t of timers) clearTimeout(t);
    timers = LATER.map((ms) => setTimeout(() => { if (getPhone()) refresh(); }, ms));
  }

  function reset() {
    for (const t of timers) clearTimeout(t);
    timers = [];
    server = [];
    loaded = false;
    failed = "";
    local.length = 0;
    draw();
  }

  function draw() {
    $("history-source").textContent = failed
      ? `The server's call records could not be loaded (${failed}); showing this session's calls.`
      : loaded ? "Your calls, from the server's records." : "";
    /** @type {Array<{start: number, li: HTMLLIElement}>} */
    const rows = [];
    for (const h of local) rows.push({ start: h.start, li: row(h.direction, h.peer, h.start, h.seconds, h.reason, h.dial ?? "", "session") });
    for (const c of server) {
      const direction = c.missed ? "missed" : c.direction === "out" ? "outgoing" : "incoming";
      const raw = c.direction === "in" ? c.partyNumber ?? c.partyExtension ?? c.party : c.partyNumber ?? c.party;
      const start = Date.parse(c.startedAt);
      const seconds = c.answeredAt ? Math.round(c.durationSeconds) : null;
      rows.push({ start, li: row(direction, showName(raw, c.partyName ?? ""), start, seconds, c.endReason, c.dial, "server") });
    }
    rows.sort((a, b) => b.start - a.start);
    const list = $("history");
    list.replaceChildren(...rows.map((r) => r.li));
    if (rows.length === 0) {
      const li = document.createElement("li");
      li.className = "empty";
      li.textContent = "No calls yet.";
      list.append(li);
    }
  }

  /**
   * @param {string} direction outgoing | incoming | missed @param {string} peer
   * @param {number} start @param {number|null} seconds @param {string} reason @param {string} dial
   * @param {"server"|"session"} source  the server's record, or this page's view until it comes
   */
  function row(direction, peer, start, seconds, reason, dial, source) {
    const li = document.createElement("li");
    li.dataset.source = source;
    if (direction === "missed") li.className = "missed";
    const dir = document.createElement("span");
    dir.className = "dir";
    dir.textContent = direction === "outgoing" ? "↗" : direction === "incoming" ? "↙" : "✕";
    dir.setAttribute("aria-label", direction === "missed" ? "missed" : direction);
    const who = document.createElement("span");
    who.className = "peer";
    who.textContent = peer;
    const meta = document.createElement("span");
    meta.className = "meta";
    const date = new Date(start);
    const today = date.toDateString() === new Date().toDateString();
    const when = today ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
      : date.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
    meta.textContent = `${when} · ${seconds === null ? reason : `${clock(seconds)} · ${reason}`}`;
    li.append(dir, who, meta);
    if (dial) {
      const back = document.createElement("button");
      back.type = "button";
      back.className = "secondary back";
      back.textContent = "Call back";
      back.setAttribute("aria-label", `Call ${peer} back`);
      back.addEventListener("click", () => callBack(dial));
      li.append(back);
    }
    return li;
  }

  return { refresh, afterCall, reset, draw };
}
