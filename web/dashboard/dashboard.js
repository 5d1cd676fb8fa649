// The operator dashboard: signs in with an API key (POST /dashboard/session sets an HttpOnly
// cookie, since EventSource cannot send an Authorization header), then renders each snapshot
// that /dashboard/events pushes. Every value goes in with textContent: names and numbers come
// from callers and must never become markup.

const KEY = "callbridge.dashboard.key";
const $ = (id) => document.getElementById(id);
let source = null;
let retry = null;
let last = null;  // the last snapshot, re-rendered each second (durations tick)
let skew = 0;  // this clock minus the server's, at the last snapshot

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function badge(state) {
  return el("span", state, `badge ${state}`);
}

function duration(secs) {
  if (secs === null || secs === undefined) return "–";
  const m = Math.floor(secs / 60), s = secs % 60;
  return m >= 60 ? `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`
    : `${m}:${String(s).padStart(2, "0")}`;
}

// Seconds since ``iso`` by the server's clock (a snapshot's figures are as old as it is).
function since(iso) {
  return iso ? Math.max(0, Math.floor((Date.now() - skew - Date.parse(iso)) / 1000)) : null;
}

function time(iso) {
  return iso ? new Date(iso).toLocaleTimeString() : "–";
}

function setStatus(state, text) {
  $("status").dataset.state = state;
  $("status").textContent = text;
}

function rows(tableId, items, cells, keyOf) {
  const body = $(tableId).querySelector("tbody");
  body.replaceChildren(...items.map((item) => {
    const tr = el("tr");
    tr.dataset.id = keyOf(item);
    for (const cell of cells(item)) {
      const td = el("td");
      if (cell instanceof Node) td.append(cell); else td.textContent = cell ?? "–";
      tr.append(td);
    }
    return tr;
  }));
  $(`${tableId}-empty`).hidden = items.length > 0;
  const count = $(`${tableId}-count`);
  if (count) count.textContent = items.length;
}

function renderCalls(calls) {
  rows("calls", calls, (c) => [
    c.from_user ? `${c.from} (${c.from_user})` : c.from,
    c.to_user ? `${c.to} (${c.to_user})` : c.to,
    badge(c.state),
    duration(since(c.answered_at)),
    c.legs.map((l) => `${l.user}: ${l.state}${l.muted ? " (muted)" : ""}`).join(", "),
    [c.application && `app ${c.application}`, c.queue && `queue ${c.queue}`,
      c.conference && `conf ${c.conference}`].filter(Boolean).join(" · ") || "–",
  ], (c) => c.id);
}

function renderConferences(conferences) {
  $("conferences").replaceChildren(...conferences.map((conf) => {
    const box = el("div", null, "conf");
    box.dataset.id = conf.id;
    const title = el("h3", `${conf.name} `);
    title.append(el("span", `${conf.kind} · ${duration(since(conf.created_at))}` +
      (conf.recording ? " · recording" : ""), "flags"));
    const list = el("ul");
    for (const m of conf.members) {
      const flags = [m.host && "host", m.muted && "muted", m.held && "held", m.deaf && "deaf",
        m.role !== "none" && m.role].filter(Boolean).join(", ");
      const li = el("li", m.name || m.user, `member${m.talking ? " talking" : ""}`);
      li.dataset.callId = m.call_id;
      if (flags) li.append(el("span", ` ${flags}`, "flags"));
      list.append(li);
    }
    box.append(title, list);
    return box;
  }));
  $("conferences-empty").hidden = conferences.length > 0;
  $("conferences-count").textContent = conferences.length;
}

function renderQueues(queues) {
  $("queues").replaceChildren(...queues.map((q) => {
    const box = el("div", null, "queue");
    const title = el("h3", `${q.name} `);
    title.append(el("span", `${q.waiting.length}/${q.max_size} waiting · average wait ` +
      duration(q.average_wait_secs), "flags"));
    const list = el("ol");
    for (const w of q.waiting) list.append(el("li", `${w.from} → ${w.to}, ${duration(w.wait_secs)}`));
    box.append(title, list);
    return box;
  }));
  $("queues-empty").hidden = queues.length > 0;
  $("queues-count").textContent = queues.length;
}

function renderWebhooks(w) {
  const dl = $("webhooks");
  if (!w) {
    dl.replaceChildren(el("dt", "Shown to admin keys only"), el("dd", ""));
    return;
  }
  const items = [["Pending", w.pending, w.pending > 100], ["Lag", `${w.lag_secs} s`, w.lag_secs > 60],
    ["Delivered", w.delivered, false], ["Failed attempts", w.attempts_failed, false],
    ["Given up", w.given_up, w.given_up > 0]];
  dl.replaceChildren(...items.flatMap(([name, value, bad]) =>
    [el("dt", name), el("dd", value, bad ? "bad" : "")]));
}

function renderMedia(m) {
  const name = (w) => {
    const span = el("span", w.name);
    if (w.pid) span.title = `pid ${w.pid}`;
    return span;
  };
  rows("media", m ? m.workers : [], (w) => [name(w), badge(w.up ? "up" : "restarting"), w.objects,
    w.mixers, w.late_ticks, w.restarts], (w) => w.name);
  const relays = m && m.relays;
  $("media-relays").textContent = relays
    ? `Relayed between workers: ${relays.bridges} bridge(s), ${relays.mixer_members} room member(s)`
    : "";
}

function render(state) {
  window.dashboardState = state;  // for tests and the console
  renderCalls(state.calls);
  renderConferences(state.conferences);
  renderQueues(state.queues);
  rows("devices", state.devices, (d) => [d.user, d.kind === "ws" ? "browser / SDK" : "SIP",
    badge(d.state), d.detail || d.display_name], (d) => `${d.kind}:${d.id}`);
  rows("cdrs", state.cdrs, (c) => [time(c.started_at), c.caller, c.callee || c.destination,
    c.answered ? duration(c.duration_secs) : "not answered", c.hangup_source, c.end_reason],
    (c) => c.call_id);
  renderWebhooks(state.webhooks);
  renderMedia(state.media);
  $("updated").textContent = `Updated ${time(state.at)} · ` +
    (state.account ? `account ${state.account}` : "all accounts");
}

function showBoard(on) {
  $("signin").hidden = on;
  $("board").hidden = !on;
  $("signout").hidden = !on;
}

async function signIn(key) {
  clearTimeout(retry);
  let response;
  try {
    response = await fetch("/dashboard/session", {
      method: "POST", headers: { Authorization: `Bearer ${key}` }, credentials: "same-origin",
    });
  } catch (err) {
    setStatus("reconnecting", "Server unreachable");
    retry = setTimeout(() => signIn(key), 3000);
    return;
  }
  if (!response.ok) {
    let detail = `HTTP ${response.status}`;
    try { detail = (await response.json()).errors[0].detail; } catch { /* not JSON */ }
    sessionStorage.removeItem(KEY);
    showBoard(false);
    setStatus("signed-out", "Signed out");
    $("signin-error").textContent = detail;
    return;
  }
  const who = await response.json();
  sessionStorage.setItem(KEY, key);
  $("signin-error").textContent = "";
  showBoard(true);
  listen(key, who.admin ? "all accounts" : `account ${who.account}`);
}

function listen(key, scope) {
  if (source) source.close();
  source = new EventSource("/dashboard/events");
  source.addEventListener("snapshot", (event) => {
    setStatus("live", `Live · ${scope}`);
    last = JSON.parse(event.data);
    skew = Date.now() - Date.parse(last.at);
    render(last);
  });
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) {
      // Refused (the cookie expired, the server restarted): sign in again with the key.
      setStatus("reconnecting", "Reconnecting…");
      retry = setTimeout(() => signIn(key), 2000);
    } else {
      setStatus("reconnecting", "Reconnecting…");
    }
  };
}

$("signin").addEventListener("submit", (event) => {
  event.preventDefault();
  signIn($("key").value.trim());
});

$("signout").addEventListener("click", async () => {
  if (source) source.close();
  clearTimeout(retry);
  sessionStorage.removeItem(KEY);
  await fetch("/dashboard/session", { method: "DELETE", credentials: "same-origin" });
  showBoard(false);
  setStatus("signed-out", "Signed out");
});

setInterval(() => { if (last && !$("board").hidden) render(last); }, 1000);

const saved = sessionStorage.getItem(KEY);
if (saved) signIn(saved);
