// @ts-check
/**
 * The softphone's small helpers: `$`, alerts in words (`showError`, `showInfo`), `act()` (run
 * a user action, a failure becomes an alert) and `button()`. No SDK here.
 * @module
 */

export const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));

// -- alerts -----------------------------------------------------------------------------------

/**
 * Show an error in words: what failed, the server's message, its cause and what to do.
 * @param {string} what  e.g. "Calling 1002"
 * @param {any} error  a CallbridgeError, or anything thrown
 */
export function showError(what, error) {
  const box = document.createElement("div");
  box.className = "alert";
  const text = document.createElement("p");
  const head = document.createElement("span");
  head.className = "what";
  head.textContent = `${what} failed: `;
  text.append(head, document.createTextNode(describe(error)));
  const close = document.createElement("button");
  close.type = "button";
  close.textContent = "Dismiss";
  close.setAttribute("aria-label", "Dismiss this message");
  close.addEventListener("click", () => box.remove());
  box.append(text, close);
  $("alerts").append(box);
  while ($("alerts").children.length > 3) $("alerts").firstElementChild?.remove();
}

/** @param {string} message */
export function showInfo(message) {
  const box = document.createElement("div");
  box.className = "alert info";
  const text = document.createElement("p");
  text.textContent = message;
  box.append(text);
  $("alerts").append(box);
  setTimeout(() => box.remove(), 6000);
}

/** @param {any} error */
export function describe(error) {
  if (!error) return "unknown error";
  if (error.name === "NotAllowedError") {
    return "the browser refused the microphone. Allow it for this site (the icon in the address bar) and try again.";
  }
  if (error.name === "NotFoundError") return "no microphone was found. Plug one in, or pick another under Devices.";
  const detail = error.detail ?? error.message ?? String(error);
  const parts = [detail];
  if (error.reason && error.reason !== detail) parts.push(error.reason);
  if (error.resolution) parts.push(error.resolution);
  return parts.map((p) => String(p).replace(/\.?$/, ".")).join(" ");
}

/**
 * Run a user action; a failure becomes an alert. The button that started it is disabled
 * meanwhile (no double submits).
 * @param {string} what
 * @param {() => Promise<any>} fn
 * @param {HTMLButtonElement|null} [button]
 */
export async function act(what, fn, button = null) {
  if (button) button.disabled = true;
  try {
    return await fn();
  } catch (e) {
    showError(what, e);
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

/** @param {string} label @param {string} cls @param {() => void} onClick */
export function button(label, cls, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = cls;
  b.textContent = label;
  b.addEventListener("click", onClick);
  return b;
}

/** @param {HTMLElement} panel @param {HTMLButtonElement} button */
export function toggle(panel, button) {
  panel.hidden = !panel.hidden;
  button.setAttribute("aria-expanded", String(!panel.hidden));
}
