// @ts-check
/**
 * The softphone's Conference card, on the SDK's seed 002 conference API only:
 * `phone.startConference`, `addParticipant`, `joinConference` / `rejectConference` for an
 * invitation, `removeParticipant`, `endConference` (the host ends it for everyone, a
 * participant leaves), `refreshConference` (who is in it, for a participant), and the
 * `conference:*` events. docs/softphone.md, "Conferences".
 *
 * A host learns the roster from events; a participant is told only that it joined, so its page
 * asks the server (`refreshConference`) on joining and every few seconds while it is in.
 * @module
 */

import { $, act, button, showInfo } from "/phone/ui.js";

/** @typedef {any} Conference  the SDK's Conference */

const REFRESH_MS = 3000;

const ENDED_TEXT = /** @type {Record<string, string>} */ ({
  "ended-by-host": "The host ended the conference.",
  removed: "The host removed you from the conference.",
  "host-left": "The host left; the conference is over.",
  left: "You left the conference.",
});

/**
 * @param {{getPhone: () => any, showName: (raw: string, name?: string) => string}} page
 *   the page's phone and how it shows a number or extension
 */
export function setupConference(page) {
  /** @type {Map<Conference, HTMLElement>} invitations ringing here */
  const invites = new Map();
  /** @type {ReturnType<typeof setInterval>|null} */
  let poll = null;

  /** The conference this page hosts or is in (not one still ringing). */
  const current = () => {
    const phone = page.getPhone();
    if (!phone || typeof phone.startConference !== "function") return null;
    return [...phone.conferences].reverse().find((/** @type {Conference} */ c) => c.state !== "invited") ?? null;
  };

  function draw() {
    const phone = page.getPhone();
    const card = /** @type {HTMLElement} */ (document.querySelector(".conference"));
    // The page uses nothing but the SDK: an SDK without seed 002's conferences hides the card.
    card.hidden = !phone || typeof phone.startConference !== "function";
    const conf = current();
    $("conf-idle").hidden = Boolean(conf);
    $("conf-live").hidden = !conf;
    card.dataset.state = conf ? conf.state : "idle";
    if (!conf) return;
    const host = conf.role === "host";
    $("conf-name").textContent = conf.name || "Conference";
    const people = Object.keys(conf.participants).length;
    const who = host ? "You host it" : `Hosted by ${page.showName(conf.from || conf.host, conf.fromName)}`;
    $("conf-role").textContent = conf.state === "connecting" ? "Starting…"
      : `${who} · ${people} ${people === 1 ? "participant" : "participants"}`;
    $("conf-invite-form").hidden = !host;
    $("conf-end").textContent = host ? "End conference" : "Leave";
    drawParticipants(conf);
  }

  /** @param {Conference} conf */
  function drawParticipants(conf) {
    const host = conf.role === "host";
    const list = $("participants");
    list.replaceChildren();
    /** @param {string} name @param {string} status @param {string} id @param {string} what */
    const row = (name, status, id, what) => {
      const li = document.createElement("li");
      li.dataset.participant = id;
      const label = document.createElement("span");
      label.textContent = name;
      const em = document.createElement("em");
      em.textContent = status;
      li.append(label, em);
      if (host && id) {
        const remove = button(what, "secondary", () => act(`Removing ${name}`, () => page.getPhone().removeParticipant(id), remove));
        remove.setAttribute("aria-label", `${what} ${name}`);
        li.append(remove);
      }
      li.setAttribute("aria-label", `${name}: ${status}`);
      list.append(li);
    };
    if (!host) row(page.showName(conf.from || conf.host, conf.fromName), "host", "", "");
    for (const [id, p] of Object.entries(conf.participants)) {
      const me = !host && conf.call && p.call_id === conf.call.id;
      const status = [me ? "you" : "", p.held || p.status === "held" ? "on hold" : "in the call", p.muted ? "muted" : ""]
        .filter(Boolean).join(" · ");
      row(page.showName(id, p.name), status, me ? "" : id, "Remove");
    }
    for (const [id, inv] of Object.entries(conf.invitations)) {
      row(page.showName(id, inv.name), "ringing…", id, "Cancel");
    }
    if (!list.children.length) {
      const li = document.createElement("li");
      li.className = "empty";
      li.textContent = "Nobody yet: invite someone.";
      list.append(li);
    }
  }

  /** @param {Conference} conf @param {Record<string, any>} data */
  function invited(conf, data) {
    const banner = document.createElement("div");
    banner.className = "incoming conf-invite";
    banner.setAttribute("role", "group");
    const who = document.createElement("strong");
    who.className = "who";
    // The name on its line, the number under it (as the incoming-call banner does).
    const number = page.showName(data.from);
    who.textContent = data.fromName || number;
    const sub = document.createElement("span");
    sub.className = "sub";
    const what = `Invites you to the conference “${conf.name || "conference"}”`;
    sub.textContent = data.fromName && number !== "unknown" ? `${what} · ${number}` : what;
    banner.setAttribute("aria-label", `Conference invitation from ${who.textContent}`);
    const buttons = document.createElement("div");
    buttons.className = "row";
    const join = button("Join", "call", () => act("Joining the conference", async () => {
      await page.getPhone().joinConference();
      dropInvite(conf);
      draw();
    }, join));
    const decline = button("Decline", "danger", () => act("Declining", async () => {
      await page.getPhone().rejectConference();
      dropInvite(conf);
    }, decline));
    decline.setAttribute("aria-label", "Decline the conference invitation");
    buttons.append(join, decline);
    banner.append(who, sub, buttons);
    invites.set(conf, banner);
    $("incoming").append(banner);
    $("no-calls").hidden = true;
    join.focus();
  }

  /** @param {Conference} conf */
  function dropInvite(conf) {
    invites.get(conf)?.remove();
    invites.delete(conf);
  }

  /** Keep a participant's roster current. */
  function follow() {
    const conf = current();
    if (conf && conf.role === "participant" && conf.state === "connected") {
      if (!poll) poll = setInterval(refresh, REFRESH_MS);
    } else if (poll) {
      clearInterval(poll);
      poll = null;
    }
  }

  async function refresh() {
    const phone = page.getPhone();
    const conf = current();
    if (!phone || !conf || conf.state !== "connected") return;
    try {
      await phone.refreshConference();
    } catch {
      // The conference may have just ended; its events redraw the card.
    }
  }

  /** The phone's conference events. @param {any} phone */
  function wire(phone) {
    if (typeof phone.startConference !== "function") return;
    phone.on("conference:invitation-received", (/** @type {any} */ d) => invited(d.conference, d));
    phone.on("conference:canceled", (/** @type {any} */ d) => {
      dropInvite(d.conference);
      showInfo(`The invitation to “${d.conference.name || "a conference"}” was withdrawn.`);
    });
    phone.on("conference:invitation-rejected", (/** @type {any} */ d) =>
      showInfo(`${page.showName(d.invitee ?? "")} declined the invitation.`));
    phone.on("conference:ended", (/** @type {any} */ d) => {
      dropInvite(d.conference);
      const text = ENDED_TEXT[d.reason];
      if (text && d.conference.role === "participant") showInfo(text);
    });
    phone.on("conference:connected", (/** @type {any} */ d) => {
      if (d.conference.role === "participant") refresh();
    });
    for (const name of ["conference:connecting", "conference:connected", "conference:ended",
      "conference:invitation-sent", "conference:invitation-accepted", "conference:invitation-rejected",
      "conference:participant-left", "conference:participant-removed", "conference:participant-updated",
      "conference:updated"]) {
      phone.on(name, () => { follow(); draw(); });
    }
  }

  function reset() {
    for (const banner of invites.values()) banner.remove();
    invites.clear();
    follow();
    draw();
  }

  $("conf-start").addEventListener("click", (e) => act("Starting the conference", async () => {
    const input = /** @type {HTMLInputElement} */ ($("conf-title-input"));
    const name = input.value.trim();
    const promise = page.getPhone().startConference(name ? { conferenceName: name } : {});
    draw();
    await promise;
    input.value = "";
    draw();
    $("conf-invitee").focus();
  }, /** @type {HTMLButtonElement} */ (e.currentTarget)));
  $("conf-invite-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = /** @type {HTMLInputElement} */ ($("conf-invitee"));
    const to = input.value.trim();
    act(`Inviting ${to || "someone"}`, async () => {
      if (!to) throw { detail: "there is no one to invite", resolution: "Type an extension, a number or a name" };
      await page.getPhone().addParticipant(to);
      input.value = "";
      draw();
    }, /** @type {HTMLButtonElement} */ ($("conf-invite")));
  });
  $("conf-end").addEventListener("click", (e) => {
    const host = current()?.role === "host";
    act(host ? "Ending the conference" : "Leaving the conference", async () => {
      await page.getPhone().endConference();
      draw();
    }, /** @type {HTMLButtonElement} */ (e.currentTarget));
  });

  return { wire, draw, reset };
}
