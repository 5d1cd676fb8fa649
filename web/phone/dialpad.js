// @ts-check
/**
 * The softphone's dial pad and number utilities: the keypads (the dial pad and each call's
 * DTMF keypad), what the dial field dials and how it is shown (the SDK's `cleanPhoneNumber`,
 * `toE164`, `formatNumber`), and how a party is named on the page (`showName`).
 * @module
 */

import * as sdk from "/sdk/callbridge.js";
import { $ } from "/phone/ui.js";

/** @param {string} text */
export function formatNumber(text) {
  try {
    return sdk.formatNumber ? sdk.formatNumber(text) : text;
  } catch {
    return text;
  }
}

/**
 * The field as the SDK's number utilities read it: `{dial, shown}`. Numbers (digits and
 * separators, 9 digits or more, or a leading +) are dialled in E.164 and shown formatted;
 * short digit strings are extensions; anything else (a user name) is dialled as typed —
 * cleanPhoneNumber would turn its letters into keypad digits.
 * @param {string} value
 */
export function readNumber(value) {
  const text = value.trim();
  if (!/^\+?[\d\s().-]+$/.test(text)) return { dial: text, shown: "" };
  const clean = sdk.cleanPhoneNumber(text);
  if (!clean) return { dial: text, shown: "" };
  const digits = clean.replace(/\D/g, "");
  if (clean.startsWith("+") || digits.length >= 9) {
    const e164 = sdk.toE164 ? sdk.toE164(clean) : clean;
    return { dial: e164, shown: `${formatNumber(e164)}  ·  dials ${e164}` };
  }
  return { dial: clean, shown: digits.length >= 2 ? `extension ${clean}` : "" };
}

export function drawFormatted() {
  $("number-formatted").textContent = readNumber(/** @type {HTMLInputElement} */ ($("number")).value).shown;
}

/** What to dial from the field. */
export function destination() {
  return readNumber(/** @type {HTMLInputElement} */ ($("number")).value).dial;
}

/**
 * A party as the page shows it: "Name (number)", a formatted number, or "Extension 102".
 * @param {any} raw  a number, extension or user name @param {string} [name]
 */
export function showName(raw, name = "") {
  const shown = typeof raw !== "string" ? raw
    : raw.startsWith("+") ? formatNumber(raw) : /^\d{2,8}$/.test(raw) ? `Extension ${raw}` : raw;
  if (name && (!shown || name === shown)) return name;
  return name ? `${name} (${shown})` : shown || "unknown";
}

const KEYS = [["1", ""], ["2", "ABC"], ["3", "DEF"], ["4", "GHI"], ["5", "JKL"], ["6", "MNO"],
  ["7", "PQRS"], ["8", "TUV"], ["9", "WXYZ"], ["*", ""], ["0", "+"], ["#", ""]];

/**
 * Fill a keypad with buttons.
 * @param {HTMLElement} pad
 * @param {(key: string) => void} press
 * @param {boolean} letters
 */
export function buildPad(pad, press, letters) {
  for (const [key, sub] of KEYS) {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.key = key;
    button.setAttribute("aria-label", key === "*" ? "star" : key === "#" ? "pound" : key);
    button.append(key);
    if (letters) {
      const small = document.createElement("small");
      small.textContent = sub || "\u00a0";
      small.setAttribute("aria-hidden", "true");
      button.append(small);
    }
    button.addEventListener("click", () => press(key));
    pad.append(button);
  }
}

/** A key of the dial pad (or typed outside a field) goes into the dial field. @param {string} key */
export function typeKey(key) {
  const input = /** @type {HTMLInputElement} */ ($("number"));
  input.value += key;
  drawFormatted();
}
